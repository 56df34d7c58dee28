"""CharRNN: the character-level language model that neuroscope trains, loads and looks inside.

Parameter names and layout match the reference checkpoints (`plain-char-rnn/1`):
`encoder` (nn.Embedding) -> `rnn` (nn.LSTM | nn.GRU | nn.RNN, batch_first) -> `decoder` (nn.Linear).
The newer cells (minGRU, minLSTM, sLSTM, mLSTM, the SSM layer) take the place of `rnn` as a
cells.CellStack, with the same calling convention; the checkpoint's cell field names them.
"""
from __future__ import annotations

import math
from dataclasses import replace
from numbers import Real

import torch
from torch import nn

from ..config import MAX_SAMPLE_CHARS, MAX_UNITS, ModelConfig, is_int
from ..errors import UserError
from .cells import CellStack

TORCH_CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class CharRNN(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c = config
        self.encoder = nn.Embedding(c.vocab_size, c.embedding_dim)
        self.rnn = recurrent_module(c)
        self.drop = nn.Dropout(c.dropout)
        self.decoder = nn.Linear(c.hidden_size, c.vocab_size)

    def forward(self, ids: torch.Tensor, state=None):
        """ids int64 [B, T] -> (logits [B, T, V], state); state is (h, c) for LSTM, h for GRU and RNN, and
        a tuple of [L, B, ...] tensors, h first, for the cells of neuroscope.cells."""
        x = self.encoder(ids)                      # [B, T, E]
        out, state = self.rnn(x, state)            # [B, T, H]
        return self.decoder(self.drop(out)), state

    def zero_state(self, batch: int, device=None):
        return _zero_state(self.rnn, self.config, batch, device)

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


def recurrent_module(c: ModelConfig) -> nn.Module:
    """CharRNN's `rnn`: PyTorch's own module for lstm, gru and rnn, a neuroscope.cells.CellStack for the others."""
    rnn_cls = TORCH_CELLS.get(c.cell)
    dropout = c.dropout if c.num_layers > 1 else 0.0
    if rnn_cls is None:
        return CellStack(c.cell, c.embedding_dim, c.hidden_size, c.num_layers, dropout)
    return rnn_cls(c.embedding_dim, c.hidden_size, c.num_layers, batch_first=True, dropout=dropout)


def _zero_state(rnn: nn.Module, c: ModelConfig, batch: int, device=None):
    if isinstance(rnn, CellStack):
        like = torch.empty(batch, 1, c.embedding_dim, device=device)
        return rnn.join_state(rnn.split_state(None, like))
    h = torch.zeros(c.num_layers, batch, c.hidden_size, device=device)
    return (h, h.clone()) if c.cell == "lstm" else h


def weight_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The shape of every state_dict tensor of CharRNN(config), in state_dict order, without allocating it.

    The recurrent module is built on the meta device (shapes, no values), so a config that claims a huge
    model costs nothing; checking a checkpoint's weights against this comes before any model is built.
    """
    V, E, H = config.vocab_size, config.embedding_dim, config.hidden_size
    with torch.device("meta"):
        rnn = recurrent_module(config)
    return ({"encoder.weight": (V, E)} | {f"rnn.{k}": tuple(v.shape) for k, v in rnn.state_dict().items()}
            | {"decoder.weight": (V, H), "decoder.bias": (V,)})


def state_shapes(config: ModelConfig, batch: int) -> list[tuple[int, ...]]:
    """The shape of each tensor of the recurrent state CharRNN(config) carries for `batch` streams
    ([L, B, H] for h and c; an mLSTM's memory and an SSM's state are wider), without allocating it."""
    with torch.device("meta"):
        state = _zero_state(recurrent_module(config), config, batch, device="meta")
    return [tuple(s.shape) for s in (state if isinstance(state, tuple) else (state,))]


def hidden_for_parameters(config: ModelConfig, parameters: int) -> int:
    """The hidden size whose model (config's cell, layers, vocabulary; embedding as wide as hidden) comes
    nearest `parameters` weights: how the cells are compared at one size (the mLSTM's a multiple of 4)."""
    from ..config import MLSTM_HEADS, fits_cell

    def size(hidden: int) -> int:
        hidden += 0 if fits_cell(config.cell, hidden) else -hidden % MLSTM_HEADS
        shapes = weight_shapes(replace(config, hidden_size=hidden, embedding_dim=hidden))
        return sum(math.prod(s) for s in shapes.values())
    lo, hi = 1, 1
    while size(hi) < parameters and hi < MAX_UNITS:
        lo, hi = hi, min(2 * hi, MAX_UNITS)
    while hi - lo > 1:                                    # size grows with hidden: bisect to the crossing
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if size(mid) < parameters else (lo, mid)
    near = [h for h in range(max(1, lo - 4), hi + 5) if fits_cell(config.cell, h)]
    return min(near, key=lambda h: abs(size(h) - parameters))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
