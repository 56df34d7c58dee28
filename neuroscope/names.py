"""The one naming scheme: quantity names, unit ids, store file stems and the gate tuples.

    >>> quantity_name(2, "c")                 # the recorder's (and the cache's) key
    'rnn.l2.c'
    >>> parse_quantity("l0_f")                # any spelling a user or a store file uses
    Quantity(layer=0, state='gate_f')
    >>> parse_quantity("rnn.l0.gate_f").stem   # a store's file stem
    'l0_f'
    >>> parse_unit("l2.c.323")                # one unit, as on the command line (all 0-based)
    Unit(layer=2, state='c', index=323)

A quantity is one layer's state over time. Which states a cell has is listed here once (CELL_STATES,
GATES): h for every cell; c for LSTM, sLSTM, mLSTM and the SSM layer; norm and stab (the normaliser
n and stabiliser m of xLSTM's exponential gating) for sLSTM and mLSTM; and gates: i/f/g/o (LSTM,
sLSTM), r/z/n (GRU), z/g (minGRU), f/i/g (minLSTM), i/f/o (mLSTM), z/d (the SSM layer's output gate and
step). neuroscope.cells documents what each means for its cell.
The recorder names it "{module}.l{layer}.{state}"; for neuroscope's CharRNN the module is "rnn".
A unit is one column of a quantity: "l{layer}.{state}.{index}". Cell states are unbounded (|c|
reaches thousands), so everything that ranks or colours a unit sees tanh(c) (`squashes`).
A latent is one direction of a dictionary over an h or c quantity (neuroscope.dictionary), named like
a unit with "/d" after the quantity: "l1.c/d.123" is latent 123 of the dictionary over rnn.l1.c.

Every other module builds and parses these strings through this one; it imports nothing of ours.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from .errors import UserError

MODULE = "rnn"                                   # CharRNN's recurrent module, the prefix of its names
LSTM_GATES = ("i", "f", "g", "o")                # PyTorch's row order in weight_ih / weight_hh
GRU_GATES = ("r", "z", "n")
# Every cell's states besides its gates, h first; c, norm and stab where the cell keeps them.
CELL_STATES = {"lstm": ("h", "c"), "gru": ("h",), "rnn": ("h",), "mingru": ("h",), "minlstm": ("h",),
               "slstm": ("h", "c", "norm", "stab"), "mlstm": ("h", "c", "norm", "stab"), "ssm": ("h", "c")}
GATES = {"lstm": LSTM_GATES, "gru": GRU_GATES, "rnn": (), "mingru": ("z", "g"), "minlstm": ("f", "i", "g"),
         "slstm": LSTM_GATES, "mlstm": ("i", "f", "o"), "ssm": ("z", "d")}
EDITABLE = ("h", "c")                            # the states an intervention may change, in every cell
GATE_LETTERS = tuple(dict.fromkeys(g for gates in GATES.values() for g in gates))
STATE_TOKENS = ("h", "c", "norm", "stab", "gates") + tuple(f"gate_{g}" for g in GATE_LETTERS)

_QUANTITY = re.compile(r"(?:rnn\.)?l(\d+)[._](h|c|norm|stab|gate_[a-z]|[" + "".join(GATE_LETTERS) + "])")
_UNIT = re.compile(r"l(\d+)\.([a-z_]+)\.(\d+)")
_LATENT = re.compile(r"l(\d+)\.(h|c)/d\.(\d+)")
DICTIONARY_MARK = "/d"                           # "l1.c" + "/d" + ".123": a dictionary's latent


def gate_state(gate: str) -> str:
    """"f" -> "gate_f" (a state name from a gate letter)."""
    return f"gate_{gate}"


def is_gate(name: str) -> bool:
    """True for a gate quantity or state: "rnn.l0.gate_f", "gate_f"."""
    return name.rsplit(".", 1)[-1].startswith("gate_")


def squashes(state: str) -> bool:
    """Whether a state is shown and ranked as tanh(value): cell states and normalisers (they are unbounded)."""
    return state.rsplit(".", 1)[-1] in ("c", "norm")


def quantity_name(layer: int, state: str, module: str = MODULE) -> str:
    """(2, "c") -> "rnn.l2.c"; module "" gives "l2.c" (a Trace on the RNN module itself)."""
    return f"{module}.l{layer}.{state}" if module else f"l{layer}.{state}"


@dataclass(frozen=True)
class Quantity:
    """One layer's state of neuroscope's CharRNN."""

    layer: int
    state: str          # h, c, gate_i, gate_f, ...

    @property
    def name(self) -> str:
        """The recorder's name, e.g. "rnn.l2.c"."""
        return quantity_name(self.layer, self.state)

    @property
    def stem(self) -> str:
        """A store's file stem: "l2_c", "l0_f" for gate_f."""
        return f"l{self.layer}_{self.state[5:] if is_gate(self.state) else self.state}"

    @property
    def squash(self) -> bool:
        return squashes(self.state)

    def unit(self, index: int) -> "Unit":
        return Unit(self.layer, self.state, index)


