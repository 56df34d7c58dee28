"""Our models written out as ONNX: the step function, one character in, its logits, the new state and every
recorded quantity out, so that other tools can run a neuroscope model and see inside it.

    >>> exported = export_onnx(ckpt, "model.onnx")      # checked with onnxruntime against torch
    >>> exported.inputs, exported.outputs, exported.gap

Inputs: `ids` (int64 [B], one character per stream) and the state (`state_0`, ... : the tensors of the
model's state, [L, B, ...], as `CharRNN.zero_state` makes them). Outputs: `logits` [B, V], the new state
(`next_state_0`, ...), then every quantity a Trace records at that step, [B, H], by its name (rnn.l0.h,
rnn.l0.c, rnn.l0.gate_i, ...). A state the step never reads (an mLSTM's h, an SSM layer's c) is left out of
the inputs by the exporter; `Exported.inputs` lists those the file takes. The batch is a dynamic axis. After writing, onnxruntime runs the file
from a state the model reached and its outputs must equal torch's to 1e-5 (`gap`: |difference| / (1 + |value|),
absolute within 1, relative beyond), or nothing is kept.
The step is written with plain tensor operations (PyTorch's fused LSTM kernel does not export its gates);
the newer cells run their own `steps`.
"""
from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UserError
from ..files import write_with
from ..hooks import Trace
from ..model import CharRNN
from ..names import cell_states, gate_state

OPSET = 17
TOLERANCE = 1e-5


@dataclass
class Exported:
    path: str
    inputs: list[str]
    outputs: list[str]
    gap: float                   # max |onnxruntime - torch| / (1 + |torch|) over every output


class _Step(nn.Module):
    """One step of a CharRNN with every state out, in operations the ONNX exporter writes."""

    def __init__(self, model: CharRNN):
        super().__init__()
        self.model = model
        self.cell = model.config.cell

    def forward(self, ids, *state):
        m = self.model
        x = m.encoder(ids)                                               # [B, E]
        layers = m.rnn.split_state(state, x[:, None]) if self.cell not in ("lstm", "gru", "rnn") else None
        quantities, finals = [], []
        for k in range(m.config.num_layers):
            if layers is None:
                values, last = _torch_step(self.cell, m.rnn, k, x, state)
            else:
                values, last = m.rnn.layers[k].steps(x[:, None], layers[k])
                values = {q: v[:, 0] for q, v in values.items()}
            quantities += [values[q] for q in cell_states(self.cell)]
            finals.append(last)
            x = values["h"]
        new = tuple(torch.stack(parts) for parts in zip(*finals))      # each [L, B, ...], as the model's state
        return (m.decoder(x), *new, *quantities)


def _torch_step(cell: str, rnn: nn.Module, k: int, x, state):
    """One step of layer k of nn.LSTM / nn.GRU / nn.RNN: ({state: [B, H]}, (h, c) or (h,))."""
    w_ih, w_hh = getattr(rnn, f"weight_ih_l{k}"), getattr(rnn, f"weight_hh_l{k}")
    b_ih, b_hh = getattr(rnn, f"bias_ih_l{k}"), getattr(rnn, f"bias_hh_l{k}")
    h = state[0][k]
    gi, gh = x @ w_ih.t() + b_ih, h @ w_hh.t() + b_hh
    if cell == "lstm":
        i, f, g, o = (gi + gh).chunk(4, -1)
        i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
        c = f * state[1][k] + i * g
        h = o * c.tanh()
        return {"h": h, "c": c, **{gate_state(n): v for n, v in zip("ifgo", (i, f, g, o))}}, (h, c)
    if cell == "gru":
        xr, xz, xn = gi.chunk(3, -1)
        hr, hz, hn = gh.chunk(3, -1)
        r, z = (xr + hr).sigmoid(), (xz + hz).sigmoid()
        n = (xn + r * hn).tanh()
        h = (1 - z) * n + z * h
        return {"h": h, "gate_r": r, "gate_z": z, "gate_n": n}, (h,)
    h = (gi + gh).relu() if rnn.nonlinearity == "relu" else (gi + gh).tanh()
    return {"h": h}, (h,)


def export_onnx(ckpt, out: str | os.PathLike, force: bool = False, inputs=()) -> Exported:
    """Write ckpt's model as an ONNX step function to `out` (atomically; neuroscope.files rules), checked with
    onnxruntime against torch; UserError (one line) without the `interop` extra or when they disagree."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError("export to ONNX needs onnx and onnxruntime: pip install 'neuroscope[interop]'") from None
    model = ckpt.model.eval()
    step = _Step(model).eval()           # the exporter puts the module back in its mode, and the model with it
    state = model.zero_state(2)
    n_state = len(state) if isinstance(state, tuple) else 1
    state = state if isinstance(state, tuple) else (state,)
    names_in = ["ids"] + [f"state_{i}" for i in range(n_state)]
    quantities = [f"rnn.l{k}.{q}" for k in range(model.config.num_layers) for q in cell_states(model.config.cell)]
    names_out = ["logits"] + [f"next_state_{i}" for i in range(n_state)] + quantities
    batch = {0: "batch"}
    axes = {"ids": batch, "logits": batch} | {n: batch for n in quantities} | \
        {n: {1: "batch"} for n in names_in[1:] + names_out[1:n_state + 1]}
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(step, (torch.zeros(2, dtype=torch.long), *state), buf, input_names=names_in,
                              output_names=names_out, dynamic_axes=axes, opset_version=OPSET, dynamo=False)
        except Exception as exc:  # noqa: BLE001 - the exporter fails in many ways on an op it lacks
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(f"a {model.config.cell} model cannot be written as ONNX ({first[:200]})") from None
    data = buf.getvalue()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    gap = _check(session, model, step, names_in, n_state)
    if not gap <= TOLERANCE:
        raise UserError(f"onnxruntime's outputs differ from torch's by {gap:.3g} (more than {TOLERANCE:g}); "
                        "nothing was written")
    write_with(out, lambda fh: fh.write(data), "onnx", force, inputs)
    return Exported(os.fspath(out), [i.name for i in session.get_inputs()], names_out, gap)


def _check(session, model, step, names_in, n_state) -> float:
    """Max |onnxruntime - torch| over every output, for 5 streams from random states and characters, and the
    torch step's quantities against a Trace of the model's own forward."""
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (5,), generator=gen)
    with torch.no_grad():                                  # a state the model reached: read 20 characters
        _, state = model(torch.randint(0, model.config.vocab_size, (5, 20), generator=gen))
        state = state if isinstance(state, tuple) else (state,)
        ours = step(ids, *state)
        with Trace(model, gates=True) as trace:
            logits, _ = model(ids[:, None], state if isinstance(model.zero_state(1), tuple) else state[0])
    read = {i.name for i in session.get_inputs()}          # the exporter leaves out a state the step never reads
    theirs = session.run(None, {n: t.numpy() for n, t in zip(names_in, (ids, *state)) if n in read})
    gap = max(_gap(torch.as_tensor(t), o) for t, o in zip(theirs, ours))
    traced = [trace[n][:, 0] for n in trace.names]
    return max(gap, _gap(ours[0], logits[:, 0]), max(_gap(o, t) for o, t in zip(ours[1 + n_state:], traced)))


def _gap(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / (1 + |b|): an absolute difference for values within 1, relative beyond (logits of tens,
    an unbounded cell state), as float32 rounding grows with the value."""
    return float(((a - b).abs() / (1 + b.abs())).max())
