"""mLSTM (Beck et al. 2024, xLSTM): a matrix memory per head, written with exponential gating.

Per head (HEADS of them, each d = H / HEADS wide), from the input alone:

    q_t, k_t / sqrt(d), v_t, o_t = sigmoid(.)       queries, keys, values, output gate (gate_o)
    i~_t, f~_t                                      one input and one forget gate per head
    m_t = max(log sigmoid(f~_t) + m_{t-1}, i~_t)    stab: the stabiliser
    i_t = exp(i~_t - m_t), f_t = exp(log sigmoid(f~_t) + m_{t-1} - m_t)     gate_i, gate_f
    C_t = f_t C_{t-1} + i_t v_t k_t^T               the memory, d x d
    n_t = f_t n_{t-1} + i_t k_t                     norm: the normaliser, d wide
    h~_t = C_t q_t / max(|n_t . q_t|, exp(-m_t))
    h_t = o_t * norm(h~_t)                          norm: each head's d values to mean 0, variance 1

The per-head normalisation is xLSTM's (its block normalises each head's output); without it a run at
this project's learning rate diverged on War and Peace (validation loss 5.2 nats after 222 steps).
Recorded, each H wide: h; c, a bounded view of the memory: the diagonal of each head's C_t (the
whole memory is H x d numbers a layer); norm; and stab, gate_i, gate_f, each head's one number
repeated over the head's d units. Training uses the parallel form (as attention with a decay mask),
in blocks of BLOCK steps with (C, n, m) carried between them; the same values as the steps.
State: (h, C [HEADS, d, d], n [HEADS, d], m [HEADS]).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ...config import MLSTM_HEADS as HEADS
from ._layer import Layer, edited

BLOCK = 128
FORGET_BIAS = 3.0      # xLSTM starts its forget gates near 1, so that the memory keeps what it is given


def _head_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Each head's values (the last dimension) to mean 0 and variance 1."""
    centred = x - x.mean(-1, keepdim=True)
    return centred * torch.rsqrt(centred.square().mean(-1, keepdim=True) + eps)


