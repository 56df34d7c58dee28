"""The training run: `train` (checks, the writer's lock, resume), `Run` (model, data, record, writes) and
`run_steps` (the loop)."""
from __future__ import annotations

import hashlib
import math
import os
import time

import torch
from tqdm.auto import tqdm

from ..checkpoint import Checkpoint, atomic_save, checkpoint_to_dict
from ..config import TrainConfig
from ..errors import UserError
from ..model import evaluate
from ..files import WriterLock, check_output
from ..model import CharRNN
from ..text import Vocab, split_span
from ._resume import check_resumable, checked_rng, load_for_resume, resumed_config
from ._trainer import DeferredInterrupt, Trainer, pick_device

EXCERPT_CHARS = 20_000


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
    _check_text(text)
    if not os.path.isdir(os.path.dirname(out) or "."):
        _check_out(out, force, resume, source)      # a missing folder, in its words, before the lock needs it
    if resume and not os.path.isfile(out):
        load_for_resume(out)                        # says why not (missing, a folder, a device) before the lock
    with WriterLock(out):                           # one writer, from reading `out` to the last write
        prior = load_for_resume(out) if resume else None
        if prior is not None:
            config = resumed_config(prior, out, config)
        text = text[:config.max_chars or None]
        _check_splits(text)
        vocab = Vocab.from_text(text)
        if prior is not None:
            check_resumable(prior, out, config, vocab, text_fingerprint(text))
        run = Run(text, vocab, config, out, source)
        if prior is not None:
            run.restore(prior)
        _check_out(out, force, resume, source)      # locked: no other run can write it from here on
        first = run.step
        run_steps(run, progress)
        if run.step == first:
            # Only a time budget stops a run before its first step; a file without one would be a model
            # that never trained, with no validation loss.
            raise UserError(f"minutes={config.minutes:g} ran out before the first step; "
                            + (f"{out} is unchanged" if prior else "nothing was written"), param="minutes")
        return run.finish(progress)


class Run:
    """One training run between steps: the model and its data, the best weights so far, and the record
    (`info`, stored as ckpt.train) that every checkpoint write takes a snapshot of."""

    def __init__(self, text: str, vocab: Vocab, config: TrainConfig, out: str, source: str):
        self.config, self.vocab, self.out, self.source = config, vocab, out, source
        source = writable(source)               # a file name that is not UTF-8 is stored readably
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
                     "vocab_size": len(vocab), "args": {**config.to_dict(), "text": source, "out": writable(out)},
                     "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                     "curve": [], "samples": {}, "best_step": None, "best_val_loss_nats": None,
                     "val_chars": len(self.val_ids), "steps": 0, "seconds": 0.0}
        self.step, self.seconds_before, self.best_state = 0, 0.0, None
        self.saved = False                                     # has this run (or the one it resumes) written `out`
        self.loss_sum, self.loss_n = torch.zeros((), device=device), 0     # training loss since the last validation
        self.t0 = time.monotonic()

    def restore(self, prior: Checkpoint) -> None:
        """Continue the run stored in `prior`: weights, optimizer, data position, RNG, record so far.
        The stored state is checked first (UserError: "{out} cannot be resumed: ...", one line)."""
        r = prior.extra["resume"]
        try:
            self.trainer.load_resume_state(r)
            rng_cpu = checked_rng("resume.rng_cpu", r["rng_cpu"], torch.get_rng_state().numel())
            rng_cuda = r["rng_cuda"] if r["rng_cuda"] is None else checked_rng("resume.rng_cuda", r["rng_cuda"])
            torch.set_rng_state(rng_cpu)
            if self.device.type == "cuda" and rng_cuda is not None:
                try:
                    torch.cuda.set_rng_state(rng_cuda, self.device)
                except RuntimeError:
                    raise UserError("resume.rng_cuda is not a CUDA random-number state") from None
        except UserError as exc:
            raise UserError(f"{self.out} cannot be resumed: {exc}") from None
        self.step, self.seconds_before, self.saved = int(r["step"]), max(0.0, prior.train.get("seconds") or 0.0), True
        self.info.update({k: prior.train[k] for k in ("curve", "samples", "best_step", "best_val_loss_nats")
                          if prior.train.get(k) is not None})
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
        if not math.isfinite(val):
            # A NaN loss would be stored as the best, and no command reads a checkpoint that holds one.
            kept = f"{self.out} keeps the last state saved" if self.saved else "nothing was written"
            raise UserError(f"training diverged: the validation loss is {val} at step {self.step}; {kept}; "
                            f"try a lower lr", param="lr")
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
        self.saved = True

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


def _check_text(text: str) -> None:
    """A text with a lone surrogate (possible from Python, never from read_text) has no UTF-8 form to
    fingerprint, and its vocabulary could not be stored."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UserError(f"text holds a lone surrogate at {exc.start}, which a checkpoint cannot store",
                        param="text") from None


def writable(name: str) -> str:
    """`name` (a path) as a checkpoint may store it: bytes that are not UTF-8 (which Python keeps as lone
    surrogates) become U+FFFD, so that every command can read and print it."""
    try:
        raw = name.encode("utf-8", "surrogateescape")      # the file name's own bytes
    except UnicodeEncodeError:
        raw = name.encode("utf-8", "surrogatepass")        # a surrogate that came from no file name
    return raw.decode("utf-8", "replace")


def _check_out(out: str, force: bool, resume: bool, source: str) -> None:
    """Refuse an output that must not be written. A resumed run rewrites its own checkpoint by design."""
    try:
        check_output(out, "checkpoint", force=force or resume, inputs=[source])
    except UserError as exc:
        if exc.param != "force":
            raise
        raise UserError(f"{out} exists; set resume to continue its run, or force to replace it",
                        param="force") from None

