"""Training a CharRNN on a text: stateful truncated BPTT over parallel streams, Adam, best weights kept.

    >>> config = TrainConfig(cell="lstm", layers=2, hidden=128, steps=2000)
    >>> ckpt = train(read_text("warpeace.txt"), config, out="wp.pt")    # -> Checkpoint (best weights)
    >>> ckpt.train["test_loss_nats"], ckpt.train["samples"]["2000"]
    >>> ckpt = train(text, replace(config, steps=4000), out="wp.pt", resume=True)   # continue to step 4000

How it trains (the recipe of the reference checkpoints, ../shared/models/README.md):
- the text is split 80/10/10 by character index (text.split_span); the vocabulary is every
  character of the whole text;
- the training split is cut into B contiguous streams; each step reads the next window of T
  characters of every stream ([B, T] ids) and carries the recurrent state from window to window
  (detached: gradients flow back at most T characters). At the end of the streams, a new epoch
  starts from a zero state;
- Adam, gradient norm clipped at `clip`, learning rate halved when a validation loss fails to beat
  the best so far (torch's ReduceLROnPlateau, patience 0);
- every `eval_every` steps (and at the last step) the loss on the first `val_chars` characters
  of the validation split is measured; the weights with the best such loss are what `out` holds;
- samples (temperature 1) at the steps in `sample_at` and at every evaluation go into
  ckpt.train["samples"] keyed by step (str): the "how the samples evolve" series;
- at the end, the best weights are evaluated on the whole test split (one stream, as
  `neuroscope eval --split test` does), and the first 20k characters of the test split are stored
  as ckpt.extra["excerpt"], so later commands work without --text.

`out` is written atomically at every evaluation and at the end, so a killed run leaves the last
good file; Ctrl-C lets the current step finish, writes `out`, then raises KeyboardInterrupt. `out`
also holds what `resume=True` needs (ckpt.extra["resume"]: the current weights, Adam's and the
scheduler's state, the step, the stream position and carried state, the RNG states): tensors and
plain containers only, so it loads with weights_only=True.

This module imports text, model, checkpoint and evaluate; nothing imports it but the CLI and demo.
"""
from __future__ import annotations

import hashlib
import math
import os
import signal
import sysconfig
import threading
import time
from dataclasses import asdict, dataclass, fields

import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from .checkpoint import Checkpoint, atomic_save, checkpoint_to_dict, load_checkpoint
from .errors import UserError
from .evaluate import evaluate
from .model import CELLS, CharRNN, ModelConfig
from .text import Vocab, split_span

SAMPLE_AT = (100, 300, 500, 700, 1200, 2000)
EXCERPT_CHARS = 20_000
# TrainConfig fields that fix the model, the data order and the validation sample: a resumed run
# takes them from the checkpoint.
RUN_SHAPE = ("cell", "layers", "hidden", "embedding", "dropout", "batch", "seq", "seed", "max_chars",
             "val_chars", "val_streams")


@dataclass
class TrainConfig:
    cell: str = "lstm"              # lstm | gru | rnn
    layers: int = 2                 # L, recurrent layers
    hidden: int = 128               # H, units per layer
    embedding: int = 0              # E; 0: same as hidden (the reference layout)
    dropout: float = 0.1            # between layers and before the decoder
    batch: int = 64                 # B, parallel streams
    seq: int = 128                  # T, characters per window (truncated BPTT length)
    lr: float = 2e-3                # Adam learning rate at the start
    steps: int | None = 2000        # stop after this many steps in total (None: only `minutes`)
    minutes: float | None = None    # stop after this much wall-clock time in this call (None: only `steps`)
    device: str = "auto"            # auto | cpu | cuda
    seed: int = 0                   # initial weights, dropout, sampling
    eval_every: int = 200           # steps between validation losses (and checkpoint writes)
    val_chars: int = 100_000        # validation sample: the first this many chars of the val split (0: all)
    val_streams: int = 16           # the validation sample is read as this many parallel streams
    sample_at: tuple = SAMPLE_AT    # steps at which to store a sample (besides every evaluation)
    sample_chars: int = 200         # characters per stored sample
    final_sample_chars: int = 500   # characters of the two final samples (temperature 1 and 0.5)
    clip: float = 5.0               # gradient norm clipping
    lr_decay: float = 0.5           # learning-rate factor when the validation loss does not improve
    test_chars: int = 0             # final test loss on the first this many chars of the test split (0: all)
    max_chars: int = 0              # train on the first this many chars of the text (0: all)

    def check(self) -> None:
        """Raise UserError (one line) on a value no run can use."""
        def need(ok, msg):
            if not ok:
                raise UserError(msg)
        need(self.cell in CELLS, f"unknown cell {self.cell!r}; choose one of {', '.join(CELLS)}")
        for name in ("layers", "hidden", "batch", "seq", "eval_every", "val_streams", "sample_chars",
                     "final_sample_chars"):
            need(int(getattr(self, name)) >= 1, f"{name} must be >= 1 (got {getattr(self, name)})")
        for name in ("embedding", "val_chars", "test_chars", "max_chars"):
            need(int(getattr(self, name)) >= 0, f"{name} must be >= 0 (got {getattr(self, name)})")
        need(0 <= self.dropout < 1, f"dropout must be in [0, 1) (got {self.dropout})")
        need(self.lr > 0 and math.isfinite(self.lr), f"lr must be > 0 (got {self.lr})")
        need(self.clip > 0, f"clip must be > 0 (got {self.clip})")
        need(0 < self.lr_decay <= 1, f"lr_decay must be in (0, 1] (got {self.lr_decay})")
        need(self.steps is not None or self.minutes is not None, "give steps or minutes (or both)")
        need(self.steps is None or self.steps >= 1, f"steps must be >= 1 (got {self.steps})")
        need(self.minutes is None or self.minutes > 0, f"minutes must be > 0 (got {self.minutes})")
        need(all(int(s) >= 1 for s in self.sample_at), f"sample_at steps must be >= 1 (got {self.sample_at})")
        need(self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
             f"unknown device {self.device!r}; choose auto, cpu or cuda")

    def model_config(self, vocab_size: int) -> ModelConfig:
        return ModelConfig(vocab_size=vocab_size, cell=self.cell, embedding_dim=self.embedding,
                           hidden_size=self.hidden, num_layers=self.layers, dropout=self.dropout)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sample_at"] = [int(s) for s in self.sample_at]
        return d


