"""Per-character labels of real text: what a neuron might be tracking.

    >>> label('say "hi" (x)', "in_quote")                 # uint8 [12], one label per character
    array([0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0], dtype=uint8)
    >>> label("a(b(c)))", "paren_depth")                   # int32 [8], never negative
    array([0, 1, 1, 2, 2, 1, 0, 0], dtype=int32)
    >>> feats = resolve(text, names=["in_quote"], regexes=["digits=[0-9]+"])   # {name: array}

Alignment rule, the same for every delimited construct (quotes, literals, comments, [[links]],
{{templates}}, brackets, if-conditions): label[k] says whether the construct is open *after
reading text[k]*, which is how recorded states are aligned (row k = state after reading
character k). So an opening delimiter is on from its last character, and a closing delimiter is
on up to, not including, its last character: `"hi"` -> 1 1 1 0; `[[a]]` -> 0 1 1 1 0;
`/*x*/` -> 0 1 1 1 0; `(a)` -> depth 1 1 0. Spans without delimiters (URLs, --feature-regex
matches, --feature-span ranges) are 1 on exactly their characters. Labels start fresh at the
first character of the text they are given (outside every construct). Only "\\n" ends a line;
the "\\r" of a CRLF is the last character of its line.

Code-aware features (in_string, in_comment, in_if_condition and the four *_depth) depend on the
text's language: "c" (C-like: // and /* */ comments, "..." and '...' literals), "python"
(# comments; '...', "...", '''...''' and \"\"\"...\"\"\" literals with any r/b/u/f prefix) or
"prose" (no code: literals, comments and if-conditions are all 0, every bracket counts).
`lang="auto"` sniffs it (sniff_language). Labelling is numpy over the positions where something
happens (quotes, brackets, line ends) plus compiled-regex scans; no per-character Python.

This module imports nothing of neuroscope's but its error type.
"""
from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Iterable, Sequence

import numpy as np

from .errors import UserError

LANGS = ("auto", "c", "python", "prose")
KINDS = ("binary", "count")
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")


@dataclass(frozen=True)
class Feature:
    """A named per-character labeller. fn(text) -> array [len(text)] (binary: 0/1, count: int)."""

    name: str
    kind: str                      # "binary" (uint8 0/1) or "count" (int32)
    description: str               # one line
    fn: Callable[[str], np.ndarray]
    baseline: bool = False         # a cheap char-class baseline every ranking is compared with
    code_aware: bool = False       # depends on the language (see the module docstring)


FEATURES: dict[str, Feature] = {}
_BUILTIN: dict[str, Callable[["_Scan"], np.ndarray]] = {}   # built-in name -> labeller of a shared scan


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
# Labels change only where something happens (a quote, a bracket, a line end). Work on those
# positions, then expand to one value per character with np.repeat.

def _fill(n: int, pos: np.ndarray, values: np.ndarray, dtype) -> np.ndarray:
    """[n] of dtype: at each k, values[i] of the last event pos[i] <= k (0 before the first).
    pos: sorted, distinct positions in [0, n)."""
    counts = np.diff(np.concatenate(([0], np.asarray(pos, np.int64), [n])))
    return np.repeat(np.concatenate(([0], values)).astype(dtype), counts)


def _reflected_depth(steps: np.ndarray, resets: np.ndarray | None = None) -> np.ndarray:
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


def _ranges_to_mask(n: int, starts, ends) -> np.ndarray:
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
    return _fill(n, pos[inside], cover[inside] > 0, np.uint8)


def _inside(ranges: np.ndarray, q: np.ndarray) -> np.ndarray:
    """bool per position q: inside one of the sorted, disjoint [start, end) rows of ranges."""
    i = np.searchsorted(ranges[:, 0], q, side="right") - 1
    return (i >= 0) & (q < ranges[np.maximum(i, 0), 1]) if len(ranges) else np.zeros(len(q), bool)


def _pairs(pos: np.ndarray) -> np.ndarray:
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


def _is_closed(text: str, s: int, e: int, open_len: int, close: str | None) -> bool:
    """Whether the token text[s:e] ends with its closing delimiter (not an escaped quote)."""
    if close is None or e - s < open_len + len(close) or not text.startswith(close, e - len(close)):
        return False
    j = k = e - len(close)
    while k > s + open_len and text[k - 1] == "\\":
        k -= 1
    return (j - k) % 2 == 0


