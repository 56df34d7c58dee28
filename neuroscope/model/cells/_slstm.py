"""sLSTM (Beck et al. 2024, xLSTM): an LSTM with exponential input gates, a normaliser and a stabiliser.

    i~, f~, g~, o~ = W x_t + R h_{t-1} + b              (one head: R is a full H x H block per gate)
    m_t = max(log sigmoid(f~) + m_{t-1}, i~)            stab: the stabiliser, so that no exp overflows
    i_t = exp(i~ - m_t),  f_t = exp(log sigmoid(f~) + m_{t-1} - m_t)     gate_i, gate_f (stabilised)
    g_t = tanh(g~),  o_t = sigmoid(o~)                  gate_g (the paper's z), gate_o
    c_t = f_t * c_{t-1} + i_t * g_t                     c: the cell state (scaled by exp(-m_t))
    n_t = f_t * n_{t-1} + i_t                           norm: the normaliser (same scale)
    h_t = o_t * c_t / n_t

c_t / n_t is a weighted mean of the g's, so h stays in (-1, 1) however large c and n grow. h feeds
back through R, so there is no parallel form: training runs the steps. State: (h, c, n, m).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ._layer import Layer, edited

FORGET_BIAS = 1.0      # a forget gate open at the start (sigmoid(1) = 0.73), as LSTMs are usually begun


class SLSTMLayer(Layer):
    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(input_size, hidden_size)
        H = hidden_size
        self.proj = nn.Linear(input_size, 4 * H)                    # i, f, g, o
        self.recurrent = nn.Linear(H, 4 * H, bias=False)            # R
        with torch.no_grad():
            self.proj.bias[H:2 * H].fill_(FORGET_BIAS)

    def state_shapes(self):
        return ((self.hidden_size,),) * 4                            # h, c, n, m

    def parallel(self, x, state):
        return self.steps(x, state)

    def steps(self, x, state, edits=None, step0=0):
        X = self.proj(x)                                            # [B, T, 4H]: the input's share, all steps
        h, c, n, m = state
        keep = {k: [] for k in ("h", "c", "norm", "stab", "gate_i", "gate_f", "gate_g", "gate_o")}
        for t in range(x.shape[1]):
            it, ft, gt, ot = (X[:, t] + self.recurrent(h)).chunk(4, -1)
            log_f = F.logsigmoid(ft)
            m_new = torch.maximum(log_f + m, it)
            i, f = torch.exp(it - m_new), torch.exp(log_f + m - m_new)
            g, o = torch.tanh(gt), torch.sigmoid(ot)
            c = edited(edits, "c", f * c + i * g, step0 + t)
            n, m = f * n + i, m_new
            h = edited(edits, "h", o * c / n, step0 + t)
            for k, v in zip(keep, (h, c, n, m, i, f, g, o)):
                keep[k].append(v)
        return {k: torch.stack(v, 1) for k, v in keep.items()}, (h, c, n, m)
