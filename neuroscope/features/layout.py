"""Layout labellers: bracket nesting, position in the line and indentation.

    >>> label("f(a[1])\n  x", "paren_depth")   # int32 [11]: 0 1 1 1 1 1 0 0 0 0 0
    >>> label("ab\ncd", "line_position")       # int32 [5]: 0 1 2 0 1

These read any text. The four bracket depths are code-aware (brackets inside comments and
literals do not count in code); in prose every bracket counts.
"""
from __future__ import annotations

import numpy as np

from .registry import builtin
from .scan import Scan


# ---------------------------------------------------------------- brackets

@builtin("bracket_depth", "count", "nesting depth of ( [ { together; code-aware", code_aware=True)
def _bracket_depth(sc: Scan) -> np.ndarray:
    """Opened minus closed brackets of all three kinds after reading each character (an opener
    counts on itself, a closer is already out), floored at 0: an unmatched closer is ignored.
    In code, brackets inside comments and literals do not count; in prose every one does."""
    return sc.depth("([{", ")]}")


@builtin("paren_depth", "count", "nesting depth of ( ); code-aware", code_aware=True)
def _paren_depth(sc: Scan) -> np.ndarray:
    """As bracket_depth, for ( ) only."""
    return sc.depth("(", ")")


@builtin("square_depth", "count", "nesting depth of [ ]; code-aware", code_aware=True)
def _square_depth(sc: Scan) -> np.ndarray:
    """As bracket_depth, for [ ] only."""
    return sc.depth("[", "]")


@builtin("brace_depth", "count", "nesting depth of { }; code-aware (braces in comments/literals ignored)",
          code_aware=True)
def _brace_depth(sc: Scan) -> np.ndarray:
    """As bracket_depth, for { } only: in C, the block nesting level."""
    return sc.depth("{", "}")


# ---------------------------------------------------------------- lines

@builtin("line_position", "count", "index of the character in its line: 0 after a \\n; the \\n gets its own index")
def _line_position(sc: Scan) -> np.ndarray:
    """k minus the index of its line's first character: a "\\n" gets the position it occupies
    (its line's length without it); in CRLF text the "\\r" is a character of the line."""
    starts, lengths, _ = sc.lines
    return np.arange(sc.n, dtype=np.int32) - np.repeat(starts.astype(np.int32), lengths)


@builtin("line_remaining", "count", "characters left until the next \\n: the \\n itself is 0")
def _line_remaining(sc: Scan) -> np.ndarray:
    """Index of the first "\\n" at or after k, minus k (the "\\r" of a CRLF is 1, the character
    before it 2). On a last line without "\\n", the distance to the end of the text."""
    _, lengths, ends = sc.lines
    return np.repeat(ends.astype(np.int32), lengths) - np.arange(sc.n, dtype=np.int32)


@builtin("indent_depth", "count", "width in columns of the line's leading spaces and tabs (tab stops every 8)")
def _indent_depth(sc: Scan) -> np.ndarray:
    """For every character of a line ("\\n" included): the column where the line's leading run
    of spaces and tabs ends, a tab advancing to the next multiple of 8 (the kernel's style, and
    Python's tokenizer): "\\t\\t  x" -> 18, "    x" -> 4. A line of only blanks gets their width."""
    starts, lengths, _ = sc.lines
    if sc.n == 0:
        return np.zeros(0, np.int32)
    c = sc.codes
    width = np.zeros(starts.size, np.int64)
    ind = np.flatnonzero((c[starts] == 32) | (c[starts] == 9))   # indented lines
    if ind.size:
        solid = np.append(np.flatnonzero((c != 32) & (c != 9)), sc.n)   # a non-blank ends the run
        a = starts[ind]
        b = solid[np.searchsorted(solid, a)]
        tabs_at = sc.pos("\t")
        t0, t1 = np.searchsorted(tabs_at, a), np.searchsorted(tabs_at, b)
        tabs = t1 - t0
        width[ind] = 8 * tabs + (b - a - tabs)
        # 8 * tabs + spaces is exact when every tab comes before every space (kernel style);
        # the rare runs with a space before a tab ("  \t") are expanded by Python.
        spaces_at = np.append(sc.pos(" "), sc.n)                  # sentinels keep indexing safe
        first_space = spaces_at[np.searchsorted(spaces_at, a)]
        last_tab = np.append(tabs_at, -1)[np.where(tabs > 0, t1 - 1, -1)]
        for j in np.flatnonzero((tabs > 0) & (first_space < last_tab)):
            width[ind[j]] = len(sc.text[a[j]:b[j]].expandtabs(8))
    return np.repeat(width.astype(np.int32), lengths)

