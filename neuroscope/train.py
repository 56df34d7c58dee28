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
  as ckpt.extra["excerpt"], so later commands work without a text file.

`out` is written atomically at every evaluation and at the end, so a killed run leaves the last
good file; Ctrl-C lets the current step finish, writes `out`, then raises KeyboardInterrupt. `out`
also holds what `resume=True` needs (ckpt.extra["resume"]: the current weights, Adam's and the
scheduler's state, the step, the stream position and carried state, the RNG states): tensors and
plain containers only, so it loads with weights_only=True.

This module imports config, text, model, checkpoint, evaluate and files; nothing imports it but the
CLI and demo.
"""
from __future__ import annotations

import hashlib
import math
import os
import signal
import sysconfig
import threading
import time
from dataclasses import fields

import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from .checkpoint import Checkpoint, atomic_save, checkpoint_to_dict, load_checkpoint
from .config import SAMPLE_AT, TrainConfig
from .errors import UserError
from .evaluate import evaluate
from .files import check_output
from .model import CharRNN
from .text import Vocab, split_span

__all__ = ["SAMPLE_AT", "DeferredInterrupt", "Run", "TrainConfig", "Trainer", "pick_device", "run_steps",
           "stdlib_corpus", "train"]

EXCERPT_CHARS = 20_000
# TrainConfig fields that fix the model, the data order and the validation sample: a resumed run
# takes them from the checkpoint.
RUN_SHAPE = ("cell", "layers", "hidden", "embedding", "dropout", "batch", "seq", "seed", "max_chars",
             "val_chars", "val_streams")


def pick_device(name: str) -> torch.device:
    """auto -> cuda when a GPU is there, else cpu; a UserError for cuda without a GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name} was asked for, but no CUDA GPU is available here", param="device")
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
          resume: bool = False, source: str = "<text>", force: bool = False) -> Checkpoint:
    """Train a CharRNN on `text`, writing the best weights to `out`; returns that Checkpoint.

    text: the whole corpus (str); it is split 80/10/10 here. source: its name (a file path, which is
    then never written over), stored as ckpt.train["text"] and in the excerpt. force: replace an
    existing checkpoint at `out`. resume: continue the run stored in `out`, rewriting it (same text;
    the model and data settings come from the checkpoint, `steps` counts from the run's start,
    `minutes` from now). Raises UserError for settings, texts or outputs that cannot work, before
    the first step.
    """
    out = os.fspath(out)
    config.check()
    prior = _load_for_resume(out) if resume else None
    if prior is not None:
        config = TrainConfig(**{f.name: prior.extra["resume"]["config"][f.name] if f.name in RUN_SHAPE
                                else getattr(config, f.name) for f in fields(TrainConfig)})
    text = text[:config.max_chars or None]
    _check_splits(text)
    vocab = Vocab.from_text(text)
    if prior is not None:
        _check_resumable(prior, out, config, vocab, text_fingerprint(text))
    run = Run(text, vocab, config, out, source)
    if prior is not None:
        run.restore(prior)
    _check_out(out, force, resume, source)
    run_steps(run, progress)
    return run.finish(progress)


