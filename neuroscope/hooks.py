"""Record and edit every per-step state of any PyTorch RNN: h, c and gates of every layer, every step.

    >>> with torch.no_grad(), Trace(model) as tr:     # every nn.LSTM / nn.GRU / nn.RNN inside `model`
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

Two ways to compute the same states, picked per call (`strategy`):
- "loop": input projection for all steps in one matrix product, then per step one matrix product and
  in-place gate arithmetic into preallocated buffers (on CPU the products through oneDNN with packed
  weights, see _Product). Needed for edits; fastest at large batch.
- "recover": each layer's h from the fused kernel (bit-identical to the module's output), then the
  gates of all steps at once from (x_t, h_{t-1}) with one matrix product, then c by a scan of
  c_t = f_t * c_{t-1} + i_t * g_t (a parallel log-depth scan on GPU). Fastest at batch 1 on CPU.

Bidirectional modules, LSTM projections (proj_size) and PackedSequence input are refused with HookError.
This module imports nothing from neuroscope, so it works on any nn.Module.
"""
from __future__ import annotations

import fnmatch
from typing import Callable

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

RNN_TYPES = (nn.LSTM, nn.GRU, nn.RNN)
CELL_TYPES = (nn.LSTMCell, nn.GRUCell, nn.RNNCell)
GATES = {"LSTM": ("i", "f", "g", "o"), "GRU": ("r", "z", "n"), "RNN": ()}
STRATEGIES = ("auto", "loop", "recover")
RECOVER_MAX_BATCH = 4      # CPU: "recover" won at batch 1, "loop" at 16 and 64 (README, PERFORMANCE)
# The loop's matrix products through oneDNN with packed weights where PyTorch has it (see _Product).
PACKED = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")

EditFn = Callable[[torch.Tensor, int], "torch.Tensor | None"]


class HookError(ValueError):
    """A module or input the hook system cannot trace; the message is one line."""


def _kind(mod: nn.Module) -> str:
    """"LSTM", "GRU" or "RNN" for a recurrent module or cell."""
    if isinstance(mod, (nn.LSTM, nn.LSTMCell)):
        return "LSTM"
    if isinstance(mod, (nn.GRU, nn.GRUCell)):
        return "GRU"
    return "RNN"


def recurrent_modules(module: nn.Module) -> dict[str, nn.Module]:
    """Every nn.LSTM/GRU/RNN and *Cell inside `module` (itself included), by named_modules() name."""
    return {name: m for name, m in module.named_modules() if isinstance(m, RNN_TYPES + CELL_TYPES)}


def quantity_names(module: nn.Module, gates: bool = True) -> list[str]:
    """All names a Trace over `module` can record, in layer order: h, c, then the gates of each layer."""
    out = []
    for name, m in recurrent_modules(module).items():
        kind = _kind(m)
        qs = ["h"] + (["c"] if kind == "LSTM" else []) + ([f"gate_{g}" for g in GATES[kind]] if gates else [])
        prefixes = [_layer_prefix(name, k) for k in range(m.num_layers)] if isinstance(m, RNN_TYPES) else [name]
        out += [_q(p, q) for p in prefixes for q in qs]
    return out


