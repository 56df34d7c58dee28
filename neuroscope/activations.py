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
DIR is never half-written; an existing DIR is replaced only with force=True, and a store larger than the
free disk is refused before anything is written. float16 keeps 11 significant bits (relative error
<= 2**-11); a value beyond its range (65,504) stops the recording with an error instead of storing inf.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError
from .record import iter_states, parse_states, state_names, stream_layout

FORMAT = "neuroscope-activations/1"
DTYPES = ("float32", "float16")
SPARE_BYTES = 64 << 20          # keep this much disk free beyond the store itself
FLOAT16_MAX = 65504.0           # cells of the 3x512 models reach |c| > 26,000 within 50k characters


def file_stem(name: str) -> str:
    """Recorder name -> file stem: "rnn.l2.c" -> "l2_c", "rnn.l0.gate_f" -> "l0_f"."""
    layer, state = name.split(".")[-2:]
    return f"{layer}_{state[5:] if state.startswith('gate_') else state}"


def recorder_name(key: str) -> str:
    """"l2_c", "l2.c", "rnn.l2.c", "l0_f", "l0.gate_f" -> the recorder's name ("rnn.l2.c", "rnn.l0.gate_f")."""
    m = re.fullmatch(r"(?:rnn\.)?l(\d+)[._](h|c|gate_[ifgorzn]|[ifgorzn])", key)
    if not m:
        raise UserError(f"bad quantity name {key!r}; expected like l2.c, l2_c, rnn.l2.c or l0_f")
    state = m.group(2)
    return f"rnn.l{m.group(1)}.{state if len(state) > 1 or state in 'hc' else 'gate_' + state}"


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
        raise UserError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    return StorePlan(state_names(config, parse_states(states)), n_chars, config.hidden_size, dtype)


def check_out_dir(out: str | os.PathLike, force: bool) -> Path:
    """The output folder, refused (UserError) if it exists without force or if it is a file."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder")
    if out.exists() and not force:
        raise UserError(f"{out} exists; pass --force to replace it")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise UserError(f"cannot create {out}: folder {parent} does not exist")
    return out


def check_disk(plan: StorePlan, out: Path) -> None:
    free = shutil.disk_usage(out.resolve().parent).free
    if plan.bytes + SPARE_BYTES > free:
        raise UserError(f"the store needs {plan.bytes / 2**20:,.1f} MiB but only {free / 2**20:,.1f} MiB are free "
                        f"beside {out}; record fewer --chars, fewer --states or --dtype float16")


def write_store(out: str | os.PathLike, ckpt, span, states=("h", "c"), dtype: str = "float32",
                streams: int = 1, warmup: int = 0, force: bool = False, chunk: int = 4096,
                progress: bool = False) -> "Activations":
    """Record `span` (a checkpoint.TextSpan) with `ckpt` into the folder `out`; see the module docstring.

    Characters not in the vocabulary are read as the fallback character and counted in meta.json.
    """
    out = check_out_dir(out, force)
    plan = plan_store(ckpt.config, len(span.text), states, dtype)
    check_disk(plan, out)
    ids = ckpt.vocab.encode(span.text)
    streams, _, warmup = stream_layout(len(ids), streams, warmup)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.resolve().parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)                  # mkdtemp makes it private; a store is not
        arrays = {name: np.lib.format.open_memmap(tmp / f"{file_stem(name)}.npy", mode="w+", dtype=dtype,
                                                  shape=(plan.chars, plan.units)) for name in plan.names}
        t0 = time.perf_counter()
        max_abs = dict.fromkeys(plan.names, 0.0)
        for start, acts in iter_states(ckpt.model, ids, parse_states(states),
                                       chunk=chunk, progress=progress, streams=streams, warmup=warmup):
            for name, v in acts.items():
                max_abs[name] = max(max_abs[name], float(v.max()), -float(v.min()))
                if dtype == "float16" and max_abs[name] > FLOAT16_MAX:
                    raise UserError(f"{file_stem(name)} reaches {max_abs[name]:,.0f}, beyond float16's "
                                    f"{FLOAT16_MAX:,.0f}: record with --dtype float32 (nothing was written)")
                arrays[name][start:start + len(v)] = v
        seconds = time.perf_counter() - t0
        for a in arrays.values():
            a.flush()
        del arrays
        with open(tmp / "text.txt", "w", encoding="utf-8", newline="") as fh:    # keep CRLF as CRLF
            fh.write(span.text)
        meta = {"format": FORMAT, "model": {"path": str(ckpt.path) if ckpt.path else None,
                                            "config": ckpt.config.to_dict(), "vocab_size": len(ckpt.vocab)},
                "text": {"source": str(span.source), "start": span.start, "end": span.start + len(span.text),
                         "chars": len(span.text), "split": span.split,
                         "unknown_chars": ckpt.vocab.count_unknown(span.text),
                         "fallback_char": ckpt.vocab.chars[ckpt.vocab.fallback_id]},
                "names": plan.names, "files": {n: f"{file_stem(n)}.npy" for n in plan.names},
                "shape": [plan.chars, plan.units], "dtype": dtype,
                "max_abs": {file_stem(n): v for n, v in max_abs.items()}, "streams": streams, "warmup": warmup,
                "exact": streams == 1, "bytes": plan.bytes, "seconds": round(seconds, 3)}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return open_store(out)


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished folder to `out`; an old `out` is moved aside first and removed after."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.resolve().parent))
        os.replace(out, old / "store")
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:
            os.replace(old / "store", out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


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
            self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"{meta_path} is unreadable ({exc})") from None
        if self.meta.get("format") != FORMAT:
            raise UserError(f"{self.path} is not a {FORMAT} store (format: {self.meta.get('format')!r})")
        self.names: list[str] = list(self.meta["names"])
        self._open: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return int(self.meta["shape"][0])

    def __contains__(self, key: str) -> bool:
        try:
            return recorder_name(key) in self.names
        except UserError:
            return False

    def __getitem__(self, key: str) -> np.ndarray:
        name = recorder_name(key)
        if name not in self.names:
            held = ", ".join(map(file_stem, self.names))
            raise UserError(f"{key!r} is not in the store {self.path}; it holds {held}")
        if name not in self._open:
            self._open[name] = np.load(self.path / self.meta["files"][name], mmap_mode="r")
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

    @property
    def text(self) -> str:
        """The recorded span, exactly (line ends untranslated)."""
        with open(self.path / "text.txt", encoding="utf-8", newline="") as fh:
            return fh.read()

    def __repr__(self) -> str:
        return (f"Activations({str(self.path)!r}: {len(self)} chars, {', '.join(map(file_stem, self.names))}, "
                f"{self.meta['dtype']})")


def open_store(path: str | os.PathLike) -> Activations:
    """Open a store written by write_store / `neuroscope record` (lazily, memory-mapped)."""
    return Activations(path)
