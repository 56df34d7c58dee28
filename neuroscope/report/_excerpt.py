"""The numbers a report reads off its excerpt, all from one pass: unit values, gate saturation, guesses.

    >>> ex = read_excerpt(model, ids, [Unit(2, "c", 323)])
    >>> ex.values["l2.c.323"]                  # float32 [len(ids)]: c itself (the page shows tanh(c))
    >>> ex.saturation                          # one row per (layer, gate, unit): columns left, right
    >>> ex.pred["top_ids"], ex.pred["p_actual"]                     # [N, k] guesses, [N] p of the actual character
    >>> read_excerpt(model, ids, [], n_variable=5).variable         # the 5 most variable units, values kept too
    >>> read_excerpt(model, ids, [Latent("rnn.l1.c", 12)], dictionary=d).values["l1.c/d.12"]    # its activation

The excerpt is read once, as one exact stream from a zero state, chunk by chunk with the state
carried (neuroscope.model.iter_logits): the model's own forward runs inside a neuroscope.hooks.Trace,
so the states the report shows are recorded while the model computes the logits of its guesses.

Memory: after each chunk only what the report shows is kept (the asked units' columns, per-unit
gate counts, k guesses per character). Finding the most variable units is the exception, since the
winners are known only when the pass ends: it keeps per-unit float64 sums of the shown value
(stats.shown) for the variance, as neuroscope.record.most_variable_units does, and every h and c of
the excerpt as float32 (float16 would move the values the page prints at 4 significant digits, and
c reaches thousands), at most MAX_KEPT_BYTES. A longer excerpt takes a pass more: the variance pass
of neuroscope.record.most_variable_units picks the units, then the one pass records them.

With a dictionary (neuroscope.dictionary) the units are its latents: its quantity is recorded and
encoded chunk by chunk (the encoder reads each character's state on its own), as one more array,
"rnn.l1.c/d" [T, latents], that the parts read like a quantity; the most variable are latents
(every latent's activation kept, within the same MAX_KEPT_BYTES, else dictionary.most_variable_latents
picks them in a pass first).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from ..dictionary import most_variable_latents
from ..errors import UserError
from ..hooks import HookError, Trace
from ..model import iter_logits
from ..names import DICTIONARY_MARK, Latent, Unit, gate_state, parse_quantity, quantity_name, squashes, state_names
from ..record import most_variable_units
from ..stats import Moments, shown

TOP_K = 5                  # guesses kept per character
SATURATED = (0.1, 0.9)     # a gate is left-/right-saturated below / above these (Karpathy et al. 2015)
CHUNK = 1024               # characters per forward: the recording of one chunk is what memory holds at once
MAX_KEPT_BYTES = 512 << 20 # every h and c of the excerpt, kept to find the most variable units (float32)


def saturation_gates(cell: str) -> tuple[str, ...]:
    """The sigmoid gates whose saturation the paper plots: forget, input, output (LSTM); reset, update (GRU)."""
    return {"lstm": ("f", "i", "o"), "gru": ("r", "z")}.get(cell, ())


def kept_chars(width: int) -> int:
    """How many characters of `width` values each fit in MAX_KEPT_BYTES as float32."""
    return MAX_KEPT_BYTES // (4 * width)


def _candidates(config, dictionary=None) -> dict[str, list]:
    """What the most variable are picked among, by the array that holds them: every h and c unit, in
    recording order (the order that breaks ties), or every latent of the dictionary."""
    if dictionary is not None:
        return {_latent_array(dictionary): [Latent(dictionary.quantity, i) for i in range(dictionary.sae.d_sae)]}
    H = config.hidden_size
    return {name: [parse_quantity(name).unit(i) for i in range(H)] for name in state_names(config, ("h", "c"))}


def _latent_array(d) -> str:
    """The name of a dictionary's latents among the arrays a pass reads: "rnn.l1.c/d"."""
    return d.quantity + DICTIONARY_MARK


def _column(u: Unit | Latent) -> str:
    """The array that holds a unit's (or a latent's) values in a pass."""
    return u.quantity + DICTIONARY_MARK if isinstance(u, Latent) else u.quantity


@dataclass
class Excerpt:
    """What one pass over an excerpt of N characters gives (read_excerpt)."""

    values: dict[str, np.ndarray]   # unit id -> float32 [N], the raw value (a latent's activation): the units
                                    # asked for, then `variable`
    saturation: pd.DataFrame        # one row per (layer, gate, unit); left, right: fraction of characters < 0.1, > 0.9
    pred: dict[str, np.ndarray]     # top_ids int [N, k], top_p [N, k]: guesses for character t+1 after
                                    # reading ids[:t+1]; p_actual [N]: the probability given to ids[t]
                                    # before reading it (NaN at t = 0)
    variable: list                  # the n_variable most variable units (latents), most variable first


class _Columns:
    """The asked units' values, column by column."""

    def __init__(self, units: list[Unit]):
        self.units, self.parts = units, {u.id: [] for u in units}

    def add(self, acts: dict[str, np.ndarray]) -> None:
        for u in self.units:
            self.parts[u.id].append(np.array(acts[_column(u)][:, u.index], dtype=np.float32))

    def values(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate(v) for k, v in self.parts.items()}


