"""The shared scan of one text: the positions where labels change, each found once, on use.

    >>> sc = Scan('f(x) /* ( */', lang="c")
    >>> sc.depth("(", ")")                  # int32 [12]: the ( inside the comment does not count
    >>> sc.tokens                           # comments and literals: where they start and end

Labels change only where something happens (a quote, a bracket, a line end). The helpers here work
on those positions and expand them to one value per character with np.repeat, so labelling is
numpy over a few positions plus compiled-regex scans, never per-character Python.
"""
from __future__ import annotations

import re
from functools import cached_property
from typing import Callable

import numpy as np

from ..errors import UserError

LANGS = ("auto", "c", "python", "prose")

# ---------------------------------------------------------------- language sniffing

_C_SIGNS = (") {", ");", "*/", "#include", "#define", "} else")
# Not `->` (Python annotations) nor `'''` (wiki bold) nor `:\n` (speaker lines in plays).
_PY_SIGNS = ("):", "def ", "self.", "import ", "elif ", "None", '"""')


def sniff_language(text: str, sample: int = 200_000) -> str:
    """"c", "python" or "prose": typical tokens counted in the first `sample` characters, per
    line (a line counted per 40 characters, so that long wiki lines do not inflate the rate).
    Measured: linux.txt 0.30 C signs per line, Python stdlib modules 0.1-0.4 Python signs, War
    and Peace, enwiki.xml and Shakespeare at most 0.003 of either; the threshold is 0.05. Random
    5,000-character windows: linux.txt 99.4% "c", the three prose corpora 99.9-100% "prose".
    Data-only Python files (tables of constants) read as prose: pass lang="python" for them.
    """
    t = text[:sample]
    lines = max(t.count("\n") + 1, len(t) / 40)
    c = sum(t.count(s) for s in _C_SIGNS) / lines
    py = sum(t.count(s) for s in _PY_SIGNS) / lines
    if max(c, py) < 0.05:
        return "prose"
    return "c" if c >= py else "python"


# ---------------------------------------------------------------- sparse-event helpers

def fill(n: int, pos: np.ndarray, values: np.ndarray, dtype) -> np.ndarray:
    """[n] of dtype: at each k, values[i] of the last event pos[i] <= k (0 before the first).
    pos: sorted, distinct positions in [0, n)."""
    counts = np.diff(np.concatenate(([0], np.asarray(pos, np.int64), [n])))
    return np.repeat(np.concatenate(([0], values)).astype(dtype), counts)


def reflected_depth(steps: np.ndarray, resets: np.ndarray | None = None) -> np.ndarray:
    """Running sum of +1/-1 steps floored at 0 (a close with nothing open is ignored), int64;
    where `resets` is True the depth restarts from 0.

    d_k = max(d_{k-1} + s_k, 0) has the closed form S_k - min(0, min_{j<=k} S_j), S = cumsum(s),
    taken here per stretch between resets.
    """
    s = np.cumsum(steps, dtype=np.int64)
    if s.size == 0:
        return s
    if resets is None or not resets.any():
        return s - np.minimum(np.minimum.accumulate(s), 0)
    seg = np.cumsum(resets)                                  # stretch index; a reset opens one
    at_reset = np.concatenate(([0], s[resets]))
    s = s - at_reset[seg]                                    # sum since the last reset (0 on it)
    # Shift each later stretch below every earlier one, so that one running minimum restarts.
    big = 2 * int(np.abs(s).max()) + 1
    low = np.minimum.accumulate(s - seg * big) + seg * big
    return s - np.minimum(low, 0)


def ranges_to_mask(n: int, starts, ends) -> np.ndarray:
    """uint8 [n]: 1 on the union of the ranges [starts[i], ends[i])."""
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    keep = ends > starts
    pos = np.concatenate((starts[keep], ends[keep]))
    delta = np.concatenate((np.ones(keep.sum(), np.int64), -np.ones(keep.sum(), np.int64)))
    order = np.argsort(pos, kind="stable")
    pos, cover = pos[order], np.cumsum(delta[order])
    last = np.flatnonzero(np.diff(np.append(pos, -1)) != 0)     # last entry of each position
    pos, cover = pos[last], cover[last]
    inside = pos < n
    return fill(n, pos[inside], cover[inside] > 0, np.uint8)


