"""The seed's claims tested by intervention: clamp a reference cell and sample. Does the behaviour the
cell is said to track follow the clamp, and not the same clamp on random cells?

Three cells, each the probe's best cell-state unit of its finding (reports/reference_units.json):
wp_lstm3x512's quote cell and line-position cell, linux_lstm3x512's brace-depth cell. Each is held
(its memory c, at every step of the prime and the sample, hooks edit) at two values read off the test
split: its median where the feature holds one value ("on": inside a quote, 60+ characters into the
line, brace depth 2 or more) and where it holds the other ("off": outside, 5-20 characters in, depth
0). Against them: no clamp, and the "on" value clamped on one random cell of the same layer instead
(a different cell for each of RANDOM_CELLS draws). Every condition samples the same primes with the
same seeds (SAMPLES samples of LENGTH characters at temperature 1). Measured on the samples: quote
marks per 1,000 characters and the share inside a quotation; the mean length of complete lines;
closing and opening braces per 1,000 characters. Line
breaks per 1,000 characters too: a sample with no complete line has no line length. 95% intervals: bootstrap over samples.

    python analyses/clamp_sampling.py          # about 10 minutes on a 2-core CPU

Writes reports/clamp_sampling.json and prints the table.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPORTS, SHARED, setup  # noqa: E402

from neuroscope.checkpoint import choose_text, load_checkpoint
from neuroscope.features import label
from neuroscope.files import write_json
from neuroscope.hooks import Trace
from neuroscope.names import parse_unit
from neuroscope.record import Intervention, record

SAMPLES, LENGTH, RANDOM_CELLS = 48, 400, 8
PRIMES = {"wp_lstm3x512": ["The ", "He said, ", "\r\n\r\n", "Pierre "],
          "linux_lstm3x512": ["static int ", "\tif (", "{\n\t", "/* "]}
CASES = [  # model, corpus, feature, on / off (label -> bool), what to measure
    ("wp_lstm3x512", "warpeace.txt", "in_quote", lambda y: y == 1, lambda y: y == 0, "quotes"),
    ("wp_lstm3x512", "warpeace.txt", "line_position", lambda y: y >= 60, lambda y: (y >= 5) & (y <= 20), "lines"),
    ("linux_lstm3x512", "linux.txt", "brace_depth", lambda y: y >= 2, lambda y: y == 0, "braces"),
]


def best_cell(model: str, feature: str) -> str:
    """The reference finding's best c unit (the best unit itself, or the first c among the next ones)."""
    ref = next(r for r in json.loads((REPORTS / "reference_units.json").read_text())
               if r["model"] == model and r["feature"] == feature)
    return next(u for u in [ref["unit"]] + [n.split()[0] for n in ref["next_units"]] if ".c." in u)


