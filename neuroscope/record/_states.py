"""Record per-character states of a CharRNN over a long text, chunk by chunk, and edit them.

    >>> for start, acts in iter_states(model, ids, states=("h", "c")):
    ...     acts["rnn.l0.c"]       # float32 numpy [n, H]: states after reading ids[start:start+n]
    >>> losses = char_losses(model, ids, [Intervention("rnn.l2.c", [323], "zero")])   # [len(ids)-1] nats

Contract (the rest of neuroscope relies on it):
- names are "rnn.l{layer}.{state}", state in h, c (LSTM only), gate_i/f/g/o (LSTM), gate_r/z/n (GRU);
- row k of a chunk is the state after reading character start+k, starting from a zero state at ids[0];
- with streams=1 (the default, exact) chunks cover ids in order, without gaps or overlap, state carried.

`streams=N, warmup=W` trades exactness for throughput: ids are cut into N contiguous pieces read side
by side as one batch, each piece after the first starting from the state reached by reading the W
characters before it (from a zero state; those W steps are run and discarded). Every character is
still yielded exactly once, but chunks then come piece by piece per time block, so `start` is not
increasing: place rows by `start`. Pieces after the first start from an approximate state, so their
first characters deviate from the exact states; a longer warmup shrinks the deviation.
iter_blocks yields the same states a whole time block at a time, as the recurrence wrote them
(time-major tensors and the position of every row), for consumers that need no order (statistics).

The recurrence itself is neuroscope.hooks.Trace on the model's `rnn` (see hooks for the strategies).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from ..config import AUTO_EXACT_CHARS, AUTO_WARMUP, auto_streams  # noqa: F401 (importable from here too)
from ..errors import UserError
from ..model import iter_logits
from ..hooks import HookError, Trace
from ..names import (CELL_STATES, GATES, Unit, is_gate, parse_quantity, parse_states,  # noqa: F401 (parse_states: importable from here too)
                    squashes, state_names)
from ..stats import Moments, shown

OPS = ("zero", "clamp", "scale")


@dataclass(frozen=True)
class Intervention:
    """Edit units of h or c inside the recurrence; later steps, upper layers and the logits see it.

    name: the quantity name of an h or c, e.g. "rnn.l2.c" (see neuroscope.names); units: unit indices;
    op: "zero", "clamp" (set to value) or "scale" (multiply by value); positions: None (every step), or an index array / a slice
    of positions in ids (the edit replaces the state after reading those characters). An edit of c
    at step t is made before h_t = o_t * tanh(c_t), so h_t already follows it.
    """
    name: str
    units: Sequence[int]
    op: str = "zero"
    value: float = 0.0
    positions: object = None

    def __post_init__(self):
        if self.op not in OPS:
            raise UserError(f"unknown intervention {self.op!r}; choose one of {', '.join(OPS)}")
        if parse_quantity(self.name).state not in ("h", "c"):
            raise UserError(f"interventions edit h or c, not {self.name!r}")

    def hits(self, pos: np.ndarray) -> np.ndarray:
        """Which of the positions pos (int array) this edit applies at -> bool array."""
        p = self.positions
        if p is None:
            return np.ones(pos.shape, bool)
        if isinstance(p, slice):
            lo, hi, step = p.start or 0, p.stop if p.stop is not None else np.iinfo(np.int64).max, p.step or 1
            return (pos >= lo) & (pos < hi) & ((pos - lo) % step == 0)
        return np.isin(pos, np.asarray(p))

    def edit(self, value: torch.Tensor, rows: np.ndarray | None = None) -> torch.Tensor:
        """Apply to value [B, H] in place, on all rows or on the rows marked True."""
        u = self._index(value.device)
        if rows is None or rows.all():                  # the common case, once per step: no copies
            if self.op == "scale":
                value.index_copy_(-1, u, value.index_select(-1, u).mul_(self.value))
            else:
                value.index_fill_(-1, u, 0.0 if self.op == "zero" else self.value)
            return value
        sub = value.index_select(-1, u)
        new = torch.zeros_like(sub) if self.op == "zero" else (
            torch.full_like(sub, self.value) if self.op == "clamp" else sub * self.value)
        new = torch.where(torch.as_tensor(rows, device=value.device)[:, None], new, sub)
        value.index_copy_(-1, u, new)
        return value

    def _index(self, device) -> torch.Tensor:
        cache = self.__dict__.setdefault("_units_cache", {})      # frozen dataclass: cache beside the fields
        if device not in cache:
            cache[device] = torch.as_tensor(list(self.units), dtype=torch.long, device=device)
        return cache[device]


def _edits(interventions: Sequence[Intervention], starts: np.ndarray, config) -> dict:
    """Trace edit functions for a batch whose row b reads position starts[b] + t at step t."""
    known = set(state_names(config, ("h", "c")))
    by_name: dict[str, list[Intervention]] = {}
    for iv in interventions:
        if iv.name not in known:
            raise UserError(f"cannot intervene on {iv.name!r}: this model has {', '.join(sorted(known))}")
        bad = [u for u in iv.units if not 0 <= int(u) < config.hidden_size]
        if bad:
            raise UserError(f"unit {bad[0]} of {iv.name} does not exist (layers have {config.hidden_size} units)")
        by_name.setdefault(iv.name, []).append(iv)

    def make(ivs):
        def fn(value, t):
            pos = starts + t
            for iv in ivs:
                if iv.positions is None:
                    iv.edit(value)
                    continue
                rows = iv.hits(pos)
                if rows.any():
                    iv.edit(value, rows)
            return value
        return fn
    return {name: make(ivs) for name, ivs in by_name.items()}


def recorded_names(config, states: Iterable[str] | str) -> list[str]:
    """state_names(config, states), refusing what this model's cell cannot give.

    c is skipped on a GRU or RNN (("h", "c") works for every model, as in names.state_names), but a
    gate of another cell ("r" on an LSTM) or a selection that leaves nothing is refused: it would
    otherwise record nothing and look like success.
    """
    states = parse_states(states)
    gates = GATES[config.cell]
    foreign = [s for s in states if is_gate(s) and s[5:] not in gates]
    names = state_names(config, states)
    if foreign or not names:
        has = ", ".join(CELL_STATES[config.cell]) + (f", gates ({', '.join(gates)})" if gates else "")
        asked = ",".join(s[5:] if is_gate(s) else s for s in (foreign or states))
        raise UserError(f"states {asked} name nothing in this {config.cell} model, which has {has}", param="states")
    return names


def _rnn_of(model):
    rnn = getattr(model, "rnn", None)
    if rnn is None or not hasattr(model, "encoder") or not hasattr(model, "config"):
        raise UserError(f"{type(model).__name__} is not a CharRNN (it needs encoder, rnn and config): "
                        "use neuroscope.hooks.Trace for other modules")
    return rnn


def stream_layout(n: int, streams: int, warmup: int) -> tuple[int, int, int]:
    """(streams, steps per stream, warmup steps) actually used for n characters.

    streams: a number, or "auto" (auto_streams(n)). Streams are capped at n; warmup is capped at the
    steps per stream (there are not more characters before the second piece).
    """
    if isinstance(streams, str) and streams == "auto":
        streams = auto_streams(n)
    if streams < 1:
        raise UserError(f"streams must be >= 1, got {streams}", param="streams")
    if warmup < 0:
        raise UserError(f"warmup must be >= 0, got {warmup}", param="warmup")
    streams = min(streams, n)
    m = math.ceil(n / streams)
    streams = math.ceil(n / m)                 # no empty trailing stream
    return streams, m, min(warmup, m) if streams > 1 else 0


def window_chars(n: int, streams: int, m: int, steps: int) -> int:
    """How many of n characters the first `steps` of each of `streams` pieces of m cover."""
    starts = np.arange(streams, dtype=np.int64) * m
    return int(np.clip(n - starts, 0, steps).sum())


@torch.no_grad()
def iter_states(model, ids: np.ndarray, states: Iterable[str] = ("h", "c"), chunk: int = 4096,
                progress: bool | str = False, streams: int = 1, warmup: int = 0,
                interventions: Sequence[Intervention] | None = None,
                strategy: str = "auto") -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Yield (start, {name: float32 [n, H]}) over ids (int64 [N]); see the module docstring.

    chunk: about how many characters each yield holds (memory: chunk x units x 4 bytes per name);
    progress: a bar on stderr (True: labelled "record"; a string: that label);
    streams, warmup: see the module docstring; interventions: applied inside the recurrence;
    strategy: the hooks.Trace strategy ("auto" picks per batch size).
    """
    for pos, values in iter_blocks(model, ids, states, chunk, progress, streams, warmup, interventions, strategy):
        arrays = {name: v.numpy() for name, v in values.items()}
        for b in range(pos.shape[1]):
            n = int(np.count_nonzero(pos[:, b] >= 0))             # the last piece ends in padding
            if n:
                yield int(pos[0, b]), {name: a[:n, b] for name, a in arrays.items()}


