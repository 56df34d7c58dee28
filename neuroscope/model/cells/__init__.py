"""Recurrent cells beyond PyTorch's own, each a plain torch module that runs on the CPU:

    mingru    minGRU (Feng et al. 2024): gates from the input alone, trained by a parallel scan
    minlstm   minLSTM (Feng et al. 2024): the same, with normalised forget and input gates
    slstm     xLSTM's sLSTM (Beck et al. 2024): exponential gates, normaliser and stabiliser states
    mlstm     xLSTM's mLSTM: a matrix memory per head, trained in its parallel form
    ssm       a Mamba-style selective state-space layer (Gu & Dao 2023): input-dependent step, B and C

    >>> stack = CellStack("slstm", input_size=64, hidden_size=128, num_layers=2)
    >>> out, state = stack(x)                      # x [B, T, 64] -> out [B, T, 128], as nn.LSTM

Each layer's module docstring gives its equations and the states it records (names.CELL_STATES and
names.GATES list them); neuroscope's CharRNN uses a CellStack as its `rnn` for these cells, and the
Trace of neuroscope.hooks records and edits them like nn.LSTM's.
"""
from ._scan import linear_scan
from ._stack import LAYERS, CellStack

__all__ = ["LAYERS", "CellStack", "linear_scan"]
