"""Checkpoints in the `plain-char-rnn/1` format: load safely, save atomically.

    >>> ckpt = load_checkpoint("wp_lstm3x512.pt")   # -> Checkpoint(model, vocab, config, train, extra)
    >>> ckpt.model(ids)
    >>> save_checkpoint("model.pt", ckpt)            # write to a temp file, fsync, rename
    >>> print(ckpt.describe())                       # config, size, stored losses (ckpt.summary(): a dict)

The format (see ../shared/models/README.md) is a dict with "format", "vocab" (index -> char),
"config" ({cell, embedding_dim, hidden_size, num_layers, dropout}), "state_dict" and "train"
(provenance: split sizes, loss curve, samples by step, losses). neuroscope adds optional keys:
"excerpt" ({"text": str, "start": int, "source": str}: held-out text, so that probing works
without a text) and "resume" (optimizer and data-loader state for `train(..., resume=True)`).

Checkpoints are untrusted input: they are read with `torch.load(weights_only=True)` only, so a
file carrying pickled code is refused, never run; what the zip would unpack to is bounded before
(`MAX_CHECKPOINT_BYTES`, and no more than the file itself: torch.save packs nothing); every tensor must
hold values on the CPU (the meta device holds none). Float16 weights are converted to float32.
"""
from __future__ import annotations

import math
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path
from typing import Iterable

import torch

from ..config import is_int, model_config_from_dict, short_repr
from ..errors import UserError
from ..files import write_with
from ..model import CharRNN, ModelConfig, count_parameters, weight_shapes
from ..text import Vocab, regular_file_size

FORMAT = "plain-char-rnn/1"
# torch.load reads the whole file into memory, and float16 weights double in float32: a 4 GiB file
# needs ~12 GiB. The largest reference checkpoint is 13 MB; a file this big is not a char-RNN.
MAX_CHECKPOINT_BYTES = 4 * 1024 ** 3


class CheckpointError(UserError):
    """A checkpoint that cannot be used; the message is one line, fit for a user."""


@dataclass
class Checkpoint:
    model: CharRNN
    vocab: Vocab
    train: dict = field(default_factory=dict)     # provenance, curve, samples, losses
    extra: dict = field(default_factory=dict)     # neuroscope's own keys: excerpt, resume, ...
    path: str | None = None

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    @property
    def excerpt(self) -> dict | None:
        return self.extra.get("excerpt")

    @property
    def name(self) -> str:
        return os.path.splitext(os.path.basename(self.path))[0] if self.path else "model"

    def summary(self) -> dict:
        """Config, vocabulary size, parameter count and what training stored (None where it stored nothing)."""
        tr = self.train
        return {"path": self.path, "config": self.config.to_dict(), "vocab_size": len(self.vocab),
                "parameters": count_parameters(self.model),
                "corpus": tr.get("text"), "steps": tr.get("steps"),
                "best_val_loss_nats": tr.get("best_val_loss_nats"),
                "test_loss_nats": tr.get("test_loss_nats"),
                "test_bits_per_char": tr.get("test_bits_per_char"),
                "curve_points": len(tr.get("curve") or []),
                "sample_steps": sorted((tr.get("samples") or {}).keys(), key=int),
                "excerpt_chars": len(self.excerpt["text"]) if self.excerpt else 0}

    def describe(self) -> str:
        """`summary()` as a few lines of text."""
        info = self.summary()
        cfg = info["config"]
        lines = [f"{info['path']}: {cfg['cell'].upper()} {cfg['num_layers']} x {cfg['hidden_size']}, "
                 f"embedding {cfg['embedding_dim']}, dropout {cfg['dropout']}",
                 f"vocab {info['vocab_size']}, {info['parameters']:,} parameters, corpus {info['corpus']}"]
        for key in ("steps", "best_val_loss_nats", "test_loss_nats", "test_bits_per_char", "curve_points",
                    "excerpt_chars"):
            if info[key] is not None:
                lines.append(f"{key}: {info[key]}")
        if info["sample_steps"]:
            lines.append("samples at steps: " + ", ".join(info["sample_steps"]))
        return "\n".join(lines)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> Checkpoint:
    """Load and validate a checkpoint; raises CheckpointError with a one-line message.

    What is not a regular file, or is above MAX_CHECKPOINT_BYTES, is refused before it is opened; a zip
    whose members would unpack to more than the file's size, before torch.load unpacks them.
    """
    path = os.fspath(path)
    size = regular_file_size(path, "checkpoint", MAX_CHECKPOINT_BYTES, CheckpointError)
    check_unpacked_size(path, size)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - arbitrary bytes make the unpickler fail in arbitrary ways
        runs_code, detail = load_failure(exc)
        if runs_code:
            raise CheckpointError(f"{path} is not a safe checkpoint: loading it would run code "
                                  f"({detail}), which is refused (weights_only=True)") from None
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({detail})") from None
    return checkpoint_from_dict(blob, path=path, device=device)


