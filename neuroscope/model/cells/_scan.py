"""The parallel scan of a linear recurrence, h_t = a_t * h_{t-1} + b_t, over all steps at once.

minGRU, minLSTM and the SSM layer are this recurrence with a_t, b_t computed from the input alone, so
training needs no loop over steps (Feng et al. 2024). The scan here is Hillis and Steele's: after the
pass of distance d, each step holds the recurrence folded over the d steps before it (its a's product
and its sum), so ceil(log2 T) passes of whole-tensor arithmetic give every h_t.

Measured on this project's 2-core CPU (forward and backward, B=32, T=128, 180 x 8 values a step, float32):
this scan 0.20-0.37 s, a Python loop over steps 0.41-0.58 s, the log-space scan of Feng et al. and
Heinsen (logcumsumexp, in float64 so that it keeps 1e-5 over long texts) 2.0-2.5 s. It multiplies
factors a_t in [0, 1] and adds, so float32 keeps it within about 1e-6 of the loop.
"""
from __future__ import annotations

import torch


def linear_scan(log_a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """h [B, T, ...] with h_t = exp(log_a_t) * h_{t-1} + b_t, from h0 [B, ...]; log_a, b [B, T, ...]."""
    a = torch.cat([torch.zeros_like(log_a[:, :1]), log_a.exp()], 1)        # [B, T+1, ...]: step 0 holds h0
    h = torch.cat([h0.unsqueeze(1).to(b.dtype), b], 1)
    d, steps = 1, h.shape[1]
    while d < steps:
        h = torch.cat([h[:, :d], torch.addcmul(h[:, d:], a[:, d:], h[:, :-d])], 1)
        if 2 * d < steps:                                                  # the last pass needs no products
            a = torch.cat([a[:, :d], a[:, d:] * a[:, :-d]], 1)
        d *= 2
    return h[:, 1:]