@torch.no_grad()
def iter_blocks(model, ids: np.ndarray, states: Iterable[str] = ("h", "c"), chunk: int = 4096,
                progress: bool | str = False, streams: int = 1, warmup: int = 0,
                interventions: Sequence[Intervention] | None = None,
                strategy: str = "auto", steps: int | None = None) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor]]]:
    """What iter_states yields, a whole time block of all streams at once, as the recurrence wrote it:
    (pos int64 [T, B], {name: float32 CPU tensor [T, B, H]}), time-major and contiguous, so that
    values.reshape(T * B, H) is a view whose row k is the state after reading ids[pos.flat[k]];
    pos is -1 on padding rows (the end of the last piece). The tensors are fresh per block: the
    caller may overwrite them. steps: read only the first `steps` characters of every piece (windows
    spread evenly over the text; None: all of it). Other arguments as iter_states.
    """
    _rnn_of(model)                                   # refuses a model without one recurrent module
    names = recorded_names(model.config, states)
    ids = np.asarray(ids, dtype=np.int64)
    n = len(ids)
    if n == 0:
        raise UserError("nothing to record: the span is empty")
    B, m, W = stream_layout(n, streams, warmup)
    device = next(model.parameters()).device
    starts = np.arange(B, dtype=np.int64) * m                       # first position of each piece
    padded = np.full(B * m, ids[-1], dtype=np.int64)                # the last piece may be short:
    padded[:n] = ids                                                # pad its end, discard those rows
    x_all = torch.as_tensor(padded, device=device).view(B, m)      # [B, m]
    state = None
    prepared: dict = {}                                             # the loop's weights, prepared once
    if W:
        # Warm up pieces 1..B-1 on the W characters before them; piece 0 restarts from zero.
        warm = torch.as_tensor(np.stack([padded[max(s - W, 0):max(s - W, 0) + W] for s in starts]),
                               device=device)                      # [B, W]
        _, state = _traced(model, warm, None, [], _edits(interventions or (), starts - W, model.config), strategy,
                           prepared)
        for s in state if isinstance(state, tuple) else (state,):
            s[:, 0] = 0
    step = max(1, math.ceil(chunk / B))
    m_read = m if steps is None else max(0, min(m, steps))
    bar = tqdm(total=window_chars(n, B, m, m_read), unit="char", unit_scale=True, disable=not progress,
               desc=progress if isinstance(progress, str) else "record")
    for t0 in range(0, m_read, step):
        x = x_all[:, t0:min(t0 + step, m_read)]
        edit = _edits(interventions or (), starts + t0, model.config)
        values, state = _traced(model, x, state, names, edit, strategy, prepared)
        T = x.shape[1]
        pos = starts[None, :] + np.arange(t0, t0 + T)[:, None]      # [T, B]
        pos[pos >= n] = -1
        yield pos, values
        bar.update(int(np.count_nonzero(pos >= 0)))
    bar.close()


