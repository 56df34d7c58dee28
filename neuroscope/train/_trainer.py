"""The training step: B contiguous streams, truncated BPTT, Adam; and the state to resume it from."""
from __future__ import annotations

import signal
import threading

import torch
from torch.nn import functional as F

from ..checkpoint import checked_weights
from ..config import MAX_COUNT, TrainConfig
from ..errors import UserError
from ..model import CharRNN
from ._resume import checked_adam, checked_carried_state, checked_int, checked_plateau


def pick_device(name: str) -> torch.device:
    """auto -> cuda when a GPU is there, else cpu; a UserError for cuda without a GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name} was asked for, but no CUDA GPU is available here", param="device")
    return torch.device(name)


class Trainer:
    """One optimisation step at a time over B contiguous streams of the training ids.

    `step()` is the whole inner loop of `train` (and what analyses/benchmark times): read the
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
        """Continue from `r`, a resume_state read back from a file (its keys checked by resumed_config).
        Every entry is checked against this model and these streams first (UserError naming it, as
        `resume.position`), and what is loaded is built from the checked values only (_resume)."""
        T, L = self.config.seq, self.streams.shape[1]
        try:
            weights = checked_weights(r["model"], self.model.config)
        except UserError as exc:
            raise UserError(f"resume.model: {exc}") from None
        optimizer = checked_adam(r["optimizer"], self.optimizer)
        scheduler = checked_plateau(r["scheduler"], self.scheduler, optimizer["param_groups"][0]["lr"])
        position = checked_int("resume.position", r["position"], 0, L - 1)
        if position % T:
            raise UserError(f"resume.position must be a multiple of seq {T} (got {position})")
        epoch = checked_int("resume.epoch", r["epoch"], 0, MAX_COUNT)
        state = checked_carried_state(r["carried_state"], self.model.config, self.config.batch, self.device)
        self.model.load_state_dict(weights)
        self.optimizer.load_state_dict(optimizer)
        self.scheduler.load_state_dict(scheduler)
        self.position, self.epoch, self.state = position, epoch, state


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

