"""Cross-entropy of a model on a span of text, in nats and bits per character.

    >>> result = evaluate(model, ids)       # ids: int64 [N] of the span
    >>> result.loss_nats, result.bits_per_char, result.chars

The model starts from a zero state at the span's first character and predicts characters
1..N-1 of the span (N-1 predictions), carrying its state across chunks of `chunk` characters:
exactly one pass over the text, as one stream, so the number is the same as a single forward.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm


@dataclass
class EvalResult:
    loss_nats: float
    chars: int          # characters predicted

    @property
    def bits_per_char(self) -> float:
        return self.loss_nats / math.log(2)

    def to_dict(self) -> dict:
        return {"loss_nats": self.loss_nats, "bits_per_char": self.bits_per_char, "chars": self.chars}


@torch.no_grad()
def evaluate(model, ids: np.ndarray, chunk: int = 2048, progress: bool = False, streams: int = 1) -> EvalResult:
    """Mean next-character cross-entropy over ids[1:], given ids[:-1], one stream from a zero state.

    streams > 1 (a quick estimate, used for validation during training): ids is cut into that many
    equal contiguous pieces (a tail of fewer than `streams` characters is dropped), read side by
    side as one batch, each from a zero state; slightly above the one-stream loss, since every
    piece starts cold.
    """
    if len(ids) < 2:
        raise ValueError("need at least 2 characters to evaluate")
    model.eval()
    device = next(model.parameters()).device
    S = max(1, min(int(streams), len(ids) // 2))
    m = len(ids) // S                                               # characters per stream
    x = torch.as_tensor(np.asarray(ids[:S * m]), dtype=torch.long, device=device).view(S, m)   # [S, m]
    total, count, state = 0.0, 0, None
    bar = tqdm(total=S * (m - 1), unit="char", unit_scale=True, disable=not progress, desc="eval")
    for s in range(0, m - 1, chunk):
        inp = x[:, s:min(s + chunk, m - 1)]                       # [S, T]
        tgt = x[:, s + 1:s + 1 + inp.shape[1]]                      # [S, T]
        logits, state = model(inp, state)
        total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), tgt.reshape(-1),
                                       reduction="sum"))
        count += tgt.numel()
        bar.update(tgt.numel())
    bar.close()
    return EvalResult(loss_nats=total / count, chars=count)