def _traced(model, x: torch.Tensor, state, names: list[str], edit: dict, strategy: str, prepared=None):
    """model.rnn over ids x [B, T] inside a Trace -> ({name: float32 CPU tensor [T, B, H]}, state).

    The Trace is open only for this call, so the model is its plain self between chunks; `prepared`
    carries the loop's prepared weights from one call to the next (see hooks.Trace).
    """
    try:
        with Trace(model, names=names, edit=edit, strategy=strategy, prepared=prepared) as trace:
            _, state = model.rnn(model.encoder(x), state)
    except HookError as exc:
        raise UserError(str(exc)) from None
    return {name: trace[name].transpose(0, 1).float().cpu().contiguous() for name in names}, state


def record(model, ids: np.ndarray, states: Iterable[str] = ("h", "c"), **kwargs) -> dict[str, np.ndarray]:
    """All states of a (short) span in memory: {name: float32 [len(ids), H]}; kwargs as iter_states."""
    out: dict[str, np.ndarray] = {}
    for start, acts in iter_states(model, ids, states, **kwargs):
        for name, v in acts.items():
            if name not in out:
                out[name] = np.empty((len(ids), v.shape[1]), np.float32)
            out[name][start:start + len(v)] = v
    return out


@torch.no_grad()
def char_losses(model, ids: np.ndarray, interventions: Sequence[Intervention] | None = None, chunk: int = 4096,
                progress: bool = False) -> np.ndarray:
    """Nats spent predicting ids[k+1] after reading ids[:k+1], float32 [len(ids)-1].

    One exact stream from a zero state at ids[0]; interventions (positions in ids) are applied inside
    the recurrence, so their effect on later characters is included. Without interventions this is
    the model's own fused forward, and the mean equals neuroscope.model.evaluate's loss.
    """
    _rnn_of(model)
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) < 2:
        raise UserError("losses need at least 2 characters (chars >= 2)", param="chars")
    x = torch.as_tensor(ids, device=next(model.parameters()).device)[None]     # [1, N]

    def context(s):                                 # each chunk's Trace applies the edits due in it
        return Trace(model, names=[], edit=_edits(interventions, np.array([s]), model.config))
    out = np.empty(len(ids) - 1, dtype=np.float32)
    try:
        for s, logits in iter_logits(model, x[:, :-1], chunk, progress, "losses",
                                    context=context if interventions else None):
            T = logits.shape[1]
            out[s:s + T] = F.cross_entropy(logits[0], x[0, s + 1:s + 1 + T], reduction="none").cpu().numpy()
    except HookError as exc:
        raise UserError(str(exc)) from None
    return out


