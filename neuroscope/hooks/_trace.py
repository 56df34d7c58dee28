"""Trace: the context manager that swaps each recurrent module's forward for a traced recurrence (see the package docstring)."""
from __future__ import annotations

import fnmatch
from typing import Callable

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from ..names import EDITABLE, GATES, gate_state, is_gate
from ._loop import EditFn, edit_in_place, loop_layer, prepared_products
from ._recover import recover_layer

RNN_TYPES = (nn.LSTM, nn.GRU, nn.RNN)
CELL_TYPES = (nn.LSTMCell, nn.GRUCell, nn.RNNCell)
STRATEGIES = ("auto", "loop", "recover")
SHOWN_C = "tanh_c"         # the edit of a cell's shown value as h reads it (Trace's edit)
RECOVER_MAX_BATCH = 4      # CPU: "recover" was faster at batch 1, "loop" at 16 and 64


class HookError(ValueError):
    """A module or input the hook system cannot trace; the message is one line."""


def _kind(mod: nn.Module) -> str:
    """"lstm", "gru" or "rnn" for a recurrent module or cell (the keys of names.GATES)."""
    if isinstance(mod, (nn.LSTM, nn.LSTMCell)):
        return "lstm"
    if isinstance(mod, (nn.GRU, nn.GRUCell)):
        return "gru"
    return "rnn"


def _states(kind: str, gates: bool = True) -> list[str]:
    """The states of one layer or cell: h, c (LSTM), then its gates."""
    return ["h"] + (["c"] if kind == "lstm" else []) + ([gate_state(g) for g in GATES[kind]] if gates else [])


def is_layered(mod: nn.Module) -> bool:
    """A stack of recurrent layers that runs itself one layer at a time for a Trace: it has `run_layer`,
    `layer_states`, `editable`, `split_state` and `join_state` (neuroscope.cells.CellStack does)."""
    return callable(getattr(mod, "run_layer", None)) and callable(getattr(mod, "layer_states", None))


def recurrent_modules(module: nn.Module) -> dict[str, nn.Module]:
    """Every nn.LSTM/GRU/RNN, *Cell and layered stack inside `module` (itself included), by named_modules() name."""
    return {name: m for name, m in module.named_modules() if isinstance(m, RNN_TYPES + CELL_TYPES) or is_layered(m)}


def quantity_names(module: nn.Module, gates: bool = True) -> list[str]:
    """All names a Trace over `module` can record, in layer order: h, c, then the gates of each layer."""
    out = []
    for name, m in recurrent_modules(module).items():
        layered = isinstance(m, RNN_TYPES) or is_layered(m)
        prefixes = [_layer_prefix(name, k) for k in range(m.num_layers)] if layered else [name]
        states = m.layer_states(gates) if is_layered(m) else _states(_kind(m), gates)
        out += [_q(p, q) for p in prefixes for q in states]
    return out