def load_failure(exc: BaseException) -> tuple[bool, str]:
    """(whether the file names code to run, a one-line reason) for why torch.load(weights_only=True) failed:
    a class or function the file names (unpickling would import and call it), an opcode it refuses, or the
    error that arbitrary bytes raised (RuntimeError, EOFError, BadZipFile, and KeyError/IndexError/struct.error
    from garbage opcodes)."""
    if isinstance(exc, pickle.UnpicklingError):
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        code = next((m for ln in lines if (m := re.search(r"GLOBAL ([\w.]+)", ln))), None)
        if code:
            return True, code.group(1)
        return False, next((ln for ln in lines if ln.startswith("Unsupported")), "unpickling failed")
    plain = isinstance(exc, (RuntimeError, EOFError, OSError, ValueError)) and str(exc).strip()
    return False, str(exc).strip().splitlines()[0] if plain else type(exc).__name__


def check_unpacked_size(path: str, size: int) -> None:
    """Refuse a zip whose members claim more bytes than the file holds, before anything unpacks them.

    torch.save stores its zip's members uncompressed (so that torch.load can map them), so together
    they are never larger than the file. torch.load allocates what a member claims and inflates a
    compressed one into it: a 1 MB file of compressed zeros would take gigabytes. The claims are read
    from the zip's central directory, as torch reads them. Files in torch's older, unzipped format are
    left to torch.load.
    """
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            claimed = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (a damaged zip: {exc})") from None
    if claimed > size:
        raise CheckpointError(f"{path} would unpack to {claimed:,} bytes from {size:,}; torch.save packs "
                              f"nothing, so a packed checkpoint is refused")


