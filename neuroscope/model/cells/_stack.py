"""CellStack: layers of one new cell, stacked as nn.LSTM stacks its layers, with nn.LSTM's calling
convention (batch-first x [B, T, In], a state in, (top layer's h [B, T, H], state) out).

The state is a tuple of tensors, each [L, B, ...] (layer first, batch second, as nn.LSTM's h and c);
its first is h. The Trace (neuroscope.hooks) records and edits a CellStack through `run_layer`,
`layer_states` and `split_state` / `join_state`, without knowing the cell.
"""
from __future__ import annotations

import torch
from torch import nn

from ...names import EDITABLE, cell_states
from ._mingru import MinGRULayer
from ._minlstm import MinLSTMLayer
from ._mlstm import MLSTMLayer
from ._slstm import SLSTMLayer
from ._ssm import SSMLayer

LAYERS = {"mingru": MinGRULayer, "minlstm": MinLSTMLayer, "slstm": SLSTMLayer, "mlstm": MLSTMLayer,
          "ssm": SSMLayer}


class CellStack(nn.Module):
    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int, dropout: float = 0.0):
        super().__init__()
        self.cell, self.hidden_size, self.num_layers, self.dropout = cell, hidden_size, num_layers, dropout
        self.batch_first = True
        self.layers = nn.ModuleList(LAYERS[cell](input_size if k == 0 else hidden_size, hidden_size)
                                    for k in range(num_layers))

    def layer_states(self, gates: bool = True) -> tuple[str, ...]:
        """The states of one layer, h first (names.cell_states)."""
        return cell_states(self.cell, gates)

    @property
    def editable(self) -> tuple[str, ...]:
        return tuple(s for s in EDITABLE if s in cell_states(self.cell, gates=False))

    def split_state(self, state, x: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
        """Each layer's state ([B, ...] tensors) from a stack's state, or zeros for None."""
        if state is None:
            return [layer.zero_state(x.shape[0], x) for layer in self.layers]
        return [tuple(t[k] for t in state) for k in range(self.num_layers)]

    @staticmethod
    def join_state(states: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
        return tuple(torch.stack(parts) for parts in zip(*states))

    def last_values(self, state, name: str) -> torch.Tensor:
        """h or c [L, B, H] at the step a stack's state was left at."""
        return torch.stack([layer.last(tuple(t[k] for t in state), name) for k, layer in enumerate(self.layers)])

    def run_layer(self, k: int, x: torch.Tensor, state, edits=None, step0: int = 0):
        """Layer k over x [B, T, In] -> ({state: [B, T, H]}, the layer's last state); steps when editing."""
        layer = self.layers[k]
        return layer.steps(x, state, edits, step0) if edits else layer.parallel(x, state)

    def forward(self, x: torch.Tensor, state=None):
        if x.dim() != 3:
            raise ValueError(f"a {self.cell} stack reads batch-first input [B, T, In], not {list(x.shape)}")
        states, finals = self.split_state(state, x), []
        for k in range(self.num_layers):
            values, last = self.run_layer(k, x, states[k])
            x = values["h"]
            finals.append(last)
            if self.training and self.dropout and k < self.num_layers - 1:
                x = nn.functional.dropout(x, self.dropout, training=True)
        return x, self.join_state(finals)
