"""Per-character labels of real text: what a neuron might be tracking.

    >>> label('say "hi" (x)', "in_quote")                 # uint8 [12], one label per character
    array([0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0], dtype=uint8)
    >>> label("a(b(c)))", "paren_depth")                   # int32 [8], never negative
    array([0, 1, 1, 2, 2, 1, 0, 0], dtype=int32)
    >>> feats = resolve(text, names=["in_quote"], regexes=["digits=[0-9]+"])   # {name: array}

Alignment rule, the same for every delimited construct (quotes, strings, comments, [[links]],
{{templates}}, brackets, if-conditions): label[k] says whether the construct is open *after
reading text[k]*, which is how recorded states are aligned (row k = state after reading
character k). So an opening delimiter is on from its last character and a closing delimiter is
on up to, not including, its last character: `"hi"` -> 1 1 1 0; `[[a]]` -> 0 1 1 1 0;
`/*x*/` -> 0 1 1 1 0. Spans without delimiters (URLs, --feature-regex matches) are 1 on
exactly their characters. Labels start fresh at the first character of the text they are given
(outside every construct). Line ends: only "\\n" ends a line; the "\\r" of a CRLF is the last
character of its line.

Code-aware features (in_string, in_comment, in_if_condition and the four *_depth) depend on the
text's language: "c" (C and C-like: // and /* */ comments, "..." and '...' literals), "python"
(# comments; '...', "...", '''...''', \"\"\"...\"\"\" literals, any r/b/u/f prefix) or "prose"
(no code constructs: strings, comments and if-conditions are all 0, every bracket counts).
`lang="auto"` sniffs it from the text (sniff_language). Everything is vectorised numpy or a
single compiled regex scan; no per-character Python.

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
    code_aware: bool = False       # depends on the language (see module docstring)


FEATURES: dict[str, Feature] = {}
_BUILTIN: dict[str, Callable[["_Scan"], np.ndarray]] = {}   # built-in name -> labeller on a shared scan


# ---------------------------------------------------------------- language sniffing

_C_SIGNS = (") {", ");", "*/", "#include", "#define", "->", "} else")
_PY_SIGNS = ("):", "def ", "self.", "import ", "elif ", "None", '"""', "'''")


def sniff_language(text: str, sample: int = 200_000) -> str:
    """"c", "python" or "prose", from how often typical tokens occur per line in the first
    `sample` characters. Measured on the team's corpora: linux.txt scores 0.43 C signs per line,
    Python stdlib modules 0.14-0.37 Python signs, War and Peace, enwiki and Shakespeare below 0.013;
    the threshold is 0.05.
    """
    t = text[:sample]
    lines = t.count("\n") + 1
    c = sum(t.count(s) for s in _C_SIGNS) / lines
    py = sum(t.count(s) for s in _PY_SIGNS) / lines
    if max(c, py) < 0.05:
        return "prose"
    return "c" if c >= py else "python"


# ---------------------------------------------------------------- vectorised helpers

def _reflected_depth(steps: np.ndarray) -> np.ndarray:
    """Running sum of +1/-1/0 steps floored at 0 (a close with nothing open is ignored), int32 [n].

    d_k = max(d_{k-1} + s_k, 0) has the closed form S_k - min(0, min_{j<=k} S_j) with S = cumsum(s).
    """
    if steps.size == 0:
        return np.zeros(0, np.int32)
    s = np.cumsum(steps, dtype=np.int64)
    floor = np.minimum(np.minimum.accumulate(s), 0)
    return (s - floor).astype(np.int32)


def _ranges_to_mask(n: int, starts, ends) -> np.ndarray:
    """uint8 [n]: 1 on the union of [starts[i], ends[i])."""
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    keep = ends > starts
    diff = np.bincount(starts[keep], minlength=n + 1) - np.bincount(ends[keep], minlength=n + 1)
    return (np.cumsum(diff[:n]) > 0).astype(np.uint8)


