"""A selective state-space layer in the style of Mamba (Gu & Dao 2023): a linear recurrence whose step,
input and readout depend on the input, so that it can choose what to keep.

    u_t = silu(W_u x_t),  z_t = silu(W_z x_t)            gate_z: the output gate
    d_t = softplus(W_d u_t + b_d)                        gate_d: the step (one per unit)
    B_t = W_B u_t,  C_t = W_C u_t                        N wide each, shared by the units
    s_t = exp(d_t A) * s_{t-1} + d_t u_t B_t             the state: H x N numbers (A = -exp(A_log) < 0)
    c_t = s_t C_t                                        c: the state read out, H wide
    h_t = x_t + W_o ((c_t + D u_t) * z_t)                h: the layer's output (the residual when In = H)

The state itself is H x N = SSM_STATE x H numbers a layer, more than a unit each: neuroscope records
its readout c_t, H wide, and an edit of c changes what the layer reads out at that step (as LSTM's
tanh_c edit does), not the state. Left out from Mamba: the short causal convolution before the scan and
the normalisation around the block. Training is one linear scan over all steps (see _scan).
State: (h, c, s [H, N]).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ...config import SSM_STATE as N
from ._layer import Layer, edited
from ._scan import linear_scan

STEP_RANGE = (1e-3, 1e-1)     # the steps d_t start spread over this range, log-uniform, as in Mamba


class SSMLayer(Layer):
    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(input_size, hidden_size)
        H = hidden_size
        self.inp = nn.Linear(input_size, 2 * H)                     # u, z
        self.select = nn.Linear(H, H + 2 * N)                       # d, B, C
        self.A_log = nn.Parameter(torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(H, 1))   # [H, N]
        self.D = nn.Parameter(torch.ones(H))
        self.out = nn.Linear(H, H)
        with torch.no_grad():
            lo, hi = (math.log(v) for v in STEP_RANGE)
            step = torch.exp(torch.rand(H) * (hi - lo) + lo)
            self.select.bias[:H].copy_(step + torch.log(-torch.expm1(-step)))   # softplus(bias) = step

    def state_shapes(self):
        H = self.hidden_size
        return (H,), (H,), (H, N)

    def _inputs(self, x):
        H = self.hidden_size
        u, z = self.inp(x).chunk(2, -1)
        u, z = F.silu(u), F.silu(z)
        P = self.select(u)
        d, Bm, Cm = F.softplus(P[..., :H]), P[..., H:H + N], P[..., H + N:]
        log_a = d[..., None] * -torch.exp(self.A_log)               # [B, T, H, N]
        b = (d * u)[..., None] * Bm[..., None, :]                   # [B, T, H, N]
        return u, z, d, Cm, log_a, b

    def _output(self, x, u, z, c):
        y = self.out((c + self.D * u) * z)
        return x + y if x.shape[-1] == y.shape[-1] else y

    def parallel(self, x, state):
        u, z, d, Cm, log_a, b = self._inputs(x)
        s = linear_scan(log_a, b, state[2])                         # [B, T, H, N]
        c = (s * Cm[..., None, :]).sum(-1)
        h = self._output(x, u, z, c)
        return {"h": h, "c": c, "gate_z": z, "gate_d": d}, (h[:, -1], c[:, -1], s[:, -1])

    def steps(self, x, state, edits=None, step0=0):
        u, z, d, Cm, log_a, b = self._inputs(x)
        _, c, s = state
        hs, cs = [], []
        for t in range(x.shape[1]):
            s = torch.exp(log_a[:, t]) * s + b[:, t]
            c = edited(edits, "c", (s * Cm[:, t, None, :]).sum(-1), step0 + t)
            h = edited(edits, "h", self._output(x[:, t], u[:, t], z[:, t], c), step0 + t)
            hs.append(h)
            cs.append(c)
        return {"h": torch.stack(hs, 1), "c": torch.stack(cs, 1), "gate_z": z, "gate_d": d}, (h, c, s)
