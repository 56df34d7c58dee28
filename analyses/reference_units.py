"""The best unit of each reference model for its headline features, over the whole test split.

At full size: in_quote and line_position (wp_lstm3x512), brace_depth and
in_comment (linux_lstm3x512), in_url and in_wikilink (enwiki_lstm2x512), each ranked over every h
and c unit on the model's whole test split (the last 10% of its corpus), with the circular-shift
null (Holm over all units), the random-weights control and the char-class baselines. Sparse probes
and ablations are left to the gallery scripts. Prints a Markdown table and writes
reports/reference_units.json.

    python analyses/reference_units.py            # about 10 minutes on a 2-core CPU
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPORTS, SHARED, finding, setup  # noqa: E402

from neuroscope.checkpoint import choose_text, load_checkpoint
from neuroscope.features import label
from neuroscope.files import write_json
from neuroscope.probe import probe

CASES = [("wp_lstm3x512", "warpeace.txt", ("in_quote", "line_position")),
         ("linux_lstm3x512", "linux.txt", ("brace_depth", "in_comment")),
         ("enwiki_lstm2x512", "enwiki.xml", ("in_url", "in_wikilink"))]


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--shared", default=str(SHARED), help="folder with models/ and data/")
    p.add_argument("--chars", type=int, default=None, help="only the first CHARS of each test split")
    p.add_argument("--streams", type=int, default=64)
    p.add_argument("--warmup", type=int, default=256)
    p.add_argument("--out", default=str(REPORTS / "reference_units.json"))
    args = p.parse_args(argv)
    setup()
    rows = []
    for model, corpus, feats in CASES:
        t0 = time.perf_counter()
        ckpt = load_checkpoint(Path(args.shared) / "models" / f"{model}.pt")
        span = choose_text(ckpt, Path(args.shared) / "data" / corpus, split="test")
        text = span.text[:args.chars] if args.chars else span.text
        res = probe(ckpt, text, {f: label(text, f) for f in feats}, sparse=False, streams=args.streams,
                    warmup=args.warmup, progress=True)
        for f in feats:
            rows.append({"model": model, "corpus": corpus, "chars": len(text), "start": span.start,
                         "seconds": round(time.perf_counter() - t0, 1), **finding(res, f)})
    print("| model | feature | unit | r | AUROC / Spearman | p_adj (Holm) | selectivity (control max \\|r\\|) "
          "| best char-class \\|r\\| of that unit | flag |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        rank = f"{r['auroc']:.4f}" if r["auroc"] is not None else f"{r['spearman']:+.3f}"
        print(f"| {r['model']} ({r['chars']:,} chars) | `{r['feature']}` | {r['unit']} | {r['r']:+.3f} | {rank} "
              f"| {r['p_adjusted']:.2g} | {r['selectivity']:.3f} ({r['control_max_abs_r']:.3f}) "
              f"| {r['baseline_max_abs_r']:.3f} ({r['baseline_best']}) | {r['flag'] or 'clean'} |")
    write_json(args.out, rows, force=True)          # the script regenerates its own file
    print(f"wrote {args.out}")
    return rows


if __name__ == "__main__":
    main()
