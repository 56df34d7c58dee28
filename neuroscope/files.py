"""The one way neuroscope writes what a user keeps: atomically, and never over what it must not replace.

    >>> out = check_output("report.html", kind="html", inputs=[ckpt_path, text_path])  # before the work
    >>> ... expensive work ...
    >>> write_text(out, page, kind="html", inputs=[ckpt_path, text_path])                # after it

Rules, the same for every command:
- outputs are regular files (a store, a dictionary: a folder): a device node, a FIFO, a socket or a link to one is
  refused from its stat alone, with or without force, and never opened (a FIFO would block);
- an existing file or folder is replaced only with force;
- force never replaces an input of the same command (compared as files, so links and other spellings of
  the same path count), nor something of another kind, nor what neuroscope did not make: an HTML report
  replaces only an HTML page, a checkpoint only a checkpoint, a CSV only a table as neuroscope writes them
  (a header of lower-case column names like `feature,kind,rank`, rows of as many fields, read in its first
  64 KiB: not a Python source, a note, a spreadsheet export),
  a store or a dictionary only one holding nothing but its own files (FOLDERS; a store's arrays listed
  in its meta.json): a folder with a file of the user's inside is refused whole;
- a write goes to a temporary beside the target, is flushed to disk, then renamed over it, so a
  kill or a full disk leaves the old file (or nothing) and never half a file. While a temporary
  exists, SIGTERM and SIGHUP raise `Interrupted` (a KeyboardInterrupt, like SIGINT) so that it is
  removed; only SIGKILL leaves one. Temporaries are named after their writer (machine, process id and
  start time): the next write beside one removes it only when that writer was on this machine and is
  gone, so a live run on another machine of a shared folder, or a user's file, is never touched."""
from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import re
import shutil
import signal
import socket
import stat
import tempfile
import threading
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

from .errors import UserError

TMP_TAG = ".neuroscope-tmp-"   # hidden temporaries: ".{name}.neuroscope-tmp-{host}-{pid}-{start}-{random}"
_TMP = re.compile(r"\..+\.neuroscope-tmp-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-(?P<start>\d+)-[A-Za-z0-9_]+", re.DOTALL)
STORE_FORMAT = "neuroscope-activations/1"
DICTIONARY_FORMAT = "neuroscope-dictionary/1"
# folder kind -> (its description file, the format that file names, the files it always may hold)
FOLDERS = {"store": ("meta.json", STORE_FORMAT, ("meta.json", "text.txt")),
           "dictionary": ("cfg.json", DICTIONARY_FORMAT,
                          ("cfg.json", "sae_weights.safetensors", "training_state.safetensors"))}