class _Saturation:
    """Per gate unit, how many characters it was below / above SATURATED."""

    def __init__(self, config):
        self.H = config.hidden_size
        self.keys = [(layer, g, quantity_name(layer, gate_state(g)))
                     for layer in range(config.num_layers) for g in saturation_gates(config.cell)]
        self.left = {name: np.zeros(self.H) for *_, name in self.keys}
        self.right = {name: np.zeros(self.H) for *_, name in self.keys}

    def add(self, acts: dict[str, np.ndarray]) -> None:
        for *_, name in self.keys:
            g = acts[name]
            self.left[name] += (g < SATURATED[0]).sum(0)
            self.right[name] += (g > SATURATED[1]).sum(0)

    def frame(self, n: int) -> pd.DataFrame:
        """The fractions over the n characters read."""
        rows = [pd.DataFrame({"layer": layer, "gate": g, "unit": np.arange(self.H),
                              "left": self.left[name] / n, "right": self.right[name] / n})
                for layer, g, name in self.keys]
        return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
            columns=["layer", "gate", "unit", "left", "right"])


class _Variable:
    """Every candidate's values over the excerpt (float32) and the moments of their shown values, for the
    variance; candidates: array name -> its units (or latents), in column order (see `_candidates`)."""

    def __init__(self, candidates: dict[str, list]):
        self.candidates = candidates
        self.names = list(candidates)
        self.blocks = {name: [] for name in self.names}
        self.moments = {name: Moments() for name in self.names}

    def add(self, acts: dict[str, np.ndarray]) -> None:
        for name in self.names:
            raw = np.array(acts[name], dtype=np.float32)   # a copy: not a view into the chunk's buffers
            self.blocks[name].append(raw)
            self.moments[name].add(shown(raw, squashes(name)))

    def top(self, n: int) -> tuple[list, dict[str, np.ndarray]]:
        """The n candidates whose shown value varies most over the characters read (ties in candidate
        order), and their raw values."""
        variance = np.concatenate([self.moments[k].variance() for k in self.names])
        every = [u for k in self.names for u in self.candidates[k]]
        units = [every[i] for i in np.argsort(-variance, kind="stable")[:n]]
        return units, {u.id: np.concatenate([b[:, u.index] for b in self.blocks[_column(u)]]) for u in units}


class _Guesses:
    """The model's top k guesses after each character, and the probability it gave each actual one."""

    def __init__(self, x: torch.Tensor, k: int):
        self.x, self.k = x, k                                  # x: the excerpt's ids [N]
        self.top_ids, self.top_p, self.p_actual = [], [], [np.array([np.nan])]

    def add(self, s: int, logits: torch.Tensor) -> None:
        probs = torch.softmax(logits[0], dim=-1)                                # [T, V]
        p, i = probs.topk(min(self.k, probs.shape[1]), dim=-1)
        self.top_ids.append(i.cpu().numpy())
        self.top_p.append(p.cpu().numpy())
        nxt = self.x[s + 1:s + 1 + probs.shape[0]]                              # the characters that came next
        self.p_actual.append(probs[torch.arange(len(nxt), device=probs.device), nxt].cpu().numpy())

    def pred(self) -> dict[str, np.ndarray]:
        return {"top_ids": np.concatenate(self.top_ids), "top_p": np.concatenate(self.top_p),
                "p_actual": np.concatenate(self.p_actual)[:len(self.x)]}


@torch.no_grad()
def read_excerpt(model, ids: np.ndarray, units: list, n_variable: int = 0, k: int = TOP_K,
                 chunk: int = CHUNK, progress: bool = False, dictionary=None) -> Excerpt:
    """One pass over ids (int64 [N], one stream from a zero state): the values of `units`, the gates'
    saturation, the model's top k guesses and, with n_variable > 0, the n_variable units (h and c of
    every layer) whose shown value varies most, with their values (a variance pass first past kept_chars).
    With a dictionary, `units` are its latents (names.Latent) and so are the most variable."""
    cfg = model.config
    pool = _candidates(cfg, dictionary) if n_variable else {}
    if n_variable and len(ids) > kept_chars(sum(len(us) for us in pool.values())):     # too long: pick them first
        picked = (most_variable_units(model, ids, n_variable, chunk=chunk, progress=progress) if dictionary is None
                  else most_variable_latents(dictionary, model, ids, n_variable, streams=1, warmup=0,
                                             progress=progress))
        return replace(read_excerpt(model, ids, list(dict.fromkeys(units + picked)), 0, k, chunk, progress, dictionary),
                       variable=picked)
    columns, saturation, variable = _Columns(units), _Saturation(cfg), _Variable(pool) if n_variable else None
    parts = [columns, saturation] + ([variable] if variable else [])
    names = list(dict.fromkeys([u.quantity for u in units] + [name for *_, name in saturation.keys]
                               + [us[0].quantity for us in pool.values()]))        # what the units are read from
    x = torch.as_tensor(np.asarray(ids), dtype=torch.long, device=next(model.parameters()).device)   # [N]
    guesses, traces, prepared = _Guesses(x, k), [], {}

    def traced(s: int) -> Trace:                   # iter_logits runs each chunk's forward inside this
        traces.append(Trace(model, names=names, prepared=prepared))
        return traces[-1]
    try:
        for s, logits in iter_logits(model, x[None], chunk, progress, "report", context=traced):
            trace = traces.pop()
            acts = {name: trace[name][0].float().cpu().numpy() for name in names}     # [T, H] each
            if dictionary is not None and dictionary.quantity in acts:
                raw = torch.from_numpy(acts[dictionary.quantity])
                acts[_latent_array(dictionary)] = dictionary.latents(raw).cpu().numpy()          # [T, latents]
            for part in parts:
                part.add(acts)
            guesses.add(s, logits)
    except HookError as exc:
        raise UserError(str(exc)) from None
    chosen, chosen_values = variable.top(n_variable) if variable else ([], {})
    return Excerpt(values={**columns.values(), **chosen_values}, saturation=saturation.frame(len(ids)),
                   pred=guesses.pred(), variable=chosen)
