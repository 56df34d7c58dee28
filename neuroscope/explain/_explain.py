"""explain and explain_values: the search of the package docstring, over recorded values or a checkpoint."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from ..checkpoint import model_and_vocab
from ..config import configured
from ..dictionary import as_dictionary, latent_values, latents_of, most_variable_latents
from ..errors import UserError
from ..files import json_ready
from ..names import Unit, parse_unit, state_names
from ..record import AUTO_WARMUP, every_unit, most_variable_units, shown_values, stream_layout
from ..stats import SHOWN
from ._atoms import atoms, signatures
from ._contexts import COLUMNS as CONTEXT_COLUMNS
from ._contexts import unit_contexts
from ._formulas import Formula, beam_search, chance_iou, iou, leaf_iou, simulation_r
from ._split import BLOCK, Split, split

FIT_SHARE = 2 / 3
QUANTILES = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99)
# The bar. r >= 0.5: the formula's cells account for a quarter of the unit's variance on text the
# formula was not chosen on, the same |r| the neuron catalogue asks of a single feature. The IoU
# floor keeps out units whose graded value is predicted but whose top activity the formula misses.
EXPLAINED_R = 0.5
EXPLAINED_IOU = 0.2
COLUMNS = ["unit", "rank", "sign", "quantile", "threshold", "coverage", "formula", "length", "iou_fit",
           "iou_heldout", "on_heldout", "formula_heldout", "best_atom", "best_atom_iou_fit", "best_atom_iou_heldout",
           "simulation_r", "explained", "margin"]
NEAR_THE_BAR = 0.05          # |margin| below this: a verdict other text may well flip


@dataclass(frozen=True)
class ExplainConfig:
    """How explanations are searched and judged (module docstring: what each step does)."""

    quantiles: tuple[float, ...] = QUANTILES     # thresholds tried, as quantiles of sign * value
    beam: int = 8                                # formulas kept per step of the beam search
    max_length: int = 3                          # atoms per formula
    top: int = 3                                 # formulas reported per unit
    fit_share: float = FIT_SHARE                 # the fitting part: this share of the text...
    block: int = BLOCK                           # ...in blocks of this many characters (0: the text's start)
    min_r: float = EXPLAINED_R                   # the bar on simulation_r
    min_iou: float = EXPLAINED_IOU               # the bar on the best formula's held-out IoU
    batch: int = 64                              # units whose mask counts are made in one pass
    lang: str = "auto"                           # for code-aware atoms (features.resolve)
    # explain() on a model: which units, and how the text is recorded (neuroscope.record.iter_states).
    top_units: int | None = None                 # explain the N most variable h and c units (no units named)
    streams: int | str = "auto"                  # parallel pieces: "auto" = record.auto_streams; 1 = exact
    warmup: int = AUTO_WARMUP                    # with streams > 1: characters each piece reads first
    contexts: bool = True                        # each unit's top, typical and random contexts
    progress: bool = False                       # progress bars on stderr

    def check(self, n_chars: int) -> Split:
        """Validate; return the split of n_chars characters (explain._split)."""
        q = self.quantiles
        if not q or not all(0 < x < 1 for x in q) or list(q) != sorted(set(q)):
            raise UserError(f"quantiles must rise strictly between 0 and 1, got {q}", param="quantiles")
        if self.beam < 1 or self.max_length < 1 or not 1 <= self.top <= self.beam:
            raise UserError("beam and max_length must be >= 1 and top between 1 and beam", param="top")
        if not 0 < self.fit_share < 1:
            raise UserError(f"fit_share must lie between 0 and 1, got {self.fit_share}", param="fit_share")
        return split(n_chars, self.fit_share, self.block)


def explain_values(values: np.ndarray, text: str, unit_ids: list[str], config: ExplainConfig | None = None,
                   progress: bool = False) -> pd.DataFrame:
    """Explain each column of values (float [N, U]; N = len(text)) by formulas over atoms.

    Returns one row per unit x rank (COLUMNS; docs/explain.md describes each): rank 1 is the best
    formula; best_atom and simulation_r are per formula, explained is the unit's verdict (the same on
    all its rows, decided by rank 1). df.attrs["meta"] says where the parts lie and what the bar is.
    Raises UserError for a shape mismatch, non-finite values, a text too short, or a constant unit.
    """
    cfg = config or ExplainConfig()
    values = np.asarray(values)
    if values.ndim != 2 or values.shape != (len(text), len(unit_ids)):
        raise UserError(f"values must have shape (len(text), units) = ({len(text)}, {len(unit_ids)}), "
                        f"got {values.shape}", param="values")
    sp = cfg.check(len(text))
    if not (np.isfinite(values.min(0)).all() and np.isfinite(values.max(0)).all()):   # no [N, U] temporary
        raise UserError("values hold NaN or infinite numbers", param="values")
    table, names = _atom_table(text, cfg.lang)
    groups, At = signatures(table)
    G = At.shape[0]
    rows_fit, rows_ho = np.flatnonzero(~sp.held), np.flatnonzero(sp.held)
    g_fit, g_ho = groups[rows_fit], groups[rows_ho]
    n_fit_g = np.bincount(g_fit, minlength=G).astype(np.float32)
    n_ho_g = np.bincount(g_ho, minlength=G).astype(np.float32)
    At = At.astype(np.float32)
    _check_constant(values, rows_fit, unit_ids, cfg.batch)
    rows = []
    bar = tqdm(total=len(unit_ids), desc="explain", unit="unit", disable=not progress, leave=False)
    with threadpool_limits(1):          # the products are small: BLAS threads cost 10x more than they save
        for lo in range(0, len(unit_ids), cfg.batch):
            cols = np.asarray(values[:, lo:lo + cfg.batch], dtype=np.float32)            # [N, batch]
            stats = _batch_stats(cols[rows_fit], cols[rows_ho], g_fit, g_ho, G, cfg.quantiles)
            for j, uid in enumerate(unit_ids[lo:lo + cfg.batch]):
                rows += _explain_one(uid, {k: v[j] for k, v in stats.items()}, n_fit_g, n_ho_g, At, names, cfg)
                bar.update(1)
    bar.close()
    df = pd.DataFrame(rows, columns=COLUMNS)
    df.attrs["meta"] = {"chars": len(text), "split": sp.describe(), "atoms": len(names),
                        "groups": G, "quantiles": list(cfg.quantiles), "beam": cfg.beam, "max_length": cfg.max_length,
                        "bar": {"simulation_r": cfg.min_r, "iou_heldout": cfg.min_iou}}
    return df


def _check_constant(values: np.ndarray, rows_fit: np.ndarray, unit_ids: list[str], batch: int) -> None:
    """No unit constant on the fitting part: it has no top quantile to threshold at. Read a batch of units
    at a time, so no [n_fit, U] copy is made."""
    bad, value = [], None
    for lo in range(0, len(unit_ids), batch):
        fit = values[rows_fit, lo:lo + batch]
        same = np.flatnonzero(fit.min(0) == fit.max(0))
        if value is None and len(same):
            value = fit[0, same[0]]
        bad += [unit_ids[lo + j] for j in same]
    if bad:
        raise UserError(f"unit {bad[0]} is constant ({value:g}) on the fitting part: it cannot be "
                        f"thresholded" + (f" ({len(bad) - 1} more constant units)" if len(bad) > 1 else ""))


def _atom_table(text: str, lang: str) -> tuple[np.ndarray, list[str]]:
    a = atoms(text, lang)
    return np.stack(list(a.values()), axis=1), list(a)             # bool [N, A], names


def _batch_stats(Vf: np.ndarray, Vh: np.ndarray, g_fit, g_ho, G: int, quantiles) -> dict[str, np.ndarray]:
    """Per unit of a batch (Vf, Vh float32 [n, Ub]: the fitting and held-out rows): thresholds [2Q]
    (sign +, then -), mask counts per group on both parts [2Q, G], value sums per group [G] on both
    parts, and the sums of squares of both."""
    q = np.asarray(quantiles, dtype=np.float64)
    t_plus = np.quantile(Vf, q, axis=0).astype(np.float32)                  # [Q, Ub]: on where v > t
    t_minus = np.quantile(Vf, 1 - q, axis=0).astype(np.float32)             # on where v < t
    Hf = np.concatenate([_counts(Vf, g_fit, G, t_plus, 1), _counts(Vf, g_fit, G, t_minus, -1)], axis=1)
    Hh = np.concatenate([_counts(Vh, g_ho, G, t_plus, 1), _counts(Vh, g_ho, G, t_minus, -1)], axis=1)
    Ub = Vf.shape[1]
    off = (np.arange(Ub) * G)[None, :]
    Sf = np.bincount((g_fit[:, None] + off).ravel(), Vf.astype(np.float64).ravel(), Ub * G).reshape(Ub, G)
    Sh = np.bincount((g_ho[:, None] + off).ravel(), Vh.astype(np.float64).ravel(), Ub * G).reshape(Ub, G)
    return {"thresholds": np.concatenate([t_plus, t_minus]).T, "H_fit": Hf, "H_ho": Hh, "S_fit": Sf, "S_ho": Sh,
            "sum2_fit": (Vf.astype(np.float64) ** 2).sum(0), "sum2_ho": (Vh.astype(np.float64) ** 2).sum(0)}


def _counts(V: np.ndarray, groups: np.ndarray, G: int, t: np.ndarray, sign: int) -> np.ndarray:
    """float32 [Ub, Q, G]: characters of each group where sign * v is above each threshold.

    The masks of one sign are nested (a higher quantile, fewer characters), so each character gets
    a level (how many thresholds it passes) and one bincount of (unit, group, level) counts them all."""
    Ub, Q = V.shape[1], t.shape[0]
    level = np.zeros(V.shape, dtype=np.int64)
    for i in range(Q):
        level += (V > t[i]) if sign > 0 else (V < t[i])
    # quantiles rise (ExplainConfig.check), so thresholds rise (fall, for sign -1): "level > i" = "passes i"
    code = (np.arange(Ub)[None, :] * G + groups[:, None]) * (Q + 1) + level
    c = np.bincount(code.ravel(), minlength=Ub * G * (Q + 1)).reshape(Ub, G, Q + 1)
    above = np.cumsum(c[:, :, ::-1], axis=2)[:, :, ::-1]                     # [Ub, G, Q+1]: level >= i
    return above[:, :, 1:].transpose(0, 2, 1).astype(np.float32)


def _choose(beams: list[list[Formula]], st: dict, n_fit: np.ndarray, At: np.ndarray) -> tuple[int, list[Formula]]:
    """The unit's mask and that mask's formulas, best first. Every formula kept for any mask is
    scored on the fitting part by (IoU beyond chance) x (simulation r): the excess over the IoU of an
    independent formula of the same coverage, because raw IoU favours the widest masks (a formula
    true almost everywhere has IoU = the mask's coverage); times r, because a formula that matches a
    narrow top of the unit while missing its graded value (a brace cell's deepest level) is not the
    unit's description. r <= 0 counts as 0; ties go to the larger excess."""
    n_total, scored = float(n_fit.sum()), []
    for m, beam in enumerate(beams):
        coverage = st["H_fit"][m].sum() / n_total
        for f in beam:
            excess = f.iou - chance_iou(f.key[1] / n_total, coverage)
            r = simulation_r(f.atoms(), At, n_fit, n_fit, st["S_fit"], st["S_fit"], float(st["sum2_fit"]))
            scored.append((excess * max(r, 0.0), excess, m, f))
    if not scored:
        return 0, []
    scored.sort(key=lambda t: (-t[0], -t[1]))
    m = scored[0][2]
    return m, [f for _, _, mask, f in scored if mask == m]


def _explain_one(uid: str, st: dict, n_fit, n_ho, At, names: list[str], cfg: ExplainConfig) -> list[dict]:
    """The rows of one unit: its best formulas on its best mask."""
    Hf, Hh = st["H_fit"], st["H_ho"]
    m, formulas = _choose(beam_search(Hf, n_fit, At, cfg.beam, cfg.max_length), st, n_fit, At)
    Q = len(cfg.quantiles)
    ho_total = float(Hh[m].sum())
    fit_leaf, leaves = leaf_iou(Hf[m:m + 1], n_fit, At)
    ho_leaf, _ = leaf_iou(Hh[m:m + 1], n_ho, At)
    a = int(np.argmax(fit_leaf[0]))
    leaf = Formula((leaves[a],), np.zeros(0, bool), 0.0, (0, 0))
    base = {"unit": uid, "sign": 1 if m < Q else -1, "quantile": cfg.quantiles[m % Q],
            "threshold": float(st["thresholds"][m]), "coverage": float(Hf[m].sum() / n_fit.sum()),
            "best_atom": leaf.text(names), "best_atom_iou_fit": float(fit_leaf[0, a]),
            "best_atom_iou_heldout": float(ho_leaf[0, a]), "on_heldout": int(round(ho_total))}
    rows = []
    for rank, f in enumerate(formulas[:cfg.top], 1):
        on = f.on.astype(np.float32)
        rows.append({**base, "rank": rank, "formula": f.text(names), "length": len(f.terms), "iou_fit": f.iou,
                     "iou_heldout": float(iou(on @ Hh[m], on @ n_ho, ho_total)),
                     "formula_heldout": int(round(float(on @ n_ho))),
                     "simulation_r": simulation_r(f.atoms(), At, n_fit, n_ho, st["S_fit"], st["S_ho"],
                                                  float(st["sum2_ho"]))})
    if not rows:                                  # no atom overlaps any mask: nothing to say
        rows.append({**base, "rank": 1, "formula": None, "length": 0, "iou_fit": 0.0, "iou_heldout": 0.0,
                     "formula_heldout": 0, "simulation_r": 0.0})
    # how far the verdict is from flipping: >= 0 explained; the smaller excess, or the larger shortfall
    margin = min(rows[0]["simulation_r"] - cfg.min_r, rows[0]["iou_heldout"] - cfg.min_iou)
    return [{**r, "explained": bool(margin >= 0), "margin": float(margin)} for r in rows]


# ---------------------------------------------------------------- a model's units

MAX_MB = 4096          # the recorded values (float16, N x units) a call may hold


@dataclass
class ExplainResult:
    """table: one row per unit x rank (COLUMNS); contexts: one row per unit x context (unit plus
    contexts.COLUMNS); meta: where the parts lie, the bar, the seconds spent."""

    table: pd.DataFrame
    contexts: pd.DataFrame
    meta: dict

    def to_json(self) -> dict:
        units = []
        for uid, rows in self.table.groupby("unit", sort=False):
            first = rows.iloc[0]
            keep = ["sign", "quantile", "threshold", "coverage", "on_heldout", "best_atom", "best_atom_iou_fit",
                    "best_atom_iou_heldout", "explained", "margin"]
            units.append({"unit": uid, **{k: first[k] for k in keep},
                          "simulation_r": first["simulation_r"], "iou_heldout": first["iou_heldout"],
                          "formulas": rows[["rank", "formula", "length", "iou_fit", "iou_heldout", "formula_heldout",
                                            "simulation_r"]].to_dict(orient="records"),
                          "contexts": self.contexts[self.contexts["unit"] == uid].drop(columns="unit")
                          .to_dict(orient="records")})
        return json_ready({"meta": self.meta, "units": units})

    def format(self) -> str:
        m = self.meta
        out = [f"{split_words(m['split'])}; explained = simulation r >= {m['bar']['simulation_r']} "
               f"and held-out IoU >= {m['bar']['iou_heldout']}"]
        for uid, rows in self.table.groupby("unit", sort=False):
            f = rows.iloc[0]
            out += ["", f"{uid}: on at its {on_where(f['sign'], f['quantile'], f['threshold'])}: "
                        f"{'EXPLAINED' if f['explained'] else 'not explained'}, simulation r {f['simulation_r']:+.3f}"
                        f"{near_the_bar(f['margin'])}"]
            for r in rows.itertuples():
                out.append(f"  {r.rank}. {r.formula}  IoU fit {r.iou_fit:.3f}, held-out {r.iou_heldout:.3f}, "
                           f"simulation r {r.simulation_r:+.3f}")
            out.append(f"  best single atom: {f['best_atom']}  IoU fit {f['best_atom_iou_fit']:.3f}, "
                       f"held-out {f['best_atom_iou_heldout']:.3f}")
            if untested(f):
                out.append(f"  note: {untested(f)}; explain it on more text")
        return "\n".join(out)


def near_the_bar(margin: float) -> str:
    """", near the bar (margin +0.012): ..." for a verdict another text may flip, else ""."""
    if abs(margin) >= NEAR_THE_BAR:
        return ""
    return f", near the bar (margin {margin:+.3f}): another text may give the other verdict"


def split_words(split: dict) -> str:
    """Where the parts lie, in words (Split.describe's dict)."""
    if split["block"] == 0:
        return (f"fitting part: characters {split['fit'][0]:,} to {split['fit'][1]:,}; held-out part: "
                f"{split['heldout'][0]:,} to {split['heldout'][1]:,} (source positions)")
    return (f"fitting part: {split['fit_chars']:,} characters; held-out part: {split['heldout_chars']:,} characters in "
            f"{split['heldout_blocks']} blocks of {split['block']:,} spread over the text")


def on_where(sign: int, quantile: float, threshold: float) -> str:
    """Where a unit counts as on, in words: "top 10% (value > 0.734)". A shown value lies in [-1, 1]
    (tanh(c), or h of a bounded cell), so a threshold that rounds to the bound means the unit sits at
    the bound on that share of the text: said so, with the digits that tell the threshold from it."""
    share = f"{'top' if sign > 0 else 'bottom'} {1 - quantile:.0%}"
    op = ">" if sign > 0 else "<"
    gap = 1 - abs(threshold)
    if not 0 <= gap < 5e-4:                           # prints as something other than +-1.000
        return f"{share} (value {op} {threshold:.3f})"
    bound = 1 if threshold > 0 else -1
    if gap == 0:
        return f"{share} (value {op} {bound}: never; the unit sits at its bound {bound} there)"
    digits = 3
    while round(abs(threshold), digits) >= 1:
        digits += 1
    return f"{share} (value {op} {threshold:.{digits}f}: saturated, within {gap:.0e} of {bound})"


def untested(row) -> str:
    """Why a unit's held-out numbers say nothing, or "": its held-out part holds none of the characters
    where the unit is on, or none where its best formula holds (then IoU 0 and simulation r 0 mean
    "untested", not "wrong"); row: the unit's rank-1 row of the table."""
    if row["on_heldout"] == 0:
        return "the unit is never on in the held-out part, so its held-out scores say nothing"
    if row["formula"] is not None and row["formula_heldout"] == 0:
        return f"the held-out part holds no character where {row['formula']} holds, so its held-out scores say nothing"
    return ""


def check_units(config, units=None, top_units: int | None = None) -> list[Unit]:
    """The units asked for, checked against the model (before any work); top_units is checked here
    and picked later (from the variance of every unit)."""
    if bool(units) == (top_units is not None):
        raise UserError("name the units to explain, or ask for the top_units most variable ones (not both)",
                        param="units")
    if units:
        return list(dict.fromkeys(parse_unit(u, config) if isinstance(u, str) else u for u in units))
    total = len(state_names(config, ("h", "c"))) * config.hidden_size
    if not 1 <= top_units <= total:
        raise UserError(f"top_units must be between 1 and {total} (h and c units of this model), got {top_units}",
                        param="top_units")
    return []


def explain(model, text: str, units=None, config: ExplainConfig | None = None, *, vocab=None, offset: int = 0,
            dictionary=None, **overrides) -> ExplainResult:
    """Record units of a model over text and explain them (explain_values), with their contexts.

    model: a Checkpoint, or a CharRNN with `vocab`. units: unit ids ("l2.c.328") or names.Unit; or
    config.top_units: the N most variable h and c units. config / overrides: ExplainConfig fields
    (e.g. top_units=10, streams=1, contexts=False). Values are the shown values (stats.shown) held as
    float16 [N, units] (error < 5e-4 on values within [-1, 1]; at most MAX_MB). offset: the source
    position of text[0] (meta and contexts use it). dictionary: a neuroscope.dictionary.Dictionary (or
    its folder) trained on this model: then units are its latents ("l1.c/d.123"), and top_units the most
    variable of them, valued by their activation.
    """
    cfg = configured(ExplainConfig, config, overrides)
    net, vocab = model_and_vocab(model, vocab)
    sp = cfg.check(len(text))
    d = as_dictionary(dictionary, net)
    picked = check_units(net.config, units, cfg.top_units) if d is None else check_latents(d, units, cfg.top_units)
    _check_memory(len(text), len(picked) or cfg.top_units)
    stream_layout(len(text), cfg.streams, cfg.warmup)                  # refuses bad streams before the pass
    t0 = time.perf_counter()
    recorded = _recorded if d is None else _latents_recorded(d)
    picked, values = recorded(net, vocab.encode(text), picked, cfg)
    t1 = time.perf_counter()
    table = explain_values(values, text, [u.id for u in picked], cfg, cfg.progress)
    t2 = time.perf_counter()
    ctx = _contexts(text, values, picked, table, offset) if cfg.contexts else []
    ctx_df = pd.concat(ctx, ignore_index=True) if ctx else pd.DataFrame(columns=["unit", *CONTEXT_COLUMNS])
    streams, _, warmup = stream_layout(len(text), cfg.streams, cfg.warmup)
    meta = {**table.attrs["meta"], "split": sp.describe(offset), "units": len(picked), "streams": streams, "warmup": warmup,
            "value": SHOWN if d is None else f"the activation of latents of {d.path or 'a dictionary'} "
                                             f"over {d.quantity}",
            "seconds": {"record": t1 - t0, "search": t2 - t1, "per_unit_search": (t2 - t1) / len(picked)}}
    return ExplainResult(table, ctx_df, meta)


def check_latents(d, units=None, top_units: int | None = None) -> list:
    """check_units for the latents of dictionary d."""
    if bool(units) == (top_units is not None):
        raise UserError("name the latents to explain, or ask for the top_units most variable ones (not both)",
                        param="units")
    if units:
        return latents_of(d, units)
    if not 1 <= top_units <= d.sae.d_sae:
        raise UserError(f"top_units must be between 1 and {d.sae.d_sae} (the dictionary's latents), got {top_units}",
                        param="top_units")
    return []


def _latents_recorded(d):
    """_recorded for latents: the ones named, or the cfg.top_units most variable (a first pass picks them)."""
    def recorded(net, ids, picked, cfg):
        read = {"streams": cfg.streams, "warmup": cfg.warmup, "progress": cfg.progress}
        picked = picked or most_variable_latents(d, net, ids, cfg.top_units, **read)
        if not picked:
            raise UserError("no latent of the dictionary is ever on over this text", param="units")
        return picked, latent_values(d, net, ids, picked, **read)
    return recorded


def _check_memory(n_chars: int, n_units: int) -> None:
    if n_chars * n_units * 2 > MAX_MB * 2 ** 20:
        raise UserError(f"holding {n_units:,} units over {n_chars:,} characters needs "
                        f"{n_chars * n_units * 2 / 2 ** 20:,.0f} MB (limit {MAX_MB:,}); explain fewer units or "
                        "characters", param="units")


def _recorded(net, ids: np.ndarray, picked: list[Unit], cfg: ExplainConfig) -> tuple[list[Unit], np.ndarray]:
    """(units, their shown values float16 [N, units]): the units named, or the cfg.top_units most variable
    ones. Those are picked in the same pass that records them while every h and c unit fits MAX_MB as
    float16; past that, a variance pass picks them and a second pass records them."""
    read = {"streams": cfg.streams, "warmup": cfg.warmup, "progress": cfg.progress}
    if picked:
        return picked, shown_values(net, ids, picked, **read)
    every = every_unit(net.config)
    if len(ids) * len(every) * 2 <= MAX_MB * 2 ** 20:
        values, variance = shown_values(net, ids, every, variance=True, **read)
        top = np.argsort(-variance, kind="stable")[:cfg.top_units]
        return [every[i] for i in top], values[:, top]
    picked = most_variable_units(net, ids, cfg.top_units, **read)
    return picked, shown_values(net, ids, picked, **read)


def _contexts(text: str, values: np.ndarray, units: list[Unit], table: pd.DataFrame, offset: int) -> list:
    signs = table.groupby("unit", sort=False)["sign"].first()
    return [unit_contexts(text, values[:, j].astype(np.float32), offset, sign=int(signs[u.id])).assign(unit=u.id)
            for j, u in enumerate(units)]
