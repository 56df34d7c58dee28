"""Record and edit every per-step state of any PyTorch RNN: h, c and gates of every layer, every step.

    >>> with torch.no_grad(), Trace(model) as tr:     # every nn.LSTM / nn.GRU / nn.RNN (or CellStack) inside
    ...     logits, _ = model(ids)                    # the model's own forward, unchanged
    >>> tr["rnn.l0.c"]                                # [B, T, H]: layer 0's cell state after each step
    >>> with torch.no_grad(), Trace(model, names="rnn.l*.h",
    ...                            edit={"rnn.l1.c": lambda c, t: c.index_fill_(-1, torch.tensor([5]), 0)}):
    ...     logits, _ = model(ids)                    # unit 5 of layer 1's c held at 0; later steps and
    ...                                               # the logits see the change

`nn.LSTM` returns only the top layer's h at each step and the last (h, c); the states inside are not
visible to forward hooks. While a Trace is open, each recurrent module's `forward` is replaced by an
equivalent recurrence written out here (float32 agrees with the fused kernel to about 1e-5 over a few
hundred steps: rounding, not a different model), which also returns the module's usual outputs. On
exit the original forward is back, whatever happened inside.

Names: one stable dotted name per quantity, "{module}.l{layer}.{q}" for nn.LSTM / nn.GRU / nn.RNN and
"{module}.{q}" for nn.LSTMCell / nn.GRUCell / nn.RNNCell stepped by user code, where {module} is the
module's `named_modules()` name and q is h, c (LSTM), gate_i/f/g/o (LSTM) or gate_r/z/n (GRU). Values
are batch-first, [B, T, H] ([T, H] for unbatched input), concatenated over calls inside one Trace, so a
text read in chunks with its state carried comes out whole.

Two ways to compute the same states, picked per call (`strategy`), each in its own module:
- "loop" (_loop): one Python step per time step into preallocated buffers. Needed for
  edits; fastest at large batch.
- "recover" (_recover): h from the fused kernel, then gates and c of all steps at once.
  Fastest at batch 1 on CPU.

A module that runs its own layers for a Trace (it has `run_layer`, `layer_states`, `editable`,
`split_state` and `join_state`, as neuroscope.model.cells.CellStack does) is traced through them:
its layers return every state of every step, and step one at a time where edited.

Bidirectional modules, LSTM projections (proj_size) and PackedSequence input are refused with HookError.
The hook machinery (this package: _trace, the two strategies and _fastops) imports nothing of neuroscope but
the bottom-layer names, so it works on any nn.Module.
"""
from ._trace import (CELL_TYPES, RNN_TYPES, SHOWN_C, STRATEGIES, HookError, Trace, quantity_names, recurrent_modules,
                     select_names)

__all__ = ["CELL_TYPES", "HookError", "RNN_TYPES", "SHOWN_C", "STRATEGIES", "Trace", "quantity_names", "recurrent_modules",
           "select_names"]
