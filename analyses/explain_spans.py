"""Does explain's verdict depend on the span it reads? The six reference units and 100 random units,
explained on the first 100,000 characters of their model's test split, on the last 100,000, and on
the whole split, with explain's defaults (held-out blocks spread over the text) and with one cut
(block=0: the last third held out).

For each setting it counts the units whose verdict (explained or not) is the same on all three
spans, and lists every unit whose verdict differs with its simulation r and held-out IoU on each
span and its distance from the bar (explain's margin; a unit near the bar can flip on any text, one
far from it flipping would be a fault of the method or a text unlike the other). Random units: 50 of wp_lstm3x512's and 50 of
linux_lstm3x512's h and c units (seed 0). Writes reports/explain_spans.json.

    python analyses/explain_spans.py            # about 15 minutes on a 2-core CPU
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPORTS, SHARED, setup  # noqa: E402

from neuroscope.checkpoint import choose_text, load_checkpoint
from neuroscope.explain import explain
from neuroscope.files import write_json
from neuroscope.record import every_unit

CASES = [("wp_lstm3x512", "warpeace.txt", ["l2.c.328", "l2.h.498"], 50),
         ("linux_lstm3x512", "linux.txt", ["l0.c.338", "l1.c.122"], 50),
         ("enwiki_lstm2x512", "enwiki.xml", ["l1.c.0", "l1.c.12"], 0)]
SPANS = ("first", "last", "whole")


def units_of(config, refs: list[str], n_random: int, seed: int = 0) -> list[str]:
    pool = [u.id for u in every_unit(config) if u.id not in refs]
    picked = np.random.default_rng(seed).choice(len(pool), n_random, replace=False) if n_random else []
    return refs + [pool[i] for i in sorted(picked)]


def verdicts(ckpt, text: str, units: list[str], chars: int, block: int, read: dict) -> dict:
    """{span: {unit: (explained, simulation r, held-out IoU, formula)}} for the three spans of text."""
    parts = {"first": (0, chars), "last": (len(text) - chars, len(text)), "whole": (0, len(text))}
    out = {}
    for span, (a, b) in parts.items():
        res = explain(ckpt, text[a:b], units=units, block=block, contexts=False, **read)
        best = res.table[res.table["rank"] == 1].set_index("unit")
        out[span] = {u: (bool(best.at[u, "explained"]), float(best.at[u, "simulation_r"]),
                         float(best.at[u, "iou_heldout"]), float(best.at[u, "margin"]), best.at[u, "formula"])
                     for u in units}
    return out


def summarise(per_unit: list[dict]) -> dict:
    refs = [u for u in per_unit if u["reference"]]
    rand = [u for u in per_unit if not u["reference"]]
    flips = [u for u in per_unit if not u["agree"]]
    return {"reference_agree": sum(u["agree"] for u in refs), "references": len(refs),
            "random_agree": sum(u["agree"] for u in rand), "random": len(rand),
            "random_explained": {s: sum(u[s]["explained"] for u in rand) for s in SPANS},
            "flips_within_0.1_of_the_bar": sum(u["margin"] < 0.1 for u in flips), "flips": len(flips)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--shared", default=str(SHARED), help="folder with models/ and data/")
    p.add_argument("--chars", type=int, default=100_000, help="characters of the first and the last span")
    p.add_argument("--streams", type=int, default=64)
    p.add_argument("--warmup", type=int, default=256)
    p.add_argument("--out", default=str(REPORTS / "explain_spans.json"))
    args = p.parse_args(argv)
    setup()
    t0 = time.perf_counter()
    read = {"streams": args.streams, "warmup": args.warmup}
    out = {"script": "explain_spans", "chars": args.chars, **read, "settings": {}}
    for block in (2000, 0):
        per_unit = []
        for model, corpus, refs, n_random in CASES:
            ckpt = load_checkpoint(Path(args.shared) / "models" / f"{model}.pt")
            text = choose_text(ckpt, Path(args.shared) / "data" / corpus, split="test").text
            units = units_of(ckpt.config, refs, n_random)
            got = verdicts(ckpt, text, units, args.chars, block, read)
            for u in units:
                row = {s: dict(zip(("explained", "simulation_r", "iou_heldout", "margin", "formula"), got[s][u]))
                       for s in SPANS}
                agree = len({row[s]["explained"] for s in SPANS}) == 1
                margin = min(abs(row[s]["margin"]) for s in SPANS)       # explain's margin: distance from the bar
                per_unit.append({"model": model, "unit": u, "reference": u in refs, "agree": agree,
                                 "margin": round(margin, 3), **row})
        name = "blocks of 2,000 (the default)" if block else "one cut (block=0)"
        out["settings"][name] = {"summary": summarise(per_unit), "units": per_unit}
        report(name, out["settings"][name])
    out["seconds"] = round(time.perf_counter() - t0, 1)
    write_json(args.out, out, force=True)          # the script regenerates its own file
    print(f"wrote {args.out} ({out['seconds']:.0f} s)")
    return out


def report(name: str, setting: dict) -> None:
    s = setting["summary"]
    print(f"\n## {name}\nverdict the same on the first 100k, the last 100k and the whole split: reference units "
          f"{s['reference_agree']} of {s['references']}, random units {s['random_agree']} of {s['random']}; random "
          f"units explained (first/last/whole) {s['random_explained']}; of {s['flips']} flips, "
          f"{s['flips_within_0.1_of_the_bar']} lie within 0.1 of the bar on some span")
    print("| unit | first (r, IoU) | last | whole | margin |\n| --- | --- | --- | --- | --- |")
    for u in setting["units"]:
        if not u["agree"] or u["reference"]:
            cells = " | ".join(f"{'Y' if u[sp]['explained'] else 'n'} {u[sp]['simulation_r']:.2f}, "
                               f"{u[sp]['iou_heldout']:.2f}" for sp in SPANS)
            print(f"| {u['model']} {u['unit']}{' (ref)' if u['reference'] else ''} | {cells} | {u['margin']:.2f} |")


if __name__ == "__main__":
    main()