def inside(ranges: np.ndarray, q: np.ndarray) -> np.ndarray:
    """bool per position q: inside one of the sorted, disjoint [start, end) rows of ranges."""
    i = np.searchsorted(ranges[:, 0], q, side="right") - 1
    return (i >= 0) & (q < ranges[np.maximum(i, 0), 1]) if len(ranges) else np.zeros(len(q), bool)


def pairs(pos: np.ndarray) -> np.ndarray:
    """Positions of the second character of each doubled bracket (`[[`, `]]`, `{{`, `}}`),
    given the sorted positions of that bracket; runs pair left to right as a regex scan would
    (`[[[` holds one pair, at offsets 0-1, and a lone `[`)."""
    if pos.size == 0:
        return pos
    k = np.arange(pos.size)
    run_first = np.maximum.accumulate(np.where(np.concatenate(([True], np.diff(pos) != 1)), k, 0))
    return pos[(k - run_first) % 2 == 1]


# ---------------------------------------------------------------- the shared scan

# One left-to-right scan per language: comments and literals consume each other's delimiters
# (a `"` inside a comment opens nothing), so they are one alternation. A literal ends at its
# closing quote, at an unescaped line end (C, and Python's one-line literals) or at the end of
# the text; `\\[\s\S]` honours escapes, backslash-newline continuations included. No named
# groups: they would turn off the regex engine's fast search for the first character.
_TOKENS = {
    "c": re.compile(r"""//[^\n]*|/\*[\s\S]*?(?:\*/|\Z)"""
                    r"""|"(?:\\[\s\S]|[^"\\\n])*(?:"|(?=\n)|\\?\Z)"""
                    r"""|'(?:\\[\s\S]|[^'\\\n])*(?:'|(?=\n)|\\?\Z)"""),
    "python": re.compile(r"""\#[^\n]*"""
                         r"""|\"\"\"(?:[^"\\]|\\[\s\S]|"(?!""))*(?:\"\"\"|\\?\Z)"""
                         r"""|'''(?:[^'\\]|\\[\s\S]|'(?!''))*(?:'''|\\?\Z)"""
                         r"""|"(?:\\[\s\S]|[^"\\\n])*(?:"|(?=\n)|\\?\Z)"""
                         r"""|'(?:\\[\s\S]|[^'\\\n])*(?:'|(?=\n)|\\?\Z)"""),
}


def _token_delims(text: str, s: int, lang: str) -> tuple[int, str | None, bool]:
    """(opening delimiter length, closing delimiter or None for a line-end close, is_comment)
    of the token matched at s."""
    head = text[s]
    if head == "/":
        return (2, None, True) if text[s + 1] == "/" else (2, "*/", True)
    if head == "#":
        return 1, None, True
    if lang == "python" and text.startswith(head * 3, s):
        return 3, head * 3, False
    return 1, head, False


def _is_closed(text: str, s: int, e: int, open_len: int, close: str | None, comment: bool = False) -> bool:
    r"""Whether the token text[s:e] ends with its closing delimiter (for a string, not an escaped
    quote; a backslash escapes nothing in a comment: /*\*/ is closed)."""
    if close is None or e - s < open_len + len(close) or not text.startswith(close, e - len(close)):
        return False
    if comment:
        return True
    j = k = e - len(close)
    while k > s + open_len and text[k - 1] == "\\":
        k -= 1
    return (j - k) % 2 == 0


