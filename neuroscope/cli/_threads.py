"""How many threads a command's torch work uses: the cores that other work leaves free.

Beside one busy process on a 2-core machine, torch's default of one thread per core makes the fused
nn.LSTM forward about 3x slower than alone (its OpenMP threads meet at every step, and one of them
waits for a core), while one thread costs the same busy or idle. So before a command runs, the
runnable tasks other than this process are counted (Linux's /proc/stat `procs_running`, the median
of a few samples) and torch gets the cores left over, at least one. `--threads N` overrides it.
"""
from __future__ import annotations

import os
import statistics
import time

import click

from ._options import AutoOrCount

SAMPLES = 5               # looks at procs_running, INTERVAL apart: one look can catch a short-lived task
INTERVAL = 0.01           # seconds


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                      # not Linux
        return os.cpu_count() or 1


def busy_tasks(samples: int = SAMPLES, interval: float = INTERVAL) -> int:
    """Runnable tasks other than this process (the median of `samples` looks); 0 where the kernel
    does not say (no /proc/stat)."""
    seen = []
    for i in range(samples):
        try:
            with open("/proc/stat", "rb") as f:
                line = next(x for x in f if x.startswith(b"procs_running"))
        except (OSError, StopIteration):
            return 0
        seen.append(max(0, int(line.split()[1]) - 1))            # this process is running while it looks
        if i + 1 < samples:
            time.sleep(interval)
    return int(statistics.median(seen))


def auto_threads() -> int:
    """The threads torch should use now: the free cores, at least 1."""
    return max(1, cores() - busy_tasks())


def _apply(ctx: click.Context, param, value) -> None:
    """Set torch's threads for this command and put the old count back when it ends (a command run
    inside another program, a test, must not change that program's threads)."""
    if value is None or ctx.resilient_parsing:
        return
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(auto_threads() if value == "auto" else value)
    ctx.call_on_close(lambda: torch.set_num_threads(before))


def threads_option(f):
    """--threads for every command that computes with the model (handed to nothing: it sets torch)."""
    return click.option("--threads", type=AutoOrCount(), default="auto", show_default=True, expose_value=False,
                        callback=_apply, help="CPU threads; auto: the cores not busy with other work.")(f)