class _Scan:
    """One text's positions of interest, shared by all labellers, each computed once, on use."""

    def __init__(self, text: str, lang: str = "auto"):
        if not isinstance(text, str):
            raise UserError(f"features label text (str), got {type(text).__name__}")
        if lang not in LANGS:
            raise UserError(f"unknown language {lang!r}; choose one of {', '.join(LANGS)}")
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
        return np.frombuffer(self.text.encode("utf-32-le"), dtype=np.uint32)

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
                closed = _is_closed(text, s, e, open_len, close)
                rows.append((s, e, s + open_len - 1, e - 1 if closed else e, comment))
        arr = np.array(rows, dtype=np.int64).reshape(-1, 5)
        return arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4].astype(bool)

    def in_token(self, q: np.ndarray) -> np.ndarray:
        """bool per position: inside a comment or literal (its delimiters included)."""
        return _inside(np.stack(self.tokens[:2], axis=1), q)

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
            self._depths[key] = pos, _reflected_depth(steps)
        return self._depths[key]

    def depth(self, opens: str, closes: str) -> np.ndarray:
        """int32 [n]: nesting depth after reading each character, never negative."""
        return _fill(self.n, *self.depth_events(opens, closes), np.int32)

    def depth_at(self, opens: str, closes: str, q: np.ndarray) -> np.ndarray:
        """Depth after reading each position in q."""
        pos, depth = self.depth_events(opens, closes)
        i = np.searchsorted(pos, q, side="right") - 1
        return np.where(i >= 0, depth[np.maximum(i, 0)] if depth.size else 0, 0)


# ---------------------------------------------------------------- registry

def _builtin(name: str, kind: str, description: str, baseline: bool = False, code_aware: bool = False):
    """Register a labeller of a _Scan as a built-in feature."""
    def deco(impl: Callable[[_Scan], np.ndarray]):
        _BUILTIN[name] = impl
        FEATURES[name] = Feature(name, kind, description,
                                 lambda text, _impl=impl: _finish(_impl(_Scan(text)), kind),
                                 baseline, code_aware)
        return impl
    return deco


def _finish(values, kind: str) -> np.ndarray:
    return np.asarray(values, dtype=np.uint8 if kind == "binary" else np.int32)