def select_names(available: list[str], names=None, gates: bool = False) -> list[str]:
    """Filter names: None (every h and c, plus gates if `gates`), an exact name or glob pattern such as
    "rnn.l*.c", a list of those, or a function name -> bool. Unknown exact names raise HookError."""
    if names is None:
        return [n for n in available if gates or not _is_gate(n)]
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
      edited in place) replaces the state, so later steps, upper layers and the logits see it.
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
            raise HookError(f"{type(module).__name__} has no nn.LSTM, nn.GRU or nn.RNN (or *Cell) inside")
        if strategy not in STRATEGIES:
            raise HookError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
        self.available = quantity_names(module, gates=True)
        self.names = select_names(self.available, names, gates)
        self.edit = dict(edit or {})
        for name in self.edit:
            if name not in self.available or _is_gate(name):
                raise HookError(f"cannot edit {name!r}: only the h and c of a traced module can be edited")
        self.strategy = strategy
        self.prepared = {} if prepared is None else prepared
        self.cache: dict[str, torch.Tensor] = {}
        self._parts: dict[str, list[torch.Tensor]] = {}
        self._steps: dict[str, int] = {}
        self._undo: list[Callable[[], None]] = []
        self._embedded = None

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
                if isinstance(mod, RNN_TYPES):
                    had = "forward" in mod.__dict__
                    old = mod.__dict__.get("forward")
                    mod.forward = _bind(self._run_rnn, name, mod)
                    self._undo.append(lambda m=mod, h=had, o=old: _restore(m, h, o))
                else:
                    handle = mod.register_forward_hook(_bind(self._cell_hook, name))
                    self._undo.append(handle.remove)
            for mod in self.module.modules():
                if isinstance(mod, nn.Embedding):
                    self._undo.append(mod.register_forward_hook(self._embedding_hook).remove)
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
        self._embedded = None                                  # no tensor kept past the Trace

    # -- recording
    def _keep(self, name: str, value: torch.Tensor, batched: bool) -> None:
        """value is time-major [T, B, H]; stored batch-first [B, T, H] (or [T, H] unbatched)."""
        if name in self.names:
            self._parts.setdefault(name, []).append(value.transpose(0, 1) if batched else value[:, 0])

    def _edits(self, prefix: str) -> tuple[EditFn | None, EditFn | None]:
        return self.edit.get(_q(prefix, "h")), self.edit.get(_q(prefix, "c"))

    def _run_rnn(self, name: str, mod: nn.Module, input, hx=None):
        """Replacement forward of an nn.LSTM / nn.GRU / nn.RNN: same inputs, same outputs."""
        kind = _kind(mod)
        if isinstance(input, PackedSequence):
            raise HookError(f"{name or 'module'}: PackedSequence input cannot be traced; pass a padded tensor")
        if mod.bidirectional:
            raise HookError(f"{name or 'module'}: bidirectional RNNs cannot be traced (states run both ways)")
        if getattr(mod, "proj_size", 0):
            raise HookError(f"{name or 'module'}: LSTMs with proj_size cannot be traced")
        if torch.is_grad_enabled() and (input.requires_grad or any(p.requires_grad for p in mod.parameters())):
            raise HookError("tracing records without gradients: run the model under torch.no_grad()")
        batched = input.dim() == 3
        x = input if batched else input.unsqueeze(1)
        if batched and mod.batch_first:
            x = x.transpose(0, 1)
        x = x.contiguous()                                      # [T, B, E], time-major
        T, B = x.shape[0], x.shape[1]
        L, H = mod.num_layers, mod.hidden_size
        h0, c0 = (hx if kind == "LSTM" else (hx, None)) if hx is not None else (None, None)
        if h0 is None:
            h0 = x.new_zeros(L, B, H)
        elif not batched:
            h0 = h0.unsqueeze(1)
        if kind == "LSTM":
            c0 = x.new_zeros(L, B, H) if c0 is None else (c0 if batched else c0.unsqueeze(1))
        step0 = self._steps.get(name, 0)
        self._steps[name] = step0 + T
        strategy = self.strategy
        prefixes = [_layer_prefix(name, k) for k in range(L)]
        editing = any(e is not None for p in prefixes for e in self._edits(p))
        if not editing and not any(n.startswith(p + ".") for p in prefixes for n in self.names):
            return type(mod).forward(mod, input, hx)            # nothing to see here: the fused kernel
        if strategy == "auto":
            strategy = "recover" if not editing and (x.is_cuda or B <= RECOVER_MAX_BATCH) else "loop"
        elif strategy == "recover" and editing:
            raise HookError("edits need strategy 'loop' (or 'auto'): 'recover' cannot change states")
        emb = self._embedding_of(input, T, B, batched and mod.batch_first)
        h_n, c_n = [], []
        for k, prefix in enumerate(prefixes):
            w = [getattr(mod, f"{p}_l{k}") for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                 if hasattr(mod, f"{p}_l{k}")]
            want = [q for q in ("h", "c") + tuple(f"gate_{g}" for g in GATES[kind]) if f"{prefix}.{q}" in self.names]
            gates_wanted = tuple(q[5:] for q in want if q.startswith("gate_"))
            if strategy == "loop":
                stamp = (id(mod), k, tuple((id(p), p.data_ptr(), p._version) for p in w))
                if self.prepared.get(prefix, (None,))[0] != stamp:
                    self.prepared[prefix] = (stamp, _prepare(kind, w, T * B, B))
                out = _loop_layer(kind, mod, x, self.prepared[prefix][1], h0[k], c0[k] if c0 is not None else None,
                                  *self._edits(prefix), step0, emb=emb if k == 0 else None)
            else:
                out = _recover_layer(kind, mod, x, w, h0[k], c0[k] if c0 is not None else None, gates_wanted,
                                     emb=emb if k == 0 else None)
            for q in want:
                self._keep(f"{prefix}.{q}", out[q], batched)
            h_n.append(out["h"][-1])
            if kind == "LSTM":
                c_n.append(out["c"][-1])
            x = out["h"]
            if mod.training and mod.dropout and k < L - 1:
                x = nn.functional.dropout(x, mod.dropout, training=True)
        y = x.transpose(0, 1) if batched and mod.batch_first else (x if batched else x[:, 0])
        h_n = torch.stack(h_n) if batched else torch.stack(h_n)[:, 0]
        if kind == "LSTM":
            c_n = torch.stack(c_n) if batched else torch.stack(c_n)[:, 0]
            return y, (h_n, c_n)
        return y, h_n

    def _embedding_hook(self, mod: nn.Module, args, output) -> None:
        """Remember the last nn.Embedding call (ids, output): an RNN reading exactly that output
        gets its first layer's input projection by table lookup (see _input_projection)."""
        ids = args[0] if args else None
        plain = mod.max_norm is None and isinstance(ids, torch.Tensor) and not ids.is_floating_point()
        self._embedded = (output, mod.weight, ids) if plain else None

    def _embedding_of(self, input, T: int, B: int, batch_first: bool):
        """(table, ids [T, B]) when `input` is the very tensor the last embedding call returned."""
        seen, self._embedded = self._embedded, None
        if seen is None or seen[0] is not input:
            return None
        ids = seen[2].t() if batch_first else seen[2]
        ids = ids.reshape(T, B) if ids.dim() == 1 else ids
        return (seen[1], ids) if ids.shape == (T, B) else None

    def _cell_hook(self, name: str, mod: nn.Module, args, output):
        """Forward hook of an nn.*Cell stepped by user code: record one step, apply edits."""
        kind = _kind(mod)
        x, hx = args[0], (args[1] if len(args) > 1 else None)
        batched = x.dim() == 2
        h, c = (output if kind == "LSTM" else (output, None))
        t = self._steps.get(name, 0)
        self._steps[name] = t + 1
        prefix = name
        e_h, e_c = self._edits(prefix)
        gates = None
        want_gates = [g for g in GATES[kind] if _q(prefix, f"gate_{g}") in self.names]
        if want_gates or (e_c is not None):
            if hx is None:
                hx = (x.new_zeros(*x.shape[:-1], mod.hidden_size),) * 2 if kind == "LSTM" \
                    else x.new_zeros(*x.shape[:-1], mod.hidden_size)
            h_prev = hx[0] if kind == "LSTM" else hx
            gates = _cell_gates(kind, mod, x, h_prev)
        if e_c is not None:                                     # h follows the edited c, as in the loop
            c = _apply(e_c, c.clone(), t)
            h = gates["o"] * torch.tanh(c)
        if e_h is not None:
            h = _apply(e_h, h.clone(), t)
        for q, v in [("h", h), ("c", c)] + [(f"gate_{g}", gates[g]) for g in want_gates]:
            if v is not None:
                self._keep(_q(prefix, q), v.detach()[None] if batched else v.detach()[None, None],
                           batched)
        if e_h is None and e_c is None:
            return None
        return (h, c) if kind == "LSTM" else h


