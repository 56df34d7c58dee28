"""Where a unit fires, as plain text: its top contexts, contexts across its range, random contexts.

    >>> unit_contexts(text, v, offset=span.start)      # DataFrame, one row per context
    >>> top_contexts(text, v, n=3)                     # ['...before[c]after', ...]

An explanation judged on the extremes alone flatters a unit, so beside the top activations come
contexts drawn at several quantiles of the unit's values and contexts drawn at random.
Row k of v is the unit after reading text[k]; a context marks that character as [c], and shows
line ends as ⏎ and control characters escaped (features.one_line), so each context is one line
that is safe to print.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..features import one_line      # the one rule: \r dropped, \n as ⏎, control characters escaped

WIDTH = (40, 10)                 # characters shown before and after the marked one
GAP = 20                         # top contexts at least this far apart, so one long run is one context
QUANTILES = (0.1, 0.5, 0.9)      # the unit's value levels sampled beside its top
COLUMNS = ["kind", "quantile", "position", "value", "before", "char", "after", "context"]


def context_string(text: str, p: int, width: tuple[int, int] = WIDTH) -> str:
    """'before[c]after' around text[p], on one line."""
    a, b = width
    return f"{one_line(text[max(0, p - a):p])}[{one_line(text[p])}]{one_line(text[p + 1:p + 1 + b])}"


def top_positions(v: np.ndarray, n: int, gap: int = GAP) -> list[int]:
    """The n positions of largest value, at least `gap` apart (in order of value)."""
    out: list[int] = []
    for p in np.argsort(-v, kind="stable"):
        if all(abs(int(p) - t) >= gap for t in out):
            out.append(int(p))
            if len(out) == n:
                break
    return out


def top_contexts(text: str, v: np.ndarray, n: int = 3, gap: int = GAP) -> list[str]:
    """The n positions of largest value, at least `gap` apart, as 'before[char]after' strings."""
    return [context_string(text, p) for p in top_positions(v, n, gap)]


def unit_contexts(text: str, v: np.ndarray, offset: int = 0, sign: int = 1, n_top: int = 5,
                  quantiles: tuple[float, ...] = QUANTILES, per_quantile: int = 2, n_random: int = 5,
                  seed: int = 0, width: tuple[int, int] = WIDTH) -> pd.DataFrame:
    """Contexts of one unit over text (v: float [len(text)], the unit's value after each character).

    Rows: n_top "top" contexts (largest sign * v), per_quantile "quantile" contexts at each of
    `quantiles` of v (characters whose value ranks within 1% of the text around that quantile) and
    n_random "random" ones. Columns: kind, quantile (NaN but for kind "quantile"), position (in
    the source: text[0] is `offset`), value, before, char, after (the raw characters) and context
    (one line, 'before[c]after').
    """
    v = np.asarray(v, dtype=np.float64)
    rng = np.random.default_rng(seed)
    N = len(v)
    rows = [("top", np.nan, p) for p in top_positions(sign * v, n_top)]
    order = np.argsort(v, kind="stable")
    band = max(1, N // 100)
    for q in quantiles:
        mid = int(q * (N - 1))
        pool = order[max(0, mid - band):min(N, mid + band + 1)]
        rows += [("quantile", q, int(p)) for p in np.sort(rng.choice(pool, min(per_quantile, len(pool)), replace=False))]
    rows += [("random", np.nan, int(p)) for p in np.sort(rng.choice(N, min(n_random, N), replace=False))]
    a, b = width
    return pd.DataFrame([{"kind": kind, "quantile": q, "position": offset + p, "value": float(v[p]),
                          "before": text[max(0, p - a):p], "char": text[p], "after": text[p + 1:p + 1 + b],
                          "context": context_string(text, p, width)} for kind, q, p in rows], columns=COLUMNS)
