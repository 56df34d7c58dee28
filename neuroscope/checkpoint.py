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
file carrying pickled code is refused, never run. Float16 weights are converted to float32.
"""
from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch

from .errors import UserError
from .files import write_with
from .model import CELLS, CharRNN, ModelConfig, count_parameters
from .text import Vocab

FORMAT = "plain-char-rnn/1"


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
    """Load and validate a checkpoint; raises CheckpointError with a one-line message."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    if os.path.isdir(path):
        raise CheckpointError(f"expected a checkpoint file, got a directory: {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        code = next((re.search(r"GLOBAL ([\w.]+)", ln) for ln in lines if re.search(r"GLOBAL [\w.]+", ln)), None)
        if code:   # a class or function the file names: unpickling would import and call it
            raise CheckpointError(f"{path} is not a safe checkpoint: loading it would run code "
                                  f"({code.group(1)}), which is refused (weights_only=True)") from None
        detail = next((ln for ln in lines if ln.startswith("Unsupported")), "unpickling failed")
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({detail})") from None
    except Exception as exc:  # noqa: BLE001 - arbitrary bytes make the unpickler fail in arbitrary ways
        # (RuntimeError, EOFError, BadZipFile, and KeyError/IndexError/struct.error from garbage opcodes).
        plain = isinstance(exc, (RuntimeError, EOFError, OSError, ValueError)) and str(exc).strip()
        msg = str(exc).strip().splitlines()[0] if plain else type(exc).__name__
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({msg})") from None
    return checkpoint_from_dict(blob, path=path, device=device)


def checkpoint_from_dict(blob, path: str | None = None, device="cpu") -> Checkpoint:
    where = path or "checkpoint"
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        got = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise CheckpointError(f"{where} is not a {FORMAT} checkpoint (format: {got!r})")
    for key in ("vocab", "config", "state_dict"):
        if key not in blob:
            raise CheckpointError(f"{where} lacks the {key!r} entry of a {FORMAT} checkpoint")
    vocab = blob["vocab"]
    if not isinstance(vocab, (list, tuple)) or not all(isinstance(c, str) and len(c) == 1 for c in vocab):
        raise CheckpointError(f"{where}: 'vocab' must be a list of one-character strings")
    cfg = dict(blob["config"])
    if cfg.get("cell") not in CELLS:
        raise CheckpointError(f"{where}: unknown cell {cfg.get('cell')!r} (known: {', '.join(CELLS)})")
    try:
        config = ModelConfig(vocab_size=len(vocab), cell=cfg["cell"],
                             embedding_dim=int(cfg.get("embedding_dim") or cfg["hidden_size"]),
                             hidden_size=int(cfg["hidden_size"]), num_layers=int(cfg["num_layers"]),
                             dropout=float(cfg.get("dropout", 0.0)))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: bad config ({exc})") from None
    model = CharRNN(config)
    state = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v
             for k, v in blob["state_dict"].items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise CheckpointError(f"{where}: weights do not fit the config ({' '.join(lines[1:3])[:300]})") from None
    model.to(device).eval()
    known = {"format", "vocab", "config", "state_dict", "train"}
    extra = {k: v for k, v in blob.items() if k not in known}
    return Checkpoint(model=model, vocab=Vocab(tuple(vocab)), train=dict(blob.get("train") or {}),
                      extra=extra, path=path)


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

    With `text_path` and neither `split` nor `start`/`chars`, `default_split` is used.
    """
    from .text import read_text, select_span
    if text_path is not None:
        full = read_text(text_path)
        if split is None and start is None and chars is None:
            split = default_split
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