def register(name: str, fn: Callable[[str], Sequence], kind: str = "binary", description: str = "",
             replace: bool = False) -> Feature:
    """Add a user feature: fn(text: str) -> array-like [len(text)] (binary: 0/1; count: integers).

    The result is checked on every call (length, values) and returned as uint8 (binary) or
    int32 (count). Built-in names cannot be replaced; a user name can, with replace=True.
    """
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise UserError(f"feature name {name!r} must start with a letter or _ and hold only "
                        "letters, digits, _ . -")
    if kind not in KINDS:
        raise UserError(f"feature kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not callable(fn):
        raise UserError(f"feature {name!r}: fn must be callable")
    if name in _BUILTIN:
        raise UserError(f"{name!r} is a built-in feature; pick another name")
    if name in FEATURES and not replace:
        raise UserError(f"feature {name!r} is already registered (pass replace=True)")

    def checked(text: str) -> np.ndarray:
        return _check_labels(fn(text), len(text), kind, f"feature {name!r}")

    doc = description or (fn.__doc__ or "").strip().split("\n")[0] or "user feature"
    FEATURES[name] = feat = Feature(name, kind, doc, checked)
    return feat


def _check_labels(values, n: int, kind: str | None, what: str) -> np.ndarray:
    """Validate labels: shape [n], finite numbers; binary -> uint8 0/1, count -> int32.
    kind None infers it: only 0/1 -> binary, other integers -> count, other numbers -> float32."""
    try:
        arr = np.asarray(values)
    except Exception as exc:  # noqa: BLE001 - anything that is not an array is the user's input
        raise UserError(f"{what}: labels are not an array ({exc})") from None
    if arr.ndim != 1 or arr.shape[0] != n:
        raise UserError(f"{what}: expected one label per character, shape ({n},); got shape {arr.shape}")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise UserError(f"{what}: labels must be numbers, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise UserError(f"{what}: labels hold NaN or infinite values")
    integral = np.issubdtype(arr.dtype, np.integer) or bool(np.all(arr == np.round(arr)))
    is01 = integral and bool(np.all((arr == 0) | (arr == 1)))
    if kind == "binary" and not is01:
        raise UserError(f"{what}: a binary feature must give only 0 and 1")
    if kind == "count" and not integral:
        raise UserError(f"{what}: a count feature must give integers")
    if kind == "binary" or (kind is None and is01):
        return arr.astype(np.uint8)
    if integral:
        if arr.size and (arr.max() > np.iinfo(np.int32).max or arr.min() < np.iinfo(np.int32).min):
            raise UserError(f"{what}: counts do not fit in int32")
        return arr.astype(np.int32)
    return arr.astype(np.float32)


def kind_of(values: np.ndarray) -> str:
    """The one binary-or-count rule: "binary" for labels made as binary (bool, or uint8 holding only
    0 and 1), "count" otherwise. The kind follows the dtype, so a count feature that stays within 0..1
    on some text is still a count."""
    values = np.asarray(values)
    if values.dtype == np.bool_:
        return "binary"
    binary = values.dtype == np.uint8 and (values.size == 0 or int(values.max()) <= 1)
    return "binary" if binary else "count"


def baseline_names() -> list[str]:
    """The char-class baselines (is_space, is_upper, ...), in definition order."""
    return [n for n in _BUILTIN if FEATURES[n].baseline]


def builtin_names() -> list[str]:
    """The non-baseline built-in features, in definition order."""
    return [n for n in _BUILTIN if not FEATURES[n].baseline]


def _unknown(name: str) -> UserError:
    return UserError(f"unknown feature {name!r}; valid: {', '.join(FEATURES)}")


def label(text: str, name: str, lang: str = "auto") -> np.ndarray:
    """Labels of one feature over text: uint8 [len(text)] (binary) or int32 [len(text)] (count).

    lang ("auto", "c", "python", "prose") matters only to code-aware features.
    """
    if name not in FEATURES:
        raise _unknown(name)
    if name in _BUILTIN:
        return _finish(_BUILTIN[name](_Scan(text, lang)), FEATURES[name].kind)
    return FEATURES[name].fn(text)


def resolve(text: str, names: Iterable[str] = (), regexes: Iterable = (), files: Iterable = (),
            spans: Iterable = (), all_features: bool = False, lang: str = "auto",
            offset: int = 0) -> dict[str, np.ndarray]:
    """Every feature a command asked for, labelled over text: {name: array [len(text)]}.

    names:     registered feature names (--feature NAME).
    regexes:   "NAME=PATTERN" strings or (name, pattern) pairs: 1 on every character of every
               match (Python re syntax; inline flags such as (?i) work) (--feature-regex).
    files:     "NAME=path.npy" or (name, path): a 1-D .npy array, one label per character of
               text; only 0/1 -> binary uint8, other integers -> int32, other numbers -> float32.
    spans:     "NAME=START:END[,START:END...]" or (name, [(start, end), ...]): 1 on [start, end)
               (--feature-span), in source positions: text[0] is position `offset` (a command
               passes its TextSpan.start, so positions are those `neuroscope features --show` prints).
    all_features: every registered feature (baselines, built-ins, user features).
    Order: all features, then names, regexes, files, spans, as given. One scan of the text is
    shared by all built-ins. Raises UserError on an unknown name, a bad regex, a label file of
    the wrong length, a span outside the text, or a name given twice.
    """
    scan = _Scan(text, lang)
    out: dict[str, np.ndarray] = {}

    def put(name: str, values: np.ndarray) -> None:
        if name in out:
            raise UserError(f"feature {name!r} is given twice")
        out[name] = values

    for name in names:
        if name not in FEATURES:
            raise _unknown(name)
    for name in dict.fromkeys([*(FEATURES if all_features else ()), *names]):
        if name in _BUILTIN:
            put(name, _finish(_BUILTIN[name](scan), FEATURES[name].kind))
        else:
            put(name, FEATURES[name].fn(text))
    for item in regexes:
        name, pattern = _split_pair(item, "--feature-regex", "NAME=PATTERN")
        try:
            rx = re.compile(pattern)
        except re.error as exc:
            raise UserError(f"--feature-regex {name}: bad regular expression {pattern!r}: {exc}") from None
        bounds = np.array([m.span() for m in rx.finditer(text)], dtype=np.int64).reshape(-1, 2)
        put(name, _ranges_to_mask(len(text), bounds[:, 0], bounds[:, 1]))
    for item in files:
        name, path = _split_pair(item, "--feature-file", "NAME=labels.npy")
        put(name, _load_label_file(name, path, len(text)))
    for item in spans:
        name, ranges = _split_pair(item, "--feature-span", "NAME=START:END[,START:END...]")
        put(name, _span_labels(name, ranges, len(text), offset))
    return out


def _split_pair(item, option: str, form: str) -> tuple[str, object]:
    if isinstance(item, str):
        name, sep, value = item.partition("=")
        if not sep or not value:
            raise UserError(f"{option} takes {form}, got {item!r}")
    else:
        name, value = item
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise UserError(f"{option}: bad feature name {name!r} (letters, digits, _ . -; a letter first)")
    return name, value


def _load_label_file(name: str, path, n: int) -> np.ndarray:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"--feature-file {name}: no such file: {path}")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - a corrupt or pickled file is the user's input
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"--feature-file {name}: cannot read {path} as a .npy array ({msg})") from None
    return _check_labels(arr, n, None, f"--feature-file {name} ({path})")


