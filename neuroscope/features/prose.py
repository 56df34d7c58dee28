"""Prose labellers: quotations.

    >>> label('say "hi" now', "in_quote")      # uint8 [12]: 0 0 0 0 1 1 1 0 0 0 0 0
"""
from __future__ import annotations

import re

import numpy as np

from .registry import builtin
from .scan import Scan, fill


_BLANK_LINE = re.compile(r"\n[ \t\r\x0b\x0c]*(?=\n)")
_FIRST_BLANK_LINE = re.compile(r"[ \t\r\x0b\x0c]*\n")


@builtin("in_quote", "binary",
          'inside double quotes: "..." (also &quot;...&quot;) and “...”; reset at a blank line')
def _in_quote(sc: Scan) -> np.ndarray:
    """From an opening quote through the character before its closing quote.

    Straight quotes `"` alternate open/close, and so does the XML entity `&quot;` (it toggles at
    its `;`, so `&quot` of a closing entity is still inside); typographic “ opens and ” closes; the
    straight and typographic states are kept apart and OR-ed. A paragraph break (the "\\n" ending
    a line that holds only spaces, tabs or "\\r") closes any open quote: a quotation running over
    several paragraphs reopens with the `"` that starts each of them, as in War and Peace.
    """
    text, n = sc.text, sc.n
    semis = sc.pos(";")
    semis = semis[semis >= 5]
    for back, ch in enumerate("touq&", start=1):      # `&quot;` read backwards from its `;`
        semis = semis[sc.codes[semis - back] == ord(ch)]
    breaks = [m.end() for m in _BLANK_LINE.finditer(text)]
    first = _FIRST_BLANK_LINE.match(text)
    if first:
        breaks.insert(0, first.end() - 1)
    parts = (sc.pos('"'), semis, np.array(breaks, np.int64), sc.pos("\u201c"), sc.pos("\u201d"))
    pos = np.concatenate(parts)
    kind = np.concatenate([np.full(p.size, i, np.int8) for i, p in enumerate(parts)])  # 0,1 toggle 2 break 3 open 4 close
    order = np.argsort(pos, kind="stable")
    pos, kind = pos[order], kind[order]
    k = np.arange(pos.size)
    toggles = np.cumsum(kind <= 1)
    last_break = np.maximum.accumulate(np.where(kind == 2, k, -1)) if k.size else k
    straight = (toggles - np.where(last_break >= 0, toggles[np.maximum(last_break, 0)], 0)) % 2 == 1
    last_typo = np.maximum.accumulate(np.where(kind >= 2, k, -1)) if k.size else k
    typo = (last_typo >= 0) & (kind[np.maximum(last_typo, 0)] == 3)
    return fill(n, pos, straight | typo, np.uint8)

