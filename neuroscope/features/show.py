r"""Looking at labels: a one-line summary of each, and the text with marks under it; and the one
rule for printing untrusted text on a terminal (unsafe, printable, one_line), which the marks use too.

    >>> print(render('a "b"', {"q": label('a "b"', "in_quote")}))
     0 a "b"
     q   ^^
    >>> print(printable("\x1b]0;pwned\x07x.pt"))   # every command prints untrusted strings so
    \x1b]0;pwned\x07x.pt
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

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
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_SUSPECT = re.compile(r"[^ -~]")        # all but printable ASCII: the only characters unsafe() need look at


def unsafe(ch: str) -> bool:
    """The one rule for what a terminal must not receive as it is: a control character (ESC starts
    sequences that retitle or clear a terminal; \\r and \\n can forge a line such as `Error: ...`),
    a format character (bidi overrides reorder what is shown), a surrogate (a byte of a command-line
    argument that was not UTF-8), a private-use or an unassigned code point: Unicode category C."""
    return unicodedata.category(ch)[0] == "C"


def escaped(ch: str) -> str:
    """An unsafe character written as Python writes it in a string literal (\\n, \\x1b, \\u202e,
    \\U000e0001); a byte that was not UTF-8 (surrogateescape's U+DC80..U+DCFF) as that byte, \\xff."""
    o = ord(ch)
    if ch in _NAMED:
        return _NAMED[ch]
    if 0xDC80 <= o <= 0xDCFF:
        return f"\\x{o - 0xDC00:02x}"
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"


def printable(text: str, keep: str = "", escape: Callable[[str], str] = escaped) -> str:
    """text safe to print on a terminal: every unsafe character (see unsafe) but those in `keep`
    replaced by escape(ch) (default: escaped, the Python spelling; the CLI's JSON passes its own).

    Untrusted strings (a checkpoint's metadata, a sample, a file name, a user's argument) go through
    it before they are printed; keep="\\n" for a multi-line text of which each line is the text's own.
    """
    return _SUSPECT.sub(lambda m: escape(m[0]) if m[0] not in keep and unsafe(m[0]) else m[0], text)


def one_line(text: str) -> str:
    """text on one line, safe to print: carriage returns dropped, line ends shown as \u23ce, every other
    unsafe character escaped (printable)."""
    return printable(text.replace("\r", ""), keep="\n").replace("\n", _SHOWN_AS["\n"])


def _visible(ch: str) -> str:
    """One terminal column per character, so that marks line up under it."""
    if ch in _SHOWN_AS:
        return _SHOWN_AS[ch]
    if unsafe(ch) or unicodedata.combining(ch):
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

