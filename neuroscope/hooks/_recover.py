"""The "recover" strategy: one recurrent layer's states from the fused kernel, without a Python step loop.

h of every step comes from PyTorch's fused kernel (bit-identical to the module's own output). The
gates depend only on (x_t, h_{t-1}), so those of all steps are one matrix product; then c follows from
the scan c_t = f_t * c_{t-1} + i_t * g_t (a parallel log-depth scan on GPU). It cannot edit states.
"""
from __future__ import annotations

import torch
from torch import nn

from ..names import gate_state
from . import _fastops as fastops


def recover_layer(kind: str, mod: nn.Module, x: torch.Tensor, w: list[torch.Tensor], h0: torch.Tensor,
                  c0: torch.Tensor | None, gates: tuple[str, ...], emb=None) -> dict[str, torch.Tensor]:
    """One layer. x [T, B, E] -> {"h": [T, B, H], "c", and the gates named in `gates` (or more)}.

    w: (W_ih, W_hh[, b_ih, b_hh]); h0, c0 [B, H]; emb: see fastops.input_projection.
    """
    hs = fastops.fused_layer(kind, mod, x, w, h0, c0)          # [T, B, H]
    if kind == "rnn" or (kind == "gru" and not gates):
        return {"h": hs}
    h_prev = torch.cat([h0[None], hs[:-1]])                     # [T, B, H]: h_{t-1}
    if kind == "lstm":
        return {"h": hs, **_lstm_gates_and_c(x, w, h_prev, c0, "o" in gates, emb)}
    return {"h": hs, **_gru_gates(x, w, h_prev, emb)}


def _lstm_gates_and_c(x, w, h_prev, c0, with_o: bool, emb) -> dict[str, torch.Tensor]:
    T, B, H = h_prev.shape
    n = 4 if with_o else 3                                      # c needs i, f, g only
    G = fastops.input_projection(x, w, slice(0, n * H), emb=emb)    # [T, B, nH]
    G.view(T * B, -1).addmm_(h_prev.reshape(T * B, H), w[1][:n * H].t())
    G[:, :, :2 * H].sigmoid_()
    G[:, :, 2 * H:3 * H].tanh_()
    if with_o:
        G[:, :, 3 * H:].sigmoid_()
    i, f, g = G[:, :, :H], G[:, :, H:2 * H], G[:, :, 2 * H:3 * H]
    return {"c": linear_scan(f, i * g, c0), **{gate_state(q): v for q, v in zip("ifgo", G.split(H, -1))}}


def _gru_gates(x, w, h_prev, emb) -> dict[str, torch.Tensor]:
    T, B, H = h_prev.shape
    X = fastops.input_projection(x, w, with_hh_bias=False, emb=emb)    # [T, B, 3H]: r z n
    gh = h_prev.reshape(T * B, H) @ w[1].t()
    if len(w) == 4:
        gh += w[3]
    gh = gh.view(T, B, 3 * H)
    X[:, :, :2 * H].add_(gh[:, :, :2 * H]).sigmoid_()
    X[:, :, 2 * H:].addcmul_(X[:, :, :H], gh[:, :, 2 * H:]).tanh_()
    return {gate_state(q): v for q, v in zip("rzn", X.split(H, -1))}


BLOCK = 64          # steps per block of the blocked CPU scan


def linear_scan(f: torch.Tensor, u: torch.Tensor, c0: torch.Tensor, parallel: bool | None = None) -> torch.Tensor:
    """c_t = f_t * c_{t-1} + u_t for t = 0..T-1 from c_{-1} = c0. f, u [T, ...] -> c [T, ...].

    parallel=False: one fused multiply-add per step, in place. Default on CPU: the same scan in
    blocks of BLOCK steps (a step of every block at once, then the blocks' ends in order, then each
    block's start carried in), about 2 sqrt(T) operations instead of T, each on more numbers. With
    parallel=True (default on GPU) a Hillis-Steele scan: log2(T) rounds of whole-tensor operations.
    The blocked and parallel scans compose (f, u) pairs, so only the order of roundings differs from
    the sequential scan (c within a few float32 ulps; tests/test_hooks.py).
    """
    if parallel is None:
        parallel = f.is_cuda
    if parallel:
        return _hillis_steele(f, u, c0)
    if len(f) < 4 * BLOCK:
        return _sequential(f, u, c0)
    return _blocked(f, u, c0)



def _sequential(f, u, c0):
    c = u.clone()
    c_t, f_t = c.unbind(0), f.unbind(0)
    c_t[0].addcmul_(f_t[0], c0)
    for t in range(1, len(c_t)):
        c_t[t].addcmul_(f_t[t], c_t[t - 1])
    return c


def _blocked(f, u, c0):
    T, L = len(f), BLOCK
    n = T // L
    head_f, head_u = f[:n * L].view(n, L, *f.shape[1:]), u[:n * L].view(n, L, *u.shape[1:])
    # Within each block, from a zero start: b_j = f_j b_{j-1} + u_j, and a_j = f_1 ... f_j (the
    # factor that carries the block's start in), step j of all blocks at once.
    a, b = head_f.clone(), head_u.clone()
    for j in range(1, L):
        a[:, j].mul_(a[:, j - 1])
        b[:, j].addcmul_(head_f[:, j], b[:, j - 1])
    starts = torch.empty((n, *c0.shape), dtype=c0.dtype, device=c0.device)   # c before each block
    prev = c0
    for k in range(n):                       # the blocks' ends, in order: c_end = a_L c_start + b_L
        starts[k] = prev
        prev = torch.addcmul(b[k, -1], a[k, -1], prev)
    c = b.addcmul_(a, starts[:, None])       # every step: c_j = a_j c_start + b_j
    c = c.view(n * L, *u.shape[1:])
    if n * L == T:
        return c
    return torch.cat([c, _sequential(f[n * L:], u[n * L:], prev)])


def _hillis_steele(f, u, c0):
    a, b = f.clone(), u.clone()
    b[0].addcmul_(a[0], c0)
    a[0] = 0                                                    # c0 is folded in: step 0 is complete
    d = 1
    while d < len(b):
        # pair (a, b) at t absorbs the one at t - d: b_t += a_t * b_{t-d}; a_t *= a_{t-d}
        b[d:] = torch.addcmul(b[d:], a[d:], b[:-d])
        a[d:] = a[d:] * a[:-d]
        d *= 2
    return b
