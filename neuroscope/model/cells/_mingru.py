"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?"): a GRU whose gate and candidate read only the input.

    z_t = sigmoid(W_z x_t)             gate_z: how much of the candidate enters
    g_t = W_g x_t                      gate_g: the candidate (linear, as in the paper's plain minGRU)
    h_t = (1 - z_t) * h_{t-1} + z_t * g_t

Because nothing inside the recurrence reads h, all steps are one linear scan (see _scan) in training.
State: (h,).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ._layer import Layer, edited
from ._scan import linear_scan


class MinGRULayer(Layer):
    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(input_size, hidden_size)
        self.proj = nn.Linear(input_size, 2 * hidden_size)          # z, g

    def _gates(self, x):
        zt, g = self.proj(x).chunk(2, -1)                           # [B, T, H] each
        return zt, g

    def parallel(self, x, state):
        zt, g = self._gates(x)
        z = torch.sigmoid(zt)
        h = linear_scan(F.logsigmoid(-zt), z * g, state[0])          # log(1 - z) = logsigmoid(-z~)
        return {"h": h, "gate_z": z, "gate_g": g}, (h[:, -1],)

    def steps(self, x, state, edits=None, step0=0):
        zt, g = self._gates(x)
        z = torch.sigmoid(zt)
        h, hs = state[0], []
        for t in range(x.shape[1]):
            h = edited(edits, "h", torch.lerp(h, g[:, t], z[:, t]), step0 + t)
            hs.append(h)
        return {"h": torch.stack(hs, 1), "gate_z": z, "gate_g": g}, (h,)
