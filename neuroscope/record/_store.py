"""The activation store: recorded states on disk, one memory-mappable .npy per quantity.

    >>> plan = plan_store(ckpt.config, n_chars=200_000, states=("h", "c"), dtype="float16")
    >>> plan.bytes                                       # disk use, known before anything is written
    >>> acts = write_store("acts/", ckpt, span, states=("h", "c"))   # -> Activations
    >>> acts = open_store("acts/")
    >>> acts["l2_c"]                                     # numpy memmap [chars, units], nothing read yet
    >>> acts["rnn.l2.c"][:, 323], acts.unit("l2.c.323")  # one unit's column

Layout of DIR:
- `meta.json`: format, model (path, config), text span (source, start, end, chars, split), unknown
  characters, names, shapes, dtype, the largest |value| of each file, streams/warmup, bytes;
- `text.txt`: the span itself (UTF-8), so that features can be labelled against the store;
- `l{layer}_{state}.npy` [chars, units] (state in h, c, i, f, g, o, r, z, n): row k is the state after
  reading character k of the span, starting from a zero state at its first character.

A store is written into a hidden temporary folder beside DIR and renamed into place when complete, so
DIR is never half-written (neuroscope.files: an existing DIR is replaced only with force, and only if it
is an activation store that is not an input of the command and holds nothing but its own files); a
store larger than the free disk is refused before anything is written. The recording runs in a worker
thread while the calling thread waits, so that Ctrl-C (and SIGTERM, SIGHUP) is obeyed at once even in
the middle of a chunk that torch computes for seconds: the temporary folder is removed and nothing is
left behind. float16 keeps 11 significant bits (relative error <= 2**-11); a value beyond its range
(65,504) stops the recording with an error instead of storing inf, and so does a NaN or inf state in
either dtype (naming the quantity, character and unit).
"""
from __future__ import annotations

import atexit
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..files import STORE_FORMAT, check_output, json_ready, publish_dir, temp_dir
from ..names import parse_quantity, parse_states, unit_id
from ._states import iter_states, recorded_names, stream_layout
from ..text import MAX_TEXT_BYTES, read_bytes, regular_file_size

FORMAT = STORE_FORMAT
DTYPES = ("float32", "float16")
SPARE_BYTES = 64 << 20          # keep this much disk free beyond the store itself
FLOAT16_MAX = 65504.0           # cells of the 3x512 models reach |c| > 26,000 within 50k characters
META_BYTES = 16 << 20           # a store's meta.json is kilobytes


@dataclass
class StorePlan:
    names: list[str]                # recorder names, e.g. "rnn.l0.h"
    chars: int
    units: int
    dtype: str

    @property
    def bytes(self) -> int:
        """Disk use of the .npy files (headers included)."""
        return len(self.names) * (self.chars * self.units * np.dtype(self.dtype).itemsize + 128)

    def describe(self) -> str:
        return (f"{len(self.names)} arrays of [{self.chars:,} x {self.units}] {self.dtype}, "
                f"{self.bytes / 2**20:,.1f} MiB")


def plan_store(config, n_chars: int, states=("h", "c"), dtype: str = "float32") -> StorePlan:
    """What a store of n_chars characters will hold, and its size, before recording anything."""
    if dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}", param="dtype")
    return StorePlan(recorded_names(config, states), n_chars, config.hidden_size, dtype)


def check_disk(plan: StorePlan, out: Path) -> None:
    free = shutil.disk_usage(out.resolve().parent).free
    if plan.bytes + SPARE_BYTES > free:
        raise UserError(f"the store needs {plan.bytes / 2**20:,.1f} MiB but only {free / 2**20:,.1f} MiB are free "
                        f"beside {out}; record fewer characters, fewer states or in dtype float16")


def write_store(out: str | os.PathLike, ckpt, span, states=("h", "c"), dtype: str = "float32",
                streams: int = 1, warmup: int = 0, force: bool = False, chunk: int = 4096,
                progress: bool = False) -> "Activations":
    """Record `span` (a checkpoint.TextSpan) with `ckpt` into the folder `out`; see the module docstring.

    Characters not in the vocabulary are read as the fallback character and counted in meta.json.
    """
    inputs = [ckpt.path, span.source]
    out = check_output(out, "store", force, inputs)
    plan = plan_store(ckpt.config, len(span.text), states, dtype)
    check_disk(plan, out)
    ids = ckpt.vocab.encode(span.text)
    streams, _, warmup = stream_layout(len(ids), streams, warmup)
    with temp_dir(out) as tmp:                      # removed whatever happens, once published too
        t0 = time.perf_counter()
        max_abs = _record_into(tmp, plan, ckpt.model, ids, parse_states(states),
                               chunk=chunk, progress=progress, streams=streams, warmup=warmup)
        seconds = time.perf_counter() - t0
        with open(tmp / "text.txt", "w", encoding="utf-8", newline="") as fh:    # keep CRLF as CRLF
            fh.write(span.text)
        meta = _meta(ckpt, span, plan, max_abs, streams, warmup, seconds)
        (tmp / "meta.json").write_text(json.dumps(json_ready(meta), indent=2, ensure_ascii=False), encoding="utf-8")
        publish_dir(tmp, out, "store", force, inputs)
    return open_store(out)


