"""CharRNN: the character-level language model that neuroscope trains, loads and looks inside, and
its loss on a text.

    >>> model = CharRNN(ModelConfig(vocab_size=84, cell="lstm", hidden_size=512, num_layers=3))
    >>> logits, state = model(ids)          # ids: int64 [B, T] -> logits [B, T, V]
    >>> text = model.sample(vocab, length=200, temperature=1.0, prime="The ")
    >>> result = evaluate(model, ids)       # ids: int64 [N] of a span
    >>> result.loss_nats, result.bits_per_char, result.chars

`evaluate` starts from a zero state at the span's first character and predicts characters 1..N-1 of
the span (N-1 predictions), carrying its state across chunks of `chunk` characters: exactly one pass
over the text, as one stream, so the number is the same as a single forward (`iter_logits` is that
chunked forward, which recording and reports reuse).

Parameter names and layout match the reference checkpoints (`plain-char-rnn/1`):
`encoder` (nn.Embedding) -> `rnn` (nn.LSTM | nn.GRU | nn.RNN, batch_first) -> `decoder` (nn.Linear).
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from numbers import Real
from typing import Callable, ContextManager, Iterator

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .config import CELLS, MAX_SAMPLE_CHARS, ModelConfig, auto_streams, is_int
from .errors import UserError

__all__ = ["CELLS", "MAX_SAMPLE_CHARS", "CharRNN", "EvalResult", "ModelConfig", "count_parameters", "evaluate",
           "iter_logits", "weight_shapes"]
GATE_ROWS = {"lstm": 4, "gru": 3, "rnn": 1}     # G: stacked gate blocks in PyTorch's weight_ih / weight_hh


class CharRNN(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c = config
        self.encoder = nn.Embedding(c.vocab_size, c.embedding_dim)
        rnn_cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[c.cell]
        self.rnn = rnn_cls(c.embedding_dim, c.hidden_size, c.num_layers, batch_first=True,
                           dropout=c.dropout if c.num_layers > 1 else 0.0)
        self.drop = nn.Dropout(c.dropout)
        self.decoder = nn.Linear(c.hidden_size, c.vocab_size)

    def forward(self, ids: torch.Tensor, state=None):
        """ids int64 [B, T] -> (logits [B, T, V], state); state is (h, c) for LSTM, h otherwise."""
        x = self.encoder(ids)                      # [B, T, E]
        out, state = self.rnn(x, state)            # [B, T, H]
        return self.decoder(self.drop(out)), state

    def zero_state(self, batch: int, device=None):
        c = self.config
        h = torch.zeros(c.num_layers, batch, c.hidden_size, device=device)
        return (h, h.clone()) if c.cell == "lstm" else h

    @torch.no_grad()
    def sample(self, vocab, length: int = 200, temperature: float = 1.0, prime: str = "",
               generator: torch.Generator | None = None) -> str:
        """Sample `length` characters after `prime` (which is returned too), at `temperature`.

        Temperature 0 takes the most likely character each step (greedy), and so does a temperature
        so small that logits / temperature overflows. Raises UserError (param "temperature" or
        "length") before any step for a temperature that is not a finite number >= 0, or a length
        outside [0, MAX_SAMPLE_CHARS].
        """
        if not (isinstance(temperature, Real) and math.isfinite(temperature) and temperature >= 0):
            raise UserError(f"temperature must be a finite number >= 0 (got {temperature!r})", param="temperature")
        if not (is_int(length) and 0 <= length <= MAX_SAMPLE_CHARS):
            raise UserError(f"length must be in [0, {MAX_SAMPLE_CHARS:,}] (got {length!r})", param="length")
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        prime = prime or vocab.chars[vocab.fallback_id]
        ids = torch.as_tensor(vocab.encode(prime), device=device)[None]   # [1, P]
        logits, state = self(ids)
        out = []
        for _ in range(length):
            last = logits[0, -1].float()
            scaled = last / temperature if temperature > 0 else None
            if scaled is None or not bool(torch.isfinite(scaled).all()):
                nxt = int(last.argmax())
            else:
                probs = torch.softmax(scaled, dim=-1)
                nxt = int(torch.multinomial(probs.cpu(), 1, generator=generator))
            out.append(nxt)
            logits, state = self(torch.tensor([[nxt]], device=device), state)
        self.train(was_training)
        return prime + vocab.decode(out)


def weight_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The shape of every state_dict tensor of CharRNN(config), in state_dict order, without building it.

    Checking a checkpoint's weights against this first keeps a config that claims a huge model
    from allocating it.
    """
    V, E, H, G = config.vocab_size, config.embedding_dim, config.hidden_size, GATE_ROWS[config.cell]
    shapes = {"encoder.weight": (V, E)}
    for k in range(config.num_layers):
        shapes |= {f"rnn.weight_ih_l{k}": (G * H, E if k == 0 else H), f"rnn.weight_hh_l{k}": (G * H, H),
                   f"rnn.bias_ih_l{k}": (G * H,), f"rnn.bias_hh_l{k}": (G * H,)}
    return shapes | {"decoder.weight": (V, H), "decoder.bias": (V,)}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


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
