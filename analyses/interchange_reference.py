"""Interchange interventions for the six reference findings: does the model *use* the units the probe
ranks first, for the behaviour the feature governs?

For each finding, the probe ranks every h and c unit on the first PROBE_CHARS characters of the test
split (Pearson r only: no null, no control; the ranking is what is patched). Pairs of contexts are
drawn from the rest of the test split (neuroscope.causes.pairs): a base window ending where the
feature has one value, a source window ending where it has the other, both followed by the base's
next HORIZON characters. At the window's last step, a unit set is copied from the source into the
base; the behaviour read is the log-probability of the feature's tell-tale characters over that step
and the continuation. A pair follows the source when the patched base's readout is nearer the
source's than the base's own (causes.interchange). Sets: the top unit, the top 10, 10 random units from
the same quantities as the top 10 (RANDOM_DRAWS draws: the median and the 5-95% interval), all h and c
of the top unit's layer, and every state (1 by construction).

    python analyses/interchange_reference.py        # about 10 minutes on a 2-core CPU

Writes reports/interchange_reference.json and prints the table.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPORTS, SHARED, setup  # noqa: E402

from neuroscope.causes import Behaviour, interchange, pairs
from neuroscope.checkpoint import choose_text, load_checkpoint
from neuroscope.features import label
from neuroscope.files import write_json
from neuroscope.names import parse_unit
from neuroscope.probe import probe

PROBE_CHARS = 100_000
TOP = 10
RANDOM_DRAWS = 20
FINDINGS = [  # model, corpus, behaviour (base value, source value, tell-tale characters)
    ("wp_lstm3x512", "warpeace.txt", Behaviour("in_quote", lambda y: y == 1, lambda y: y == 0, '"')),
    ("wp_lstm3x512", "warpeace.txt", Behaviour("line_position", lambda y: y >= 60, lambda y: (y >= 5) & (y <= 20),
                                               "\r\n")),
    ("linux_lstm3x512", "linux.txt", Behaviour("in_comment", lambda y: y == 1, lambda y: y == 0, "*")),
    ("linux_lstm3x512", "linux.txt", Behaviour("brace_depth", lambda y: y == 2, lambda y: y == 1, "}")),
    ("enwiki_lstm2x512", "enwiki.xml", Behaviour("in_wikilink", lambda y: y == 1, lambda y: y == 0, "]|")),
    ("enwiki_lstm2x512", "enwiki.xml", Behaviour("in_url", lambda y: y == 1, lambda y: y == 0, " ]")),
]
DESCRIBE = {"in_quote": 'inside vs outside a quotation; readout: a quote mark',
            "line_position": "60+ vs 5-20 characters into the line; readout: a line break",
            "in_comment": "inside vs outside a C comment; readout: '*' (of */)",
            "brace_depth": "brace depth 2 vs 1; readout: '}'",
            "in_wikilink": "inside vs outside [[...]]; readout: ']' or '|'",
            "in_url": "inside vs outside a URL; readout: a space or ']'"}


def one_finding(ckpt, text: str, b: Behaviour, n_pairs: int, seed: int) -> dict:
    t0 = time.perf_counter()
    fit = text[:PROBE_CHARS]
    ranking = probe(ckpt, fit, {b.feature: label(fit, b.feature)}, null=False, sparse=False, control=False,
                    baselines=False, ablate=0, streams=16, warmup=256).ranking
    top = list(ranking["unit_id"][:TOP])
    rest = text[PROBE_CHARS:]
    ps = pairs(rest, label(rest, b.feature), b, n=n_pairs, seed=seed)
    layer = parse_unit(top[0]).layer
    sets = {"top 1": top[:1], f"top {TOP}": top, f"layer {layer}": f"l{layer}", "every state": "all"}
    r = interchange(ckpt, ps, b, sets, random_draws=RANDOM_DRAWS, seed=seed)
    table = r.table.replace({np.nan: None})
    return {"feature": b.feature, "describe": DESCRIBE[b.feature], "top": top, "pairs": n_pairs,
            "pairs_with_gap": r.pairs, "rows": table.to_dict(orient="records"),
            "seconds": round(time.perf_counter() - t0, 1)}


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--shared", default=str(SHARED), help="folder with models/ and data/")
    p.add_argument("--pairs", type=int, default=300, help="pairs per finding")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(REPORTS / "interchange_reference.json"))
    args = p.parse_args(argv)
    setup()
    out, loaded = [], {}
    for model, corpus, b in FINDINGS:
        if model not in loaded:
            ckpt = load_checkpoint(Path(args.shared) / "models" / f"{model}.pt")
            loaded = {model: (ckpt, choose_text(ckpt, Path(args.shared) / "data" / corpus, split="test").text)}
        ckpt, text = loaded[model]
        out.append({"model": model, **one_finding(ckpt, text, b, args.pairs, args.seed)})
        print(f"{model} {b.feature}: {out[-1]['seconds']} s", flush=True)
    print("| model | feature (pairs) | top 1 | top 10 | 10 random (5-95%) | layer | every state |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for f in out:
        rows = {r["set"]: r for r in f["rows"]}
        cell = lambda name: f"{rows[name]['accuracy']:.2f} ({rows[name]['effect']:+.2f})"    # noqa: E731
        rnd = rows[f"top {TOP}: random"]
        layer = next(k for k in rows if k.startswith("layer"))
        print(f"| {f['model']} | {f['feature']} ({f['pairs_with_gap']}) | {cell('top 1')} | {cell(f'top {TOP}')} | "
              f"{rnd['accuracy']:.2f} ({rnd['low']:.2f}-{rnd['high']:.2f}) | {cell(layer)} | {cell('every state')} |")
    write_json(args.out, out, force=True)          # the script regenerates its own file
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