class Run:
    """One training run between steps: the model and its data, the best weights so far, and the record
    (`info`, stored as ckpt.train) that every checkpoint write takes a snapshot of."""

    def __init__(self, text: str, vocab: Vocab, config: TrainConfig, out: str, source: str):
        self.config, self.vocab, self.out, self.source = config, vocab, out, source
        self.device = device = pick_device(config.device)
        torch.manual_seed(config.seed)
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True     # as the reference runs did; cuDNN's RNNs use it too
        self.model = CharRNN(config.model_config(len(vocab))).to(device)
        ids = torch.as_tensor(vocab.encode(text))            # [N] int64, on the CPU
        (a, b), (vs, ve), (ts, te) = (split_span(len(text), s) for s in ("train", "val", "test"))
        self.trainer = Trainer(self.model, ids[a:b], config)
        self.val_ids = ids[vs:ve][:config.val_chars or None].numpy()
        self.test_ids = ids[ts:te][:config.test_chars or None].numpy()
        self.train_chars = b - a
        self.fingerprint = text_fingerprint(text)
        self.excerpt = {"text": text[ts:ts + EXCERPT_CHARS], "start": ts, "source": source}
        self.info = {"text": source, "chars": len(text), "split": [b - a, ve - vs, te - ts],
                     "vocab_size": len(vocab), "args": {**config.to_dict(), "text": source, "out": out},
                     "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                     "curve": [], "samples": {}, "best_step": None, "best_val_loss_nats": None,
                     "val_chars": len(self.val_ids), "steps": 0, "seconds": 0.0}
        self.step, self.seconds_before, self.best_state = 0, 0.0, None
        self.loss_sum, self.loss_n = torch.zeros((), device=device), 0     # training loss since the last validation
        self.t0 = time.monotonic()

    def restore(self, prior: Checkpoint) -> None:
        """Continue the run stored in `prior`: weights, optimizer, data position, RNG, record so far."""
        r = prior.extra["resume"]
        self.trainer.load_resume_state(r)
        torch.set_rng_state(r["rng_cpu"])
        if self.device.type == "cuda" and r.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(r["rng_cuda"], self.device)
        self.step, self.seconds_before = int(r["step"]), float(prior.train.get("seconds", 0.0))
        self.info.update({k: prior.train[k] for k in ("curve", "samples", "best_step", "best_val_loss_nats")
                          if k in prior.train})
        self.best_state = {k: v.clone() for k, v in prior.model.state_dict().items()}

    def seconds(self) -> float:
        return round(self.seconds_before + time.monotonic() - self.t0, 1)

    def sample(self, at: int, temperature: float = 1.0, length: int | None = None) -> str:
        gen = torch.Generator().manual_seed(self.config.seed * 1_000_003 + at)
        return self.model.sample(self.vocab, length or self.config.sample_chars, temperature=temperature,
                                 generator=gen)

    def validate(self) -> tuple[float, float]:
        """Validation loss now: record it, step the scheduler, keep the weights if best. -> (train, val) loss."""
        val = evaluate(self.model, self.val_ids, streams=self.config.val_streams).loss_nats
        train_loss = float(self.loss_sum) / max(self.loss_n, 1)
        self.loss_sum.zero_()
        self.loss_n = 0
        self.info["curve"].append({"step": self.step, "seconds": self.seconds(), "train_loss": round(train_loss, 4),
                                   "val_loss": round(val, 4), "lr": self.trainer.lr})
        self.trainer.scheduler.step(val)
        if self.info["best_val_loss_nats"] is None or val < self.info["best_val_loss_nats"]:
            self.info.update(best_step=self.step, best_val_loss_nats=round(val, 4))
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return train_loss, val

    def snapshot(self) -> dict:
        """The checkpoint as a plain dict: best weights for use, current state for resuming."""
        B, T = self.config.batch, self.config.seq
        self.info.update(steps=self.step, seconds=self.seconds(), lr=self.trainer.lr,
                         epochs=round(self.step * B * T / max(1, self.train_chars), 2))
        self.info["chars_per_second"] = round(self.step * B * T / max(self.info["seconds"], 1e-9))
        resume_state = {**self.trainer.resume_state(), "step": self.step, "config": self.config.to_dict(),
                        "text_sha1": self.fingerprint, "rng_cpu": torch.get_rng_state(),
                        "rng_cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None}
        blob = checkpoint_to_dict(Checkpoint(model=self.model, vocab=self.vocab, train=self.info,
                                             extra={"excerpt": self.excerpt, "resume": resume_state}))
        if self.best_state is not None:
            blob["state_dict"] = {k: v.detach().cpu().clone() for k, v in self.best_state.items()}
        return blob

    def save(self, blob: dict | None = None) -> None:
        # The output was checked before the first step; from then on the file is this run's own.
        atomic_save(self.snapshot() if blob is None else blob, self.out, force=True, inputs=[self.source])

    def finish(self, progress: bool) -> Checkpoint:
        """Test loss and final samples from the best weights (whole test split, one stream); the last write."""
        blob = self.snapshot()                 # taken first: its resume state holds the current weights
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        result = evaluate(self.model, self.test_ids, progress=progress)
        n = self.config.final_sample_chars
        self.info.update(test_loss_nats=round(result.loss_nats, 4), test_bits_per_char=round(result.bits_per_char, 4),
                         test_chars=result.chars, interrupted=False,
                         final_sample_t1=self.sample(self.step, 1.0, n), final_sample_t05=self.sample(self.step, 0.5, n))
        blob["train"] = self.info
        self.save(blob)
        self.model.eval()
        return Checkpoint(model=self.model, vocab=self.vocab, train=self.info,
                          extra={k: blob[k] for k in ("excerpt", "resume")}, path=self.out)


def run_steps(run: Run, progress: bool = True) -> None:
    """The step loop: train, sample and validate on schedule, write `run.out` at each validation.

    Stops at `config.steps` or after `config.minutes`; on Ctrl-C, after the current step, writes a
    resumable file and raises KeyboardInterrupt.
    """
    config = run.config
    sample_at = {int(s) for s in config.sample_at}
    run.t0 = time.monotonic()
    deadline = run.t0 + config.minutes * 60 if config.minutes else math.inf
    bar = tqdm(total=config.steps, initial=run.step, unit="step", desc="train", disable=not progress,
               dynamic_ncols=True)
    with DeferredInterrupt() as ctrl_c, bar:
        while not _done(run.step, config, deadline):
            loss = run.trainer.step()
            run.step += 1
            run.loss_sum += loss
            run.loss_n += 1
            bar.update(1)
            last = _done(run.step, config, deadline)
            evaluate_now = run.step % config.eval_every == 0 or last
            if run.step in sample_at or evaluate_now:
                run.info["samples"][str(run.step)] = run.sample(run.step)
            if evaluate_now:
                train_loss, val = run.validate()
                bar.set_postfix(loss=f"{train_loss:.3f}", val=f"{val:.3f}", lr=f"{run.trainer.lr:.2g}")
                run.save()
            elif run.step % 10 == 0:
                bar.set_postfix(loss=f"{float(loss):.3f}", lr=f"{run.trainer.lr:.2g}")
            if ctrl_c.hit:
                # Between steps, so the saved state is whole: resuming continues exactly from here.
                run.info["interrupted"] = True
                run.save()
                raise KeyboardInterrupt
            if last:
                break


def _done(step: int, config: TrainConfig, deadline: float) -> bool:
    return (config.steps is not None and step >= config.steps) or time.monotonic() >= deadline


def _check_splits(text: str) -> None:
    for s in ("val", "test"):
        start, end = split_span(len(text), s)
        if end - start < 2:
            raise UserError(f"the text holds {len(text):,} characters: too few for a {s} split of 2 or more "
                            f"(80/10/10); give a longer text")


def _load_for_resume(out: str) -> Checkpoint:
    if not os.path.exists(out):
        raise UserError(f"nothing to resume: {out} does not exist")
    prior = load_checkpoint(out)
    if "resume" not in prior.extra:
        raise UserError(f"{out} holds no training state to resume (not written by neuroscope train)")
    return prior


def _check_resumable(prior: Checkpoint, out: str, config: TrainConfig, vocab: Vocab, fingerprint: str) -> None:
    r = prior.extra["resume"]
    if r.get("text_sha1") != fingerprint or tuple(prior.vocab.chars) != vocab.chars:
        raise UserError(f"{out} was trained on another text; resume needs the same text", param="resume")
    if config.steps is not None and config.steps <= int(r["step"]):
        raise UserError(f"{out} is already at step {r['step']}; set steps above it to continue", param="steps")


def _check_out(out: str, force: bool, resume: bool, source: str) -> None:
    """Refuse an output that must not be written. A resumed run rewrites its own checkpoint by design."""
    try:
        check_output(out, "checkpoint", force=force or resume, inputs=[source])
    except UserError as exc:
        if exc.param != "force":
            raise
        raise UserError(f"{out} exists; set resume to continue its run, or force to replace it",
                        param="force") from None


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
