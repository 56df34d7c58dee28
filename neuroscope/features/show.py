"""Looking at labels: a one-line summary of each, and the text with marks under it.

    >>> print(render('a "b"', {"q": label('a "b"', "in_quote")}))
     0 a "b"
     q   ^^
"""
from __future__ import annotations

import re
import unicodedata

import numpy as np

from .registry import kind_of


def summarize(values: np.ndarray) -> dict:
    """{"kind", "nonzero", "mean", "max"} of one label array, plain Python numbers.

    kind is kind_of's, except that float labels (a label file of non-integers) say "float" rather
    than "count", so that the summary does not call 0.5 a count.
    """
    v = np.asarray(values)
    return {"kind": "float" if np.issubdtype(v.dtype, np.floating) else kind_of(v),
            "nonzero": int(np.count_nonzero(v)), "mean": float(v.mean()) if v.size else 0.0,
            "max": float(v.max()) if v.size else 0.0}


_SHOWN_AS = {"\n": "\u23ce", "\r": "\u240d", "\t": "\u2192"}
_MARK_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def _visible(ch: str) -> str:
    """One terminal column per character, so that marks line up under it."""
    if ch in _SHOWN_AS:
        return _SHOWN_AS[ch]
    if unicodedata.category(ch)[0] == "C" or unicodedata.combining(ch):
        return "\u00b7"
    if unicodedata.east_asian_width(ch) in "WF":
        return "?"
    return ch


def _mark(v) -> str:
    """Binary: ^ on 1; counts: 0-9 a-z for 0..35, + above, - below 0, blank on 0 for floats."""
    if v < 0:
        return "-"
    if v != int(v):
        return "~"
    return _MARK_DIGITS[int(v)] if v < len(_MARK_DIGITS) else "+"


def render(text: str, labels: dict[str, np.ndarray], offset: int = 0, width: int = 100) -> str:
    """text with one row of marks per feature under each printed line, to check labels by eye.

    Rows are cut at every "\\n" and every `width` characters; the left column gives the source
    position (offset + index) of the row's first character. Binary labels show `^` under each 1;
    counts show 0-9 a-z (0..35), `+` above, `-` below zero. Line ends, "\\r", tabs and characters
    that would break the alignment are shown as ⏎ ␍ → · ?.
    """
    gutter = max([len(str(offset + len(text)))] + [min(len(n), 18) for n in labels]) + 1
    binary = {n: kind_of(v) == "binary" for n, v in labels.items()}
    rows = []
    line_breaks = [m.end() for m in re.finditer("\n", text)]
    bounds, pos = [], 0
    for stop in line_breaks + [len(text)]:
        while stop - pos > width:
            bounds.append((pos, pos + width))
            pos += width
        if stop > pos:
            bounds.append((pos, stop))
        pos = stop
    for a, b in bounds:
        rows.append(f"{offset + a:>{gutter}} " + "".join(_visible(ch) for ch in text[a:b]))
        for name, v in labels.items():
            seg = v[a:b]
            marks = "".join("^" if x else " " for x in seg) if binary[name] else "".join(_mark(x) for x in seg)
            rows.append(f"{name[:18]:>{gutter}} {marks}".rstrip())
    return "\n".join(rows)

