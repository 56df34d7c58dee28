"""Steering by a quote latent: does pushing wp_lstm3x512 along it make its samples quote more?

The latent of the wp l2.c dictionary that tracks `in_quote` best on held-out text (the one
dictionary_reference.py reports) is added at every step, with the sign that means "inside a quote",
at strength S (`neuroscope sample --steer`); against it, a random unit direction at the same strength,
and no steering. For each condition, N samples of LENGTH characters from the same primes and seeds:
the share of characters inside quotes (the `in_quote` feature on the sample) and quote marks per
1,000 characters, with 95% bootstrap intervals over the samples.

    python analyses/dictionary_steering.py          # a few minutes on a 2-core CPU

Writes reports/dictionary_steering.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPORTS, SHARED, setup  # noqa: E402
from dictionary_reference import dictionary_for  # noqa: E402

from neuroscope.checkpoint import choose_text, load_checkpoint
from neuroscope.dictionary import latent_values
from neuroscope.features import label
from neuroscope.files import write_json
from neuroscope.hooks import SHOWN_C, Trace
from neuroscope.names import parse_latent
from neuroscope.stats import auroc

PRIMES = ["The ", "He said, ", "\n\n", "Pierre ", "At that moment "]


def quote_latent(ckpt, d, text: str, reference: Path) -> tuple[int, float]:
    """(latent index, +1 or -1: the sign of its push towards "inside a quote")."""
    ids = ckpt.vocab.encode(text)
    y = label(text, "in_quote")
    if reference.exists():
        case = next(c for c in json.loads(reference.read_text())["cases"] if c["quantity"] == d.quantity)
        index = parse_latent(case["features"]["in_quote"]["latents"]["best"]).index
    else:
        z = latent_values(d, ckpt.model, ids).astype(np.float32)
        index = int(np.nanargmax(np.abs(np.asarray(auroc(z, y)) - 0.5)))
    z = latent_values(d, ckpt.model, ids, [parse_latent(f"l2.c/d.{index}")]).astype(np.float32)[:, 0]
    return index, (1.0 if auroc(z, y) > 0.5 else -1.0)


def samples(model, vocab, push: torch.Tensor | None, where: str, n: int, length: int) -> list[str]:
    out = []
    for i in range(n):
        gen = torch.Generator().manual_seed(i)
        edit = {} if push is None else {where: lambda value, t: value.add_(push)}
        with Trace(model, names=[], edit=edit):
            text = model.sample(vocab, length, temperature=1.0, prime=PRIMES[i % len(PRIMES)], generator=gen)
        out.append(text[len(PRIMES[i % len(PRIMES)]):])
    return out


def measured(texts: list[str], rng: np.random.Generator) -> dict:
    inside = np.array([label(t, "in_quote").mean() for t in texts])
    marks = np.array([1000 * t.count('"') / max(len(t), 1) for t in texts])
    out = {}
    for name, v in (("in_quote_share", inside), ("quote_marks_per_1000", marks)):
        boot = [rng.choice(v, len(v)).mean() for _ in range(2000)]
        out[name] = {"mean": round(float(v.mean()), 4), "ci95": [round(float(np.percentile(boot, q)), 4) for q in (2.5, 97.5)]}
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--shared", default=str(SHARED))
    p.add_argument("--dicts", default=str(REPORTS / "dictionaries"))
    p.add_argument("--strength", type=float, default=4.0)
    p.add_argument("--samples", type=int, default=30)
    p.add_argument("--length", type=int, default=400)
    p.add_argument("--out", default=str(REPORTS / "dictionary_steering.json"))
    args = p.parse_args(argv)
    setup()
    shared = Path(args.shared)
    ckpt = load_checkpoint(shared / "models" / "wp_lstm3x512.pt")
    d = dictionary_for(ckpt, shared / "data" / "warpeace.txt", "rnn.l2.c", Path(args.dicts) / "wp_lstm3x512_l2_c")
    text = choose_text(ckpt, shared / "data" / "warpeace.txt", split="test").text[:20_000]
    index, sign = quote_latent(ckpt, d, text, REPORTS / "dictionary_reference.json")
    where = "rnn.l2." + SHOWN_C
    latent = sign * args.strength * d.sae.W_dec.detach()[index]
    rand = torch.randn(d.sae.d_in, generator=torch.Generator().manual_seed(7))
    random = args.strength * rand / rand.norm()
    rng = np.random.default_rng(0)
    out = {"script": "dictionary_steering", "latent": f"l2.c/d.{index}", "sign": sign, "strength": args.strength,
           "samples": args.samples, "length": args.length, "conditions": {}}
    for name, push in (("none", None), ("quote latent", latent), ("random direction", random)):
        texts = samples(ckpt.model, ckpt.vocab, push, where, args.samples, args.length)
        out["conditions"][name] = {**measured(texts, rng), "example": texts[0][:200]}
        m = out["conditions"][name]
        print(f"{name:17s} inside quotes {m['in_quote_share']['mean']:.3f} {m['in_quote_share']['ci95']}, "
              f"quote marks per 1,000 chars {m['quote_marks_per_1000']['mean']:.1f} {m['quote_marks_per_1000']['ci95']}")
    write_json(args.out, out, force=True)
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