def _span_labels(name: str, ranges, n: int, offset: int) -> np.ndarray:
    if isinstance(ranges, str):
        parsed = []
        for part in ranges.split(","):
            a, _, b = part.strip().partition(":")
            try:
                parsed.append((int(a), int(b)))
            except ValueError:
                raise UserError(f"--feature-span {name}: expected START:END[,START:END...], got {ranges!r}") from None
        ranges = parsed
    starts, ends = [], []
    for a, b in ranges:
        if not (offset <= a < b <= offset + n):
            raise UserError(f"--feature-span {name}: span {a}:{b} must have START < END and lie "
                            f"inside the text [{offset}, {offset + n})")
        starts.append(a - offset)
        ends.append(b - offset)
    return _ranges_to_mask(n, starts, ends)


# ---------------------------------------------------------------- prose and markup

_BLANK_LINE = re.compile(r"\n[ \t\r\x0b\x0c]*(?=\n)")
_FIRST_BLANK_LINE = re.compile(r"[ \t\r\x0b\x0c]*\n")


@_builtin("in_quote", "binary",
          'inside double quotes: "..." (also &quot;...&quot;) and “...”; reset at a blank line')
def _in_quote(sc: _Scan) -> np.ndarray:
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
    return _fill(n, pos, straight | typo, np.uint8)


_SCHEME = re.compile(r"(?:https?|ftp)\Z")
_URL_BODY = re.compile(r"""(?:[^\s<>"'\[\]{}|\\^`&]|&(?!(?:quot|lt|gt|nbsp|apos|\#34|\#39);))*""")
_URL_TRAILING = ".,;:!?*"


@_builtin("in_url", "binary",
          "characters of a URL starting http:// https:// ftp:// or www., trailing punctuation excluded")
def _in_url(sc: _Scan) -> np.ndarray:
    """Every character of a URL, from the first letter of its scheme (http, https, ftp, lower
    case) or of a `www.` that does not follow a letter, digit, _ . - or /, to its last character.
    A URL runs until whitespace, one of < > " ' [ ] { } | \\ ^ ` or one of the entities &quot;
    &lt; &gt; &nbsp; &apos; (`&amp;` stays in); then trailing . , ; : ! ? * are dropped, and a
    trailing `)` when the URL holds more `)` than `(`. A URL inside a URL is part of it.
    """
    text = sc.text
    cands = sorted([(m.start(), 3) for m in re.finditer("://", text)]
                   + [(m.start(), 4) for m in re.finditer(r"www\.", text)])
    starts, ends, last_end = [], [], -1
    for p, width in cands:
        if width == 3:
            scheme = _SCHEME.search(text, max(0, p - 5), p)
            if scheme is None:
                continue
            start = scheme.start()
        else:
            if p > 0 and (text[p - 1].isalnum() or text[p - 1] in "_.-/"):
                continue
            start = p
        if start < last_end:
            continue
        body = p + width
        end = _URL_BODY.match(text, body).end()
        while end > body and (text[end - 1] in _URL_TRAILING
                              or (text[end - 1] == ")" and text.count(")", start, end) > text.count("(", start, end))):
            end -= 1
        if end > body:
            starts.append(start)
            ends.append(end)
            last_end = end
    return _ranges_to_mask(sc.n, starts, ends)