def _q(prefix: str, quantity: str) -> str:
    """Full name of a quantity under a module prefix ("" for the traced module itself)."""
    return f"{prefix}.{quantity}" if prefix else quantity


def _layer_prefix(name: str, layer: int) -> str:
    return f"{name}.l{layer}" if name else f"l{layer}"


def _is_gate(name: str) -> bool:
    return name.rsplit(".", 1)[-1].startswith("gate_")


def _bind(fn, *first):
    def bound(*args, **kwargs):
        return fn(*first, *args, **kwargs)
    return bound


def _restore(mod: nn.Module, had: bool, old) -> None:
    if had:
        mod.forward = old
    else:
        del mod.forward


def _apply(fn: EditFn, value: torch.Tensor, t: int) -> torch.Tensor:
    new = fn(value, t)
    return value if new is None else new


def _cell_gates(kind: str, mod: nn.Module, x: torch.Tensor, h_prev: torch.Tensor) -> dict[str, torch.Tensor]:
    """Gate activations of one cell step, recomputed from its input and previous h."""
    gi = nn.functional.linear(x, mod.weight_ih, mod.bias_ih)
    gh = nn.functional.linear(h_prev, mod.weight_hh, mod.bias_hh)
    if kind == "LSTM":
        i, f, g, o = (gi + gh).chunk(4, -1)
        return {"i": i.sigmoid(), "f": f.sigmoid(), "g": g.tanh(), "o": o.sigmoid()}
    if kind == "GRU":
        xr, xz, xn = gi.chunk(3, -1)
        hr, hz, hn = gh.chunk(3, -1)
        r = (xr + hr).sigmoid()
        return {"r": r, "z": (xz + hz).sigmoid(), "n": (xn + r * hn).tanh()}
    return {}


