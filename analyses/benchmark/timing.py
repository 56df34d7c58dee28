"""What every benchmark shares: medians, memory, the load average, fresh processes, the checkouts
that --tree names, and the floor most benchmarks divide by (nn.LSTM's fused forward).

A fresh process is timed whole (interpreter start, imports, loading, the work), with PYTHONPATH set
to the checkout whose neuroscope it should run, so two checkouts compare in one run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from analyses._paths import ROOT, SHARED

PACKAGE = Path(__file__).resolve().parent       # run as `python analyses/benchmark`


def median(xs: list, key=None):
    """The middle item of xs (the upper one of an even count), by `key` if given."""
    return sorted(xs, key=key)[len(xs) // 2]


def spread(xs: list[float], digits: int = 3) -> dict:
    """{"median", "min", "max"} of xs, rounded."""
    return {"median": round(median(xs), digits), "min": round(min(xs), digits), "max": round(max(xs), digits)}


def median_time(fn, repeats: int = 3) -> float:
    """Median wall time of fn() over `repeats` runs, in seconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return median(times)


def load_average() -> tuple[float, float, float]:
    """The machine's load average over 1, 5 and 15 minutes: how busy it was around a timing."""
    return os.getloadavg()


def memory_mib(key: str = "VmHWM") -> float:
    """This process's memory from /proc/self/status, in MiB: "VmHWM" the peak resident set so far
    (not ru_maxrss, which keeps a parent's size across fork and exec), "VmRSS" the current one."""
    with open("/proc/self/status") as fh:
        return next(int(ln.split()[1]) for ln in fh if ln.startswith(key + ":")) / 1024


def reset_peak() -> None:
    """Reset this process's VmHWM to its current size, where Linux allows, so that memory_mib() after
    a setup reports the peak of what follows."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def trees_or_this(trees) -> list[Path]:
    """The checkouts named by --tree, resolved; this one when none is named."""
    return [Path(t).resolve() for t in trees] or [ROOT]


def commits(trees: list[Path]) -> dict[str, str]:
    """Each checkout's `git describe --always --dirty`, by its path."""
    return {str(t): subprocess.run(["git", "-C", str(t), "describe", "--always", "--dirty"], capture_output=True,
                                   text=True, check=False).stdout.strip() for t in trees}


def fresh(tree: Path, args: list[str], threads: int, what: str, env: dict | None = None) -> tuple[float, str]:
    """Run `python ARGS` in a fresh process with the checkout `tree` first on its path: (wall seconds of
    the whole process, its stdout); RuntimeError with its stderr if it fails."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(threads), **(env or {})}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=tree, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"{what} failed:\n{proc.stderr[-2000:]}")
    return seconds, proc.stdout


# Runs the `neuroscope` console script's entry point (in the flat layout and the cli/ package alike)
# and, at exit, writes the process's peak resident memory (VmHWM, KiB) to the file named by
# NEUROSCOPE_BENCH_PEAK: the child's own peak, which ru_maxrss is not (it keeps the size of the
# process that forked it).
_CLI_CHILD = """import atexit, os, sys
def _peak():
    with open("/proc/self/status") as fh, open(os.environ["NEUROSCOPE_BENCH_PEAK"], "w") as out:
        out.write(next(ln.split()[1] for ln in fh if ln.startswith("VmHWM:")))
atexit.register(_peak)
sys.argv[0] = "neuroscope"
from neuroscope.cli import main
main()
"""


def run_cli(tree: Path, args: list[str], threads: int) -> dict:
    """`neuroscope ARGS` from the checkout `tree` as a fresh process: {"seconds" (wall, the whole
    process: interpreter start, imports, loading, the work, writing), "peak_mib", "out" (parsed JSON
    stdout)}; RuntimeError with its stderr if it fails."""
    with tempfile.NamedTemporaryFile("r", suffix=".peak") as peak:
        seconds, stdout = fresh(tree, ["-c", _CLI_CHILD, *args], threads, f"neuroscope {' '.join(args)}",
                                {"NEUROSCOPE_BENCH_PEAK": peak.name})
        kib = peak.read().strip()
    return {"seconds": seconds, "peak_mib": int(kib) / 1024 if kib else None, "out": json.loads(stdout)}


def fused_forward(model, ids, streams: int, step: int = 256) -> None:
    """The floor: nn.LSTM's fused forward over the same characters in the same streams, `step`
    time steps per call with the state carried (all at once would hold [B, T, H] of outputs)."""
    import torch
    m = len(ids) // streams
    x = torch.as_tensor(ids[:streams * m]).view(streams, m)
    state = None
    with torch.no_grad():
        for t in range(0, m, step):
            _, state = model.rnn(model.encoder(x[:, t:t + step]), state)


def floor_seconds(ckpt: str, start: int, chars: int, streams: int, threads: int) -> float:
    """Seconds of the fused forward over warpeace.txt[start:start + chars] in `streams` streams, timed
    in this process after loading (the `floor` command)."""
    import torch

    from neuroscope.checkpoint import load_checkpoint
    from neuroscope.text import read_text
    torch.set_num_threads(threads)
    c = load_checkpoint(ckpt)
    ids = c.vocab.encode(read_text(SHARED / "data" / "warpeace.txt")[start:start + chars])
    fused_forward(c.model, ids[:20_000], 64)                  # warm the allocator, as the benchmarks do
    t0 = time.perf_counter()
    fused_forward(c.model, ids, streams)
    return time.perf_counter() - t0


def fused_seconds(ckpt: str, start: int, chars: int, streams: int, threads: int) -> float:
    """The floor timed in a fresh process (the `floor` command), like the commands it is compared with:
    a process's speed varies by up to 20% from one start to the next on this machine (the same forward
    took 8.2 s and 10.2 s per 50,000 characters in two processes), so one long-lived process would lend
    the floor its own luck in every repeat."""
    _, stdout = fresh(ROOT, [str(PACKAGE), "floor", "--ckpt", ckpt, "--start", str(start), "--chars", str(chars),
                             "--streams", str(streams), "--threads", str(threads)], threads, "the floor")
    return json.loads(stdout)["seconds"]
