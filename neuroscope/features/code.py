"""Code labellers: string literals, comments and if-conditions, for C-like and Python text.

    >>> label('x = "a" # c', "in_string", lang="python")   # uint8 [11]: 1 on "a (not the closing ")

All three are code-aware: they read the text's language (Scan.lang) and are 0 in prose.
"""
from __future__ import annotations

import re

import numpy as np

from .registry import builtin
from .scan import Scan, ranges_to_mask


@builtin("in_string", "binary", "inside a string or char literal in code (escapes honoured, not in comments)",
          code_aware=True)
def _in_string(sc: Scan) -> np.ndarray:
    """C: "..." and '...'; Python: also '''...''' and \"\"\"...\"\"\" (an r/b/u/f prefix is 0).
    From the last character of the opening quote(s) through the character before the last
    closing quote; a backslash escapes the next character, so \\" does not close. A one-line
    literal left open ends before its line's "\\n"; a triple-quoted one runs on. 0 in prose."""
    _, _, a, b, comment = sc.tokens
    return ranges_to_mask(sc.n, a[~comment], b[~comment])


@builtin("in_comment", "binary", "inside a code comment: /* */ and // (C) or # (Python)", code_aware=True)
def _in_comment(sc: Scan) -> np.ndarray:
    """C: from the `*` of `/*` through the `*` of `*/`, and from the second `/` of `//` through
    the character before the "\\n"; Python: from `#` through the character before the "\\n".
    Comment markers inside literals open nothing. 0 in prose."""
    _, _, a, b, comment = sc.tokens
    return ranges_to_mask(sc.n, a[comment], b[comment])


_C_IF = re.compile(r"if\s*\(")
_PY_IF = re.compile(r"if\b")


@builtin("in_if_condition", "binary", "inside the condition of an if: C `if (...)`, Python `if ...:`",
          code_aware=True)
def _in_if_condition(sc: Scan) -> np.ndarray:
    """C (`else if` too): from the `(` after `if` through the character before its matching `)`,
    nested parentheses included (parentheses in comments and literals do not count; `#if` is
    the preprocessor's, not a condition). Python `if`/`elif` statements (the keyword first on
    its line): from the `f` of the keyword through the character before the `:` that ends the
    header at the keyword's bracket depth (a `:=` does not end it). An unclosed condition runs to
    the end of the text. An `if` inside a comment or literal is none. 0 in prose."""
    text, n = sc.text, sc.n
    if sc.lang == "c":
        opens = [m.end() - 1 for m in _C_IF.finditer(text)
                 if m.start() == 0 or not (text[m.start() - 1].isalnum() or text[m.start() - 1] in "_#")]
        brackets, stops = ("(", ")"), None
    elif sc.lang == "python":
        opens = []
        for m in _PY_IF.finditer(text):
            s = m.start()
            head = text[text.rfind("\n", 0, s) + 1:s].lstrip(" \t")
            if head in ("", "el"):
                opens.append(s + 1)
        brackets = ("([{", ")]}")
        stops = sc.pos(":")
        stops = stops[(stops + 1 >= n) | (sc.codes[np.minimum(stops + 1, n - 1)] != ord("="))]
        stops = stops[~sc.in_token(stops)]
    else:
        return np.zeros(n, np.uint8)
    opens = np.array(opens, dtype=np.int64)
    opens = opens[~sc.in_token(opens)]
    depth_open = sc.depth_at(*brackets, opens)
    if stops is None:
        # C: the matching `)` is the first later bracket event whose depth falls below the `(`'s.
        stops, stop_depth = sc.depth_events(*brackets)
        want = depth_open - 1
    else:
        stop_depth = sc.depth_at(*brackets, stops)
        want = depth_open
    keys = stop_depth * (n + 1) + stops                # sorted by depth, then position
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    i = np.searchsorted(keys, want * (n + 1) + opens + 1)
    hit = i < keys.size
    hit[hit] = keys[i[hit]] // (n + 1) == want[hit]
    ends = np.full(opens.size, n, np.int64)
    ends[hit] = keys[i[hit]] % (n + 1)
    return ranges_to_mask(n, opens, ends)


