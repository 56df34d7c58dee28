"""What every layer of neuroscope.cells provides, and the one helper its steps use for edits.

A layer maps x [B, T, In] and its state (a tuple of tensors, each [B, ...], h first) to the values of
all its states at every step ({state: [B, T, H]}, "h" among them) and its state after the last step:

- `parallel(x, state)`: the training-time form (a scan, or the cell's own parallel form);
- `steps(x, state, edits, step0)`: the same recurrence one step at a time, where `edits` ({"h" or
  "c": fn(value [B, H], t) -> new value or None}) change a state at step t (numbered from step0)
  before anything reads it: later steps, the upper layers and the logits see the change.
Both give the same values (tests hold them to 1e-5); recording uses `parallel` unless there are edits.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

EditFn = Callable[[torch.Tensor, int], "torch.Tensor | None"]


def edited(edits: dict[str, EditFn] | None, state: str, value: torch.Tensor, t: int) -> torch.Tensor:
    """`value` after the edit of `state` at step t (a copy is edited; the caller's tensor is kept)."""
    fn = (edits or {}).get(state)
    if fn is None:
        return value
    value = value.clone()
    new = fn(value, t)
    return value if new is None else new


class Layer(nn.Module):
    """The base of the layers: its sizes, and its zero state."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size

    def state_shapes(self) -> tuple[tuple[int, ...], ...]:
        """The shape of each tensor of one stream's state (without the batch)."""
        return ((self.hidden_size,),)

    def zero_state(self, batch: int, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(like.new_zeros(batch, *shape) for shape in self.state_shapes())

    def last(self, state: tuple[torch.Tensor, ...], name: str) -> torch.Tensor:
        """The value of h or c [B, H] at the step a state was left at (h first in every state, then c)."""
        return state[0] if name == "h" else state[1]
