"""The URL cell, the [[wiki link]] cell and the {{template}} cell of enwiki_lstm2x512.

The post shows units on inside URLs and inside [[ ]] links (turning on only after the second
"["), and one that counts the w's of "www". This probes in_url, in_wikilink, in_template,
template_depth and www_count (the position inside "www": 1, 2, 3) on the Wikipedia test split,
then reads the best in_wikilink unit at the first "[", the second "[", inside and outside links.

    python analyses/wiki_markup.py            # writes reports/wiki_markup.html
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import build_report, describe, finding, load, parser, resolve, run_probe, save, setup  # noqa: E402

from neuroscope.features import FEATURES, register
from neuroscope.names import parse_unit
from neuroscope.record import record

NAMES = ("in_url", "in_wikilink", "in_template", "template_depth")


def www_count(text: str) -> np.ndarray:
    """1, 2, 3 on the w's of each "www", 0 elsewhere."""
    out = np.zeros(len(text), dtype=np.int32)
    for m in re.finditer("www", text):
        out[m.start():m.end()] = (1, 2, 3)
    return out


def bracket_profile(ckpt, text: str, unit_id: str, labels: np.ndarray) -> dict:
    """Mean shown value (tanh c) of one unit after the first '[' of '[[', after the second, inside, outside."""
    unit = parse_unit(unit_id)
    values = record(ckpt.model, ckpt.vocab.encode(text), states=(unit.state,))[unit.quantity][:, unit.index]
    v = np.tanh(values) if unit.squash else values
    first = np.array([m.start() for m in re.finditer(r"\[\[", text)], dtype=int)
    inside = (labels[:len(text)] == 1)
    inside[np.concatenate([first, first + 1])] = False
    return {"unit": unit_id, "chars": len(text), "links": int(len(first)),
            "after_first_bracket": float(v[first].mean()), "after_second_bracket": float(v[first + 1].mean()),
            "inside": float(v[inside].mean()), "outside": float(v[labels[:len(text)] == 0].mean())}


def main(argv=None) -> dict:
    p = parser(__doc__, "enwiki_lstm2x512.pt", "enwiki.xml", chars=40_000)
    p.add_argument("--profile-chars", type=int, default=20_000, help="characters read exactly for the [[ profile")
    args = p.parse_args(argv)
    setup()
    if "www_count" not in FEATURES:
        register("www_count", www_count, kind="count", description="position inside \"www\" (1, 2, 3), else 0")
    ckpt, span = load(args)
    features = resolve(span.text, names=NAMES + ("www_count",))
    result = run_probe(args, ckpt, span, features)
    found = {f: finding(result, f) for f in NAMES + ("www_count",)}
    print(f"{ckpt.name}: {len(span.text):,} characters of the test split from {span.start:,}, "
          f"{result.meta['units']:,} cell-state units, streams={args.streams} warmup={args.warmup}")
    for f in found.values():
        print(describe(f))
    profile = None
    if "unit" in found["in_wikilink"]:
        profile = bracket_profile(ckpt, span.text[:args.profile_chars], found["in_wikilink"]["unit"],
                                  features["in_wikilink"])
        print("[[ profile of {unit} (mean tanh c over {links} links in the first {chars:,} chars): after 1st '[' "
              "{after_first_bracket:+.3f}, after 2nd '[' {after_second_bracket:+.3f}, inside {inside:+.3f}, "
              "outside {outside:+.3f}".format(**profile))
    report = build_report(ckpt, span, result, features, max_chars=args.show_chars)
    summary = {"script": "wiki_markup", "model": ckpt.name, "chars": len(span.text), "start": span.start,
               "streams": args.streams, "warmup": args.warmup, "states": "c", "findings": found,
               "wikilink_profile": profile, "notes": result.meta["notes"]}
    save("wiki_markup", report, summary, args.out)
    return summary


if __name__ == "__main__":
    main()