def pick_device(name: str) -> torch.device:
    """auto -> cuda when a GPU is there, else cpu; a UserError for cuda without a GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for, but no CUDA GPU is available here")
    return torch.device(name)


class Trainer:
    """One optimisation step at a time over B contiguous streams of the training ids.

    `step()` is the whole inner loop of `train` (and what analyses/benchmark.py times): read the
    next [B, T] window, forward from the carried state, cross-entropy, backward, clip, Adam.
    """

    def __init__(self, model: CharRNN, train_ids: torch.Tensor, config: TrainConfig):
        B, T = config.batch, config.seq
        self.model, self.config = model, config
        self.device = next(model.parameters()).device
        L = len(train_ids) // B                       # characters per stream
        if L < T + 1:
            raise UserError(f"the training split holds {len(train_ids):,} characters, too few for "
                            f"batch {B} x seq {T} (needs at least {B * (T + 1):,}); "
                            f"use a longer text or a smaller batch or seq")
        self.streams = train_ids[:B * L].view(B, L).to(self.device)        # [B, L] int64
        self.position = 0                             # next window starts here in every stream
        self.epoch = 0
        self.state = None                             # carried recurrent state, detached
        fused = self.device.type == "cuda"            # one kernel for all of Adam's updates on a GPU
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, fused=fused)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="min", factor=config.lr_decay, patience=0, threshold=0.0)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def step(self) -> torch.Tensor:
        """One window of B x T characters; returns the mean loss (nats/char) as a 0-d tensor, unsynced."""
        T = self.config.seq
        if self.position + T + 1 > self.streams.shape[1]:
            # End of the streams: a new epoch from the start, from a zero state.
            self.position, self.state = 0, None
            self.epoch += 1
        p = self.position
        x = self.streams[:, p:p + T]                  # [B, T] inputs
        y = self.streams[:, p + 1:p + T + 1]          # [B, T] next characters
        self.model.train()
        logits, state = self.model(x, self.state)     # [B, T, V]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip)
        self.optimizer.step()
        # Truncated BPTT: keep the state's values, cut its gradient history.
        self.state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        self.position = p + T
        return loss.detach()

    def resume_state(self) -> dict:
        """Everything `load_resume_state` needs to continue exactly here (tensors and primitives)."""
        state = self.state
        if state is not None:
            state = [s.cpu() for s in state] if isinstance(state, tuple) else [state.cpu()]
        return {"model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "position": self.position, "epoch": self.epoch, "carried_state": state}

    def load_resume_state(self, r: dict) -> None:
        self.model.load_state_dict(r["model"])
        self.optimizer.load_state_dict(r["optimizer"])
        self.scheduler.load_state_dict(r["scheduler"])
        self.position, self.epoch = int(r["position"]), int(r["epoch"])
        s = r.get("carried_state")
        if s is not None:
            s = [t.to(self.device) for t in s]
            s = tuple(s) if self.model.config.cell == "lstm" else s[0]
        self.state = s


class DeferredInterrupt:
    """Ctrl-C (SIGINT) during a training step takes effect after it: `.hit` turns True, and the loop
    saves a whole state and stops. A second Ctrl-C interrupts at once. Main thread only (elsewhere
    a no-op, as Python delivers signals to the main thread)."""

    def __enter__(self):
        self.hit, self.previous = False, None
        if threading.current_thread() is threading.main_thread():
            old = signal.signal(signal.SIGINT, self._on_sigint)
            self.previous = signal.SIG_DFL if old is None else old    # None: set outside Python
        return self

    def _on_sigint(self, signum, frame):
        self.hit = True
        signal.signal(signal.SIGINT, self.previous)

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


def text_fingerprint(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def train(text: str, config: TrainConfig, out: str | os.PathLike, progress: bool = True,
          resume: bool = False, source: str = "<text>") -> Checkpoint:
    """Train a CharRNN on `text`, writing the best weights to `out`; returns that Checkpoint.

    text: the whole corpus (str); it is split 80/10/10 here. source: its name, stored as
    ckpt.train["text"] and in the excerpt. resume: continue the run stored in `out` (same text;
    the model and data settings come from the checkpoint, `steps` counts from the run's start,
    `minutes` from now). Raises UserError for settings or texts that cannot work, before writing.
    """
    out = os.fspath(out)
    config.check()
    prior = None
    if resume:
        prior = _load_for_resume(out)
        stored = prior.extra["resume"]["config"]
        config = TrainConfig(**{f.name: stored[f.name] if f.name in RUN_SHAPE else getattr(config, f.name)
                                for f in fields(TrainConfig)})
    if config.max_chars:
        text = text[:config.max_chars]
    bounds = {s: split_span(len(text), s) for s in ("train", "val", "test")}
    for s in ("val", "test"):
        if bounds[s][1] - bounds[s][0] < 2:
            raise UserError(f"the text holds {len(text):,} characters: too few for a {s} split of 2 or more "
                            f"(80/10/10); give a longer text")
    vocab = Vocab.from_text(text)
    fingerprint = text_fingerprint(text)
    if prior is not None:
        r = prior.extra["resume"]
        if r.get("text_sha1") != fingerprint or tuple(prior.vocab.chars) != vocab.chars:
            raise UserError(f"{out} was trained on another text; --resume needs the same text")
        if config.steps is not None and config.steps <= int(r["step"]):
            raise UserError(f"{out} is already at step {r['step']}; pass a larger --steps to continue")
    device = pick_device(config.device)
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise UserError(f"cannot write {out}: folder {folder} does not exist")

    torch.manual_seed(config.seed)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True     # as the reference runs did; cuDNN's RNNs use it too
    model = CharRNN(config.model_config(len(vocab))).to(device)
    ids = torch.as_tensor(vocab.encode(text))            # [N] int64, on the CPU
    (a, b), (vs, ve), (ts, te) = bounds["train"], bounds["val"], bounds["test"]
    trainer = Trainer(model, ids[a:b], config)
    val_ids = ids[vs:ve][:config.val_chars or None].numpy()
    test_ids = ids[ts:te][:config.test_chars or None].numpy()

    train_info = {"text": source, "chars": len(text), "split": [b - a, ve - vs, te - ts],
                  "vocab_size": len(vocab), "args": {**config.to_dict(), "text": source, "out": out},
                  "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                  "curve": [], "samples": {}, "best_step": None, "best_val_loss_nats": None,
                  "val_chars": len(val_ids), "steps": 0, "seconds": 0.0}
    step, seconds_before, best_state = 0, 0.0, None
    if prior is not None:
        r = prior.extra["resume"]
        trainer.load_resume_state(r)
        torch.set_rng_state(r["rng_cpu"])
        if device.type == "cuda" and r.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(r["rng_cuda"], device)
        step, seconds_before = int(r["step"]), float(prior.train.get("seconds", 0.0))
        train_info.update({k: prior.train[k] for k in ("curve", "samples", "best_step", "best_val_loss_nats")
                           if k in prior.train})
        best_state = {k: v.clone() for k, v in prior.model.state_dict().items()}

    sample_at = {int(s) for s in config.sample_at}
    B, T = config.batch, config.seq
    t0 = time.monotonic()
    deadline = t0 + config.minutes * 60 if config.minutes else math.inf
    loss_sum, loss_n = torch.zeros((), device=device), 0
    bar = tqdm(total=config.steps, initial=step, unit="step", desc="train", disable=not progress,
               dynamic_ncols=True)

    def seconds() -> float:
        return round(seconds_before + time.monotonic() - t0, 1)

    def sample(at: int, temperature: float = 1.0, length: int | None = None) -> str:
        gen = torch.Generator().manual_seed(config.seed * 1_000_003 + at)
        return model.sample(vocab, length or config.sample_chars, temperature=temperature, generator=gen)

    def snapshot() -> dict:
        """The checkpoint as a plain dict: best weights for use, current state for --resume."""
        train_info.update(steps=step, seconds=seconds(), epochs=round(step * B * T / max(1, b - a), 2),
                          lr=trainer.lr)
        train_info["chars_per_second"] = round(step * B * T / max(train_info["seconds"], 1e-9))
        resume_state = {**trainer.resume_state(), "step": step, "config": config.to_dict(),
                        "text_sha1": fingerprint, "rng_cpu": torch.get_rng_state(),
                        "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
        excerpt = {"text": text[ts:ts + EXCERPT_CHARS], "start": ts, "source": source}
        ck = Checkpoint(model=model, vocab=vocab, train=train_info, extra={"excerpt": excerpt,
                                                                          "resume": resume_state})
        blob = checkpoint_to_dict(ck)
        if best_state is not None:
            blob["state_dict"] = {k: v.detach().cpu().clone() for k, v in best_state.items()}
        return blob

    with DeferredInterrupt() as ctrl_c, bar:
        while (config.steps is None or step < config.steps) and time.monotonic() < deadline:
            loss = trainer.step()
            step += 1
            loss_sum += loss
            loss_n += 1
            bar.update(1)
            last = (config.steps is not None and step >= config.steps) or time.monotonic() >= deadline
            evaluate_now = step % config.eval_every == 0 or last
            if step in sample_at or evaluate_now:
                train_info["samples"][str(step)] = sample(step)
            if evaluate_now:
                val = evaluate(model, val_ids, streams=config.val_streams).loss_nats
                train_loss = float(loss_sum) / max(loss_n, 1)
                loss_sum.zero_()
                loss_n = 0
                train_info["curve"].append({"step": step, "seconds": seconds(), "train_loss": round(train_loss, 4),
                                            "val_loss": round(val, 4), "lr": trainer.lr})
                trainer.scheduler.step(val)
                if train_info["best_val_loss_nats"] is None or val < train_info["best_val_loss_nats"]:
                    train_info.update(best_step=step, best_val_loss_nats=round(val, 4))
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                bar.set_postfix(loss=f"{train_loss:.3f}", val=f"{val:.3f}", lr=f"{trainer.lr:.2g}")
                atomic_save(snapshot(), out)
            elif step % 10 == 0:
                bar.set_postfix(loss=f"{float(loss):.3f}", lr=f"{trainer.lr:.2g}")
            if ctrl_c.hit:
                # Between steps, so the saved state is whole: --resume continues exactly from here.
                train_info["interrupted"] = True
                atomic_save(snapshot(), out)
                raise KeyboardInterrupt

    # The final numbers come from the best weights: on the whole test split, as one stream.
    blob = snapshot()                      # taken first: its resume state holds the current weights
    if best_state is not None:
        model.load_state_dict(best_state)
    result = evaluate(model, test_ids, progress=progress)
    train_info.update(test_loss_nats=round(result.loss_nats, 4), test_bits_per_char=round(result.bits_per_char, 4),
                      test_chars=result.chars, interrupted=False,
                      final_sample_t1=sample(step, 1.0, config.final_sample_chars),
                      final_sample_t05=sample(step, 0.5, config.final_sample_chars))
    blob["train"] = train_info
    atomic_save(blob, out)
    model.eval()
    return Checkpoint(model=model, vocab=vocab, train=train_info,
                      extra={k: blob[k] for k in ("excerpt", "resume")}, path=out)


def _load_for_resume(out: str) -> Checkpoint:
    if not os.path.exists(out):
        raise UserError(f"nothing to resume: {out} does not exist")
    prior = load_checkpoint(out)
    if "resume" not in prior.extra:
        raise UserError(f"{out} holds no training state to resume (not written by neuroscope train)")
    return prior


def stdlib_corpus(max_chars: int = 2_000_000) -> str:
    """Up to max_chars characters of the Python standard library's own .py sources, concatenated.

    Files are read in sorted path order under sysconfig's "stdlib" folder (site-packages, test
    suites and caches left out; files that are not UTF-8 skipped), so the same Python gives the
    same text. A corpus that exists wherever Python does: the demo's default.
    """
    root = sysconfig.get_paths()["stdlib"]
    skip = {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test"}
    parts, total = [], 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in skip)
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            try:
                with open(os.path.join(folder, name), encoding="utf-8") as fh:
                    src = fh.read()
            except (OSError, UnicodeDecodeError):
                continue
            parts.append(src[:max_chars - total])
            total += len(parts[-1])
            if total >= max_chars:
                return "".join(parts)
    if not parts:
        raise UserError(f"no Python sources found under {root}")
    return "".join(parts)
