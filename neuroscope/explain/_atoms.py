"""The label vocabulary as boolean atoms: what an explanation of a unit may be built from.

    >>> a = atoms(text)                     # {name: bool [len(text)]}, only atoms that vary on text
    >>> list(a)[:3]                         # on a slice of War and Peace
    ['in_quote', 'bracket_depth>=1', 'line_position>=1']
    >>> a["prev:is_space"]                  # the class of the character before each one

Three kinds of atom, all labelled by features.registry (nothing is re-labelled here):
- every built-in binary feature and char-class baseline, as it is (`in_quote`, `is_space`);
- every built-in count feature cut at a few thresholds, `name>=k` (`bracket_depth>=2`): the small
  depths 1, 2, 3, plus the 25/50/75/90% quantiles of the feature's positive values on the text,
  rounded to a readable number (line_position gets 16, 30, 50, 60 on War and Peace);
- the char classes of the previous and the next character (`prev:is_space`, `next:is_upper`):
  row k is the state after reading character k, so `next:` is what the model is about to predict.
Atoms constant on the text say nothing and are dropped; an atom equal on every character to an
earlier one (`is_bracket` and a cut that marks the same characters) is dropped in its favour.
"""
from __future__ import annotations

import numpy as np

from ..features import baseline_names, builtin_names, kind_of, resolve

FIXED_CUTS = (1, 2, 3)                     # depths: "inside one / two / three levels"
CUT_QUANTILES = (0.25, 0.5, 0.75, 0.9)     # of a count's positive values, for the long scales


def nice(x: float) -> int:
    """A readable cut near x: integers below 20, multiples of 10 below 200, of 50 above."""
    step = 1 if x < 20 else 10 if x < 200 else 50
    return max(1, int(round(x / step)) * step)


def cut_points(values: np.ndarray) -> list[int]:
    """The thresholds k of the atoms `count>=k`: FIXED_CUTS plus nice quantiles of the positive values."""
    pos = values[values > 0]
    cuts = set(FIXED_CUTS)
    if pos.size:
        cuts |= {nice(q) for q in np.quantile(pos, CUT_QUANTILES)}
    return sorted(cuts)


def atoms(text: str, lang: str = "auto") -> dict[str, np.ndarray]:
    """Every atom that varies on text: {name: bool [len(text)]}, in a fixed order (features, then
    count cuts in feature order, then baselines, prev:, next:). lang as features.resolve."""
    labels = resolve(text, names=builtin_names() + baseline_names(), lang=lang)
    out: dict[str, np.ndarray] = {}
    for name in builtin_names():
        v = labels[name]
        if kind_of(v) == "binary":
            out[name] = v.astype(bool)
        else:
            for k in cut_points(v):
                out[f"{name}>={k}"] = v >= k
    for name in baseline_names():
        out[name] = labels[name].astype(bool)
    for name in baseline_names():
        c = labels[name].astype(bool)
        out[f"prev:{name}"] = np.concatenate([[False], c[:-1]])
        out[f"next:{name}"] = np.concatenate([c[1:], [False]])
    return _distinct(out)


def _distinct(candidates: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Drop atoms constant on the text and atoms equal to an earlier one."""
    out: dict[str, np.ndarray] = {}
    seen: set[bytes] = set()
    for name, v in candidates.items():
        n_on = int(v.sum())
        key = np.packbits(v).tobytes()
        if 0 < n_on < len(v) and key not in seen:
            seen.add(key)
            out[name] = v
    return out


def signatures(atom_matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group characters by their row of atoms: (groups int64 [N], table bool [G, A]).

    Every formula over atoms is constant within a group, so counting per group (G is a few thousand
    on 300k characters, against N) is all a search over formulas needs. atom_matrix: bool [N, A].
    """
    packed = np.ascontiguousarray(np.packbits(atom_matrix, axis=1))                 # [N, ceil(A/8)]
    keys = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()
    _, first, groups = np.unique(keys, return_index=True, return_inverse=True)
    return groups.ravel().astype(np.int64), atom_matrix[first]