@torch.no_grad()
def zeroed_losses(model, ids: np.ndarray, unit_sets: Sequence[dict[str, Sequence[int]]], chunk: int = 4096,
                  progress: bool = False) -> np.ndarray:
    """char_losses with units held at zero, for many unit sets in ONE batched pass: float32
    [len(unit_sets), len(ids)-1], row b with the units of unit_sets[b] ({quantity name: unit indices},
    h or c) zeroed at every step inside the recurrence. Each row reads ids alone from a zero state, so
    row b equals char_losses(model, ids, [Intervention(q, us) for q, us in unit_sets[b].items()]) up to
    float32 rounding; the text is read once instead of once per set."""
    _rnn_of(model)
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) < 2:
        raise UserError("losses need at least 2 characters (chars >= 2)", param="chars")
    B, H = len(unit_sets), model.config.hidden_size
    device = next(model.parameters()).device
    zero: dict[str, torch.Tensor] = {}                               # quantity -> bool [B, H], True: held at 0
    for b, units in enumerate(unit_sets):
        _edits([Intervention(q, tuple(us)) for q, us in units.items()], np.zeros(1, np.int64), model.config)
        for q, us in units.items():
            zero.setdefault(q, torch.zeros(B, H, dtype=torch.bool, device=device))[b, list(us)] = True
    edit = {q: (lambda value, t, m=m: value.masked_fill_(m, 0.0)) for q, m in zero.items()}
    x = torch.as_tensor(ids, device=device)[None].expand(B, -1)        # [B, N]: the same text in every row
    return edited_losses(model, x, edit, chunk, progress)


