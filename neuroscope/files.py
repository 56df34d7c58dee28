"""The one way neuroscope writes what a user keeps: atomically, and never over what it must not replace.

    >>> out = check_output("report.html", kind="html", inputs=[ckpt_path, text_path])  # before the work
    >>> ... expensive work ...
    >>> write_text(out, page, kind="html", inputs=[ckpt_path, text_path])                # after it

Rules, the same for every command:
- an existing file or folder is replaced only with force;
- force never replaces an input of the same command (compared as files, so links and other
  spellings of the same path count), nor something of another kind: an HTML report replaces only an
  HTML page, a checkpoint only a checkpoint, an activation store only an activation store;
- a write goes to a temporary beside the target, is flushed to disk, then renamed over it, so a
  kill or a full disk leaves the old file (or nothing) and never half a file. Temporaries carry the
  writing process's id; one left by a killed run is removed by the next write beside it.

Check the output with `check_output` where the input enters, before the expensive work, and write
with the same arguments after it.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

from .errors import UserError

TMP_TAG = ".neuroscope-tmp-"          # hidden temporaries: ".{name}.neuroscope-tmp-{pid}-{random}"
_TMP = re.compile(r"\.(?P<name>.+)\.neuroscope-tmp-(?P<pid>\d+)-[A-Za-z0-9_]+")
STORE_FORMAT = "neuroscope-activations/1"


def _sniff_html(p: Path) -> bool:
    head = _head(p).lstrip().lower()
    return head.startswith(b"<!doctype html") or head.startswith(b"<html")


def _sniff_json(p: Path) -> bool:
    return _head(p).lstrip()[:1] in (b"{", b"[")


def _sniff_text(p: Path) -> bool:
    head = _head(p, 65536)
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:       # a multi-byte character cut at the end is still text
        return exc.start >= len(head) - 3
    return True


def _sniff_checkpoint(p: Path) -> bool:
    return zipfile.is_zipfile(p) or _head(p, 2) == b"\x80\x02"     # torch.save's zip, or its legacy pickle


def _sniff_png(p: Path) -> bool:
    return _head(p, 8) == b"\x89PNG\r\n\x1a\n"


def is_store(p: Path) -> bool:
    """A folder holding an activation store (its meta.json names the store format)."""
    try:
        return p.is_dir() and json.loads((p / "meta.json").read_text("utf-8")).get("format") == STORE_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


# kind -> (what it is called in messages, is it a folder, does an existing path hold one)
KINDS: dict[str, tuple[str, bool, Callable[[Path], bool]]] = {
    "html": ("an HTML page", False, _sniff_html),
    "json": ("a JSON file", False, _sniff_json),
    "csv": ("a text table", False, _sniff_text),
    "text": ("a text file", False, _sniff_text),
    "checkpoint": ("a checkpoint", False, _sniff_checkpoint),
    "png": ("a PNG picture", False, _sniff_png),
    "store": ("an activation store", True, is_store),
}


def _head(p: Path, n: int = 512) -> bytes:
    try:
        with open(p, "rb") as fh:
            return fh.read(n)
    except OSError:
        return b""


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _inside(inner: Path, folder: Path) -> bool:
    try:
        inner.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def check_output(path: str | os.PathLike, kind: str, force: bool = False,
                 inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Refuse (UserError) an output location that must not be written, before any work is done.

    kind: one of KINDS. inputs: the command's input paths (None entries are ignored).
    Returns the path as a Path. Missing parent folders are refused, not made.
    """
    what, is_dir, holds = KINDS[kind]
    out = Path(path)
    for src in (Path(i) for i in inputs if i is not None):
        if src.exists() and (_same(out, src) or (is_dir and out.exists() and _inside(src, out))):
            raise UserError(f"{out} is an input of this command; write the output elsewhere", param="out")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"cannot write {out}: folder {parent} does not exist", param="out")
    if out.is_symlink() and not out.exists():
        raise UserError(f"{out} is a broken link; remove it or write elsewhere", param="out")
    if out.exists():
        if not force:
            raise UserError(f"{out} exists; set force to replace it", param="force")
        if out.is_dir() != is_dir or not holds(out):
            found = "a folder" if out.is_dir() else "a file"
            raise UserError(f"{out} is {found} that is not {what}; refusing to replace it even with force",
                            param="out")
    if not os.access(parent, os.W_OK):
        raise UserError(f"cannot write {out}: folder {parent} is not writable", param="out")
    return out