class MLSTMLayer(Layer):
    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(input_size, hidden_size)
        H = hidden_size
        self.d = H // HEADS
        self.proj = nn.Linear(input_size, 4 * H + 2 * HEADS)        # q, k, v, o, then i~ and f~ per head
        with torch.no_grad():
            self.proj.bias[4 * H + HEADS:].fill_(FORGET_BIAS)

    def state_shapes(self):
        d = self.d
        return (self.hidden_size,), (HEADS, d, d), (HEADS, d), (HEADS,)

    def last(self, state, name):
        if name == "c":                                             # the view recorded as c: C's diagonal
            diag = torch.diagonal(state[1], dim1=-2, dim2=-1)
            return diag.reshape(diag.shape[0], -1)
        return state[0]

    def _inputs(self, x):
        """q, k, v [B, NH, T, d]; o [B, T, H]; i~, log f [B, NH, T]."""
        B, T, _ = x.shape
        H = self.hidden_size
        P = self.proj(x)
        heads = lambda a: a.reshape(B, T, HEADS, self.d).transpose(1, 2)      # noqa: E731
        q, k, v = heads(P[..., :H]), heads(P[..., H:2 * H]) / math.sqrt(self.d), heads(P[..., 2 * H:3 * H])
        o = torch.sigmoid(P[..., 3 * H:4 * H])
        it, ft = P[..., 4 * H:4 * H + HEADS].transpose(1, 2), P[..., 4 * H + HEADS:].transpose(1, 2)
        return q, k, v, o, it, F.logsigmoid(ft)

    def _spread(self, per_head):
        """[B, NH, T] (or [B, NH, T, d]) -> [B, T, H]: one number per head over its units, or the units."""
        if per_head.dim() == 3:
            per_head = per_head.unsqueeze(-1).expand(-1, -1, -1, self.d)
        B, NH, T, d = per_head.shape
        return per_head.transpose(1, 2).reshape(B, T, NH * d)

    def parallel(self, x, state):
        q, k, v, o, it, log_f = self._inputs(x)
        parts, (_, C, n, m) = [], state
        for s in range(0, x.shape[1], BLOCK):
            cut = slice(s, s + BLOCK)
            out, (C, n, m) = self._block(q[:, :, cut], k[:, :, cut], v[:, :, cut], it[..., cut], log_f[..., cut],
                                         C, n, m)
            parts.append(out)
        out = {key: torch.cat([p[key] for p in parts], 2) for key in parts[0]}
        h = o * self._spread(_head_norm(out["h~"]))
        values = {"h": h, "c": self._spread(out["c"]), "norm": self._spread(out["norm"]),
                  "stab": self._spread(out["stab"]), "gate_i": self._spread(out["gate_i"]),
                  "gate_f": self._spread(out["gate_f"]), "gate_o": o}
        return values, (h[:, -1], C, n, m)

    def _block(self, q, k, v, it, log_f, C0, n0, m0):
        """One block of the parallel form from the state (C0, n0, m0); -> per-step values [B, NH, T(, d)], state."""
        T = q.shape[2]
        F_ = log_f.double().cumsum(-1)                              # [B, NH, T]: log of f_1 ... f_t
        D = F_[..., :, None] - F_[..., None, :] + it.double()[..., None, :]      # [B, NH, T, T]: step s's weight at t
        D = D.masked_fill(~torch.ones(T, T, dtype=torch.bool, device=q.device).tril(), -math.inf)
        D0 = F_ + m0.double()[..., None]                            # the carried memory's weight
        m = torch.maximum(D.amax(-1), D0)                           # [B, NH, T]
        W, w0 = torch.exp(D - m[..., None]).to(q.dtype), torch.exp(D0 - m).to(q.dtype)
        S = (q @ k.transpose(-1, -2)) * W                           # [B, NH, T, T]
        num = S @ v + w0[..., None] * (q @ C0.transpose(-1, -2))    # C_t q_t
        nq = S.sum(-1) + w0 * (q @ n0[..., None])[..., 0]           # n_t . q_t
        denom = torch.maximum(nq.abs(), torch.exp(-m).to(q.dtype))
        norm = W @ k + w0[..., None] * n0[:, :, None]               # n_t, every step
        diag = W @ (v * k) + w0[..., None] * torch.diagonal(C0, dim1=-2, dim2=-1)[:, :, None]
        last = W[..., -1, :]                                        # [B, NH, T]: the weights at the block's end
        C = (v * last[..., None]).transpose(-1, -2) @ k + w0[..., -1, None, None] * C0
        m_prev = torch.cat([m0[..., None].double(), m[..., :-1]], -1)
        gate_i = torch.exp(it.double() - m).to(q.dtype)
        gate_f = torch.exp(log_f.double() + m_prev - m).to(q.dtype)
        out = {"h~": num / denom[..., None], "c": diag, "norm": norm, "stab": m.to(q.dtype),
               "gate_i": gate_i, "gate_f": gate_f}
        return out, (C, norm[:, :, -1], m[..., -1].to(q.dtype))

    def steps(self, x, state, edits=None, step0=0):
        q, k, v, o, it, log_f = self._inputs(x)
        _, C, n, m = state
        keep = {key: [] for key in ("h", "c", "norm", "stab", "gate_i", "gate_f")}
        for t in range(x.shape[1]):
            m_new = torch.maximum(log_f[..., t] + m, it[..., t])                     # [B, NH]
            i, f = torch.exp(it[..., t] - m_new), torch.exp(log_f[..., t] + m - m_new)
            C = f[..., None, None] * C + i[..., None, None] * (v[:, :, t, :, None] * k[:, :, t, None, :])
            diag = torch.diagonal(C, dim1=-2, dim2=-1)                              # [B, NH, d]
            flat = diag.reshape(diag.shape[0], -1)
            new = edited(edits, "c", flat, step0 + t)
            if new is not flat:                                                     # the memory follows the edit
                C = C + torch.diag_embed(new.view_as(diag) - diag)
            n, m = f[..., None] * n + i[..., None] * k[:, :, t], m_new
            qt = q[:, :, t]
            denom = torch.maximum((n * qt).sum(-1).abs(), torch.exp(-m))
            h_tilde = (C @ qt[..., None])[..., 0] / denom[..., None]
            h = edited(edits, "h", o[:, t] * _head_norm(h_tilde).reshape(h_tilde.shape[0], -1), step0 + t)
            for key, val in zip(keep, (h, new, n, m, i, f)):
                keep[key].append(val)
        per_unit = lambda key: torch.stack(keep[key], 1).reshape(x.shape[0], x.shape[1], -1)   # noqa: E731
        per_head = lambda key: self._spread(torch.stack(keep[key], -1))                        # noqa: E731
        values = {"h": torch.stack(keep["h"], 1), "c": per_unit("c"), "norm": per_unit("norm"),
                  "stab": per_head("stab"), "gate_i": per_head("gate_i"), "gate_f": per_head("gate_f"), "gate_o": o}
        return values, (h, C, n, m)