def select_names(available: list[str], names=None, gates: bool = False) -> list[str]:
    """Filter names: None (every h and c, plus gates if `gates`), an exact name or glob pattern such as
    "rnn.l*.c", a list of those, or a function name -> bool. Unknown exact names raise HookError."""
    if names is None:
        return [n for n in available if gates or not is_gate(n)]
    if callable(names):
        return [n for n in available if names(n)]
    patterns = [names] if isinstance(names, str) else list(names)
    for p in patterns:
        if not any(fnmatch.fnmatchcase(n, p) for n in available):
            raise HookError(f"no recorded quantity is named {p!r}; known: {', '.join(available[:12])}"
                            + (", ..." if len(available) > 12 else ""))
    return [n for n in available if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


class Trace:
    """Context manager recording (and optionally editing) per-step states of every RNN in `module`.

    names: which quantities to keep (see select_names); gates: with names=None, keep gates too.
    edit: {name: fn(value, t) -> new value or None}, called at every step t (counted over all calls of
      that module inside this Trace) with value [B, H] (h or c only); the returned tensor (or value
      edited in place) replaces the state, so later steps, upper layers and the logits see it. An LSTM
      layer's "{prefix}.tanh_c" (SHOWN_C) edits tanh(c_t) as h_t = o_t * tanh(c_t) reads it: what the
      cell passes on changes, its memory c_t does not.
    strategy: "auto" (recover at small batch on CPU and on GPU, loop otherwise or when editing),
      "loop" or "recover". Values: `trace[name]` -> tensor [B, T, H]; `trace.cache` -> dict.
    prepared: a dict where the loop keeps each layer's weights as it multiplies them (reordered,
      packed for oneDNN); give successive Traces over the same, unchanged weights the same dict and
      they are prepared once (neuroscope.record does, per recording). A weight replaced or changed
      in place is noticed; one changed behind autograd's back (through .data) is not: start a new
      dict after that.
    """

    def __init__(self, module: nn.Module, names=None, gates: bool = False,
                 edit: dict[str, EditFn] | None = None, strategy: str = "auto", prepared: dict | None = None):
        self.module = module
        self.modules = recurrent_modules(module)
        if not self.modules:
            raise HookError(f"{type(module).__name__} has no nn.LSTM, nn.GRU or nn.RNN (or *Cell, or a layered "
                            "stack) inside")
        if strategy not in STRATEGIES:
            raise HookError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
        self.available = quantity_names(module, gates=True)
        self.names = select_names(self.available, names, gates)
        self.edit = dict(edit or {})
        for name in self.edit:
            shown_c = name.endswith("." + SHOWN_C) and name[:-len(SHOWN_C)] + "c" in self.available
            if not shown_c and (name not in self.available or name.rsplit(".", 1)[-1] not in EDITABLE):
                raise HookError(f"cannot edit {name!r}: only the h, c and tanh_c of a traced module can be edited")
        self.strategy = strategy
        self.prepared = {} if prepared is None else prepared
        self.cache: dict[str, torch.Tensor] = {}
        self._parts: dict[str, list[torch.Tensor]] = {}
        self._steps: dict[str, int] = {}
        self._undo: list[Callable[[], None]] = []
        self._tap = _EmbeddingTap()

    # -- results
    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.names:
            raise KeyError(f"{name!r} was not recorded; recorded: {', '.join(self.names)}")
        parts = self._parts.get(name)
        if not parts:
            raise KeyError(f"{name!r} was recorded, but its module did not run inside the Trace")
        if len(parts) > 1:              # concatenate calls along time once, then keep the result
            parts[:] = [torch.cat(parts, dim=-2)]
        return parts[0]

    def __contains__(self, name: str) -> bool:
        return bool(self._parts.get(name))

    def keys(self) -> list[str]:
        return [n for n in self.names if n in self]

    def clear(self) -> None:
        """Forget recorded values (the step counters that edits see keep counting)."""
        self._parts.clear()

    def __enter__(self) -> "Trace":
        try:
            for name, mod in self.modules.items():
                if isinstance(mod, RNN_TYPES) or is_layered(mod):
                    had, old = "forward" in mod.__dict__, mod.__dict__.get("forward")
                    mod.forward = _bind(self._run_layered if is_layered(mod) else self._run_rnn, name, mod)
                    self._undo.append(lambda m=mod, h=had, o=old: _restore(m, h, o))
                else:
                    self._undo.append(mod.register_forward_hook(_bind(self._cell_hook, name)).remove)
            for mod in self.module.modules():
                if isinstance(mod, nn.Embedding):
                    self._undo.append(mod.register_forward_hook(self._tap.hook).remove)
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._remove()
        self.cache = {n: self[n] for n in self.keys()}

    def _remove(self) -> None:
        while self._undo:
            self._undo.pop()()
        self._tap.seen = None                                  # no tensor kept past the Trace

    # -- recording
    def _keep(self, name: str, value: torch.Tensor, batched: bool) -> None:
        """value is time-major [T, B, H]; stored batch-first [B, T, H] (or [T, H] unbatched)."""
        if name in self.names:
            self._parts.setdefault(name, []).append(value.transpose(0, 1) if batched else value[:, 0])

    def _edits(self, prefix: str) -> tuple[EditFn | None, EditFn | None, EditFn | None]:
        return self.edit.get(_q(prefix, "h")), self.edit.get(_q(prefix, "c")), self.edit.get(_q(prefix, SHOWN_C))

    def _run_rnn(self, name: str, mod: nn.Module, input, hx=None):
        """Replacement forward of an nn.LSTM / nn.GRU / nn.RNN: same inputs, same outputs."""
        _check_traceable(name, mod, input)
        kind, batched = _kind(mod), input.dim() == 3
        x, h0, c0 = _time_major(kind, mod, input, hx)           # [T, B, E], [L, B, H], [L, B, H] or None
        T, B = x.shape[0], x.shape[1]
        step0 = self._steps.get(name, 0)
        self._steps[name] = step0 + T
        prefixes = [_layer_prefix(name, k) for k in range(mod.num_layers)]
        edits = [self._edits(p) for p in prefixes]
        editing = any(e is not None for pair in edits for e in pair)
        if not editing and not any(n.startswith(p + ".") for p in prefixes for n in self.names):
            return type(mod).forward(mod, input, hx)            # nothing to see here: the fused kernel
        strategy = _pick_strategy(self.strategy, editing, x.is_cuda, B)
        emb = self._tap.take(input, T, B, batched and mod.batch_first)
        last_h, last_c = [], []
        for k, prefix in enumerate(prefixes):
            w = [getattr(mod, f"{p}_l{k}") for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                 if hasattr(mod, f"{p}_l{k}")]
            c0_k, emb_k = (None if c0 is None else c0[k]), (emb if k == 0 else None)
            want = [q for q in _states(kind) if _q(prefix, q) in self.names]
            if strategy == "loop":
                products = prepared_products(self.prepared, prefix, (id(mod), k), kind, w, T * B, B)
                out = loop_layer(kind, mod, x, products, h0[k], c0_k, edits[k], step0, emb=emb_k)
            else:
                gates = tuple(q[5:] for q in want if is_gate(q))
                out = recover_layer(kind, mod, x, w, h0[k], c0_k, gates, emb=emb_k)
            for q in want:
                self._keep(_q(prefix, q), out[q], batched)
            last_h.append(out["h"][-1])
            if kind == "lstm":
                last_c.append(out["c"][-1])
            x = out["h"]
            if mod.training and mod.dropout and k < mod.num_layers - 1:
                x = nn.functional.dropout(x, mod.dropout, training=True)
        return _outputs(kind, mod, x, last_h, last_c, batched)

    def _run_layered(self, name: str, mod: nn.Module, input, hx=None):
        """Replacement forward of a layered stack: each layer's `run_layer`, recorded; steps where edited."""
        _check_no_grad(mod, input)
        step0 = self._steps.get(name, 0)
        self._steps[name] = step0 + input.shape[1]
        prefixes = [_layer_prefix(name, k) for k in range(mod.num_layers)]
        edits = [_layered_edits(self.edit, p, mod.editable) for p in prefixes]
        if not any(edits) and not any(n.startswith(p + ".") for p in prefixes for n in self.names):
            return type(mod).forward(mod, input, hx)
        states, finals, x = mod.split_state(hx, input), [], input
        for k, prefix in enumerate(prefixes):
            values, last = mod.run_layer(k, x, states[k], edits[k], step0)     # {state: [B, T, H]}
            for q, v in values.items():
                if _q(prefix, q) in self.names:                         # already batch-first
                    self._parts.setdefault(_q(prefix, q), []).append(v)
            x = values["h"]
            finals.append(last)
            if mod.training and mod.dropout and k < mod.num_layers - 1:
                x = nn.functional.dropout(x, mod.dropout, training=True)
        return x, mod.join_state(finals)

    def _cell_hook(self, name: str, mod: nn.Module, args, output):
        """Forward hook of an nn.*Cell stepped by user code: record one step, apply edits."""
        kind, x = _kind(mod), args[0]
        t = self._steps.get(name, 0)
        self._steps[name] = t + 1
        edits = self._edits(name)
        want_gates = [g for g in GATES[kind] if _q(name, gate_state(g)) in self.names]
        h, c, gates = _cell_step(kind, mod, args, output, edits, t, gates=bool(want_gates))
        batched = x.dim() == 2
        for q, v in [("h", h), ("c", c)] + [(gate_state(g), gates[g]) for g in want_gates]:
            if v is not None:
                self._keep(_q(name, q), v.detach()[None] if batched else v.detach()[None, None], batched)
        if all(e is None for e in edits):
            return None
        return (h, c) if kind == "lstm" else h


def _layered_edits(edit: dict, prefix: str, editable) -> dict:
    """A layered stack's edits of one layer: {state: fn}. Its cells have no tanh(c) for h to read, so an
    edit of SHOWN_C is made on tanh(c) and carried back to c (atanh) on the units it changed."""
    out = {s: edit[_q(prefix, s)] for s in editable if _q(prefix, s) in edit}
    shown_fn = edit.get(_q(prefix, SHOWN_C))
    if shown_fn is not None:
        first = out.get("c")

        def c_edit(c, t):
            if first is not None:
                new = first(c, t)
                c = c if new is None else new
            shown = torch.tanh(c)
            new = shown_fn(shown.clone(), t)
            new = shown if new is None else new
            back = torch.atanh(new.clamp(-1 + 1e-6, 1 - 1e-6))
            return torch.where(new != shown, back, c)
        out["c"] = c_edit
    return out


class _EmbeddingTap:
    """The last nn.Embedding call inside a Trace: an RNN reading exactly that output gets its first
    layer's input projection by table lookup (see fastops.input_projection)."""

    seen = None                                                 # (output, table, ids) or None

    def hook(self, mod: nn.Module, args, output) -> None:
        ids = args[0] if args else None
        plain = mod.max_norm is None and isinstance(ids, torch.Tensor) and not ids.is_floating_point()
        self.seen = (output, mod.weight, ids) if plain else None

    def take(self, input, T: int, B: int, batch_first: bool):
        """(table, ids [T, B]) when `input` is the very tensor the last embedding call returned."""
        seen, self.seen = self.seen, None
        if seen is None or seen[0] is not input:
            return None
        ids = seen[2].t() if batch_first else seen[2]
        ids = ids.reshape(T, B) if ids.dim() == 1 else ids
        return (seen[1], ids) if ids.shape == (T, B) else None


def _q(prefix: str, state: str) -> str:
    """Full name of a state under a module prefix ("" for the traced module itself); for a layer of
    an nn.LSTM / GRU / RNN this is names.quantity_name(layer, state, module)."""
    return f"{prefix}.{state}" if prefix else state


def _layer_prefix(name: str, layer: int) -> str:
    return f"{name}.l{layer}" if name else f"l{layer}"


def _pick_strategy(strategy: str, editing: bool, on_gpu: bool, batch: int) -> str:
    if strategy == "auto":
        return "recover" if not editing and (on_gpu or batch <= RECOVER_MAX_BATCH) else "loop"
    if strategy == "recover" and editing:
        raise HookError("edits need strategy 'loop' (or 'auto'): 'recover' cannot change states")
    return strategy


def _bind(fn, *first):
    def bound(*args, **kwargs):
        return fn(*first, *args, **kwargs)
    return bound


def _restore(mod: nn.Module, had: bool, old) -> None:
    if had:
        mod.forward = old
    else:
        del mod.forward


def _check_traceable(name: str, mod: nn.Module, input) -> None:
    if isinstance(input, PackedSequence):
        raise HookError(f"{name or 'module'}: PackedSequence input cannot be traced; pass a padded tensor")
    if mod.bidirectional:
        raise HookError(f"{name or 'module'}: bidirectional RNNs cannot be traced (states run both ways)")
    if getattr(mod, "proj_size", 0):
        raise HookError(f"{name or 'module'}: LSTMs with proj_size cannot be traced")
    _check_no_grad(mod, input)


def _check_no_grad(mod: nn.Module, input) -> None:
    if torch.is_grad_enabled() and (input.requires_grad or any(p.requires_grad for p in mod.parameters())):
        raise HookError("tracing records without gradients: run the model under torch.no_grad()")


def _time_major(kind: str, mod: nn.Module, input: torch.Tensor, hx):
    """A module's forward arguments as (x [T, B, E] contiguous, h0 [L, B, H], c0 [L, B, H] or None)."""
    batched = input.dim() == 3
    x = input if batched else input.unsqueeze(1)
    if batched and mod.batch_first:
        x = x.transpose(0, 1)
    x = x.contiguous()
    shape = (mod.num_layers, x.shape[1], mod.hidden_size)
    h0, c0 = (hx if kind == "lstm" else (hx, None)) if hx is not None else (None, None)
    h0 = x.new_zeros(shape) if h0 is None else (h0 if batched else h0.unsqueeze(1))
    if kind == "lstm":
        c0 = x.new_zeros(shape) if c0 is None else (c0 if batched else c0.unsqueeze(1))
    return x, h0, c0


def _outputs(kind: str, mod: nn.Module, top: torch.Tensor, last_h: list, last_c: list, batched: bool):
    """The module's own return value from the top layer's h [T, B, H] and each layer's last h (and c)."""
    y = top.transpose(0, 1) if batched and mod.batch_first else (top if batched else top[:, 0])
    h_n = torch.stack(last_h) if batched else torch.stack(last_h)[:, 0]
    if kind != "lstm":
        return y, h_n
    return y, (h_n, torch.stack(last_c) if batched else torch.stack(last_c)[:, 0])


def _cell_step(kind: str, mod: nn.Module, args, output, edits: tuple, t: int, gates: bool):
    """(h, c or None, gates or None) of one cell step, with the edits (h, c, tanh_c) applied to copies."""
    e_h, e_c, e_s = edits
    x, hx = args[0], (args[1] if len(args) > 1 else None)
    h, c = (output if kind == "lstm" else (output, None))
    g = _cell_gates(kind, mod, x, hx) if gates or e_c is not None or e_s is not None else None
    if e_c is not None or e_s is not None:                      # h follows the edited c, as in the loop
        if e_c is not None:
            c = c.clone()
            edit_in_place(e_c, c, t)
        shown = torch.tanh(c)
        if e_s is not None:
            edit_in_place(e_s, shown, t)
        h = g["o"] * shown
    if e_h is not None:
        h = h.clone()
        edit_in_place(e_h, h, t)
    return h, c, g


def _cell_gates(kind: str, mod: nn.Module, x: torch.Tensor, hx) -> dict[str, torch.Tensor]:
    """Gate activations of one cell step, recomputed from its input and previous state (None: zeros)."""
    if hx is None:
        h_prev = x.new_zeros(*x.shape[:-1], mod.hidden_size)
    else:
        h_prev = hx[0] if kind == "lstm" else hx
    gi = nn.functional.linear(x, mod.weight_ih, mod.bias_ih)
    gh = nn.functional.linear(h_prev, mod.weight_hh, mod.bias_hh)
    if kind == "lstm":
        i, f, g, o = (gi + gh).chunk(4, -1)
        return {"i": i.sigmoid(), "f": f.sigmoid(), "g": g.tanh(), "o": o.sigmoid()}
    if kind == "gru":
        xr, xz, xn = gi.chunk(3, -1)
        hr, hz, hn = gh.chunk(3, -1)
        r = (xr + hr).sigmoid()
        return {"r": r, "z": (xz + hz).sigmoid(), "n": (xn + r * hn).tanh()}
    return {}