def _clean_stale(folder: Path) -> None:
    """Remove temporaries left beside `folder`'s files by runs that were killed."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    for e in entries:
        m = _TMP.fullmatch(e.name)
        if m and not _alive(int(m["pid"])):
            shutil.rmtree(e, ignore_errors=True) if e.is_dir() else e.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tmp_prefix(out: Path) -> str:
    return f".{out.name}{TMP_TAG}{os.getpid()}-"


def _os_error(out: Path, exc: OSError) -> UserError:
    return UserError(f"cannot write {out}: {exc.strerror or exc}", param="out")


def write_with(path: str | os.PathLike, write: Callable[[BinaryIO], None], kind: str, force: bool = False,
               inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Write a file atomically through `write(binary_file)`, after the rules of `check_output`."""
    out = check_output(path, kind, force, inputs)
    folder = out.parent if str(out.parent) else Path(".")
    _clean_stale(folder)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(out), dir=folder)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)           # mkstemp makes it private; outputs are ordinary files
        os.replace(tmp, out)
    except OSError as exc:
        raise _os_error(out, exc) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return out


def write_text(path: str | os.PathLike, text: str, kind: str = "text", force: bool = False,
               inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Write UTF-8 text atomically (newlines as given), after the rules of `check_output`."""
    data = text.encode("utf-8", errors="surrogateescape")
    return write_with(path, lambda fh: fh.write(data), kind, force, inputs)


def json_ready(obj):
    """Plain JSON-ready Python: numpy scalars and arrays -> Python numbers and lists, NaN and inf -> None,
    tuples -> lists, keys -> str. The one rule for every JSON neuroscope prints or writes."""
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        obj = obj.tolist()                      # numpy scalars and arrays, torch tensors
        if isinstance(obj, list):
            return json_ready(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str | os.PathLike, obj, force: bool = False, inputs: Iterable[str | os.PathLike | None] = (),
               indent: int | None = 1) -> Path:
    """Write `json_ready(obj)` atomically as strict JSON (no NaN), after the rules of `check_output`."""
    text = json.dumps(json_ready(obj), indent=indent, ensure_ascii=False, allow_nan=False) + "\n"
    return write_text(path, text, "json", force, inputs)


def make_temp_dir(out: Path) -> Path:
    """A temporary folder beside `out` to fill before `publish_dir`; stale ones of killed runs are removed."""
    folder = out.parent if str(out.parent) else Path(".")
    _clean_stale(folder)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(out), dir=folder))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)           # mkdtemp makes it private; a store is not
    except OSError as exc:
        raise _os_error(out, exc) from None
    return tmp


def publish_dir(tmp: Path, path: str | os.PathLike, kind: str, force: bool = False,
                inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Move the finished folder `tmp` to `path`, after the rules of `check_output`.

    An existing folder (of the same kind, with force) is moved aside first and removed only after the
    new one is in place, so a failure leaves the old one.
    """
    out = check_output(path, kind, force, inputs)
    old = None
    try:
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=_tmp_prefix(out), dir=tmp.parent))
            os.replace(out, old / "old")
        try:
            os.replace(tmp, out)
        except BaseException:
            if old is not None:
                os.replace(old / "old", out)
            raise
    except OSError as exc:
        raise _os_error(out, exc) from None
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return out


class WriterLock:
    """One writer per output: `with WriterLock(out):` holds the kernel's exclusive lock (flock) on a hidden
    ".{name}.neuroscope-lock" beside `out` that holds the writer's process id, so a second run writing `out`
    is refused at once, naming the first (UserError, param "out"). The lock ends with its process however
    that ends: the file of a killed run is taken over; a clean exit removes it. Where the file system has
    no locks (flock's EINVAL, ENOLCK: some network mounts), the run goes on unguarded."""

    def __init__(self, path: str | os.PathLike):
        self.out = Path(path)
        self.path, self.fd = self.out.with_name(f".{self.out.name}.neuroscope-lock"), None

    def __enter__(self) -> "WriterLock":
        import fcntl
        while self.fd is None:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise _os_error(self.out, exc) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
                os.close(fd)
                raise UserError(f"{self.out} is being written by another run (process {holder}); wait for it "
                                f"to end, or write elsewhere", param="out") from None
            except OSError:
                pass
            try:                                # its last holder may have removed it since we opened it
                self.fd = fd if os.path.samestat(os.fstat(fd), os.stat(self.path)) else os.close(fd)
            except FileNotFoundError:
                os.close(fd)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)
        return self

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)       # while locked: a run that opened it meanwhile sees it gone
        os.close(self.fd)
        self.fd = None
