"""A stored resume state (ckpt.extra["resume"]), read as untrusted input: every entry checked against
the model and the data before use, each refusal one line naming the entry ("resume.position must be
..."), and what is loaded built from the checked values only, never the stored objects as they are."""
from __future__ import annotations

import math
import os
from dataclasses import replace

import torch

from ..checkpoint import Checkpoint, checked_tensor, load_checkpoint
from ..config import MAX_COUNT, ModelConfig, TrainConfig, is_int, is_number, short_repr
from ..errors import UserError
from ..model import state_shapes
from ..text import Vocab

# TrainConfig fields that fix the model, the data order and the validation sample: a resumed run
# takes them from the checkpoint.
RUN_SHAPE = ("cell", "layers", "hidden", "embedding", "dropout", "batch", "seq", "seed", "max_chars",
             "val_chars", "val_streams")
# What ckpt.extra["resume"] holds, all written by Trainer.resume_state and Run.snapshot; nothing else.
RESUME_KEYS = ("model", "optimizer", "scheduler", "position", "epoch", "carried_state", "step", "config",
               "text_sha1", "rng_cpu", "rng_cuda")


def checked_int(name: str, value, lo: int, hi: int) -> int:
    if not (is_int(value) and lo <= value <= hi):
        raise UserError(f"{name} must be an integer in [{lo:,}, {hi:,}] (got {short_repr(value)})")
    return int(value)


def check_keys(name: str, value, keys: tuple) -> None:
    """`value` is a dict holding exactly `keys`: a missing entry would fail mid-run, an unknown one means
    the file was not written by train."""
    if not isinstance(value, dict):
        raise UserError(f"{name} must be a dict (got {type(value).__name__})")
    missing = next((k for k in keys if k not in value), None)
    if missing is not None:
        raise UserError(f"{name} lacks {missing!r}")
    unknown = next((k for k in value if k not in keys), None)
    if unknown is not None:
        raise UserError(f"{name} holds {short_repr(unknown)}, which train does not write")


def checked_rng(name: str, value, size: int | None = None) -> torch.Tensor:
    """A random-number generator state: a 1-D uint8 tensor (of `size` bytes) that torch accepts."""
    t = checked_tensor(name, value, dtype=torch.uint8)
    if t.dim() != 1 or (size is not None and t.numel() != size):
        raise UserError(f"{name} has shape {list(t.shape)}; [{size if size is not None else 'n'}] is needed")
    if size is not None:
        try:
            torch.Generator().set_state(t)
        except RuntimeError:
            raise UserError(f"{name} is not a valid random-number state") from None
    return t


def resumed_config(prior: Checkpoint, out: str, config: TrainConfig) -> TrainConfig:
    """The config a resumed run continues with: the run's shape (RUN_SHAPE) from the file, the rest as given.

    The stored state's entries (RESUME_KEYS, exactly), its step and its settings are checked first, and
    the settings against the model the file holds; UserError "{out} cannot be resumed: ...".
    """
    r = prior.extra["resume"]
    try:
        check_keys("resume", r, RESUME_KEYS)
        stored = r["config"]
        if not isinstance(stored, dict):
            raise UserError(f"resume.config must be a dict (got {type(stored).__name__})")
        missing = next((k for k in RUN_SHAPE if k not in stored), None)
        if missing is not None:
            raise UserError(f"resume.config lacks {missing!r}")
        resumed = replace(config, **{k: stored[k] for k in RUN_SHAPE})
        try:
            resumed.check()
        except UserError as exc:
            raise UserError(f"resume.config: {exc}") from None
        if resumed.model_config(len(prior.vocab)) != prior.config:
            raise UserError("resume.config describes another model than the file's weights")
        checked_int("resume.step", r["step"], 1, MAX_COUNT)
    except UserError as exc:
        raise UserError(f"{out} cannot be resumed: {exc}") from None
    return resumed


def load_for_resume(out: str) -> Checkpoint:
    if not os.path.exists(out):
        raise UserError(f"nothing to resume: {out} does not exist")
    prior = load_checkpoint(out)
    if "resume" not in prior.extra:
        raise UserError(f"{out} holds no training state to resume (not written by neuroscope train)")
    return prior


def check_resumable(prior: Checkpoint, out: str, config: TrainConfig, vocab: Vocab, fingerprint: str) -> None:
    r = prior.extra["resume"]
    if r.get("text_sha1") != fingerprint or tuple(prior.vocab.chars) != vocab.chars:
        raise UserError(f"{out} was trained on another text; resume needs the same text", param="resume")
    if config.steps is not None and config.steps <= int(r["step"]):
        raise UserError(f"{out} is already at step {r['step']}; set steps above it to continue", param="steps")


