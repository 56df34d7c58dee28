"""CharRNN: the character-level language model that neuroscope trains, loads and looks inside.

    >>> model = CharRNN(ModelConfig(vocab_size=84, cell="lstm", hidden_size=512, num_layers=3))
    >>> logits, state = model(ids)          # ids: int64 [B, T] -> logits [B, T, V]
    >>> text = model.sample(vocab, length=200, temperature=1.0, prime="The ")

Parameter names and layout match the reference checkpoints (`plain-char-rnn/1`):
`encoder` (nn.Embedding) -> `rnn` (nn.LSTM | nn.GRU | nn.RNN, batch_first) -> `decoder` (nn.Linear).
"""
from __future__ import annotations

import torch
from torch import nn

from .config import CELLS, ModelConfig

__all__ = ["CELLS", "CharRNN", "ModelConfig", "count_parameters"]


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

        Temperature 0 takes the most likely character each step (greedy).
        """
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        prime = prime or vocab.chars[vocab.fallback_id]
        ids = torch.as_tensor(vocab.encode(prime), device=device)[None]   # [1, P]
        logits, state = self(ids)
        out = []
        for _ in range(length):
            last = logits[0, -1].float()
            if temperature <= 0:
                nxt = int(last.argmax())
            else:
                probs = torch.softmax(last / temperature, dim=-1)
                nxt = int(torch.multinomial(probs.cpu(), 1, generator=generator))
            out.append(nxt)
            logits, state = self(torch.tensor([[nxt]], device=device), state)
        self.train(was_training)
        return prime + vocab.decode(out)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
