"""The null stage of neuroscope.probe: circular-shift p-values for each feature's best units.

    >>> check_null_length(Ns, cfg)                     # before any recording: is the sample long enough
    >>> pvalues, meta, notes = null_pvalues(r, features, sample, squash, cfg)

The test runs on the sample (contiguous, so both sides keep their autocorrelation) for the
cfg.null_units best units of each feature by |r|, and is corrected over all U units, the untested
ones counted as p = 1 (stats.circular_shift_null, stats.holm / stats.bh).
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import UserError
from ..stats import CORRECTIONS, circular_shift_null, shown
from ._config import MIN_CHARS, ProbeConfig

GATHER_UNITS = 512        # units gathered from the sample at once (at 80,000 characters, 164 MB)


def check_null_length(Ns: int, cfg: ProbeConfig) -> None:
    """UserError when the null is asked for and a sample of Ns characters leaves it too few shifts."""
    need = 2 * cfg.min_shift + MIN_CHARS
    if cfg.null and Ns < need:
        raise UserError(f"the circular-shift test needs at least {need:,} characters (shifts of "
                        f"{cfg.min_shift:,} or more each way); this text gives {Ns:,}. "
                        f"Give a longer text or turn null off", param="null")


def null_pvalues(r: np.ndarray, features: dict[str, np.ndarray], sample: np.ndarray, squash: np.ndarray,
                 cfg: ProbeConfig) -> tuple[dict, dict, list[str]]:
    """({feature: (p_value [U], p_adjusted [U])}, meta, notes); ({}, {"computed": False}, []) if not cfg.null.

    r: Pearson r [U, >= F], column i for the i-th feature: |r| picks the units to test; features:
    {feature: labels [N]}; sample: [U, Ns] raw values; squash: bool [U], units whose value is tanh(c).
    p_value is NaN for untested units; a feature constant on the sample gets no entry and a note.
    """
    U, Ns = sample.shape
    out, notes, meta = {}, [], {"computed": False}
    if not cfg.null:
        return out, meta, notes
    from tqdm.auto import tqdm
    tops = {name: np.argsort(-np.abs(r[:, i]), kind="stable")[:cfg.null_units] for i, name in enumerate(features)}
    for name, x in tqdm(_values(sample, squash, tops), total=len(tops), desc="null: circular shifts", unit="feature",
                        disable=not cfg.progress):
        y = np.asarray(features[name][:Ns], dtype=np.float32)
        if y.min() == y.max():
            notes.append(f"{name} is constant on the sample (first {Ns:,} characters): no p-values")
            continue
        top = tops[name]
        sn = circular_shift_null(x, y, min_shift=cfg.min_shift)
        pv = np.full(U, np.nan)
        pv[top] = sn.p
        out[name] = (pv, CORRECTIONS[cfg.correction](pv, m=U))
        meta = {"computed": True, "chars": Ns, "min_shift": cfg.min_shift, "shifts": sn.shifts,
                "units_tested": int(len(top)), "family": U, "correction": cfg.correction, "alpha": cfg.alpha,
                "p": "max(permutation p with +1 correction, normal tail of Fisher z over the shifts)",
                "smallest_p": 1.0 / (1 + sn.shifts), "smallest_adjusted_p": min(1.0, U / (1 + sn.shifts))}
    if meta["computed"] and meta["smallest_adjusted_p"] > cfg.alpha:
        notes.append(f"with {meta['shifts']:,} shifts the smallest p is 1/{meta['shifts'] + 1:,}, so no unit can "
                     f"pass {cfg.correction} over {U:,} units at alpha={cfg.alpha}: use a longer text (or a larger "
                     f"sample_chars / sample_mb)")
    return out, meta, notes


def _values(sample: np.ndarray, squash: np.ndarray, tops: dict[str, np.ndarray]):
    """(feature, values [units, Ns] of its units, tanh(c) for cell states) for each feature in tops.

    A unit's values lie one row of the char-major sample apart, so gathering a few dozen units
    reads nearly the whole sample; they are gathered for several features at once, at most
    GATHER_UNITS units (GATHER_UNITS x Ns float32) at a time.
    """
    names = list(tops)
    per = max(1, GATHER_UNITS // max(1, max((len(t) for t in tops.values()), default=1)))
    for g in range(0, len(names), per):
        group = names[g:g + per]
        units = np.unique(np.concatenate([tops[n] for n in group]))
        rows = torch.from_numpy(sample.T).index_select(1, torch.from_numpy(units)).T.contiguous().numpy()
        shown(rows.T, squash[units], inplace=True)                   # rows.T: units on the last axis
        where = np.full(len(squash), -1)
        where[units] = np.arange(len(units))
        for n in group:
            yield n, rows[where[tops[n]]]
