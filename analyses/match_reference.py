"""Match on the reference models: from a [[wiki link]] on enwiki, from a /* comment */ on linux.

LSTMVis's match view, offline, over each model's whole test split: take the units that are on
inside one span and off around it, find where else they switch on together, and score the top 50
hits' characters against the built-in features. The claim checked: from a [[...]] span,
enwiki_lstm2x512 finds wiki links elsewhere with in_wikilink precision >= 0.8 among its top 50
hits; from a /* ... */ span, linux_lstm3x512 finds comments (in_comment precision).

    python analyses/match_reference.py            # writes reports/match_reference.json and .html
"""
from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPORTS, SHARED  # noqa: E402

from neuroscope.checkpoint import choose_text, load_checkpoint
from neuroscope.files import json_ready, write_json, write_text
from neuroscope.match import match
from neuroscope.report._page import render_page
from neuroscope.report._sections import match_section

# (model, corpus, pattern of the span: the first match after character 1,000 of the test split, feature, bar)
CASES = [("enwiki_lstm2x512", "enwiki.xml", r"\[\[[^\]|\n]{8,30}\]\]", "in_wikilink", 0.8),
         ("linux_lstm3x512", "linux.txt", r"/\*[^\n]{20,60}\*/", "in_comment", 0.8)]


def run_case(model: str, corpus: str, pattern: str, feature: str, bar: float, args) -> tuple[dict, object]:
    ckpt = load_checkpoint(SHARED / "models" / f"{model}.pt")
    span = choose_text(ckpt, str(SHARED / "data" / corpus), "test")
    text = span.text[:args.chars] if args.chars else span.text
    m = re.search(pattern, text[1000:])
    a, b = 1000 + m.start(), 1000 + m.end()
    t0 = time.perf_counter()
    result = match(ckpt, text, (a, b), streams=args.streams, warmup=args.warmup, progress=True)
    seconds = time.perf_counter() - t0
    f = result.features.set_index(["feature", "scope"])
    top, every = f.loc[(feature, "top")], f.loc[(feature, "all")]
    out = {"model": model, "corpus": corpus, "test_start": span.start, "chars": len(text), "span": [a, b],
           "span_text": text[a:b], "query_units": result.query["unit"].tolist(), "feature": feature,
           "precision_top": top["precision"], "recall_top": top["recall"], "precision_all": every["precision"],
           "recall_all": every["recall"], "base_rate": top["base_rate"], "hits": result.meta["hits"],
           "top": result.meta["top"], "bar": bar, "passes": bool(top["precision"] >= bar), "seconds": seconds,
           "meta": result.meta, "first_hits": result.hits.head(10)[["start", "end", "score", "text"]].to_dict("records")}
    print(f"{model}: span [{a}, {b}) {text[a:b]!r}, {len(text):,} chars, {out['hits']:,} hits in {seconds:.0f} s; "
          f"{feature} precision {top['precision']:.3f} among the top {out['top']} hits (recall {top['recall']:.3f}; "
          f"all hits: precision {every['precision']:.3f}, recall {every['recall']:.3f}; base rate "
          f"{top['base_rate']:.3f}) -> {'passes' if out['passes'] else 'FAILS'} the bar {bar}")
    return json_ready(out), result


def main(argv=None) -> dict:
    import argparse
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--chars", type=int, default=0, help="characters of each test split (0: all of it)")
    p.add_argument("--streams", type=int, default=64, help="parallel streams for the search pass")
    p.add_argument("--warmup", type=int, default=256, help="warm-up characters per stream")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cases, sections = [], []
    for model, corpus, pattern, feature, bar in CASES:
        out, result = run_case(model, corpus, pattern, feature, bar, args)
        cases.append(out)
        section, _ = match_section(result, title=f"{model}: match from {out['span_text']!r}")
        section["number"] = len(sections) + 1
        sections.append(section)
    summary = {"script": "match_reference", "streams": args.streams, "warmup": args.warmup, "cases": cases}
    write_json(REPORTS / "match_reference.json", summary, force=True)
    page = render_page("neuroscope match on the reference models", ["test splits; top 50 hits scored"], sections, {})
    write_text(REPORTS / "match_reference.html", page, "html", force=True)
    print(f"wrote {REPORTS / 'match_reference.json'} and .html")
    return summary


if __name__ == "__main__":
    main()
