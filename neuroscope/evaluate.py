"""Cross-entropy of a model on a span of text, in nats and bits per character.

    >>> result = evaluate(model, ids)       # ids: int64 [N] of the span
    >>> result.loss_nats, result.bits_per_char, result.chars

The model starts from a zero state at the span's first character and predicts characters
1..N-1 of the span (N-1 predictions), carrying its state across chunks of `chunk` characters:
exactly one pass over the text, as one stream, so the number is the same as a single forward.
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterator

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from .errors import UserError


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
def iter_logits(model, x: torch.Tensor, chunk: int = 2048, progress: bool = False, desc: str = "",
                context: Callable[[int], ContextManager] | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """The one chunked forward: read x (long [S, N], S streams side by side, each from a zero state)
    in chunks of `chunk` steps with the state carried; yields (start, logits float [S, T, V]) for the
    inputs x[:, start:start + T].

    context(start), when given, wraps each chunk's forward (a Trace applying interventions, say).
    """
    model.eval()
    state = None
    bar = tqdm(total=x.numel(), unit="char", unit_scale=True, disable=not progress, desc=desc or None)
    for s in range(0, x.shape[1], chunk):
        inp = x[:, s:s + chunk]                                          # [S, T]
        with context(s) if context is not None else nullcontext():
            logits, state = model(inp, state)                           # [S, T, V]
        yield s, logits.float()
        bar.update(inp.numel())
    bar.close()


@torch.no_grad()
def evaluate(model, ids: np.ndarray, chunk: int = 2048, progress: bool = False, streams: int = 1) -> EvalResult:
    """Mean next-character cross-entropy over ids[1:], given ids[:-1], one stream from a zero state.

    streams > 1 (a quick estimate, used for validation during training): ids is cut into that many
    equal contiguous pieces (a tail of fewer than `streams` characters is dropped), read side by
    side as one batch, each from a zero state; slightly above the one-stream loss, since every
    piece starts cold.
    """
    if len(ids) < 2:
        raise UserError("evaluation needs at least 2 characters (chars >= 2)", param="chars")
    device = next(model.parameters()).device
    S = max(1, min(int(streams), len(ids) // 2))
    m = len(ids) // S                                               # characters per stream
    x = torch.as_tensor(np.asarray(ids[:S * m]), dtype=torch.long, device=device).view(S, m)   # [S, m]
    total = 0.0
    for s, logits in iter_logits(model, x[:, :-1], chunk, progress, "eval"):
        tgt = x[:, s + 1:s + 1 + logits.shape[1]]                      # [S, T]
        total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), reduction="sum"))
    count = S * (m - 1)
    if not math.isfinite(total):
        raise UserError("the model's loss is not finite (NaN or inf weights?)")
    return EvalResult(loss_nats=total / count, chars=count)