def _first_at_least(sorted_keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Index into sorted_keys of the first key >= each query (len(sorted_keys) if none)."""
    return np.searchsorted(sorted_keys, queries, side="left")


def _pair_seconds(is_c: np.ndarray) -> np.ndarray:
    """bool [n]: the second character of each doubled bracket (`[[`, `]]`, `{{`, `}}`), pairing
    runs left to right as a regex scan would (`[[[` holds one pair, at offsets 0-1)."""
    n = is_c.size
    idx = np.arange(n)
    prev = np.concatenate(([False], is_c[:-1]))
    run_start = np.maximum.accumulate(np.where(is_c & ~prev, idx, 0))
    return is_c & ((idx - run_start) % 2 == 1)


# ---------------------------------------------------------------- the shared scan

# One left-to-right scan per language: comments and literals consume each other's delimiters
# (a `"` inside a comment opens nothing), which is why they are one alternation. Each literal ends
# at its closing quote, at an unescaped line end (C, and Python's one-line strings) or at the end
# of the text; `\\[\s\S]` honours escapes, including backslash-newline continuations.
_TOKENS = {
    "c": re.compile(r"""
          (?P<lc>//)[^\n]*
        | (?P<bc>/\*)[\s\S]*?(?P<bc_end>\*/|\Z)
        | (?P<s>")(?:\\[\s\S]|[^"\\\n])*(?P<s_end>"|(?=\n)|\\?\Z)
        | (?P<ch>')(?:\\[\s\S]|[^'\\\n])*(?P<ch_end>'|(?=\n)|\\?\Z)
        """, re.VERBOSE),
    "python": re.compile(r"""
          (?P<pc>\#)[^\n]*
        | (?P<t2>\"\"\")(?:[^"\\]|\\[\s\S]|"(?!""))*(?P<t2_end>\"\"\"|\\?\Z)
        | (?P<t1>''')(?:[^'\\]|\\[\s\S]|'(?!''))*(?P<t1_end>'''|\\?\Z)
        | (?P<s>")(?:\\[\s\S]|[^"\\\n])*(?P<s_end>"|(?=\n)|\\?\Z)
        | (?P<ch>')(?:\\[\s\S]|[^'\\\n])*(?P<ch_end>'|(?=\n)|\\?\Z)
        """, re.VERBOSE),
}
_COMMENT_KINDS = {"lc", "bc", "pc"}
# Opening delimiter length, closing delimiter text (None: closed by the line end, which stays out).
_DELIMS = {"lc": (2, None), "pc": (1, None), "bc": (2, "*/"), "s": (1, '"'), "ch": (1, "'"),
           "t2": (3, '"""'), "t1": (3, "'''")}


class _Scan:
    """Arrays of one text shared by all labellers, each computed once, on first use."""

    def __init__(self, text: str, lang: str = "auto"):
        if not isinstance(text, str):
            raise UserError(f"features label text (str), got {type(text).__name__}")
        if lang not in LANGS:
            raise UserError(f"unknown language {lang!r}; choose one of {', '.join(LANGS)}")
        self.text = text
        self.n = len(text)
        self.lang = sniff_language(text) if lang == "auto" else lang

    @cached_property
    def codes(self) -> np.ndarray:
        """Code points, uint32 [n]."""
        return np.frombuffer(self.text.encode("utf-32-le"), dtype=np.uint32)

    @cached_property
    def idx(self) -> np.ndarray:
        return np.arange(self.n, dtype=np.int64)

    def eq(self, ch: str) -> np.ndarray:
        return self.codes == ord(ch)

    def where_char(self, pred: Callable[[str], bool]) -> np.ndarray:
        """bool [n]: pred(c) for each character, pred evaluated once per distinct code point."""
        if self.n == 0:
            return np.zeros(0, bool)
        present = np.flatnonzero(self._code_counts)
        lut = np.zeros(self._code_counts.size, bool)
        lut[present] = [bool(pred(chr(cp))) for cp in present]
        return lut[self.codes]

    @cached_property
    def _code_counts(self) -> np.ndarray:
        return np.bincount(self.codes)

    @cached_property
    def newline(self) -> np.ndarray:
        return self.eq("\n")

    @cached_property
    def line_start(self) -> np.ndarray:
        """int64 [n]: index of the first character of the line holding k (just after the last
        "\\n" strictly before k, or 0)."""
        nl = np.where(self.newline, self.idx, -1)
        last_incl = np.maximum.accumulate(nl) if self.n else nl
        return np.concatenate(([-1], last_incl[:-1])) + 1 if self.n else nl

    @cached_property
    def line_end(self) -> np.ndarray:
        """int64 [n]: index of the first "\\n" at or after k, or n when the text ends first."""
        nl = np.where(self.newline, self.idx, self.n)
        return np.minimum.accumulate(nl[::-1])[::-1] if self.n else nl

    @cached_property
    def tokens(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(in_comment, in_string, masked): uint8 [n] each, all 0 for prose.

        in_comment / in_string follow the alignment rule; masked is 1 on every character of a
        comment or literal, delimiters included: brackets there do not count.
        """
        z = np.zeros(self.n, np.uint8)
        if self.lang not in _TOKENS:
            return z, z, z
        spans: dict[bool, tuple[list, list]] = {True: ([], []), False: ([], [])}
        m_starts, m_ends = [], []
        for m in _TOKENS[self.lang].finditer(self.text):
            s, e = m.span()
            group = m.lastgroup
            kind = group[:-4] if group.endswith("_end") else group
            open_len, close = _DELIMS[kind]
            closed = close is not None and m.group(group) == close
            starts, ends = spans[kind in _COMMENT_KINDS]
            starts.append(s + open_len - 1)
            ends.append(e - 1 if closed else e)
            m_starts.append(s)
            m_ends.append(e)
        comment = _ranges_to_mask(self.n, *spans[True])
        string = _ranges_to_mask(self.n, *spans[False])
        return comment, string, _ranges_to_mask(self.n, m_starts, m_ends)

    def depth(self, opens: str, closes: str, code_aware: bool = True) -> np.ndarray:
        """int32 [n]: nesting depth after reading each character, never negative."""
        steps = np.zeros(self.n, np.int8)
        for ch in opens:
            steps += self.eq(ch)
        for ch in closes:
            steps -= self.eq(ch)
        if code_aware:
            steps[self.tokens[2].astype(bool)] = 0
        return _reflected_depth(steps)

    @cached_property
    def paren_depth(self) -> np.ndarray:
        return self.depth("(", ")")

    @cached_property
    def bracket_depth(self) -> np.ndarray:
        return self.depth("([{", ")]}")


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
    int32 (count). Built-in names cannot be replaced; a user name can with replace=True.
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
    """Validate user labels: shape [n], finite numbers; binary -> uint8 0/1, count -> int32.
    kind None infers it: 0/1 -> binary, other integers -> count, anything else -> float32."""
    try:
        arr = np.asarray(values)
    except Exception as exc:  # noqa: BLE001 - any failure to convert is the user's input
        raise UserError(f"{what}: labels are not an array ({exc})") from None
    if arr.ndim != 1 or arr.shape[0] != n:
        raise UserError(f"{what}: expected one label per character, shape ({n},); got {arr.shape}")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise UserError(f"{what}: labels must be numbers, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise UserError(f"{what}: labels hold NaN or infinite values")
    integral = np.issubdtype(arr.dtype, np.integer) or bool(np.all(arr == np.round(arr)))
    is01 = integral and bool(np.all((arr == 0) | (arr == 1)))
    if kind == "binary" and not is01:
        raise UserError(f"{what}: a binary feature must return only 0 and 1")
    if kind == "count" and not integral:
        raise UserError(f"{what}: a count feature must return integers")
    if kind == "binary" or (kind is None and is01):
        return arr.astype(np.uint8)
    if kind == "count" or integral:
        if arr.size and (arr.max() > np.iinfo(np.int32).max or arr.min() < np.iinfo(np.int32).min):
            raise UserError(f"{what}: counts do not fit in int32")
        return arr.astype(np.int32)
    return arr.astype(np.float32)


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
               match (re module syntax; inline flags such as (?i) work) (--feature-regex).
    files:     "NAME=path.npy" or (name, path): a 1-D .npy array with one label per character of
               text; 0/1 -> binary uint8, other integers -> int32, other numbers -> float32.
    spans:     "NAME=START:END[,START:END...]" or (name, [(start, end), ...]): 1 on [start, end)
               (--feature-span). Positions are in the coordinates of the source text: text[0]
               is position `offset` (a command passes its TextSpan.start).
    all_features: every registered feature (baselines, built-ins, user features) first.
    Order: all features, then names, regexes, files, spans, in the order given. One scan of the
    text is shared by all built-ins. Raises UserError on an unknown name, a bad regex, a label
    file of the wrong length, a span outside the text or a name given twice.
    """
    scan = _Scan(text, lang)
    out: dict[str, np.ndarray] = {}

    def put(name: str, values: np.ndarray) -> None:
        if name in out:
            raise UserError(f"feature {name!r} is given twice")
        out[name] = values

    wanted = list(FEATURES) if all_features else []
    for name in names:
        if name not in FEATURES:
            raise _unknown(name)
        if not (all_features and name in out):
            wanted.append(name)
    for name in dict.fromkeys(wanted):
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
        bounds = [m.span() for m in rx.finditer(text)]
        put(name, _ranges_to_mask(len(text), [b[0] for b in bounds], [b[1] for b in bounds]))
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
    if not NAME_RE.match(name or ""):
        raise UserError(f"{option}: bad feature name {name!r} (letters, digits, _ . -; a letter first)")
    return name, value


def _load_label_file(name: str, path, n: int) -> np.ndarray:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"--feature-file {name}: no such file: {path}")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - a corrupt or pickled file is the user's input
        raise UserError(f"--feature-file {name}: cannot read {path} as a .npy array ({exc})".splitlines()[0]) from None
    return _check_labels(arr, n, None, f"--feature-file {name} ({path})")


def _span_labels(name: str, ranges, n: int, offset: int) -> np.ndarray:
    if isinstance(ranges, str):
        parsed = []
        for part in ranges.split(","):
            a, sep, b = part.strip().partition(":")
            try:
                parsed.append((int(a), int(b)))
            except ValueError:
                raise UserError(f"--feature-span {name}: expected START:END[,START:END...], got {ranges!r}") from None
        ranges = parsed
    starts, ends = [], []
    for a, b in ranges:
        if not (offset <= a < b <= offset + n):
            raise UserError(f"--feature-span {name}: span {a}:{b} must satisfy START < END and lie "
                            f"inside the text [{offset}, {offset + n})")
        starts.append(a - offset)
        ends.append(b - offset)
    return _ranges_to_mask(n, starts, ends)


# ---------------------------------------------------------------- prose

@_builtin("in_quote", "binary",
          'inside double quotes: "..." (also &quot;...&quot;) and “...”; reset at a blank line')
def _in_quote(sc: _Scan) -> np.ndarray:
    """1 from an opening quote through the character before its closing quote.

    Straight quotes `"` (and the XML entity `&quot;`, which toggles at its `;`) alternate open/close;
    typographic “ opens and ” closes; the two kinds are tracked separately and OR-ed. A paragraph
    break (the "\\n" that ends a line holding only spaces, tabs or "\\r") closes any open quote:
    a quote running over several paragraphs reopens with the `"` that starts each of them.
    """
    n, c = sc.n, sc.codes
    if n == 0:
        return np.zeros(0, np.uint8)
    toggle = sc.eq('"')
    semis = np.flatnonzero(c == ord(";"))
    semis = semis[semis >= 5]
    for back, ch in enumerate("touq&", start=1):      # `&quot;` read backwards from its `;`
        semis = semis[c[semis - back] == ord(ch)]
    toggle[semis] = True
    # Paragraph breaks: a "\n" whose line held nothing but blanks.
    blank = sc.where_char(lambda ch: ch in " \t\r\x0b\x0c")
    nonblank_cum = np.cumsum(~blank & ~sc.newline)
    nls = np.flatnonzero(sc.newline)
    starts = sc.line_start[nls]
    before = np.where(starts > 0, nonblank_cum[np.maximum(starts - 1, 0)], 0)
    para_break = np.zeros(n, bool)
    para_break[nls[(nonblank_cum[nls] - before) == 0]] = True
    last_break = np.maximum.accumulate(np.where(para_break, sc.idx, -1))
    tcum = np.cumsum(toggle, dtype=np.int64)
    base = np.where(last_break >= 0, tcum[np.maximum(last_break, 0)], 0)   # a break is never a toggle
    straight = ((tcum - base) % 2).astype(bool)
    # Typographic: the last of {“ (open), ” (close), paragraph break (close)} seen so far.
    opens, closes = sc.eq("\u201c"), sc.eq("\u201d")
    if opens.any():
        event = opens | closes | para_break
        last = np.maximum.accumulate(np.where(event, sc.idx, -1))
        typo = np.where(last >= 0, opens[np.maximum(last, 0)], False)
        straight |= typo
    return straight.astype(np.uint8)


_URL_RE = re.compile(r"""
    (?:https?://|ftp://|(?<![\w.\-/])www\.)
    (?:[^\s<>"'\[\]{}|\\^`&]|&(?!(?:quot|lt|gt|nbsp|apos|\#34|\#39);))+
    """, re.VERBOSE)
_URL_TRAILING = ".,;:!?*"


@_builtin("in_url", "binary",
          "characters of a URL starting http:// https:// ftp:// or www., trailing punctuation excluded")
def _in_url(sc: _Scan) -> np.ndarray:
    """1 on every character of a URL, from the first letter of its scheme (or of `www.`) to its
    last character. A URL runs until whitespace or one of < > " ' [ ] { } | \\ ^ ` or the entities
    &quot; &lt; &gt; &nbsp; &apos; (`&amp;` stays in); then trailing . , ; : ! ? * are dropped,
    and a trailing `)` with no `(` in the URL. Schemes are matched in lower case only.
    """
    starts, ends = [], []
    if "://" in sc.text or "www." in sc.text:
        for m in _URL_RE.finditer(sc.text):
            s, e = m.span()
            url = m.group()
            while url and (url[-1] in _URL_TRAILING or (url[-1] == ")" and url.count(")") > url.count("("))):
                url = url[:-1]
            if not url.endswith(("://", "www.")):
                starts.append(s)
                ends.append(s + len(url))
    return _ranges_to_mask(sc.n, starts, ends)


def _doubled_depth(sc: _Scan, open_ch: str, close_ch: str) -> np.ndarray:
    """Nesting depth of `[[`..`]]`-style markup, counted at the second character of each pair."""
    steps = _pair_seconds(sc.eq(open_ch)).astype(np.int8) - _pair_seconds(sc.eq(close_ch))
    return _reflected_depth(steps)


@_builtin("in_wikilink", "binary", "inside [[...]] wiki links: on from the second [ to the first ] of ]]")
def _in_wikilink(sc: _Scan) -> np.ndarray:
    """1 while a `[[` is open (nested links count): from the second `[` through the first `]` of
    the `]]` that closes the outermost link. Doubled brackets pair left to right (`[[[` is one
    `[[` and a `[`)."""
    return _doubled_depth(sc, "[", "]") > 0


@_builtin("in_template", "binary", "inside {{...}} wiki templates (any nesting depth): on from the second {")
def _in_template(sc: _Scan) -> np.ndarray:
    """1 while template_depth > 0: from the second `{` of `{{` through the first `}` of the `}}`
    that closes the outermost template."""
    return _doubled_depth(sc, "{", "}") > 0


@_builtin("template_depth", "count", "nesting depth of {{...}} wiki templates, counted at the second { and }")
def _template_depth(sc: _Scan) -> np.ndarray:
    """Open `{{` minus closed `}}` after reading each character, never negative; pairs as in
    in_template (`{{{1}}}`, a template parameter, counts as one level)."""
    return _doubled_depth(sc, "{", "}")


# ---------------------------------------------------------------- brackets (code-aware)

@_builtin("bracket_depth", "count", "nesting depth of ( [ { together; code-aware", code_aware=True)
def _bracket_depth(sc: _Scan) -> np.ndarray:
    """Opened minus closed brackets of all three kinds after reading each character (an opener
    counts on itself, a closer is already out), floored at 0: an unmatched closer is ignored.
    In code, brackets inside comments and string/char literals do not count."""
    return sc.bracket_depth


@_builtin("paren_depth", "count", "nesting depth of ( ); code-aware", code_aware=True)
def _paren_depth(sc: _Scan) -> np.ndarray:
    """As bracket_depth, for ( ) only."""
    return sc.paren_depth


@_builtin("square_depth", "count", "nesting depth of [ ]; code-aware", code_aware=True)
def _square_depth(sc: _Scan) -> np.ndarray:
    """As bracket_depth, for [ ] only."""
    return sc.depth("[", "]")


@_builtin("brace_depth", "count", "nesting depth of { }; code-aware (C: braces in comments/strings ignored)",
          code_aware=True)
def _brace_depth(sc: _Scan) -> np.ndarray:
    """As bracket_depth, for { } only: in C, the block nesting level."""
    return sc.depth("{", "}")


# ---------------------------------------------------------------- lines

@_builtin("line_position", "count", "index of the character in its line: 0 after a \\n; the \\n gets its own index")
def _line_position(sc: _Scan) -> np.ndarray:
    """k minus the index of the line's first character. A "\\n" gets the position it occupies
    (the line's length without it); in CRLF text "\\r" is a character of the line."""
    return sc.idx - sc.line_start


@_builtin("line_remaining", "count", "characters left until the next \\n: the \\n itself is 0")
def _line_remaining(sc: _Scan) -> np.ndarray:
    """Index of the first "\\n" at or after k, minus k (the "\\r" of a CRLF is 1, the character
    before it 2). On a last line without "\\n", the distance to the end of the text."""
    return sc.line_end - sc.idx


@_builtin("indent_depth", "count", "width in columns of the line's leading spaces and tabs (tab stops every 8)")
def _indent_depth(sc: _Scan) -> np.ndarray:
    """For every character of a line (its "\\n" included): the column at which the line's
    leading run of spaces and tabs ends, a tab advancing to the next multiple of 8 (as in the
    kernel's style and Python's tokenizer): "\\t\\t  x" -> 18, "    x" -> 4. A line holding only
    blanks gets the width of its blanks."""
    n = sc.n
    if n == 0:
        return np.zeros(0, np.int32)
    is_tab, is_sp = sc.eq("\t"), sc.eq(" ")
    ws = is_tab | is_sp
    # First non-blank (or line end) at or after each index.
    nxt = np.minimum.accumulate(np.where(ws, n, sc.idx)[::-1])[::-1]
    starts = np.flatnonzero(np.concatenate(([True], sc.newline[:-1])))
    stops = np.where(starts < n, nxt[np.minimum(starts, n - 1)], n)
    tab_cum = np.concatenate(([0], np.cumsum(is_tab)))
    tabs = tab_cum[stops] - tab_cum[starts]
    spaces = (stops - starts) - tabs
    width = 8 * tabs + spaces
    # 8 * tabs + spaces is exact when every tab precedes every space (the kernel's style);
    # the rare leads with a space before a tab ("  \t") are expanded by Python.
    last_tab = np.maximum.accumulate(np.where(is_tab, sc.idx, -1))
    first_space = np.minimum.accumulate(np.where(is_sp, sc.idx, n)[::-1])[::-1]
    mixed = (tabs > 0) & (spaces > 0)
    mixed[mixed] = first_space[starts[mixed]] < last_tab[stops[mixed] - 1]
    for i in np.flatnonzero(mixed):
        width[i] = len(sc.text[starts[i]:stops[i]].expandtabs(8))
    line_of = np.cumsum(sc.newline) - sc.newline        # "\n" belongs to the line it ends
    return width[line_of]


# ---------------------------------------------------------------- code (language-aware)

@_builtin("in_string", "binary", "inside a string or char literal in code (escapes honoured, not in comments)",
          code_aware=True)
def _in_string(sc: _Scan) -> np.ndarray:
    """C: "..." and '...'; Python: also '''...''' and \"\"\"...\"\"\" (any r/b/u/f prefix; the prefix
    is 0). From the last character of the opening quote(s) through the character before the last
    closing quote; a backslash escapes the next character (so \\" does not close). A one-line
    literal left open ends before its line's "\\n"; a triple-quoted one runs on. All 0 in prose."""
    return sc.tokens[1]


@_builtin("in_comment", "binary", "inside a code comment: /* */ and // (C) or # (Python)", code_aware=True)
def _in_comment(sc: _Scan) -> np.ndarray:
    """C: from the `*` of `/*` through the `*` of `*/`, and from the second `/` of `//` through
    the character before the "\\n"; Python: from `#` through the character before the "\\n".
    Comment markers inside literals open nothing. All 0 in prose."""
    return sc.tokens[0]


_C_IF = re.compile(r"(?<![\w#])if\s*\(")
_PY_IF = re.compile(r"^[ \t]*(?:el)?if\b", re.MULTILINE)


@_builtin("in_if_condition", "binary", "inside the condition of an if: C `if (...)`, Python `if ...:`",
          code_aware=True)
def _in_if_condition(sc: _Scan) -> np.ndarray:
    """C (also `else if`): from the `(` after `if` through the character before its matching `)`,
    nested parentheses included (parentheses in comments and literals do not count; `#if` is
    preprocessor, not a condition). Python `if` / `elif` statements: from the `f` of the keyword
    through the character before the `:` that ends the header at the same bracket depth (a `:=`
    does not end it). An unclosed condition runs to the end of the text. All 0 in prose."""
    n = sc.n
    if sc.lang == "c":
        rx, depth, target = _C_IF, sc.paren_depth, sc.eq(")")
    elif sc.lang == "python":
        rx, depth, target = _PY_IF, sc.bracket_depth, sc.eq(":")
        target &= np.concatenate((sc.codes[1:] != ord("="), [True]))
    else:
        return np.zeros(n, np.uint8)
    masked = sc.tokens[2]
    opens = np.array([m.end() - 1 for m in rx.finditer(sc.text)], dtype=np.int64)
    opens = opens[masked[opens] == 0] if opens.size else opens
    if sc.lang == "c":
        # The closing paren is the first later character whose depth falls below the `(`'s.
        ends_at = np.flatnonzero(target & ~masked.astype(bool) & (depth < np.concatenate(([0], depth[:-1]))))
        want = depth[opens].astype(np.int64) - 1
        have = depth[ends_at].astype(np.int64)
    else:
        # The header's colon: the first later unmasked `:` at the keyword's bracket depth.
        ends_at = np.flatnonzero(target & ~masked.astype(bool))
        want = depth[opens].astype(np.int64)
        have = depth[ends_at].astype(np.int64)
    keys = have * (n + 1) + ends_at
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    pos = _first_at_least(keys, want * (n + 1) + opens + 1)
    found = pos < keys.size
    found[found] = keys[pos[found]] // (n + 1) == want[found]
    ends = np.full(opens.size, n, dtype=np.int64)
    ends[found] = keys[pos[found]] % (n + 1)
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
            rows.append(f"{name[:18]:>{gutter}} " + marks.rstrip())
    return "\n".join(rows)
