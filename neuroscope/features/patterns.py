"""User regular expressions as features, with bounded work.

    >>> pattern_labels("num", "[0-9]+", "ab 12")                # uint8 [5]
    array([0, 0, 0, 1, 1], dtype=uint8)

A pattern is Python `re` syntax, checked by `re` (so errors read as they always have), then run
by the `regex` module, which reads it as `re` does with one addition: POSIX classes inside a set,
`[[:alpha:]]`, `[[:digit:]]`, `[[:^space:]]`, are Unicode properties (`[[:alpha:]]` matches é and Ж),
where `re` would read `[[:alpha:]]` as the set `[:alph` followed by "]"; an unknown class is a
one-line error. docs/features.md says so. It runs with a time limit: a pattern that backtracks
catastrophically (`(a+)+$` on a few thousand `a`s) ends in a one-line UserError instead of running
for hours. The pattern's
size is bounded too, because `regex` expands a counted repeat `a{m}` into m copies when it
compiles (`a{1000000000}` would never finish compiling); a small scanner here measures it, reading
the pattern as `regex` does.
"""
from __future__ import annotations

import re
import warnings

import numpy as np
# `regex` rather than RE2 (google-re2): on 1M characters of War and Peace it is as fast as `re` for
# realistic patterns, keeps lookarounds and backreferences (RE2 rejects them) and has a timeout.
import regex

from ..errors import UserError
from .scan import ranges_to_mask

# Time limit, in seconds of CPU time (what `regex` measures), for one pattern over the whole text:
# SECONDS plus SECONDS_PER_MILLION_CHARS per 1,000,000 characters. Realistic patterns take <= 0.25 s
# per million characters and one matching the empty string everywhere (`x*`) about 1.3 s, so both
# stay far inside it even on 10M characters (30 s), while a backtracking one is stopped.
SECONDS = 10.0
SECONDS_PER_MILLION_CHARS = 2.0

# Largest pattern, in units (a character, an escape, a set, a group...) after counted repeats are
# expanded: compiling 10,000 units takes `regex` at most ~0.2 s; realistic patterns hold well under 1,000.
MAX_UNITS = 10_000

# "(?#...)": a comment, ended by the first ")" not escaped.
_COMMENT = re.compile(r"\(\?#(?:\\.|[^)\\])*\)?", re.DOTALL)
# "(?x:" turns flags on (before "-") and off (after) inside a group; "(?x)" from there to the group's end.
_FLAGS = re.compile(r"\(\?([a-zA-Z]*)(?:-([a-zA-Z]*))?([:)])")
# "[:alpha:]" inside a set: one member for `regex` (for `re`, "[[:alpha:]]" ends at the first "]").
# `regex` takes a few more shapes; missing one only makes a set end early, so its rest counts as more units.
_POSIX = re.compile(r"\[:\^?[a-zA-Z0-9_]+:\]")


def time_limit(n_chars: int) -> float:
    """Seconds of CPU one pattern may take over n_chars characters."""
    return SECONDS + SECONDS_PER_MILLION_CHARS * n_chars / 1e6


def pattern_labels(name: str, pattern: str, text: str) -> np.ndarray:
    """uint8 [len(text)]: 1 on every character of every match of pattern (re's finditer spans).

    Raises UserError (param "regexes") for a bad pattern, one too large to compile quickly, or one
    that runs past time_limit(len(text)).
    """
    rx = compile_pattern(name, pattern)
    limit = time_limit(len(text))
    try:
        spans = [m.span() for m in rx.finditer(text, timeout=limit)]
    except TimeoutError:
        raise UserError(f"regexes {name}: the pattern took longer than {limit:,.1f} s on {len(text):,} "
                        f"characters (catastrophic backtracking?); simplify it", param="regexes") from None
    bounds = np.array(spans, dtype=np.int64).reshape(-1, 2)
    return ranges_to_mask(len(text), bounds[:, 0], bounds[:, 1])


def compile_pattern(name: str, pattern: str) -> regex.Pattern:
    """The pattern compiled by `regex`, once `re` accepts it and its size is within MAX_UNITS."""
    def fail(problem: str) -> UserError:
        return UserError(f"regexes {name}: {problem}", param="regexes")

    if not isinstance(pattern, str):
        raise fail(f"the pattern must be a string, got {type(pattern).__name__}")
    try:
        with warnings.catch_warnings():
            # `re` warns that it may one day read "[[:alpha:]]" as a nested set; the pattern is run by
            # `regex`, which reads POSIX classes today (see the module docstring): the warning would mislead.
            warnings.simplefilter("ignore", FutureWarning)
            re.compile(pattern)
        units = _units(pattern)
    except re.error as exc:
        raise fail(f"bad regular expression {pattern!r}: {exc}") from None
    except (RecursionError, OverflowError, ValueError):
        raise fail(f"bad regular expression {_short(pattern)}: nested or repeated too deeply") from None
    if units > MAX_UNITS:
        raise fail(f"the pattern is too large ({units:,} units once counted repeats are expanded; "
                   f"at most {MAX_UNITS:,}); use fewer or smaller {{m,n}} counts")
    try:
        return regex.compile(pattern)
    except (regex.error, RecursionError, OverflowError, ValueError) as exc:
        raise fail(f"bad regular expression {_short(pattern)}: {exc}") from None


