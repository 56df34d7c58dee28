"""`neuroscope demo`: the whole path, text to report, on a corpus every machine has, in minutes of CPU.

    >>> result = run_demo("neuroscope-demo")     # DEMO_STEPS training steps, seed 0
    >>> result.report          # "neuroscope-demo/report.html"
    >>> result.top             # {"in_string": ("l1.c.57", 0.83), "line_position": (...)}

Steps: the Python standard library's own sources (neuroscope.train.stdlib_corpus) -> a small
LSTM trained on the CPU for a fixed, seeded number of steps -> the held-out excerpt the checkpoint
stores -> labels for in_string (inside a string literal: the quote cell of code) and line_position ->
every unit ranked by Pearson r (neuroscope.probe) -> the full HTML report. Each stage shows its
progress. Training counts steps, not time, so a busy machine takes longer and gets the same model
(the same Python, torch and kind of CPU give the same numbers, at one thread or two).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from ..checkpoint import choose_text
from ..config import DEMO_STEPS
from ..errors import UserError
from ..features import resolve
from ..files import check_output, table_csv, write_text
from ..probe import probe
from ..train import TrainConfig, stdlib_corpus, train
from ._build import build_report

DEMO_FEATURES = ("in_string", "line_position")
CORPUS_CHARS = 2_000_000      # characters of stdlib source: more than a few minutes of CPU can read
PROBE_CHARS = 20_000          # held-out characters the units are ranked on


@dataclass
class DemoResult:
    folder: str
    checkpoint: str
    report: str
    ranking: str                                   # CSV of the full ranking
    seconds: float                                 # wall time of the whole demo
    test_loss_nats: float
    top: dict[str, tuple[str, float]] = field(default_factory=dict)    # feature -> (unit id, r)


def demo_config(steps: int = DEMO_STEPS, seed: int = 0) -> TrainConfig:
    """A 2 x 128 LSTM: small enough to learn quotes and line lengths in a few CPU minutes."""
    return TrainConfig(cell="lstm", layers=2, hidden=128, dropout=0.0, batch=32, seq=100, lr=3e-3,
                       steps=steps, minutes=None, device="cpu", seed=seed, eval_every=100,
                       val_chars=30_000, test_chars=100_000)


def run_demo(out: str | os.PathLike = "neuroscope-demo", steps: int = DEMO_STEPS, seed: int = 0,
             progress: bool = True, log=print, corpus_chars: int = CORPUS_CHARS, probe_chars: int = PROBE_CHARS,
             max_chars: int = 5000, force: bool = False, live: bool = True) -> DemoResult:
    """Train, record, rank and report; returns where everything went.

    steps: training steps (recording, ranking and the report add well under a minute on 2 CPU cores).
    corpus_chars, probe_chars and max_chars (characters shown in the report) are there to make a quick
    check quicker; the defaults are the demo. The files of an earlier demo in `out` are replaced only
    with force (checked before training). live: the report runs the model in its page (docs/live.md;
    the 2 x 128 model adds under 1 MB).
    """
    t0 = time.monotonic()
    out = os.fspath(out)
    config = demo_config(steps, seed)
    config.check()                     # a bad step count or seed is refused before anything is written
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"{out} is a file; out must be a folder", param="out")
    os.makedirs(out, exist_ok=True)
    paths = {kind: os.path.join(out, name) for kind, name in
             (("checkpoint", "model.pt"), ("csv", "ranking.csv"), ("html", "report.html"))}
    for kind, path in paths.items():
        check_output(path, kind, force)

    text = stdlib_corpus(corpus_chars)
    log(f"[1/4] training a 2 x 128 LSTM on {len(text):,} characters of Python stdlib source for {steps:,} steps")
    ckpt = train(text, config, out=paths["checkpoint"], progress=progress, force=force,
                 source="Python standard library (.py sources)")
    log(f"      test loss {ckpt.train['test_loss_nats']:.3f} nats/char after {ckpt.train['steps']:,} steps")

    span = choose_text(ckpt, chars=min(probe_chars, len(ckpt.excerpt["text"])))
    log(f"[2/4] labelling {len(span.text):,} held-out characters: {', '.join(DEMO_FEATURES)}")
    features = resolve(span.text, names=DEMO_FEATURES)

    log("[3/4] recording every unit and ranking it against each feature (Pearson r)")
    result = probe(ckpt, span.text, features, seed=seed, progress=progress)
    write_text(paths["csv"], table_csv(result.ranking), "csv", force)

    log("[4/4] writing the report")
    report = build_report(ckpt, span, result, features, max_chars=max_chars, progress=progress, live=live)
    report.save(paths["html"], force=force)
    top = {}
    for f in DEMO_FEATURES:
        best = result.ranking[result.ranking["feature"] == f].iloc[0]
        top[f] = (str(best["unit_id"]), float(best["r"]))
    return DemoResult(folder=out, checkpoint=ckpt.path, report=paths["html"], ranking=paths["csv"],
                      seconds=time.monotonic() - t0, test_loss_nats=float(ckpt.train["test_loss_nats"]), top=top)