def checked_adam(raw, optimizer: torch.optim.Adam) -> dict:
    """A state_dict for `optimizer` built from checked stored values: each parameter's step (>= 1),
    exp_avg and exp_avg_sq (>= 0: its square root divides) in the parameter's shape and dtype, and the
    learning rate reached; the other settings are the optimizer's own."""
    params = optimizer.param_groups[0]["params"]
    n = len(params)
    check_keys("resume.optimizer", raw, ("state", "param_groups"))
    groups = raw["param_groups"]
    if not (isinstance(groups, list) and len(groups) == 1 and isinstance(groups[0], dict)):
        raise UserError("resume.optimizer['param_groups'] must be a list of one dict")
    lr, ids = groups[0].get("lr"), groups[0].get("params")
    if not (is_number(lr) and 0 < lr <= 1):          # TrainConfig's range; the rate only decays from there
        raise UserError(f"resume.optimizer's lr must be a number in (0, 1] (got {short_repr(lr)})")
    if not (isinstance(ids, list) and len(ids) == n and all(is_int(i) and i == k for k, i in enumerate(ids))):
        raise UserError(f"resume.optimizer's params must be the model's {n} parameters in order")
    stored = raw["state"]
    if not (isinstance(stored, dict) and all(is_int(k) for k in stored) and set(stored) in (set(), set(range(n)))):
        raise UserError(f"resume.optimizer['state'] must be a dict holding each of the {n} parameters, or none")
    state = {}
    for i, p in enumerate(params if stored else []):
        name = f"resume.optimizer['state'][{i}]"
        check_keys(name, stored[i], ("step", "exp_avg", "exp_avg_sq"))
        step = checked_tensor(f"{name}['step']", stored[i]["step"], shape=())
        if not (step.is_floating_point() and 1 <= float(step) <= MAX_COUNT):
            raise UserError(f"{name}['step'] must be a number in [1, {MAX_COUNT:,}] (got {float(step)})")
        avg, sq = (checked_tensor(f"{name}[{k!r}]", stored[i][k], tuple(p.shape), p.dtype)
                   for k in ("exp_avg", "exp_avg_sq"))
        if bool((sq < 0).any()):
            raise UserError(f"{name}['exp_avg_sq'] holds negative values")
        state[i] = {"step": step.clone(), "exp_avg": avg, "exp_avg_sq": sq}
    group = {**optimizer.state_dict()["param_groups"][0], "lr": float(lr)}
    return {"state": state, "param_groups": [group]}


def checked_plateau(raw, scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau, lr: float) -> dict:
    """A state_dict for `scheduler`: its own settings (factor: this call's lr_decay), the stored progress
    (checked), and `lr`, the optimizer's checked rate."""
    if not isinstance(raw, dict):
        raise UserError(f"resume.scheduler must be a dict (got {type(raw).__name__})")
    missing = next((k for k in ("best", "num_bad_epochs", "last_epoch", "cooldown_counter") if k not in raw), None)
    if missing is not None:
        raise UserError(f"resume.scheduler lacks {missing!r}")
    progress, best = {}, raw["best"]
    if not (is_number(best) and best > -math.inf):       # +inf: no validation yet
        raise UserError(f"resume.scheduler['best'] must be a number, not NaN or -inf (got {short_repr(best)})")
    progress["best"] = float(best)
    for key in ("num_bad_epochs", "last_epoch", "cooldown_counter"):
        progress[key] = checked_int(f"resume.scheduler[{key!r}]", raw[key], 0, MAX_COUNT)
    fresh = scheduler.state_dict()
    if "_last_lr" in fresh:
        progress["_last_lr"] = [lr]
    return {**fresh, **progress}


def checked_carried_state(raw, c: ModelConfig, batch: int, device: torch.device):
    """The recurrent state carried into the next window: None, or the model's state as a list ([h, c] for an
    LSTM, [h] for a GRU or RNN, the cell's tensors for the others: model.state_shapes), float32, moved to
    `device` (as the model's forward takes it: a tuple, or h alone for GRU and RNN)."""
    if raw is None:
        return None
    shapes = state_shapes(c, batch)
    n = len(shapes)
    if not (isinstance(raw, (list, tuple)) and len(raw) == n):
        got = f"{len(raw)} entries" if isinstance(raw, (list, tuple)) else type(raw).__name__
        raise UserError(f"resume.carried_state must be a list of {n} tensors for {c.cell} (got {got})")
    s = [checked_tensor(f"resume.carried_state[{i}]", t, shape, torch.float32).to(device)
         for i, (t, shape) in enumerate(zip(raw, shapes))]
    return s[0] if c.cell in ("gru", "rnn") else tuple(s)
