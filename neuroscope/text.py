"""Text in, character ids out: reading a corpus, its vocabulary, and its splits.

    >>> text = read_text("warpeace.txt")            # str, UTF-8, BOM kept as a character
    >>> vocab = Vocab.from_text(text)
    >>> ids = vocab.encode(text[:100])              # numpy int64 [100]
    >>> start, end = split_span(len(text), "test")  # last 10% by character index

Splits follow the reference checkpoints (../shared/models/README.md): the first 80% of the
decoded characters is training, the next 10% validation, the last 10% test, contiguous.
Characters that are not in a model's vocabulary are mapped to a fallback id (the id of " "
when the vocabulary has one, else 0) and counted, so that a text never stops a run; the
count is reported wherever it is not zero.

This module imports nothing of neuroscope's but its error type.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass

import numpy as np

from .errors import UserError

SPLITS = ("train", "val", "test", "all")


class TextError(UserError):
    """A text that cannot be used; the message is one line, fit for a user."""


# A text is held in memory several times over (bytes, str, int64 ids: ~10 bytes a character, more for
# recording), so 2 GiB of UTF-8 already needs tens of GiB; corpora for char-RNNs are megabytes.
MAX_TEXT_BYTES = 2 * 1024 ** 3
# A regular file that says it holds 0 bytes may be a window on the kernel (/proc/self/pagemap reads on
# for 256 GiB) or a FUSE file of unknown length: such a file is read up to this many bytes, no more.
UNSIZED_BYTES = 64 * 1024 ** 2


def regular_file_size(path: str, what: str, max_bytes: int, error: type[UserError] = UserError) -> int:
    """The size of `path` if it is a regular file of at most `max_bytes`; else `error` with one line.

    Checked with os.stat before anything opens the file: opening a FIFO blocks until a writer
    comes, and a device such as /dev/zero is read until memory runs out.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = " (a directory)" if stat.S_ISDIR(st.st_mode) else ""
        raise error(f"{path} is not a regular file{kind}")
    if st.st_size > max_bytes:
        raise error(f"{path} is {st.st_size:,} bytes; {what}s above {max_bytes:,} bytes are refused")
    return st.st_size


def read_bytes(path: str | os.PathLike, what: str, max_bytes: int, error: type[UserError] = UserError) -> bytes:
    """All bytes of `path`, a regular file of at most `max_bytes`; else `error` with one line. Never blocks
    and never reads without end: what is not a regular file is refused before it is opened (and again
    once open, in case it was swapped), and no more is read than the file's size says (UNSIZED_BYTES for
    one that says 0); a file that holds more (growing, or a kernel file) is refused.
    """
    path = os.fspath(path)
    size = regular_file_size(path, what, max_bytes, error)
    limit = size or min(max_bytes, UNSIZED_BYTES)
    try:
        with open(path, "rb", opener=_open_nonblocking) as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise error(f"{path} is not a regular file")
            data = fh.read(limit + 1)
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        said = f"says it holds {size:,} bytes" if size else "says it is empty"
        raise error(f"{path} {said} but reads on past {limit:,}: a growing or special file; "
                    f"copy it to a plain file first")
    return data


def _open_nonblocking(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))


def read_text(path: str | os.PathLike, min_chars: int = 2) -> str:
    """Read a whole text file as UTF-8 (a leading BOM stays in the text as U+FEFF).

    Line ends are kept as they are (CRLF stays CRLF): the models were trained on the raw text.
    Raises TextError with a one-line message for a missing, unreadable, undecodable or too-short file,
    for what is not a regular file, for a file above MAX_TEXT_BYTES, and for one that reads on past its
    size (read_bytes).
    """
    path = os.fspath(path)
    raw = read_bytes(path, "text file", MAX_TEXT_BYTES, TextError)
    try:
        # "utf-8", not "utf-8-sig": the BOM is a character of the corpus the models saw.
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TextError(
            f"{path} is not UTF-8 text (undecodable byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        ) from None
    if len(text) < min_chars:
        raise TextError(f"{path} holds {len(text)} characters; at least {min_chars} are needed")
    return text


def split_bounds(n_chars: int) -> dict[str, tuple[int, int]]:
    """Character spans [start, end) of the 80/10/10 split of a text of n_chars characters."""
    a, b = int(n_chars * 0.8), int(n_chars * 0.9)
    return {"train": (0, a), "val": (a, b), "test": (b, n_chars), "all": (0, n_chars)}


def split_span(n_chars: int, split: str) -> tuple[int, int]:
    """[start, end) of one named split; raises TextError on an unknown name."""
    if split not in SPLITS:
        raise TextError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}", param="split")
    return split_bounds(n_chars)[split]


def select_span(text: str, split: str | None = None, start: int | None = None,
                chars: int | None = None) -> tuple[int, int]:
    """The [start, end) a user asked for: a named split, or start/chars, or the whole text.

    start/chars may be combined with a split: they are then relative to the split's start,
    and must stay inside it.
    """
    lo, hi = split_span(len(text), split) if split else (0, len(text))
    s = lo + (start or 0)
    if start is not None and start < 0:
        raise TextError(f"start must be >= 0, got {start}", param="start")
    if chars is not None and chars < 1:
        raise TextError(f"chars must be >= 1, got {chars}", param="chars")
    e = hi if chars is None else s + chars
    if s >= hi or e > hi:
        where = f"the {split} split [{lo}, {hi})" if split else f"the text (0..{len(text)})"
        raise TextError(f"span [{s}, {e}) lies outside {where}")
    return s, e


@dataclass(frozen=True)
class Vocab:
    """Index -> character list, as stored in a checkpoint's "vocab"."""

    chars: tuple[str, ...]

    @classmethod
    def from_text(cls, text: str) -> "Vocab":
        return cls(tuple(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    @property
    def fallback_id(self) -> int:
        """Id used for characters the model never saw."""
        return self.chars.index(" ") if " " in self.chars else 0

    def encode(self, text: str) -> np.ndarray:
        """Character ids, int64 [len(text)]; unknown characters -> fallback_id (see count_unknown)."""
        lut = self._lut()
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        if codes.size and int(codes.max()) < lut.size:
            return lut[codes].astype(np.int64)
        # Rare characters beyond the table: look them up one by one.
        table = {c: i for i, c in enumerate(self.chars)}
        fb = self.fallback_id
        return np.fromiter((table.get(c, fb) for c in text), dtype=np.int64, count=len(text))

    def count_unknown(self, text: str) -> int:
        """How many characters of text are not in the vocabulary."""
        unknown = set(text) - set(self.chars)
        return sum(text.count(c) for c in unknown)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def _lut(self) -> np.ndarray:
        # Code point -> id table, at least over the Basic Multilingual Plane (256 KiB of int32).
        lut = getattr(self, "_lut_cache", None)
        if lut is None:
            size = max([0x10000] + [ord(c) + 1 for c in self.chars])
            lut = np.full(size, self.fallback_id, dtype=np.int32)
            for i, c in enumerate(self.chars):
                if ord(c) < lut.size:
                    lut[ord(c)] = i
            object.__setattr__(self, "_lut_cache", lut)
        return lut
