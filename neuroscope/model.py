"""CharRNN: the character-level language model that neuroscope trains, loads and looks inside.

    >>> model = CharRNN(ModelConfig(vocab_size=84, cell="lstm", hidden_size=512, num_layers=3))
    >>> logits, state = model(ids)          # ids: int64 [B, T] -> logits [B, T, V]
    >>> text = model.sample(vocab, length=200, temperature=1.0, prime="The ")

Parameter names and layout match the reference checkpoints (`plain-char-rnn/1`):
`encoder` (nn.Embedding) -> `rnn` (nn.LSTM | nn.GRU | nn.RNN, batch_first) -> `decoder` (nn.Linear).
"""
from __future__ import annotations

import math
from numbers import Real

import torch
from torch import nn

from .config import CELLS, MAX_SAMPLE_CHARS, ModelConfig, is_int
from .errors import UserError

__all__ = ["CELLS", "MAX_SAMPLE_CHARS", "CharRNN", "ModelConfig", "count_parameters", "weight_shapes"]
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
