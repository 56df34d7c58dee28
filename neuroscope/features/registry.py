"""The feature registry: every feature by name, and the calls that label a text with them.

    >>> label(text, "in_quote")                                   # uint8 [len(text)]
    >>> resolve(text, names=["in_url"], regexes=["num=[0-9]+"])   # {name: array [len(text)]}
    >>> register("vowel", lambda t: [c in "aeiou" for c in t])   # a user feature

Built-ins are labellers of a shared Scan, registered with @builtin by the modules beside this one;
user features are plain functions of the text, checked on every call.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

from ..errors import UserError
from .patterns import pattern_labels
from .scan import Scan, ranges_to_mask

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
    code_aware: bool = False       # depends on the text's language (c, python, prose)


FEATURES: dict[str, Feature] = {}
_BUILTIN: dict[str, Callable[[Scan], np.ndarray]] = {}   # built-in name -> labeller of a shared scan


def builtin(name: str, kind: str, description: str, baseline: bool = False, code_aware: bool = False):
    """Register a labeller of a Scan as a built-in feature (in the order of registration)."""
    def deco(impl: Callable[[Scan], np.ndarray]):
        _BUILTIN[name] = impl
        FEATURES[name] = Feature(name, kind, description,
                                 lambda text, _impl=impl: _finish(_impl(Scan(text)), kind),
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
        raise UserError(f"name {name!r} must start with a letter or _ and hold only letters, digits, _ . -",
                        param="name")
    if kind not in KINDS:
        raise UserError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}", param="kind")
    if not callable(fn):
        raise UserError(f"feature {name!r}: fn must be callable", param="fn")
    if name in _BUILTIN:
        raise UserError(f"{name!r} is a built-in feature; pick another name", param="name")
    if name in FEATURES and not replace:
        raise UserError(f"feature {name!r} is already registered (pass replace=True)", param="replace")

    def checked(text: str) -> np.ndarray:
        return _check_labels(fn(text), len(text), kind, f"feature {name!r}", param=None)

    doc = description or (fn.__doc__ or "").strip().split("\n")[0] or "user feature"
    FEATURES[name] = feat = Feature(name, kind, doc, checked)
    return feat


def _check_labels(values, n: int, kind: str | None, what: str, param: str | None) -> np.ndarray:
    """Validate labels made outside neuroscope: shape [n], finite numbers; binary -> uint8 0/1,
    count -> int32. kind None (a label file) decides by the values: only 0/1 -> uint8, other
    integers -> int32 (refused beyond its range), other numbers -> float32 (refused beyond its range,
    which would turn them into inf).

    This is where labels are made, so it looks at the values: an int64 file of 0s and 1s becomes
    uint8. Once made, kind_of reads the kind from the dtype alone, and agrees: uint8 -> "binary",
    int32 and float32 -> "count". Errors start with `what` and name `param`, the parameter at fault.
    """
    def fail(problem: str) -> UserError:
        return UserError(f"{what}: {problem}", param=param)

    try:
        arr = np.asarray(values)
    except Exception as exc:  # noqa: BLE001 - anything that is not an array is the user's input
        raise fail(f"labels are not an array ({exc})") from None
    if arr.ndim != 1 or arr.shape[0] != n:
        raise fail(f"expected one label per character, shape ({n},); got shape {arr.shape}")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise fail(f"labels must be numbers, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise fail("labels hold NaN or infinite values")
    integral = np.issubdtype(arr.dtype, np.integer) or bool(np.all(arr == np.round(arr)))
    is01 = integral and bool(np.all((arr == 0) | (arr == 1)))
    if kind == "binary" and not is01:
        raise fail("a binary feature must give only 0 and 1")
    if kind == "count" and not integral:
        raise fail("a count feature must give integers")
    if kind == "binary" or (kind is None and is01):
        return arr.astype(np.uint8)
    if integral:
        if arr.size and (arr.max() > np.iinfo(np.int32).max or arr.min() < np.iinfo(np.int32).min):
            raise fail("counts do not fit in int32")
        return arr.astype(np.int32)
    # Checked before the cast: float32 turns 1e300 into inf, after the finite check above has passed.
    if arr.size and np.abs(arr).max() > np.finfo(np.float32).max:
        raise fail(f"labels must lie within float32's range (|x| <= {np.finfo(np.float32).max:.1e}); "
                   f"got {np.abs(arr).max():.3g}")
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
        return _finish(_BUILTIN[name](Scan(text, lang)), FEATURES[name].kind)
    return FEATURES[name].fn(text)


def resolve(text: str, names: Iterable[str] = (), regexes: Iterable = (), files: Iterable = (),
            spans: Iterable = (), all_features: bool = False, lang: str = "auto",
            offset: int = 0) -> dict[str, np.ndarray]:
    """Every feature a command asked for, labelled over text: {name: array [len(text)]}.

    names:     registered feature names.
    regexes:   "NAME=PATTERN" strings or (name, pattern) pairs: 1 on every character of every
               match (Python re syntax; inline flags such as (?i) work), each with a time limit
               (patterns.time_limit) and a bounded size (patterns.MAX_UNITS).
    files:     "NAME=path.npy" or (name, path): a 1-D .npy array, one label per character of
               text; only 0/1 -> binary uint8, other integers -> int32, other numbers -> float32.
    spans:     "NAME=START:END[,START:END...]" or (name, [(start, end), ...]): 1 on [start, end)
               in source positions: text[0] is position `offset` (a command passes its
               TextSpan.start, so positions are those `neuroscope features --show` prints).
    all_features: every registered feature (baselines, built-ins, user features).
    Order: all features, then names, regexes, files, spans, as given. One scan of the text is
    shared by all built-ins. Raises UserError on an unknown name, a bad or runaway regex, a label
    file of the wrong length, a span outside the text, or a name given twice; the error's param is
    the argument at fault (regexes, files, spans).
    """
    scan = Scan(text, lang)
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
        name, pattern = _split_pair(item, "regexes", "NAME=PATTERN")
        put(name, pattern_labels(name, pattern, text))
    for item in files:
        name, path = _split_pair(item, "files", "NAME=labels.npy")
        put(name, _load_label_file(name, path, len(text)))
    for item in spans:
        name, ranges = _split_pair(item, "spans", "NAME=START:END[,START:END...]")
        put(name, _span_labels(name, ranges, len(text), offset))
    return out


def _split_pair(item, param: str, form: str) -> tuple[str, object]:
    """(name, value) of one "NAME=VALUE" string or (name, value) pair given in `param`."""
    if isinstance(item, str):
        name, sep, value = item.partition("=")
        if not sep or not value:
            raise UserError(f"{param} takes {form}, got {item!r}", param=param)
    else:
        name, value = item
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise UserError(f"{param}: bad feature name {name!r} (letters, digits, _ . -; a letter first)",
                        param=param)
    return name, value


def _load_label_file(name: str, path, n: int) -> np.ndarray:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"files {name}: no such file: {path}", param="files")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - a corrupt or pickled file is the user's input
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"files {name}: cannot read {path} as a .npy array ({msg})", param="files") from None
    return _check_labels(arr, n, None, f"files {name} ({path})", param="files")


def _span_labels(name: str, ranges, n: int, offset: int) -> np.ndarray:
    if isinstance(ranges, str):
        parsed = []
        for part in ranges.split(","):
            a, _, b = part.strip().partition(":")
            try:
                parsed.append((int(a), int(b)))
            except ValueError:
                raise UserError(f"spans {name}: expected START:END[,START:END...], got {ranges!r}",
                                param="spans") from None
        ranges = parsed
    starts, ends = [], []
    for a, b in ranges:
        if not (offset <= a < b <= offset + n):
            raise UserError(f"spans {name}: span {a}:{b} must have START < END and lie "
                            f"inside the text [{offset}, {offset + n})", param="spans")
        starts.append(a - offset)
        ends.append(b - offset)
    return ranges_to_mask(n, starts, ends)