_WIKI_VERBATIM = re.compile(r"(?:<|&lt;)(math|nowiki)\b[\s\S]*?(?:<|&lt;)/\1(?:>|&gt;)")


def _doubled_depth(sc: _Scan, open_ch: str, close_ch: str) -> np.ndarray:
    """Nesting depth of `[[`..`]]`-style markup, changing at the second character of each pair.

    Pairs inside <math>...</math> and <nowiki>...</nowiki> (raw or as &lt;...&gt; entities) do not
    count: TeX braces are not templates. The depth returns to 0 at every raw `<`: in a MediaWiki
    XML dump the wiki text is escaped, so a raw `<` starts an XML tag and the element's markup is
    over (an edit summary cut off inside `[[` must not run into the next page). Measured on
    enwiki.xml: with both rules no template or link is open at any raw `<`; without them, links
    are open at 2,854 tags (70% of the text would be "in a link").
    """
    o, c = _pairs(sc.pos(open_ch)), _pairs(sc.pos(close_ch))
    if "math" in sc.text or "nowiki" in sc.text:
        verbatim = np.array([m.span() for m in _WIKI_VERBATIM.finditer(sc.text)], np.int64).reshape(-1, 2)
        if verbatim.size:
            o, c = (p[~_inside(verbatim, p)] for p in (o, c))
    resets = sc.pos("<")
    pos = np.concatenate((o, c, resets))
    steps = np.concatenate((np.ones(o.size, np.int64), -np.ones(c.size, np.int64),
                            np.zeros(resets.size, np.int64)))
    order = np.argsort(pos, kind="stable")
    pos, steps = pos[order], steps[order]
    return _fill(sc.n, pos, _reflected_depth(steps, resets=steps == 0), np.int32)


@_builtin("in_wikilink", "binary", "inside [[...]] wiki links: on from the second [ to the first ] of ]]")
def _in_wikilink(sc: _Scan) -> np.ndarray:
    """1 while a `[[` is open (nested links count): from the second `[` through the first `]` of
    the `]]` that closes the outermost link. Doubled brackets pair left to right (`[[[` is one
    `[[` and a `[`); an unmatched `]]` is ignored."""
    return _doubled_depth(sc, "[", "]") > 0


@_builtin("in_template", "binary", "inside {{...}} wiki templates (any nesting depth): on from the second {")
def _in_template(sc: _Scan) -> np.ndarray:
    """1 while template_depth > 0: from the second `{` of `{{` through the first `}` of the `}}`
    that closes the outermost template."""
    return _doubled_depth(sc, "{", "}") > 0


@_builtin("template_depth", "count", "nesting depth of {{...}} wiki templates, changing at the second { or }")
def _template_depth(sc: _Scan) -> np.ndarray:
    """Opened `{{` minus closed `}}` after reading each character, never negative; pairs as in
    in_template (so the parameter `{{{1}}}` counts one level)."""
    return _doubled_depth(sc, "{", "}")


# ---------------------------------------------------------------- brackets (code-aware)

@_builtin("bracket_depth", "count", "nesting depth of ( [ { together; code-aware", code_aware=True)
def _bracket_depth(sc: _Scan) -> np.ndarray:
    """Opened minus closed brackets of all three kinds after reading each character (an opener
    counts on itself, a closer is already out), floored at 0: an unmatched closer is ignored.
    In code, brackets inside comments and literals do not count; in prose every one does."""
    return sc.depth("([{", ")]}")


@_builtin("paren_depth", "count", "nesting depth of ( ); code-aware", code_aware=True)
def _paren_depth(sc: _Scan) -> np.ndarray:
    """As bracket_depth, for ( ) only."""
    return sc.depth("(", ")")


@_builtin("square_depth", "count", "nesting depth of [ ]; code-aware", code_aware=True)
def _square_depth(sc: _Scan) -> np.ndarray:
    """As bracket_depth, for [ ] only."""
    return sc.depth("[", "]")


@_builtin("brace_depth", "count", "nesting depth of { }; code-aware (braces in comments/literals ignored)",
          code_aware=True)
def _brace_depth(sc: _Scan) -> np.ndarray:
    """As bracket_depth, for { } only: in C, the block nesting level."""
    return sc.depth("{", "}")


# ---------------------------------------------------------------- lines