class Scan:
    """One text's positions of interest, shared by all labellers, each computed once, on use."""

    def __init__(self, text: str, lang: str = "auto"):
        if not isinstance(text, str):
            raise UserError(f"text must be a str, got {type(text).__name__}", param="text")
        if lang not in LANGS:
            raise UserError(f"lang must be one of {', '.join(LANGS)}, got {lang!r}", param="lang")
        self.text = text
        self.n = len(text)
        self._lang = lang
        self._pos: dict[str, np.ndarray] = {}
        self._depths: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    @cached_property
    def lang(self) -> str:
        return sniff_language(self.text) if self._lang == "auto" else self._lang

    @cached_property
    def codes(self) -> np.ndarray:
        """Code points, uint32 [n]."""
        # surrogatepass: a lone surrogate (a Python str may hold one; UTF-8 files cannot) is read as its
        # code point instead of failing the whole labelling.
        return np.frombuffer(self.text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)

    def pos(self, ch: str) -> np.ndarray:
        """Sorted positions of one character, int64."""
        if ch not in self._pos:
            self._pos[ch] = np.flatnonzero(self.codes == ord(ch))
        return self._pos[ch]

    def where_char(self, pred: Callable[[str], bool]) -> np.ndarray:
        """uint8 [n]: pred(c) for each character, pred evaluated once per distinct code point."""
        present = np.flatnonzero(self._code_counts)
        lut = np.zeros(self._code_counts.size, np.uint8)
        lut[present] = [bool(pred(chr(cp))) for cp in present]
        return np.take(lut, self.codes)

    @cached_property
    def _code_counts(self) -> np.ndarray:
        return np.bincount(self.codes, minlength=1)

    @cached_property
    def lines(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(start, length, end) per line: first index, characters including its "\\n", index of
        its "\\n" (n for a last line without one)."""
        nl = self.pos("\n")
        starts = np.concatenate(([0], nl + 1))
        starts = starts[starts < self.n]
        lengths = np.diff(np.append(starts, self.n))
        ends = np.append(nl, self.n)[:starts.size]
        return starts, lengths, ends

    @cached_property
    def tokens(self) -> tuple[np.ndarray, ...]:
        """Comments and literals of code (empty for prose), sorted, as int64 arrays:
        (start, end) of each whole token, (label_start, label_end) by the alignment rule, and
        is_comment (bool)."""
        rx = _TOKENS.get(self.lang)
        rows = []
        if rx is not None:
            text, lang = self.text, self.lang
            for m in rx.finditer(text):
                s, e = m.span()
                open_len, close, comment = _token_delims(text, s, lang)
                closed = _is_closed(text, s, e, open_len, close, comment)
                rows.append((s, e, s + open_len - 1, e - 1 if closed else e, comment))
        arr = np.array(rows, dtype=np.int64).reshape(-1, 5)
        return arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4].astype(bool)

    def in_token(self, q: np.ndarray) -> np.ndarray:
        """bool per position: inside a comment or literal (its delimiters included)."""
        return inside(np.stack(self.tokens[:2], axis=1), q)

    def depth_events(self, opens: str, closes: str) -> tuple[np.ndarray, np.ndarray]:
        """(positions, depth after each) of the brackets that count (code-aware: none inside a
        comment or literal); the depth is floored at 0."""
        key = (opens, closes)
        if key not in self._depths:
            parts = [self.pos(ch) for ch in opens] + [self.pos(ch) for ch in closes]
            pos = np.concatenate(parts)
            steps = np.concatenate([np.full(p.size, 1 if i < len(opens) else -1, np.int64)
                                    for i, p in enumerate(parts)])
            order = np.argsort(pos, kind="stable")
            pos, steps = pos[order], steps[order]
            keep = ~self.in_token(pos)
            pos, steps = pos[keep], steps[keep]
            self._depths[key] = pos, reflected_depth(steps)
        return self._depths[key]

    def depth(self, opens: str, closes: str) -> np.ndarray:
        """int32 [n]: nesting depth after reading each character, never negative."""
        return fill(self.n, *self.depth_events(opens, closes), np.int32)

    def depth_at(self, opens: str, closes: str, q: np.ndarray) -> np.ndarray:
        """Depth after reading each position in q."""
        pos, depth = self.depth_events(opens, closes)
        i = np.searchsorted(pos, q, side="right") - 1
        return np.where(i >= 0, depth[np.maximum(i, 0)] if depth.size else 0, 0)