class _Product:
    """x @ weight^T (+ bias) (+ other), for one weight used many times in a recurrence.

    On CPU in float32, where PyTorch has oneDNN, the weight is packed once for oneDNN's matrix
    product (a private PyTorch op that torch.compile uses too): recording 64 streams on 2 threads
    took 5-15% less time than with addmm, and the same on 1 thread (README, PERFORMANCE). Anywhere
    else, below 4 rows per product, or if packing fails, plain addmm.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, batch: int | None = None):
        self.weight, self.bias, self.packed = weight, bias, None
        # Below 4 rows per product (a single stream) oneDNN lost to addmm, by up to 1.3x on 1 thread.
        if PACKED and weight.device.type == "cpu" and weight.dtype == torch.float32 and (batch or 4) >= 4:
            try:
                self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), batch)
            except (RuntimeError, AttributeError):
                self.packed = None

    def __call__(self, x: torch.Tensor, other: torch.Tensor | None = None) -> torch.Tensor:
        """[..., rows of weight]: a new tensor, or `other` itself, added to in place."""
        if self.packed is not None:
            if other is None:
                return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
            return torch.ops.mkldnn._linear_pointwise.binary(x, other, self.packed, self.bias, "add")
        if other is None:
            return nn.functional.linear(x, self.weight, self.bias)
        if self.bias is not None:
            other.add_(self.bias)
        return other.addmm_(x, self.weight.t())


def _input_projection(x: torch.Tensor, w: list[torch.Tensor], rows: slice | None = None,
                      with_hh_bias: bool = True, emb: tuple[torch.Tensor, torch.Tensor] | None = None,
                      ih: _Product | None = None) -> torch.Tensor:
    """x [T, B, E] @ W_ih[rows]^T + biases -> [T, B, G]: all steps in one matrix product
    (ih: that product prepared already; then w, rows and with_hh_bias are not used).

    emb = (table [V, E], ids [T, B]) when x is table[ids] (the layer reads an embedding): then each
    of the V rows is projected once and looked up, instead of T x B products of length E.
    """
    if ih is None:
        w_ih = w[0] if rows is None else w[0][rows]
        bias = None
        if len(w) == 4:
            bias = w[2] + w[3] if with_hh_bias else w[2]
            bias = bias if rows is None else bias[rows]
        ih = _Product(w_ih, bias, x.shape[0] * x.shape[1])
    if emb is not None:
        table, ids = emb
        return ih(table).index_select(0, ids.reshape(-1)).view(*ids.shape, -1)    # [V, G] rows, looked up
    T, B, E = x.shape
    return ih(x.reshape(T * B, E)).view(T, B, -1)


def _prepare(kind: str, w: list[torch.Tensor], rows: int, batch: int) -> tuple[_Product, _Product]:
    """The loop's two products of a layer: (input: W_ih with the biases, recurrent: W_hh), for about
    `rows` input rows at once and `batch` rows per step. LSTM gate rows are reordered i f o g, so
    that one sigmoid covers i, f and o. A GRU keeps b_hh with W_hh (b_hn sits inside r * (...))."""
    if kind == "LSTM":
        H = w[1].shape[1]
        order = torch.cat([torch.arange(0, 2 * H), torch.arange(3 * H, 4 * H), torch.arange(2 * H, 3 * H)])
        w = [p.index_select(0, order.to(p.device)) for p in w]
    bias_ih = None if len(w) < 4 else (w[2] if kind == "GRU" else w[2] + w[3])
    return (_Product(w[0], bias_ih, rows),
            _Product(w[1], w[3] if kind == "GRU" and len(w) == 4 else None, batch))


def _loop_layer(kind: str, mod: nn.Module, x: torch.Tensor, products: tuple[_Product, _Product], h: torch.Tensor,
                c: torch.Tensor | None, edit_h: EditFn | None, edit_c: EditFn | None, step0: int,
                emb=None) -> dict[str, torch.Tensor]:
    """One layer over all steps, one step at a time. x [T, B, E] -> {"h": [T, B, H], "c", gates...}.

    products: (input, recurrent) from _prepare. Buffers are allocated once; every step writes into
    its own rows in place, and the views of those rows are made in bulk (unbind) so that the Python
    loop does only the arithmetic.
    """
    T, B, _ = x.shape
    H = mod.hidden_size
    relu = getattr(mod, "nonlinearity", "tanh") == "relu"
    ih, hh = products
    hs = x.new_empty(T, B, H)
    hs_t = hs.unbind(0)
    if kind == "LSTM":
        G = _input_projection(x, None, emb=emb, ih=ih)          # [T, B, 4H] preactivations, i f o g
        Gt, sig, tan = G.unbind(0), G[:, :, :3 * H].unbind(0), G[:, :, 3 * H:].unbind(0)
        gi, gf, go, gg = (G[:, :, j * H:(j + 1) * H].unbind(0) for j in range(4))
        cs = x.new_empty(T, B, H)
        cs_t = cs.unbind(0)
        for t in range(T):
            pre = hh(h, Gt[t])                                  # + W_hh h_{t-1}
            if pre is Gt[t]:                                    # added in place (addmm)
                sig[t].sigmoid_()                               # i, f, o
                tan[t].tanh_()                                  # g
            else:                                               # a new tensor (oneDNN)
                torch.sigmoid(pre[:, :3 * H], out=sig[t])
                torch.tanh(pre[:, 3 * H:], out=tan[t])
            ct = cs_t[t]
            torch.mul(gf[t], c, out=ct)
            ct.addcmul_(gi[t], gg[t])                           # c_t = f * c_{t-1} + i * g
            if edit_c is not None:
                new = edit_c(ct, step0 + t)
                if new is not None and new is not ct:
                    ct.copy_(new)
            ht = hs_t[t]
            torch.tanh(ct, out=ht)
            ht.mul_(go[t])                                      # h_t = o * tanh(c_t)
            if edit_h is not None:
                new = edit_h(ht, step0 + t)
                if new is not None and new is not ht:
                    ht.copy_(new)
            h, c = ht, ct
        return {"h": hs, "c": cs, "gate_i": G[:, :, :H], "gate_f": G[:, :, H:2 * H],
                "gate_o": G[:, :, 2 * H:3 * H], "gate_g": G[:, :, 3 * H:]}
    if kind == "GRU":
        X = _input_projection(x, None, emb=emb, ih=ih)         # [T, B, 3H] r z n (input part)
        rz = X[:, :, :2 * H].unbind(0)
        xr, xz, xn = (X[:, :, j * H:(j + 1) * H].unbind(0) for j in range(3))
        for t in range(T):
            gh = hh(h)                                          # W_hh h_{t-1} + b_hh, r z n
            gh_n = gh[:, 2 * H:]
            rz[t].add_(gh[:, :2 * H]).sigmoid_()
            xn[t].addcmul_(xr[t], gh_n).tanh_()                # n = tanh(x_n + r * (W_hn h + b_hn))
            ht = hs_t[t]
            torch.sub(h, xn[t], out=ht)
            ht.mul_(xz[t]).add_(xn[t])                          # h_t = n + z * (h_{t-1} - n)
            if edit_h is not None:
                new = edit_h(ht, step0 + t)
                if new is not None and new is not ht:
                    ht.copy_(new)
            h = ht
        return {"h": hs, "gate_r": X[:, :, :H], "gate_z": X[:, :, H:2 * H], "gate_n": X[:, :, 2 * H:]}
    X = _input_projection(x, None, emb=emb, ih=ih)              # [T, B, H]
    Xt = X.unbind(0)
    for t in range(T):
        ht = Xt[t]
        pre = hh(h, ht)                                         # ht itself when added in place
        torch.relu(pre, out=ht) if relu else torch.tanh(pre, out=ht)
        if edit_h is not None:
            new = edit_h(ht, step0 + t)
            if new is not None and new is not ht:
                ht.copy_(new)
        h = ht
    return {"h": X}


def _fused_layer(kind: str, mod: nn.Module, x: torch.Tensor, w, h0: torch.Tensor, c0):
    """One layer through PyTorch's own fused kernel: h of every step, [T, B, H]."""
    args = (w, len(w) == 4, 1, 0.0, False, False, False)        # weights, biases, 1 layer, no dropout
    if kind == "LSTM":
        return torch._VF.lstm(x, (h0[None], c0[None]), *args)[0]
    if kind == "GRU":
        return torch._VF.gru(x, h0[None], *args)[0]
    fn = torch._VF.rnn_relu if mod.nonlinearity == "relu" else torch._VF.rnn_tanh
    return fn(x, h0[None], *args)[0]


