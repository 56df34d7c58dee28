"""Commands on a machine that is not idle: probe, record, match and explain, each as the whole command
a user runs (a fresh process), alone and beside one CPU-bound process (a Python busy loop), with
`--threads auto` (the default: the cores the other work leaves free), `--threads 1` and `--threads 2`
(one thread per core, torch's own default). The fused nn.LSTM forward at one and two threads, in the
same conditions, shows what the machine does to the recurrence itself.

The goal: beside the busy process a command costs at most its one-thread time (one thread runs as fast
busy or idle), and alone no more than before.
"""
from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from analyses._paths import SHARED

from .timing import commits, fresh, load_average, run_cli, spread

BUSY = "while True: pass"          # the other job: one core's worth of pure Python
MODES = ("auto", "1", "2")         # --threads


def commands(model: str, text: str, chars: int, out: Path) -> dict[str, list[str]]:
    """The commands timed, each on the first `chars` characters of the test split of `text`."""
    span = _link_span(text, chars)
    common = ["--ckpt", model, "--text", text, "--chars", str(chars)]
    return {"probe": ["probe", *common, "--feature", "in_wikilink", "--json"],
            "record": ["record", *common, "--out", str(out / "acts"), "--force", "--json"],
            "match": ["match", *common, "--span", span, "--json"],
            "explain": ["explain", *common, "--unit", "l1.c.0", "--unit", "l0.h.5", "--json"]}


def _link_span(text: str, chars: int) -> str:
    """A span "A:B" over the first [[wiki link]] in the first `chars` characters of the test split."""
    from neuroscope.text import read_text, select_span
    full = read_text(text)
    s, _ = select_span(full, split="test")
    m = re.search(r"\[\[[^\]\n]{3,40}\]\]", full[s:s + chars])
    return f"{m.start()}:{m.end()}"


def _floor_args(model: str, chars: int, threads: str) -> list[str]:
    from .timing import PACKAGE
    return [str(PACKAGE), "floor", "--ckpt", model, "--start", "0", "--chars", str(chars), "--streams", "16",
            "--threads", threads]


def _timed(condition: str, fn):
    """fn() alone ("idle") or beside a busy loop ("busy"), started half a second before."""
    if condition == "idle":
        return fn()
    spinner = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        time.sleep(0.5)
        return fn()
    finally:
        spinner.kill()
        spinner.wait()


def run(model: str, text: str, chars: int, floor_chars: int, repeats: int, trees) -> dict:
    """Each command in each --threads mode, idle and busy, `repeats` fresh processes (interleaved);
    the floor at 1 and 2 threads in the same conditions. Seconds of the whole process."""
    tree = trees[0]
    times: dict[tuple, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cmds = commands(model, text, chars, Path(tmp))
        for _ in range(repeats):
            for condition in ("idle", "busy"):
                for threads in ("1", "2"):
                    key = ("fused nn.LSTM forward", condition, threads)
                    seconds = _timed(condition, lambda: fresh(tree, _floor_args(model, floor_chars, threads),
                                                              int(threads), "the floor")[1])
                    times.setdefault(key, []).append(_floor_value(seconds))
                for name, args in cmds.items():
                    for mode in MODES:
                        res = _timed(condition, lambda: run_cli(tree, [*args, "--threads", mode], 2))
                        times.setdefault((name, condition, mode), []).append(res["seconds"])
    return {"model": Path(model).name, "text": Path(text).name, "chars": chars, "floor_chars": floor_chars,
            "repeats": repeats, "trees": commits(trees), "load_average": load_average(),
            "runs": [{"case": c, "condition": cond, "threads": t, "seconds": spread(ts)}
                     for (c, cond, t), ts in times.items()]}


def _floor_value(stdout: str) -> float:
    import json
    return json.loads(stdout)["seconds"]


def default_model() -> str:
    return str(SHARED / "models" / "enwiki_lstm2x512.pt")


def default_text() -> str:
    return str(SHARED / "data" / "enwiki.xml")