@torch.no_grad()
def edited_losses(model, x: torch.Tensor, edit: dict, chunk: int = 4096, progress: bool = False) -> np.ndarray:
    """Nats per prediction, float32 [B, N-1], of rows x (ids [B, N], each read from a zero state) with a
    hooks.Trace `edit` applied inside the recurrence at every step: the one batched pass behind
    zeroed_losses and a dictionary's ablation and splice (each edit function sees all B rows)."""
    out = np.empty((x.shape[0], x.shape[1] - 1), dtype=np.float32)
    try:
        for s, logits in iter_logits(model, x[:, :-1], chunk, progress, "losses",
                                    context=lambda s: Trace(model, names=[], edit=edit)):
            T = logits.shape[1]
            target = x[:, s + 1:s + 1 + T]
            out[:, s:s + T] = F.cross_entropy(logits.transpose(1, 2), target, reduction="none").cpu().numpy()
    except HookError as exc:
        raise UserError(str(exc)) from None
    return out


def every_unit(config, states: Iterable[str] | str = ("h", "c")) -> list[Unit]:
    """Every unit of the recorded quantities, in recording order (layer by layer, h before c)."""
    return [parse_quantity(name).unit(i) for name in recorded_names(config, states) for i in range(config.hidden_size)]


@torch.no_grad()
def most_variable_units(model, ids: np.ndarray, n: int = 5, chunk: int = 1024, progress: bool = False,
                        streams: int = 1, warmup: int = 0) -> list[Unit]:
    """The n units (h and c of every layer) whose shown value (stats.shown) varies most over ids, ties
    in recording order. streams, warmup: as iter_states (a variance over many characters barely feels
    the approximate states at the start of each piece)."""
    moments: dict[str, Moments] = {}
    for _, acts in iter_states(model, ids, states=("h", "c"), chunk=chunk, progress=progress, streams=streams,
                               warmup=warmup):
        for name, v in acts.items():
            moments.setdefault(name, Moments()).add(shown(np.array(v, np.float32), squashes(name), inplace=True))
    variance = np.concatenate([m.variance() for m in moments.values()])
    return [every_unit(model.config)[i] for i in np.argsort(-variance, kind="stable")[:n]]


@torch.no_grad()
def shown_values(model, ids: np.ndarray, units: list[Unit], streams: int | str = 1, warmup: int = 0,
                 progress: bool = False, variance: bool = False):
    """float16 [len(ids), len(units)]: each unit's shown value (stats.shown) after each character, one
    pass (error < 5e-4 on values within [-1, 1]). With variance=True, (values, variance float64 [units]),
    the variance taken from the float32 values before rounding. streams, warmup: as iter_states."""
    out = np.empty((len(ids), len(units)), np.float16)
    cols: dict[str, tuple[list[int], list[int]]] = {}
    for j, u in enumerate(units):
        cols.setdefault(u.quantity, ([], []))[0].append(j)
        cols[u.quantity][1].append(u.index)
    moments = {name: Moments() for name in cols} if variance else {}
    states = tuple(sorted({u.state for u in units}))
    for start, acts in iter_states(model, ids, states, streams=streams, warmup=warmup, progress=progress):
        for name, (js, idx) in cols.items():
            v = shown(acts[name][:, idx], squashes(name), inplace=True)      # fancy indexing made a copy
            out[start:start + len(v), js] = v
            if variance:
                moments[name].add(v)
    if not variance:
        return out
    var = np.empty(len(units))
    for name, (js, _) in cols.items():
        var[js] = moments[name].variance()
    return out, var