def _recover_layer(kind: str, mod: nn.Module, x: torch.Tensor, w, h0: torch.Tensor, c0,
                   gates: tuple[str, ...], emb=None) -> dict[str, torch.Tensor]:
    """One layer: h from the fused kernel, then gates of all steps at once, then c by a scan."""
    H = mod.hidden_size
    hs = _fused_layer(kind, mod, x, w, h0, c0)                  # [T, B, H]
    out = {"h": hs}
    if kind == "RNN" or (kind == "GRU" and not gates):
        return out
    h_prev = torch.cat([h0[None], hs[:-1]])                     # [T, B, H]: h_{t-1}
    T, B, _ = x.shape
    if kind == "LSTM":
        n = 4 if "o" in gates else 3                            # c needs i, f, g only
        G = _input_projection(x, w, slice(0, n * H), emb=emb)   # [T, B, nH]
        G.view(T * B, -1).addmm_(h_prev.reshape(T * B, H), w[1][:n * H].t())
        G[:, :, :2 * H].sigmoid_()
        G[:, :, 2 * H:3 * H].tanh_()
        if n == 4:
            G[:, :, 3 * H:].sigmoid_()
        i, f, g = G[:, :, :H], G[:, :, H:2 * H], G[:, :, 2 * H:3 * H]
        out["c"] = linear_scan(f, i * g, c0)
        out.update({f"gate_{q}": G[:, :, j * H:(j + 1) * H] for j, q in enumerate("ifgo"[:n])})
        return out
    X = _input_projection(x, w, with_hh_bias=False, emb=emb)    # GRU: r z n
    gh = h_prev.reshape(T * B, H) @ w[1].t()
    if len(w) == 4:
        gh += w[3]
    gh = gh.view(T, B, 3 * H)
    X[:, :, :2 * H].add_(gh[:, :, :2 * H]).sigmoid_()
    X[:, :, 2 * H:].addcmul_(X[:, :, :H], gh[:, :, 2 * H:]).tanh_()
    out.update({"gate_r": X[:, :, :H], "gate_z": X[:, :, H:2 * H], "gate_n": X[:, :, 2 * H:]})
    return out