def _short(pattern: str) -> str:
    return repr(pattern if len(pattern) <= 60 else pattern[:57] + "...")


def _units(pattern: str) -> int:
    """Size of the pattern as `regex` reads it, each counted repeat {m,n} counted m times (at least once).

    A unit is a character, an escape, a set or a group. Returns the first piece that is over
    MAX_UNITS on its own, so nested huge counts never make giant numbers. Where `regex` reads a
    pattern differently from `re` (verbose mode, POSIX classes), this follows `regex`: its compile is
    what the size bounds.
    """
    frames = [([], False)]      # per open group: the sizes of its pieces, and whether verbose (?x) is on
    i = 0
    while (i := _skip(pattern, i, frames[-1][1])) < len(pattern):
        pieces, verbose = frames[-1]
        ch = pattern[i]
        if ch == "(":
            i = _open(pattern, i, frames)
            continue
        if ch == ")" and len(frames) > 1:
            frames.pop()
            size, i = 1 + sum(pieces), i + 1
        elif ch in "?*+{" and pieces and (repeat := _repeat(pattern, i, verbose)):
            least, i = repeat
            size = 1 + max(least, 1) * pieces.pop()
        elif ch == "[":
            size, i = 1, _set_end(pattern, i + 1)
        else:
            size, i = 1, i + (2 if ch == "\\" else 1)       # a backslash and the character it escapes
        if size > MAX_UNITS:
            return size
        frames[-1][0].append(size)
    return sum(sum(pieces) for pieces, _ in frames)


def _open(pattern: str, i: int, frames: list) -> int:
    """Reads what starts with the "(" at pattern[i] and returns the index after it: a comment is
    skipped, flags "(?x)" apply to the rest of the current group, anything else opens a group."""
    pieces, verbose = frames[-1]
    if comment := _COMMENT.match(pattern, i):
        return comment.end()
    flags = _FLAGS.match(pattern, i)
    if flags is None:
        frames.append(([], verbose))
        return i + 1
    on, off, end = flags.groups()
    verbose = (verbose or "x" in on) and "x" not in (off or "")
    if end == ")":
        frames[-1] = (pieces, verbose)
    else:
        frames.append(([], verbose))
    return flags.end()


def _skip(pattern: str, i: int, verbose: bool) -> int:
    """Index of the next character that counts from i: verbose mode skips white space and comments,
    which `regex` ends at the next newline (`re` reads on past an escaped one)."""
    while verbose and i < len(pattern):
        if pattern[i].isspace():
            i += 1
        elif pattern[i] == "#":
            end = pattern.find("\n", i)
            i = len(pattern) if end < 0 else end
        else:
            break
    return i


def _repeat(pattern: str, i: int, verbose: bool) -> tuple[int, int] | None:
    """(least count, index after it) of the repeat at pattern[i], "?", "*", "+" or a count {m,n} with
    its lazy "?" or possessive "+"; None for a "{" that starts no count (a literal "{")."""
    if pattern[i] == "{":
        count = _count(pattern, i + 1, verbose)
        if count is None:
            return None
        least, i = count
    else:
        least, i = int(pattern[i] == "+"), i + 1
    after = _skip(pattern, i, verbose)
    return least, (after + 1 if pattern[after:after + 1] in ("?", "+") else i)


def _count(pattern: str, i: int, verbose: bool) -> tuple[int, int] | None:
    """(m, index after the "}") of a count "m}", "m,}", "m,n}" or ",n}" that starts at pattern[i], just
    after its "{"; None if there is none. Verbose mode skips spaces and comments inside it, as `regex`
    does (`re` takes "{ 5}" as literal text)."""
    least, i = _digits(pattern, i, verbose)
    if pattern.startswith(",", i):
        _, i = _digits(pattern, i + 1, verbose)
    elif not least:
        return None
    return (int(least or 0), i + 1) if pattern.startswith("}", i) else None


def _digits(pattern: str, i: int, verbose: bool) -> tuple[str, int]:
    """The ASCII digits from pattern[i] on, and the index of the next character that counts after them."""
    digits = []
    while (i := _skip(pattern, i, verbose)) < len(pattern) and pattern[i] in "0123456789":
        digits.append(pattern[i])
        i += 1
    return "".join(digits), i


def _set_end(pattern: str, i: int) -> int:
    """Index after the set whose "[" is at pattern[i - 1]: a first "]" (after an optional "^") is a
    member, as is a POSIX class; white space and "#" are members even in verbose mode."""
    i += pattern.startswith("^", i)
    first = True
    while i < len(pattern) and (first or pattern[i] != "]"):
        posix = _POSIX.match(pattern, i)
        i = posix.end() if posix else i + (2 if pattern[i] == "\\" else 1)
        first = False
    return i + 1