SNIFF_BYTES = 65536                          # how much of an existing output is read to tell its kind
_META_BYTES = 16 << 20                       # a store's meta.json is kilobytes; more is not one of ours
_CSV_NAME = re.compile(r"[a-z][a-z0-9_]*")   # a column name as neuroscope's tables spell them
# What stat says a path is, for the one-line refusal of what is not a regular file or a folder.
_SPECIAL = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
            (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP (`signum`) arrived while a temporary existed: raised like Ctrl-C so that it is removed."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


def _sniff_html(p: Path) -> bool:
    head = _head(p).lstrip().lower()
    return head.startswith(b"<!doctype html") or head.startswith(b"<html")


def _utf8(head: bytes) -> bool:
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:       # a multi-byte character cut at the end is still text
        return exc.start >= len(head) - 3
    return True


def _sniff_csv(p: Path) -> bool:
    """A table as neuroscope writes one (pandas' to_csv of tidy tables): a header of two or more distinct
    lower-case column names, then rows of as many fields. Any UTF-8 file is not enough: a CSV output
    must not replace a Python source or a note that happens to be text."""
    head = _head(p)
    if not _utf8(head):
        return False
    try:
        rows = [r for r in csv.reader(io.StringIO(head.decode("utf-8", errors="ignore"), newline="")) if r]
    except csv.Error:
        return False
    if len(head) == SNIFF_BYTES:
        rows = rows[:-1]                     # the last row read may be cut
    header = rows[0] if rows else []
    return (len(header) >= 2 and len(set(header)) == len(header) and all(_CSV_NAME.fullmatch(h) for h in header)
            and all(len(r) == len(header) for r in rows[1:]))


def _sniff_checkpoint(p: Path) -> bool:
    head = _head(p, 4)                  # torch.save's zip, or its legacy pickle
    return (head == b"PK\x03\x04" and zipfile.is_zipfile(p)) or head[:2] == b"\x80\x02"


def _folder_meta(p: Path, kind: str = "store") -> dict | None:
    """The description file (FOLDERS) of the neuroscope folder of `kind` at p, or None when p is not one."""
    name, fmt, _ = FOLDERS[kind]
    try:
        meta = json.loads(_read_regular(p / name, _META_BYTES + 1).decode("utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == fmt else None


def is_store(p: Path) -> bool:
    """A folder holding an activation store (its meta.json names the store format)."""
    return p.is_dir() and _folder_meta(p) is not None


def _folder_refusal(p: Path, kind: str) -> str | None:
    """Why force must not replace the neuroscope folder p: it holds what neuroscope did not write (anything
    but the kind's own files, for a store also the arrays meta.json lists, or one of those that is a link
    or a folder). None: it may (a folder that is not of the kind at all is refused by its kind)."""
    meta = _folder_meta(p, kind) if p.is_dir() else None
    if meta is None:
        return None
    listed = meta.get("files") if kind == "store" else None
    own = set(FOLDERS[kind][2]) | {f for f in (listed.values() if isinstance(listed, dict) else ()) if isinstance(f, str)}
    try:
        with os.scandir(p) as entries:
            foreign = sorted(e.name for e in entries if e.name not in own or not e.is_file(follow_symlinks=False))
    except OSError as exc:
        return f"cannot list {p}: {exc.strerror or exc}"
    if not foreign:
        return None
    shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
    return f"{p} holds what neuroscope did not write there ({shown}); move it out or write elsewhere"


# kind -> (what it is called in messages, is it a folder, does an existing path hold one)
KINDS: dict[str, tuple[str, bool, Callable[[Path], bool]]] = {
    "html": ("an HTML page", False, _sniff_html),
    "json": ("a JSON file", False, lambda p: _head(p).lstrip()[:1] in (b"{", b"[")),
    "csv": ("a table neuroscope wrote (CSV)", False, _sniff_csv),
    "text": ("a text file", False, lambda p: _utf8(_head(p))),
    "checkpoint": ("a checkpoint", False, _sniff_checkpoint),
    "png": ("a PNG picture", False, lambda p: _head(p, 8) == b"\x89PNG\r\n\x1a\n"),
    "onnx": ("an ONNX model", False, lambda p: _head(p, 1) == b"\x08"),    # ModelProto opens with ir_version
    "store": ("an activation store", True, is_store),
    "dictionary": ("a dictionary", True, lambda p: p.is_dir() and _folder_meta(p, "dictionary") is not None),
}


def _read_regular(p: Path, n: int) -> bytes:
    """Up to n bytes of p if it is a regular file (OSError otherwise). Opened without blocking (a FIFO
    swapped in after a stat would wait for a writer) and checked again on the open file."""
    with open(p, "rb", opener=lambda f, flags: os.open(f, flags | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))) as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise OSError(f"{p} is not a regular file")
        return fh.read(n)


def _head(p: Path, n: int = SNIFF_BYTES) -> bytes:
    try:
        return _read_regular(p, n)
    except OSError:
        return b""


def _special(st: os.stat_result) -> str | None:
    """What a path is when it is neither a regular file nor a folder ("a FIFO (named pipe)", ...)."""
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        return None
    return next((name for test, name in _SPECIAL if test(st.st_mode)), "a special file")


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file: by identity where both exist (links, other spellings), else resolved."""
    a, b = Path(a), Path(b)
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
        if src.exists() and (same_file(out, src) or (is_dir and out.is_dir() and _inside(src, out))):
            raise UserError(f"{out} is an input of this command; write the output elsewhere", param="out")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"cannot write {out}: folder {parent} does not exist", param="out")
    if out.is_symlink() and not out.exists():
        raise UserError(f"{out} is a broken link; remove it or write elsewhere", param="out")
    try:
        st = os.stat(out)                       # stat only: a FIFO or a device is never opened
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise _os_error(out, exc) from None
    if st is not None:
        special = _special(st)
        if special:
            raise UserError(f"{out} is {special}; neuroscope writes {'a folder' if is_dir else 'a regular file'} "
                            "and never replaces one, even with force", param="out")
        if not force:
            raise UserError(f"{out} exists; set force to replace it", param="force")
        refusal = _folder_refusal(out, kind) if kind in FOLDERS else None
        if refusal:
            raise UserError(refusal, param="out")
        if stat.S_ISDIR(st.st_mode) != is_dir or not holds(out):
            found = "a folder" if stat.S_ISDIR(st.st_mode) else "a file"
            raise UserError(f"{out} is {found} that is not {what}; refusing to replace it even with force",
                            param="out")
    if not os.access(parent, os.W_OK):
        raise UserError(f"cannot write {out}: folder {parent} is not writable", param="out")
    return out


def _clean_stale(folder: Path) -> None:
    """Remove the temporaries in `folder` whose writer is gone (a run killed with SIGKILL, a machine that
    went down): only names that _tmp_prefix makes, only regular files and folders, no link followed."""
    try:
        with os.scandir(folder) as it:
            entries = list(it)
    except OSError:
        return
    for e in entries:
        m = _TMP.fullmatch(e.name)
        plain = e.is_dir(follow_symlinks=False) or e.is_file(follow_symlinks=False)
        if m and plain and _writer_gone(m["host"], int(m["pid"]), int(m["start"])):
            _remove(Path(e.path))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)                         # signal 0: is there such a process (ours or another user's)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _host_tag() -> str:
    """8 hex digits naming this machine: process ids of another machine sharing a folder are not ours to judge."""
    return f"{zlib.crc32(socket.gethostname().encode('utf-8', 'surrogateescape')):08x}"


def _start_time(pid: int) -> int:
    """When process `pid` started (clock ticks since boot, from Linux's /proc), 0 where unknown. With the
    id it tells the writer of a temporary from a later process that was given the same id."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return int(fh.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def _writer_gone(host: str, pid: int, start: int) -> bool:
    """Whether the run that named a temporary (host, pid, start) is over: it ran on this machine, and its
    process has ended or its id now belongs to a process that started later."""
    if host != _host_tag():
        return False
    if not _alive(pid):
        return True
    now = _start_time(pid)
    return bool(start and now and now != start)


def _tmp_prefix(out: Path) -> str:
    # The name is cut so that the temporary's name stays within the file system's 255 bytes.
    me = os.getpid()
    return f".{out.name[:40]}{TMP_TAG}{_host_tag()}-{me}-{_start_time(me)}-"


def _remove(p: Path) -> None:
    """Remove a temporary (file or folder), finishing even when another Ctrl-C or SIGTERM comes meanwhile."""
    while True:
        try:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
            return
        except KeyboardInterrupt:
            continue
        except OSError:
            return


def _raise_interrupted(signum, frame):
    raise Interrupted(signum)


@contextmanager
def _interruptible() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP raise Interrupted, as SIGINT raises KeyboardInterrupt:
    their default ends the process at once and would leave a temporary behind. Python runs handlers in
    the main thread only, and a handler the program set itself (or an ignored signal) is left as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    wanted = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    old = {sig: signal.signal(sig, _raise_interrupted) for sig in wanted if signal.getsignal(sig) == signal.SIG_DFL}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _os_error(out: Path, exc: OSError) -> UserError:
    return UserError(f"cannot write {out}: {exc.strerror or exc}", param="out")


def write_with(path: str | os.PathLike, write: Callable[[BinaryIO], None], kind: str, force: bool = False,
               inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Write a file atomically through `write(binary_file)`, after the rules of `check_output`."""
    inputs = list(inputs)
    out = check_output(path, kind, force, inputs)
    folder = out.parent if str(out.parent) else Path(".")
    _clean_stale(folder)
    tmp = None
    with _interruptible():
        try:
            fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(out), dir=folder)
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)           # mkstemp makes it private; outputs are ordinary files
            check_output(out, kind, force, inputs)  # again: what a second run or a user put there meanwhile
            _place(tmp, out, force)
        except OSError as exc:
            raise _os_error(out, exc) from None
        finally:
            if tmp is not None:
                _remove(Path(tmp))                  # gone already once renamed
    return out


def _place(tmp: str | Path, out: Path, force: bool) -> None:
    """Rename the temporary to out; without force by a hard link, which fails if out appeared meanwhile (a
    second run's), where a rename would replace it. Where links are not supported, the check has to do."""
    if not force:
        try:
            os.link(tmp, out)
        except FileExistsError:
            raise UserError(f"{out} exists; set force to replace it", param="force") from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EMLINK, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
        else:
            os.unlink(tmp)
            return
    os.replace(tmp, out)


def table_csv(df) -> str:
    """A table as CSV: text fields quoted, so a lone CR (a CRLF corpus's text) stays inside its field."""
    return ",".join(df.columns) + "\n" + df.to_csv(index=False, header=False, quoting=csv.QUOTE_NONNUMERIC)


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
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):    # numpy scalars and arrays, tensors
        return json_ready(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str | os.PathLike, obj, force: bool = False, inputs: Iterable[str | os.PathLike | None] = (),
               indent: int | None = 1) -> Path:
    """Write `json_ready(obj)` atomically as strict JSON (no NaN), after the rules of `check_output`."""
    text = json.dumps(json_ready(obj), indent=indent, ensure_ascii=False, allow_nan=False) + "\n"
    return write_text(path, text, "json", force, inputs)


@contextmanager
def temp_dir(out: Path) -> Iterator[Path]:
    """A hidden temporary folder beside `out` to fill, then `publish_dir`. It is removed on the way out
    whatever happens (an error, Ctrl-C, SIGTERM, SIGHUP; nothing to do once published), and stale ones
    of killed runs are removed first."""
    folder = out.parent if str(out.parent) else Path(".")
    _clean_stale(folder)
    with _interruptible():
        try:
            tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(out), dir=folder))
        except OSError as exc:
            raise _os_error(out, exc) from None
        try:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o777 & ~umask)           # mkdtemp makes it private; a store is not
            yield tmp
        finally:
            _remove(tmp)


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
            os.replace(tmp, out)                # onto a folder a second run just made: ENOTEMPTY
        except BaseException:
            if old is not None:
                os.replace(old / "old", out)
            raise
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST) and old is None:
            raise UserError(f"{out} exists; set force to replace it", param="force") from None
        raise _os_error(out, exc) from None
    finally:
        if old is not None:
            _remove(old)
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