@dataclass(frozen=True)
class Unit:
    """One recorded unit: "l2.c.323" (all 0-based)."""

    layer: int
    state: str
    index: int

    @property
    def id(self) -> str:
        return unit_id(self.layer, self.state, self.index)

    @property
    def quantity(self) -> str:
        """The recorder's name of the unit's layer state, e.g. "rnn.l2.c"."""
        return quantity_name(self.layer, self.state)

    @property
    def squash(self) -> bool:
        return squashes(self.state)


def latent_id(quantity: str, index: int) -> str:
    """("rnn.l1.c", 123) -> "l1.c/d.123": latent 123 of the dictionary over that quantity."""
    q = parse_quantity(quantity)
    return f"l{q.layer}.{q.state}{DICTIONARY_MARK}.{index}"


@dataclass(frozen=True)
class Latent:
    """One latent of a dictionary over an h or c quantity: "l1.c/d.123" (all 0-based)."""

    quantity: str       # "rnn.l1.c"
    index: int

    @property
    def id(self) -> str:
        return latent_id(self.quantity, self.index)


def parse_latent(text: str, d_sae: int | None = None) -> Latent:
    """"l1.c/d.123" -> Latent("rnn.l1.c", 123); with d_sae, checked to exist in a dictionary that size."""
    m = _LATENT.fullmatch(text.strip()) if isinstance(text, str) else None
    if not m:
        raise UserError(f"bad latent {text!r}: write layer.state/d.index, e.g. l1.c/d.123 (0-based)")
    latent = Latent(quantity_name(int(m.group(1)), m.group(2)), int(m.group(3)))
    if d_sae is not None and latent.index >= d_sae:
        raise UserError(f"latent {text!r} does not exist: the dictionary has {d_sae:,} (0..{d_sae - 1})")
    return latent


def unit_id(layer: int, state: str, index: int) -> str:
    """(2, "c", 323) -> "l2.c.323"."""
    return f"l{layer}.{state}.{index}"


def parse_quantity(key: str) -> Quantity:
    """"l2_c", "l2.c", "rnn.l2.c", "l0_f", "l0.gate_f" -> Quantity; UserError for anything else."""
    m = _QUANTITY.fullmatch(key) if isinstance(key, str) else None
    if not m:
        raise UserError(f"bad quantity name {key!r}; expected like l2.c, l2_c, rnn.l2.c or l0_f")
    state = m.group(2)
    return Quantity(int(m.group(1)), state if len(state) > 1 or state in "hc" else gate_state(state))


def parse_unit(text: str, config=None) -> Unit:
    """"l2.c.323" -> Unit(2, "c", 323); with a model config, checked to exist in that model."""
    m = _UNIT.fullmatch(text.strip()) if isinstance(text, str) else None
    if not m:
        raise UserError(f"bad unit {text!r}: write layer.state.unit, e.g. l2.c.323 (0-based)")
    unit = Unit(int(m.group(1)), m.group(2), int(m.group(3)))
    if config is None:
        return unit
    known = state_names(config, ("h", "c", "norm", "stab", "gates"))
    if unit.quantity not in known:
        states = sorted({n.rsplit(".", 1)[-1] for n in known})
        raise UserError(f"unit {text!r} does not exist: the model has layers 0..{config.num_layers - 1} "
                        f"and states {', '.join(states)}")
    if unit.index >= config.hidden_size:
        raise UserError(f"unit {text!r} does not exist: layers have {config.hidden_size} units "
                        f"(0..{config.hidden_size - 1})")
    return unit


def parse_states(states: Iterable[str] | str) -> tuple[str, ...]:
    """Validate state tokens ("h", "c", "gates", "gate_f" or just "f"); "h,c" strings are split."""
    if isinstance(states, str):
        states = states.split(",")
    out = []
    for s in states:
        s = str(s).strip()
        s = gate_state(s) if s in GATE_LETTERS else s
        if s not in STATE_TOKENS:
            raise UserError(f"unknown state {s!r} in states; choose from h, c, norm, stab, gates, "
                            f"or a gate: {', '.join(GATE_LETTERS)}", param="states")
        if s not in out:
            out.append(s)
    if not out:
        raise UserError("no state to record; choose from h, c, gates", param="states")
    return tuple(out)


def state_names(config, states: Iterable[str] | str = ("h", "c")) -> list[str]:
    """All quantity names for a model config, e.g. ["rnn.l0.h", "rnn.l0.c", ...], layer by layer.

    Tokens that do not apply to the cell (c or LSTM gates of a GRU, ...) are skipped, so ("h", "c")
    works for every model.
    """
    states = parse_states(states)
    has = cell_states(config.cell)
    out = []
    for layer in range(config.num_layers):
        for s in states:
            if s == "gates":
                out += [quantity_name(layer, gate_state(g)) for g in GATES[config.cell]]
            elif s in has:
                out.append(quantity_name(layer, s))
    return list(dict.fromkeys(out))


def cell_states(cell: str, gates: bool = True) -> tuple[str, ...]:
    """The states of one layer of `cell`: h, its other states, then (with gates) its gates."""
    return CELL_STATES[cell] + (tuple(gate_state(g) for g in GATES[cell]) if gates else ())
