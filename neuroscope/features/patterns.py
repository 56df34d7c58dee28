"""User regular expressions as features, with bounded work.

    >>> pattern_labels("num", "[0-9]+", "ab 12")                # uint8 [5]
    array([0, 0, 0, 1, 1], dtype=uint8)

A pattern is Python `re` syntax, checked by `re` (so errors read as they always have), then run
by the `regex` module with a time limit: a pattern that backtracks catastrophically (`(a+)+$` on
a few thousand `a`s) ends in a one-line UserError instead of running for hours. The pattern's
size is bounded too, because `regex` expands a counted repeat `a{m}` into m copies when it
compiles (`a{1000000000}` would never finish compiling).
"""
from __future__ import annotations

import re
from re import _parser as sre_parse  # the stdlib's own parse tree: the one reading of re syntax

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

# Largest pattern, in units of the parse tree (a character, a set, a group...) after counted
# repeats are expanded: compiling 10,000 units takes `regex` at most ~0.2 s; realistic patterns
# hold well under 1,000.
MAX_UNITS = 10_000

_REPEATS = {"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"}


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
        re.compile(pattern)
        units = _units(sre_parse.parse(pattern))
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


def _units(items) -> int:
    """Size of a parsed pattern with each counted repeat {m,n} counted m times (at least once)."""
    total = 0
    for op, av in items:
        inner = sum(_units(sub) for sub in _subpatterns(av))
        if str(op) in _REPEATS:
            total += 1 + max(int(av[0]), 1) * inner
            if total > MAX_UNITS:   # stop early: nested huge counts would make giant numbers
                return total
        else:
            total += 1 + inner
    return total


def _subpatterns(av):
    """The parsed sub-patterns inside one node's arguments, at any depth of tuples and lists."""
    if isinstance(av, sre_parse.SubPattern):
        yield av
    elif isinstance(av, (tuple, list)):
        for item in av:
            yield from _subpatterns(item)
