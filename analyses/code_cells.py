"""Cells of linux_lstm3x512 that track C syntax on the kernel test split.

The post shows units on inside if-conditions, comments and strings, and units that track
nesting depth and indentation. This ranks every cell state by |r| with in_if_condition,
in_comment, in_string, brace_depth and indent_depth, tests and ablates the best.

    python analyses/code_cells.py            # writes reports/code_cells.html
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import build_report, describe, finding, load, parser, resolve, run_probe, save, setup  # noqa: E402

FEATURES = ("in_if_condition", "in_comment", "in_string", "brace_depth", "indent_depth")


def main(argv=None) -> dict:
    args = parser(__doc__, "linux_lstm3x512.pt", "linux.txt", chars=40_000).parse_args(argv)
    setup()
    ckpt, span = load(args)
    features = resolve(span.text, names=FEATURES, lang="c")
    result = run_probe(args, ckpt, span, features)
    found = {f: finding(result, f) for f in FEATURES}
    print(f"{ckpt.name}: {len(span.text):,} characters of the test split from {span.start:,}, "
          f"{result.meta['units']:,} cell-state units, streams={args.streams} warmup={args.warmup}")
    for f in found.values():
        print(describe(f))
    report = build_report(ckpt, span, result, features, max_chars=args.show_chars)
    summary = {"script": "code_cells", "model": ckpt.name, "chars": len(span.text), "start": span.start,
               "streams": args.streams, "warmup": args.warmup, "states": "c", "findings": found,
               "notes": result.meta["notes"]}
    save("code_cells", report, summary, args.out)
    return summary


if __name__ == "__main__":
    main()
