"""Benchmarks: every number is a ratio against the natural floor, measured in the same run.

    python analyses/benchmark.py train      # training throughput vs a hand-written nn.LSTM loop
    python analyses/benchmark.py record     # recording h and c vs the fused nn.LSTM forward
    python analyses/benchmark.py features   # labelling all features vs recording the same text
    python analyses/benchmark.py probe      # the ranking pass vs the fused forward

Each prints a few lines of results and, with --json, one JSON object. Timings are medians of
repeats on whatever machine runs them; they are never asserted in tests.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"


def median_time(fn, repeats: int = 3) -> float:
    """Median wall time of fn() over `repeats` runs, in seconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@click.group()
def cli():
    """neuroscope benchmarks (ratios against a floor measured in the same run)."""


# ---------------------------------------------------------------- train (issue 2)

# ---------------------------------------------------------------- record (issue 3)

# ---------------------------------------------------------------- features (issue 4)

# ---------------------------------------------------------------- probe (issue 5)


if __name__ == "__main__":
    cli()
