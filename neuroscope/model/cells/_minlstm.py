"""minLSTM (Feng et al. 2024): an LSTM whose gates read only the input, normalised so that they sum to one.

    f_t = sigmoid(W_f x_t),  i_t = sigmoid(W_i x_t)
    f'_t = f_t / (f_t + i_t),  i'_t = i_t / (f_t + i_t)     gate_f, gate_i: the normalised gates
    g_t = W_g x_t                                           gate_g: the candidate
    h_t = f'_t * h_{t-1} + i'_t * g_t

All steps are one linear scan (see _scan) in training. State: (h,).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ._layer import Layer, edited
from ._scan import linear_scan


class MinLSTMLayer(Layer):
    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(input_size, hidden_size)
        self.proj = nn.Linear(input_size, 3 * hidden_size)          # f, i, g

    def _gates(self, x):
        ft, it, g = self.proj(x).chunk(3, -1)                       # [B, T, H] each
        lf, li = F.logsigmoid(ft), F.logsigmoid(it)
        total = torch.maximum(lf, li) + torch.log1p(torch.exp(-(lf - li).abs()))    # logaddexp, which ONNX lacks
        return lf - total, (li - total).exp(), g                    # log f', i', g

    def parallel(self, x, state):
        log_f, i, g = self._gates(x)
        h = linear_scan(log_f, i * g, state[0])
        return {"h": h, "gate_f": log_f.exp(), "gate_i": i, "gate_g": g}, (h[:, -1],)

    def steps(self, x, state, edits=None, step0=0):
        log_f, i, g = self._gates(x)
        f = log_f.exp()
        h, hs = state[0], []
        for t in range(x.shape[1]):
            h = edited(edits, "h", f[:, t] * h + i[:, t] * g[:, t], step0 + t)
            hs.append(h)
        return {"h": torch.stack(hs, 1), "gate_f": f, "gate_i": i, "gate_g": g}, (h,)