@torch.no_grad()
def sample(net, vocab, primes: list[str], clamp: dict, n: int, length: int) -> list[str]:
    """n samples of `length` characters, n / len(primes) from each prime (one batch, one seeded generator
    per prime, the same in every condition), with {quantity: (unit indices, value)} held at every step."""
    held = {q: Intervention(q, u, "clamp", val) for q, (u, val) in clamp.items()}        # record's own clamp
    edit = {q: (lambda v, t, iv=iv: iv.edit(v)) for q, iv in held.items()}
    out = []
    for i, prime in enumerate(primes):
        gen = torch.Generator().manual_seed(i)
        ids = torch.as_tensor(vocab.encode(prime))[None].expand(n // len(primes), -1)
        with Trace(net, names=[], edit=edit) if clamp else nullcontext():
            logits, state = net(ids)
            chars = []
            for _ in range(length):
                nxt = torch.multinomial(torch.softmax(logits[:, -1].float(), -1), 1, generator=gen)
                chars.append(nxt)
                logits, state = net(nxt, state)
        out += [vocab.decode(row) for row in torch.cat(chars, 1).tolist()]
    return out


def clamp_values(net, vocab, text: str, unit: str, feature: str, on, off) -> tuple[float, float]:
    """The cell's median raw c where the feature is on and where it is off, over text."""
    u = parse_unit(unit)
    c = record(net, vocab.encode(text), ("c",), streams=16, warmup=256)[u.quantity][:, u.index]
    y = label(text, feature)
    return float(np.median(c[on(y)])), float(np.median(c[off(y)]))


def one_case(ckpt, text: str, case, samples: int, length: int) -> dict:
    model, _, feature, on, off, kind = case
    t0 = time.perf_counter()
    unit = best_cell(model, feature)
    u = parse_unit(unit)
    hi, lo = clamp_values(ckpt.model, ckpt.vocab, text, unit, feature, on, off)
    primes, net, v = PRIMES[model], ckpt.model, ckpt.vocab
    run = lambda clamp: sample(net, v, primes, clamp, samples, length)      # noqa: E731
    conditions = {"none": run({}), "on": run({u.quantity: ([u.index], hi)}), "off": run({u.quantity: ([u.index], lo)})}
    rng = np.random.default_rng(0)
    others = rng.choice([i for i in range(net.config.hidden_size) if i != u.index], RANDOM_CELLS, replace=False)
    conditions["random on"] = [t for i in others for t in run({u.quantity: ([int(i)], hi)})]
    return {"model": model, "feature": feature, "unit": unit, "on_value": hi, "off_value": lo,
            "random_cells": [f"l{u.layer}.c.{int(i)}" for i in others], "samples": samples, "length": length,
            "measures": {name: measure(texts, kind) for name, texts in conditions.items()},
            "example": {name: texts[0][:200] for name, texts in conditions.items()},
            "seconds": round(time.perf_counter() - t0, 1)}


def measure(texts: list[str], kind: str) -> dict:
    """Per-sample values of the behaviour, then each one's mean and 95% bootstrap interval."""
    if kind == "quotes":
        per = {"quotes_per_1k": [1000 * t.count('"') / len(t) for t in texts],
               "share_in_quote": [float(label(t, "in_quote").mean()) for t in texts]}
    elif kind == "lines":
        per = {"breaks_per_1k": [1000 * t.count("\n") / len(t) for t in texts],
               "line_length": [float(np.mean([len(s) for s in t.replace("\r", "").split("\n")[1:-1]] or [np.nan]))
                               for t in texts]}
    else:
        per = {"closing_per_1k": [1000 * t.count("}") / len(t) for t in texts],
               "opening_per_1k": [1000 * t.count("{") / len(t) for t in texts]}
    return {k: interval(np.array(v, dtype=float)) for k, v in per.items()}


def interval(v: np.ndarray, draws: int = 2000) -> dict:
    v = v[np.isfinite(v)]
    rng = np.random.default_rng(0)
    means = rng.choice(v, (draws, len(v))).mean(1)
    return {"mean": float(v.mean()), "low": float(np.percentile(means, 2.5)), "high": float(np.percentile(means, 97.5)),
            "n": int(len(v))}


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--shared", default=str(SHARED), help="folder with models/ and data/")
    p.add_argument("--samples", type=int, default=SAMPLES, help="samples per condition (a multiple of 4)")
    p.add_argument("--length", type=int, default=LENGTH, help="characters per sample")
    p.add_argument("--chars", type=int, default=100_000, help="test characters the clamp values are read from")
    p.add_argument("--out", default=str(REPORTS / "clamp_sampling.json"))
    args = p.parse_args(argv)
    setup()
    out, loaded = [], {}
    for case in CASES:
        model, corpus = case[0], case[1]
        if model not in loaded:
            ckpt = load_checkpoint(Path(args.shared) / "models" / f"{model}.pt")
            loaded = {model: (ckpt, choose_text(ckpt, Path(args.shared) / "data" / corpus, split="test",
                                                chars=args.chars).text)}
        out.append(one_case(*loaded[model], case, args.samples, args.length))
        print(f"{model} {case[2]}: {out[-1]['seconds']} s", flush=True)
    for f in out:
        print(f"\n{f['model']} {f['feature']}: {f['unit']} held at {f['on_value']:+.2f} (on) / {f['off_value']:+.2f} (off)")
        for name, m in f["measures"].items():
            print(f"  {name:>10}: " + "; ".join(f"{k} {x['mean']:.2f} [{x['low']:.2f}, {x['high']:.2f}]"
                                               for k, x in m.items()))
    write_json(args.out, out, force=True)          # the script regenerates its own file
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