@_builtin("line_position", "count", "index of the character in its line: 0 after a \\n; the \\n gets its own index")
def _line_position(sc: _Scan) -> np.ndarray:
    """k minus the index of its line's first character: a "\\n" gets the position it occupies
    (its line's length without it); in CRLF text the "\\r" is a character of the line."""
    starts, lengths, _ = sc.lines
    return np.arange(sc.n, dtype=np.int32) - np.repeat(starts.astype(np.int32), lengths)


@_builtin("line_remaining", "count", "characters left until the next \\n: the \\n itself is 0")
def _line_remaining(sc: _Scan) -> np.ndarray:
    """Index of the first "\\n" at or after k, minus k (the "\\r" of a CRLF is 1, the character
    before it 2). On a last line without "\\n", the distance to the end of the text."""
    _, lengths, ends = sc.lines
    return np.repeat(ends.astype(np.int32), lengths) - np.arange(sc.n, dtype=np.int32)


@_builtin("indent_depth", "count", "width in columns of the line's leading spaces and tabs (tab stops every 8)")
def _indent_depth(sc: _Scan) -> np.ndarray:
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


# ---------------------------------------------------------------- code (language-aware)

@_builtin("in_string", "binary", "inside a string or char literal in code (escapes honoured, not in comments)",
          code_aware=True)
def _in_string(sc: _Scan) -> np.ndarray:
    """C: "..." and '...'; Python: also '''...''' and \"\"\"...\"\"\" (an r/b/u/f prefix is 0).
    From the last character of the opening quote(s) through the character before the last
    closing quote; a backslash escapes the next character, so \\" does not close. A one-line
    literal left open ends before its line's "\\n"; a triple-quoted one runs on. 0 in prose."""
    _, _, a, b, comment = sc.tokens
    return _ranges_to_mask(sc.n, a[~comment], b[~comment])


@_builtin("in_comment", "binary", "inside a code comment: /* */ and // (C) or # (Python)", code_aware=True)
def _in_comment(sc: _Scan) -> np.ndarray:
    """C: from the `*` of `/*` through the `*` of `*/`, and from the second `/` of `//` through
    the character before the "\\n"; Python: from `#` through the character before the "\\n".
    Comment markers inside literals open nothing. 0 in prose."""
    _, _, a, b, comment = sc.tokens
    return _ranges_to_mask(sc.n, a[comment], b[comment])


_C_IF = re.compile(r"if\s*\(")
_PY_IF = re.compile(r"if\b")


@_builtin("in_if_condition", "binary", "inside the condition of an if: C `if (...)`, Python `if ...:`",
          code_aware=True)
def _in_if_condition(sc: _Scan) -> np.ndarray:
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
    return _ranges_to_mask(n, opens, ends)


# ---------------------------------------------------------------- char-class baselines

_QUOTE_CHARS = "\"'\u2018\u2019\u201c\u201d\u00ab\u00bb\u201e\u201a"


def _char_class(name: str, description: str, pred: Callable[[str], bool]) -> None:
    _builtin(name, "binary", description, baseline=True)(lambda sc: sc.where_char(pred))


_char_class("is_space", "whitespace other than \\n (space, tab, \\r, other Unicode spaces)",
            lambda c: c.isspace() and c != "\n")
_char_class("is_newline", "the line end \\n", lambda c: c == "\n")
_char_class("is_upper", "an upper-case letter (str.isupper)", str.isupper)
_char_class("is_lower", "a lower-case letter (str.islower)", str.islower)
_char_class("is_alpha", "a letter (str.isalpha)", str.isalpha)
_char_class("is_digit", "an ASCII digit 0-9", lambda c: "0" <= c <= "9")
_char_class("is_punct", "punctuation or symbol (Unicode category P* or S*)",
            lambda c: unicodedata.category(c)[0] in "PS")
_char_class("is_quote_char", "a quote mark: \" ' ‘ ’ “ ” « » „ ‚", lambda c: c in _QUOTE_CHARS)
_char_class("is_bracket", "one of ( ) [ ] { }", lambda c: c in "()[]{}")


# ---------------------------------------------------------------- looking at labels

def summarize(values: np.ndarray) -> dict:
    """{"kind", "nonzero", "mean", "max"} of one label array, plain Python numbers."""
    v = np.asarray(values)
    binary = v.dtype == np.uint8
    return {"kind": "binary" if binary else "count" if np.issubdtype(v.dtype, np.integer) else "float",
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
    binary = {n: v.dtype == np.uint8 for n, v in labels.items()}
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