def _record_into(folder: Path, plan: StorePlan, model, ids, states, **kwargs) -> dict[str, float]:
    """Record into one .npy per name in `folder`; returns the largest |value| per name.

    Stops with a UserError at the first value that is not finite, or beyond float16's range in a
    float16 store: such a store would hold NaN or inf (and Python's max() drops a NaN silently).
    The files are made here, before the worker starts, so that a folder removed after an interrupt
    gets no new file from a worker still finishing its chunk; the worker closes them.
    """
    files: dict[str, _NpyFile] = {}
    try:
        for name in plan.names:
            files[name] = _NpyFile(folder / f"{parse_quantity(name).stem}.npy", plan.dtype, (plan.chars, plan.units))
    except BaseException:
        for f in files.values():
            f.close()
        raise
    return _in_worker(lambda stop: _fill(files, plan, model, ids, states, stop, **kwargs))


def _fill(files: dict, plan: StorePlan, model, ids, states, stop: threading.Event, **kwargs) -> dict[str, float]:
    """The worker of _record_into: record chunk by chunk into `files`, until done or `stop` is set."""
    max_abs = dict.fromkeys(plan.names, 0.0)
    try:
        for start, acts in iter_states(model, ids, states, **kwargs):
            if stop.is_set():                                      # the caller was interrupted and left
                break
            for name, v in acts.items():
                hi, lo = float(v.max()), float(v.min())            # NaN if any value is NaN
                if not (math.isfinite(hi) and math.isfinite(lo)):
                    _refuse(name, start, v, ~np.isfinite(v), "")
                max_abs[name] = max(max_abs[name], hi, -lo)
                if plan.dtype == "float16" and max_abs[name] > FLOAT16_MAX:
                    _refuse(name, start, v, np.abs(v) > FLOAT16_MAX, f"{max_abs[name]:,.3f}".rstrip("0").rstrip("."))
                files[name].write_rows(start, v)
        for f in files.values():
            if not stop.is_set():
                f.sync()
    finally:
        for f in files.values():
            f.close()
    return max_abs


def _in_worker(work):
    """work(stop) in a daemon thread while this thread waits for it, returning its result or raising its
    error. Python runs signal handlers in the main thread between bytecodes, so a main thread inside a
    torch kernel that takes seconds would obey Ctrl-C only after it; a main thread that waits obeys at
    once: it sets `stop` (the worker ends after its chunk, or with the process) and raises."""
    stop, done, box = threading.Event(), threading.Event(), {}

    def run():
        try:
            box["result"] = work(stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread, which raises it
            box["error"] = exc
        finally:
            done.set()

    worker = threading.Thread(target=run, name="neuroscope-record", daemon=True)
    worker.start()
    try:
        while not done.wait(0.1):       # not Thread.join: interrupted, it may mark a live thread stopped
            pass
    except BaseException as exc:
        stop.set()
        if not _ABANDONED:
            atexit.register(_end_with_abandoned_workers)
        _ABANDONED.append((worker, done, getattr(exc, "signum", signal.SIGINT)))
        raise
    if "error" in box:
        raise box["error"]
    return box["result"]


_ABANDONED: list[tuple[threading.Thread, threading.Event, int]] = []   # workers left by an interrupt, and why


def _end_with_abandoned_workers() -> None:
    """At exit, a worker left by an interrupt may still be inside a torch kernel, and a Python thread that
    comes back from one while the interpreter shuts down takes the process down with abort() ("terminate
    called without an active exception", status 134, perhaps a core file). Give it half a second to end
    its chunk (and the thread to end: past `done` it touches no torch); else end the process as the signal
    would have by default (status 128 + signal)."""
    for worker, done, signum in _ABANDONED:
        if done.wait(0.5):
            worker.join(0.5)
        if worker.is_alive():
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError, AttributeError):
                    pass
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            os._exit(128 + signum)                  # if the signal is blocked in this thread


