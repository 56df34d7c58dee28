"""The "loop" strategy: one recurrent layer stepped in Python, the only way that can edit states.

The input projection of all steps is one matrix product; each step then does one matrix product
(W_hh h_{t-1}) and the gate arithmetic in place, into buffers allocated once per call. Views of each
step's rows are made in bulk (unbind), so the Python loop does only the arithmetic. Prepared
products (LSTM rows reordered i f o g so that one sigmoid covers i, f and o; weights packed for
oneDNN where that is faster, see fastops) are kept in a dict the caller may share between calls.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..names import gate_state
from . import _fastops as fastops

EditFn = Callable[[torch.Tensor, int], "torch.Tensor | None"]


def edit_in_place(fn: EditFn, value: torch.Tensor, t: int) -> None:
    """Apply fn(value, t) to a state that stays where it is: a new tensor it returns is copied in."""
    new = fn(value, t)
    if new is not None and new is not value:
        value.copy_(new)


def prepare(kind: str, w: list[torch.Tensor], rows: int, batch: int) -> tuple[fastops.Product, fastops.Product]:
    """A layer's two products: (input: W_ih with the biases, recurrent: W_hh), for about `rows` input
    rows at once and `batch` rows per step. A GRU keeps b_hh with W_hh (b_hn sits inside r * (...))."""
    if kind == "lstm":
        H = w[1].shape[1]
        order = torch.cat([torch.arange(0, 2 * H), torch.arange(3 * H, 4 * H), torch.arange(2 * H, 3 * H)])
        w = [p.index_select(0, order.to(p.device)) for p in w]
    bias_ih = None if len(w) < 4 else (w[2] if kind == "gru" else w[2] + w[3])
    return (fastops.Product(w[0], bias_ih, rows),
            fastops.Product(w[1], w[3] if kind == "gru" and len(w) == 4 else None, batch))


def prepared_products(prepared: dict, key: str, owner: tuple, kind: str, w: list[torch.Tensor], rows: int,
                      batch: int):
    """prepare(...), reused from `prepared[key]` while `owner` (module id, layer) and its weights are
    the same tensors, unchanged."""
    stamp = (owner, fastops.version_stamp(w))
    if prepared.get(key, (None,))[0] != stamp:
        prepared[key] = (stamp, prepare(kind, w, rows, batch))
    return prepared[key][1]


def loop_layer(kind: str, mod: nn.Module, x: torch.Tensor, products, h: torch.Tensor, c: torch.Tensor | None,
               edits: tuple, step0: int, emb=None) -> dict[str, torch.Tensor]:
    """One layer over all steps. x [T, B, E] -> {"h": [T, B, H], "c", "gate_i", ...} (time-major).

    products: from prepare; h, c [B, H]: the initial state; edits: (edit_h, edit_c, edit_shown), each
    None or called with the state of step t (numbered from step0) before it is used further;
    edit_shown (LSTM) edits tanh(c_t) as h_t = o_t * tanh(c_t) reads it, leaving the memory c_t as it
    is; emb: see fastops.input_projection.
    """
    edit_h, edit_c, edit_shown = edits
    ih, hh = products
    X = fastops.input_projection(x, emb=emb, ih=ih)             # [T, B, G] input preactivations
    if kind == "lstm":
        return _lstm_steps(X, hh, h, c, edits, step0)
    if kind == "gru":
        return _gru_steps(X, hh, h, edit_h, step0)
    return _rnn_steps(X, hh, h, edit_h, step0, getattr(mod, "nonlinearity", "tanh") == "relu")


def _lstm_steps(G, hh, h, c, edits, step0) -> dict[str, torch.Tensor]:
    """G [T, B, 4H]: input preactivations in the order i f o g, overwritten by the gates."""
    edit_h, edit_c, edit_shown = edits
    T, B, H4 = G.shape
    H = H4 // 4
    Gt, sig, tan = G.unbind(0), G[:, :, :3 * H].unbind(0), G[:, :, 3 * H:].unbind(0)
    gi, gf, go, gg = (G[:, :, j * H:(j + 1) * H].unbind(0) for j in range(4))
    hs, cs = G.new_empty(T, B, H), G.new_empty(T, B, H)
    hs_t, cs_t = hs.unbind(0), cs.unbind(0)
    for t in range(T):
        pre = hh(h, Gt[t])                                      # + W_hh h_{t-1}
        if pre is Gt[t]:                                        # added in place (addmm)
            sig[t].sigmoid_()                                   # i, f, o
            tan[t].tanh_()                                      # g
        else:                                                   # a new tensor (oneDNN)
            torch.sigmoid(pre[:, :3 * H], out=sig[t])
            torch.tanh(pre[:, 3 * H:], out=tan[t])
        ct = cs_t[t]
        torch.mul(gf[t], c, out=ct)
        ct.addcmul_(gi[t], gg[t])                               # c_t = f * c_{t-1} + i * g
        if edit_c is not None:
            edit_in_place(edit_c, ct, step0 + t)
        ht = hs_t[t]
        torch.tanh(ct, out=ht)
        if edit_shown is not None:
            edit_in_place(edit_shown, ht, step0 + t)
        ht.mul_(go[t])                                          # h_t = o * tanh(c_t)
        if edit_h is not None:
            edit_in_place(edit_h, ht, step0 + t)
        h, c = ht, ct
    return {"h": hs, "c": cs, **{gate_state(g): v for g, v in zip("ifog", G.split(H, -1))}}


def _gru_steps(X, hh, h, edit_h, step0) -> dict[str, torch.Tensor]:
    """X [T, B, 3H]: input preactivations r z n, overwritten by the gates."""
    T, B, H3 = X.shape
    H = H3 // 3
    rz = X[:, :, :2 * H].unbind(0)
    xr, xz, xn = (X[:, :, j * H:(j + 1) * H].unbind(0) for j in range(3))
    hs = X.new_empty(T, B, H)
    hs_t = hs.unbind(0)
    for t in range(T):
        gh = hh(h)                                              # W_hh h_{t-1} + b_hh, r z n
        gh_n = gh[:, 2 * H:]
        rz[t].add_(gh[:, :2 * H]).sigmoid_()
        xn[t].addcmul_(xr[t], gh_n).tanh_()                    # n = tanh(x_n + r * (W_hn h + b_hn))
        ht = hs_t[t]
        torch.sub(h, xn[t], out=ht)
        ht.mul_(xz[t]).add_(xn[t])                              # h_t = n + z * (h_{t-1} - n)
        if edit_h is not None:
            edit_in_place(edit_h, ht, step0 + t)
        h = ht
    return {"h": hs, **{gate_state(g): v for g, v in zip("rzn", X.split(H, -1))}}


def _rnn_steps(X, hh, h, edit_h, step0, relu: bool) -> dict[str, torch.Tensor]:
    """X [T, B, H]: input preactivations, overwritten by h."""
    Xt = X.unbind(0)
    for t in range(len(Xt)):
        ht = Xt[t]
        pre = hh(h, ht)                                         # ht itself when added in place
        torch.relu(pre, out=ht) if relu else torch.tanh(pre, out=ht)
        if edit_h is not None:
            edit_in_place(edit_h, ht, step0 + t)
        h = ht
    return {"h": X}