def linear_scan(f: torch.Tensor, u: torch.Tensor, c0: torch.Tensor, parallel: bool | None = None) -> torch.Tensor:
    """c_t = f_t * c_{t-1} + u_t for t = 0..T-1 from c_{-1} = c0. f, u [T, ...] -> c [T, ...].

    Sequential on CPU (one fused multiply-add per step, in place). With parallel=True (default on GPU)
    a Hillis-Steele scan: log2(T) rounds of whole-tensor operations instead of T small launches; it
    composes (f, u) pairs, so only the order of roundings differs from the sequential scan.
    """
    if parallel is None:
        parallel = f.is_cuda
    if not parallel:
        c = u.clone()
        c_t, f_t = c.unbind(0), f.unbind(0)
        c_t[0].addcmul_(f_t[0], c0)
        for t in range(1, len(c_t)):
            c_t[t].addcmul_(f_t[t], c_t[t - 1])
        return c
    a, b = f.clone(), u.clone()
    b[0].addcmul_(a[0], c0)
    a[0] = 0                                                    # c0 is folded in: step 0 is complete
    d = 1
    while d < len(b):
        # pair (a, b) at t absorbs the one at t - d: b_t += a_t * b_{t-d}; a_t *= a_{t-d}
        b[d:] = torch.addcmul(b[d:], a[d:], b[:-d])
        a[d:] = a[d:] * a[:-d]
        d *= 2
    return b