def checked_tensor(name: str, value, shape: tuple | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """`value` if it is a dense CPU tensor (of `shape` and `dtype`, where given) whose floating-point values
    are all finite; else UserError naming `name`. A tensor on the meta device has a shape and no values:
    reading them fails in torch, far from the file that held it."""
    if not torch.is_tensor(value):
        raise UserError(f"{name} must be a tensor (got {type(value).__name__})")
    if value.device.type != "cpu":
        raise UserError(f"{name} is a tensor on the {value.device.type} device; a checkpoint holds values "
                        f"on the CPU")
    if value.layout != torch.strided:
        raise UserError(f"{name} is a {value.layout} tensor; only dense tensors are read")
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise UserError(f"{name} has shape {list(value.shape)}; {list(shape)} is needed")
    if dtype is not None and value.dtype != dtype:
        raise UserError(f"{name} is {value.dtype}; {dtype} is needed")
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise UserError(f"{name} holds NaN or infinite values")
    return value


def checkpoint_from_dict(blob, path: str | None = None, device="cpu") -> Checkpoint:
    """A Checkpoint from the plain dict of a loaded file, every entry checked before a model is built.

    The config is checked for types and ranges, then against the shapes of the stored weights, so a
    config claiming a huge model fails without allocating it; weights must be finite floating point;
    the metadata later commands read (train, excerpt) must have the types they rely on.
    """
    where = path or "checkpoint"
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        got = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise CheckpointError(f"{where} is not a {FORMAT} checkpoint (format: {short_repr(got)})")
    for key in ("vocab", "config", "state_dict"):
        if key not in blob:
            raise CheckpointError(f"{where} lacks the {key!r} entry of a {FORMAT} checkpoint")
    try:
        vocab = checked_vocab(blob["vocab"])
        config = model_config_from_dict(blob["config"], vocab_size=len(vocab))
        state = checked_weights(blob["state_dict"], config)
        train, extra = checked_metadata(blob)
    except UserError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    model = CharRNN(config)
    model.load_state_dict(state, strict=True)       # cannot fail: names and shapes were checked
    model.to(device).eval()
    return Checkpoint(model=model, vocab=vocab, train=train, extra=extra, path=path)


def checked_vocab(chars) -> Vocab:
    """The Vocab of a stored "vocab": non-empty, one-character strings, no duplicates, no lone surrogates.

    A duplicate would make two ids decode alike and one of them unreachable by encode (the loss
    changes silently); a lone surrogate cannot be printed or written as UTF-8.
    """
    if not isinstance(chars, (list, tuple)) or not all(isinstance(c, str) and len(c) == 1 for c in chars):
        raise UserError("vocab must be a list of one-character strings")
    if not chars:
        raise UserError("vocab is empty")
    first: dict[str, int] = {}
    for i, c in enumerate(chars):
        if "\ud800" <= c <= "\udfff":
            raise UserError(f"vocab entry {i} ({c!r}) is a lone surrogate, which cannot be printed or written")
        if c in first:
            raise UserError(f"vocab holds {c!r} twice (at {first[c]} and {i})")
        first[c] = i
    return Vocab(tuple(chars))


def checked_weights(state_dict, config: ModelConfig) -> dict[str, torch.Tensor]:
    """The stored weights as float32, after checking names and shapes against `config`
    (model.weight_shapes, the first mismatch named), then dtype, device and finiteness (checked_tensor)."""
    if not isinstance(state_dict, dict):
        raise UserError(f"state_dict must be a dict (got {type(state_dict).__name__})")
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise UserError(f"state_dict key {short_repr(key)} is not a string")
        if not torch.is_tensor(value):
            raise UserError(f"state_dict entry {short_repr(key)} is not a tensor (got {type(value).__name__})")
    expected = weight_shapes(config)
    misfit = f"weights do not fit the config ({config.cell}, {config.num_layers} x {config.hidden_size})"
    for key, shape in expected.items():
        if key not in state_dict:
            raise UserError(f"{misfit} (it lacks the weight {key!r})")
        got = tuple(state_dict[key].shape)
        if got != shape:
            raise UserError(f"{misfit} ({key!r} has shape {list(got)}; the config needs {list(shape)})")
    stray = next((k for k in state_dict if k not in expected), None)
    if stray is not None:
        raise UserError(f"{misfit} (the file holds {short_repr(stray)}, which the config has no place for)")
    state = {}
    for key, value in state_dict.items():
        if not value.is_floating_point():
            raise UserError(f"weights must be floating point ({key!r} is {value.dtype})")
        state[key] = checked_tensor(repr(key), value).float()     # float16 and bfloat16 are computed in float32
    return state


# What commands read from "train" besides samples and curve (info, report's model card), by type;
# None stands for "not stored" everywhere.
TRAIN_FIELDS = {"test_loss_nats": "finite", "best_val_loss_nats": "finite", "test_bits_per_char": "finite",
                "seconds": "finite", "steps": "int", "best_step": "int", "text": "str", "device": "str",
                "final_sample_t1": "str", "final_sample_t05": "str"}


def checked_metadata(blob: dict) -> tuple[dict, dict]:
    """(train, extra) of a checkpoint, each entry that a command reads checked for the type it needs,
    so that a malformed one is refused at load, not after minutes of work in `report`."""
    train = blob.get("train")
    if train is None:
        train = {}
    if not isinstance(train, dict):
        raise UserError(f"train must be a dict (got {type(train).__name__})")
    for key, kind in TRAIN_FIELDS.items():
        _check_field(f"train.{key}", train.get(key), kind)
    _check_samples(train.get("samples"))
    _check_curve(train.get("curve"))
    extra = {k: v for k, v in blob.items() if k not in ("format", "vocab", "config", "state_dict", "train")}
    excerpt = extra.get("excerpt")
    if excerpt is not None:
        if not isinstance(excerpt, dict):
            raise UserError(f"excerpt must be a dict (got {type(excerpt).__name__})")
        _check_field("excerpt['text']", excerpt.get("text", 0), "str")
        _check_field("excerpt['start']", excerpt.get("start"), "int")
        _check_field("excerpt['source']", excerpt.get("source"), "str")
    if extra.get("resume") is not None and not isinstance(extra["resume"], dict):
        raise UserError(f"resume must be a dict (got {type(extra['resume']).__name__})")
    return dict(train), extra


def _check_field(name: str, value, kind: str) -> None:
    """`value` is None or of `kind`: "finite" (a finite number), "int" (>= 0) or "str" (writable as UTF-8)."""
    if value is None:
        return
    if kind == "finite" and not (isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)):
        raise UserError(f"{name} must be a finite number (got {short_repr(value)})")
    if kind == "int" and not (is_int(value) and value >= 0):
        raise UserError(f"{name} must be an integer >= 0 (got {short_repr(value)})")
    if kind == "str":
        if not isinstance(value, str):
            raise UserError(f"{name} must be a string (got {type(value).__name__})")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise UserError(f"{name} holds a lone surrogate at {exc.start}, which cannot be written") from None