class _NpyFile:
    """A .npy file of a known dtype and shape [rows, units], written rows at a time at their place.

    Plain positioned writes rather than a memory map, which takes a page fault for every 4 KiB it
    writes (a 1.14 GiB store: 2.7 s through a map, 2.1 s by os.pwrite, the disk's own pace).
    """

    def __init__(self, path: Path, dtype: str, shape: tuple[int, int]):
        self.dtype, self.row_bytes = np.dtype(dtype), shape[1] * np.dtype(dtype).itemsize
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": shape}
        with open(path, "wb") as fh:
            np.lib.format.write_array_header_1_0(fh, header)
            self.offset = fh.tell()
        self.fd = os.open(path, os.O_WRONLY)
        os.ftruncate(self.fd, self.offset + shape[0] * self.row_bytes)

    def write_rows(self, start: int, v: np.ndarray) -> None:
        data = memoryview(np.ascontiguousarray(v, dtype=self.dtype)).cast("B")
        at = self.offset + start * self.row_bytes
        while len(data):
            n = os.pwrite(self.fd, data, at)
            data, at = data[n:], at + n

    def sync(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _refuse(name: str, start: int, v: np.ndarray, bad: np.ndarray, reached: str):
    """The UserError for the first bad value of v [n, H] (rows from position start): not finite when
    reached is "", else beyond float16's range."""
    row, unit = np.argwhere(bad)[0]
    q = parse_quantity(name)
    where = f"character {start + row} of the span (unit {unit_id(q.layer, q.state, unit)})"
    if not reached:
        shown = "NaN" if np.isnan(v[row, unit]) else f"{v[row, unit]:f}"
        raise UserError(f"{q.stem} is {shown} at {where}: are the model's weights finite? "
                        "(nothing was written)")
    raise UserError(f"{q.stem} reaches {reached}, beyond float16's {FLOAT16_MAX:,.0f}, at {where}: "
                    "record with dtype float32 (nothing was written)", param="dtype")


def _meta(ckpt, span, plan: StorePlan, max_abs: dict[str, float], streams: int, warmup: int,
          seconds: float) -> dict:
    """meta.json of a store (see the module docstring)."""
    stems = {n: parse_quantity(n).stem for n in plan.names}
    return {"format": FORMAT,
            "model": {"path": str(ckpt.path) if ckpt.path else None, "config": ckpt.config.to_dict(),
                      "vocab_size": len(ckpt.vocab)},
            "text": {"source": str(span.source), "start": span.start, "end": span.start + len(span.text),
                     "chars": len(span.text), "split": span.split,
                     "unknown_chars": ckpt.vocab.count_unknown(span.text),
                     "fallback_char": ckpt.vocab.chars[ckpt.vocab.fallback_id]},
            "names": plan.names, "files": {n: f"{stems[n]}.npy" for n in plan.names},
            "shape": [plan.chars, plan.units], "dtype": plan.dtype,
            "max_abs": {stems[n]: v for n, v in max_abs.items()}, "streams": streams, "warmup": warmup,
            "exact": streams == 1, "bytes": plan.bytes, "seconds": round(seconds, 3)}


class Activations:
    """A store opened lazily: arrays are memory-mapped on first access, never read whole.

    acts[name] -> numpy memmap [chars, units]; name as the recorder's ("rnn.l2.c"), the file's ("l2_c")
    or the CLI's ("l2.c"). acts.unit("l2.c.323") -> float32 [chars]; acts.text; acts.meta; len(acts).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.is_file():
            raise UserError(f"{self.path} is not an activation store (no meta.json)")
        try:
            self.meta = json.loads(read_bytes(meta_path, "store's meta.json", META_BYTES).decode("utf-8"))
        except ValueError as exc:               # UserError too: a FIFO, a file too large, bad JSON
            raise UserError(f"{meta_path} is unreadable ({str(exc).splitlines()[0]})") from None
        if self.meta.get("format") != FORMAT:
            raise UserError(f"{self.path} is not a {FORMAT} store (format: {self.meta.get('format')!r})")
        self.names: list[str] = list(self.meta["names"])
        self._open: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return int(self.meta["shape"][0])

    def __contains__(self, key: str) -> bool:
        try:
            return parse_quantity(key).name in self.names
        except UserError:
            return False

    def __getitem__(self, key: str) -> np.ndarray:
        name = parse_quantity(key).name
        if name not in self.names:
            held = ", ".join(self._stems())
            raise UserError(f"{key!r} is not in the store {self.path}; it holds {held}")
        if name not in self._open:
            path = self.path / self.meta["files"][name]
            regular_file_size(path, "array", 1 << 62)       # np.load would open a FIFO and wait
            self._open[name] = np.load(path, mmap_mode="r")
        return self._open[name]

    def unit(self, unit_id: str) -> np.ndarray:
        """One unit's values, float32 [chars]: unit_id as "l2.c.323" (layer, state, unit, all 0-based)."""
        key, _, index = unit_id.rpartition(".")
        if not index.isdigit():
            raise UserError(f"bad unit id {unit_id!r}; expected like l2.c.323")
        column = self[key]
        if int(index) >= column.shape[1]:
            raise UserError(f"unit {unit_id} does not exist: layers have {column.shape[1]} units")
        return np.asarray(column[:, int(index)], dtype=np.float32)

    def _stems(self) -> list[str]:
        return [parse_quantity(n).stem for n in self.names]

    @property
    def text(self) -> str:
        """The recorded span, exactly (line ends untranslated)."""
        raw = read_bytes(self.path / "text.txt", "store's text", MAX_TEXT_BYTES)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(f"{self.path / 'text.txt'} is not UTF-8 ({exc.reason} at byte {exc.start})") from None

    def __repr__(self) -> str:
        return (f"Activations({str(self.path)!r}: {len(self)} chars, {', '.join(self._stems())}, "
                f"{self.meta['dtype']})")


def open_store(path: str | os.PathLike) -> Activations:
    """Open a store written by write_store / `neuroscope record` (lazily, memory-mapped)."""
    return Activations(path)
