"""A model's loss on a text, and the one chunked forward that recording and reports reuse.

`evaluate` starts from a zero state at the span's first character and predicts characters 1..N-1 of
the span (N-1 predictions), carrying its state across chunks of `chunk` characters: exactly one pass
over the text, as one stream, so the number is the same as a single forward (`iter_logits` is that
chunked forward).
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

from ..config import auto_streams
from ..errors import UserError


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
def evaluate(model, ids: np.ndarray, chunk: int = 2048, progress: bool = False, streams: int | str = 1,
             warmup: int = 0) -> EvalResult:
    """Mean next-character cross-entropy over ids[1:], given ids[:-1], one stream from a zero state.

    streams > 1 (a quick estimate, used for validation during training; "auto": config.auto_streams): ids is cut into that many
    equal contiguous pieces (a tail of fewer than `streams` characters is dropped), read side by
    side as one batch, each from a zero state; slightly above the one-stream loss, since every
    piece starts cold.

    warmup > 0 with streams > 1 (a close estimate of a long span: batched steps cost a 3 x 512 LSTM about
    half the CPU time per character of one stream, and they use every thread): every prediction
    ids[1:] is counted exactly once (chars = len(ids) - 1, as for one stream); each piece after the
    first first reads the `warmup` characters before it, uncounted, so it starts near the state one
    stream has there (the idea of neuroscope.record's streams and warmup). `chunk` then counts the
    characters of all pieces together.
    """
    if len(ids) < 2:
        raise UserError("evaluation needs at least 2 characters (chars >= 2)", param="chars")
    if streams == "auto":
        streams = auto_streams(len(ids))
    if warmup < 0:
        raise UserError(f"warmup must be >= 0, got {warmup}", param="warmup")
    if warmup and streams > 1:
        if len(ids) - 1 > warmup:
            return _evaluate_warm(model, ids, chunk, progress, int(streams), int(warmup))
        streams = 1                     # no piece after the first would count a prediction: one exact stream
    device = next(model.parameters()).device
    S = max(1, min(int(streams), len(ids) // 2))
    m = len(ids) // S                                               # characters per stream
    x = torch.as_tensor(np.asarray(ids[:S * m]), dtype=torch.long, device=device).view(S, m)   # [S, m]
    total = 0.0
    for s, logits in iter_logits(model, x[:, :-1], chunk, progress, "eval"):
        tgt = x[:, s + 1:s + 1 + logits.shape[1]]                      # [S, T]
        total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), reduction="sum"))
    return _result(total, S * (m - 1))


def _result(total: float, count: int) -> EvalResult:
    if not math.isfinite(total):
        raise UserError("the model's loss is not finite (NaN or inf weights?)")
    return EvalResult(loss_nats=total / count, chars=count)


def _evaluate_warm(model, ids: np.ndarray, chunk: int, progress: bool, streams: int, warmup: int) -> EvalResult:
    """evaluate with streams > 1 and warmup > 0: row k reads ids[k*m : k*m + W + m] and counts its
    predictions from step W on (row 0 from step 0), so rows cover positions 0..P-1 once (P = N - 1)."""
    P, W = len(ids) - 1, warmup                                     # predictions, warmup steps
    m = math.ceil((P - W) / streams)                                # counted steps per row after the first
    S = math.ceil((P - W) / m)                                      # no row without counted steps
    L = W + m                                                       # steps per row
    padded = np.zeros(S * m + W + 1, dtype=np.int64)                # the last row may run past the end
    padded[:len(ids)] = ids
    rows = np.arange(S)[:, None] * m + np.arange(L + 1)[None, :]    # [S, L + 1] positions read
    device = next(model.parameters()).device
    x = torch.as_tensor(padded[rows], device=device)                # [S, L + 1]
    counted = torch.as_tensor((rows[:, :-1] < P) & ((np.arange(L) >= W) | (np.arange(S) == 0)[:, None]),
                              device=device)                        # [S, L]
    total = 0.0
    for s, logits in iter_logits(model, x[:, :-1], max(1, chunk // S), progress, "eval"):
        T = logits.shape[1]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, s + 1:s + 1 + T].reshape(-1),
                               reduction="none")                    # [S * T]
        total += float(loss[counted[:, s:s + T].reshape(-1)].sum())
    return _result(total, P)