def _check_samples(samples) -> None:
    """train.samples: {step as a decimal string: sample text}, sorted and shown by step."""
    if samples is None:
        return
    if not isinstance(samples, dict):
        raise UserError(f"train.samples must be a dict (got {type(samples).__name__})")
    for key, text in samples.items():
        if not (isinstance(key, str) and re.fullmatch(r"[0-9]{1,18}", key)):
            raise UserError(f"train.samples key {short_repr(key)} is not a step number")
        _check_field(f"train.samples[{key!r}]", text, "str")


def _check_curve(curve) -> None:
    """train.curve: a list of {column: number} points (step, seconds, losses, lr), drawn as a chart."""
    if curve is None:
        return
    if not isinstance(curve, list):
        raise UserError(f"train.curve must be a list (got {type(curve).__name__})")
    for i, point in enumerate(curve):
        if not isinstance(point, dict):
            raise UserError(f"train.curve[{i}] must be a dict (got {type(point).__name__})")
        for key, value in point.items():
            if not isinstance(key, str):
                raise UserError(f"train.curve[{i}] key {short_repr(key)} is not a string")
            if value is not None and not (isinstance(value, Real) and not isinstance(value, bool)):
                raise UserError(f"train.curve[{i}][{key!r}] must be a number (got {short_repr(value)})")


def checkpoint_to_dict(ckpt: Checkpoint, half: bool = False) -> dict:
    """The plain dict that save_checkpoint writes (weights float32, or float16 with half=True)."""
    sd = {k: (v.detach().cpu().half() if half and v.is_floating_point() else v.detach().cpu().clone())
          for k, v in ckpt.model.state_dict().items()}
    blob = {"format": FORMAT, "vocab": list(ckpt.vocab.chars), "config": ckpt.config.to_dict(),
            "state_dict": sd, "train": ckpt.train}
    blob.update(ckpt.extra)
    return blob


def save_checkpoint(path: str | os.PathLike, ckpt: Checkpoint, half: bool = False, force: bool = False,
                    inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Write atomically (neuroscope.files rules: an existing file is replaced only with force, and
    never one of `inputs`). A run killed mid-write leaves the previous file (if any) untouched."""
    return atomic_save(checkpoint_to_dict(ckpt, half=half), path, force, inputs)


def atomic_save(obj, path: str | os.PathLike, force: bool = False,
                inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """torch.save `obj` to `path` through neuroscope.files.write_with (temp file, fsync, rename)."""
    return write_with(path, lambda fh: torch.save(obj, fh), "checkpoint", force, inputs)


def model_and_vocab(model, vocab=None, param: str = "vocab"):
    """(model, vocab) from what an analysis was given: a Checkpoint (its model and vocabulary; vocab, if
    given, wins) or a bare model with its vocab. A UserError when a bare model comes without one."""
    if isinstance(model, Checkpoint):
        return model.model, vocab or model.vocab
    if vocab is None:
        raise UserError(f"a bare {type(model).__name__} needs the model's vocabulary: pass a Checkpoint, or vocab",
                        param=param)
    return model, vocab


@dataclass
class TextSpan:
    """The characters a command works on, and where they came from."""

    text: str            # the span itself
    start: int           # its first character's index in the source text
    source: str          # file path, or "<checkpoint excerpt>"
    split: str | None = None


def choose_text(ckpt: Checkpoint | None, text_path: str | None = None, split: str | None = None,
                start: int | None = None, chars: int | None = None, default_split: str = "test") -> TextSpan:
    """The text a command should read: the file `text_path` with `split` or `start`/`chars`, else
    the held-out excerpt stored in a neuroscope checkpoint; a UserError when neither exists.

    With `text_path`, the span lies in `split` (default_split, the test split, when none is given) and
    `start` counts from the split's first character, with or without `chars`: the one rule every
    command's help states. split "all" is the whole file.
    """
    from ..text import read_text, select_span
    if text_path is not None:
        full = read_text(text_path)
        split = split or default_split
        s, e = select_span(full, split=split, start=start, chars=chars)
        return TextSpan(full[s:e], s, text_path, split)
    ex = ckpt.excerpt if ckpt is not None else None
    if not ex:
        raise UserError("no text given: pass text_path (this checkpoint stores no held-out excerpt)",
                        param="text_path")
    if split not in (None, "test"):
        raise UserError("the checkpoint's stored excerpt is held-out text; a split needs text_path",
                        param="text_path")
    full = ex["text"]
    s, e = select_span(full, start=start, chars=chars)
    return TextSpan(full[s:e], int(ex.get("start", 0)) + s, "<checkpoint excerpt>", "test")
