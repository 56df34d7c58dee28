"""The quote cell and the line-position cell of wp_lstm3x512 on the War and Peace test split.

Karpathy's post shows a cell that is on inside quotes and one that counts the position in the
(hard-wrapped) line. This ranks every cell state by |r| with in_quote, line_position and
line_remaining, tests the best (circular-shift p, selectivity against a random-weights model,
char-class baselines), zeroes the top units, and colours the text by them.

    python analyses/quote_and_line.py            # writes reports/quote_and_line.html
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (REPORTS, build_report, describe, finding, load, parser, resolve, run_probe, save,  # noqa: E402
                     screenshot, setup)

FEATURES = ("in_quote", "line_position", "line_remaining")


def main(argv=None) -> dict:
    p = parser(__doc__, "wp_lstm3x512.pt", "warpeace.txt", chars=40_000)
    p.add_argument("--png", default=str(REPORTS / "quote_cell.png"), help="screenshot of the quote unit ('' = none)")
    args = p.parse_args(argv)
    setup()
    ckpt, span = load(args)
    features = resolve(span.text, names=FEATURES)
    result = run_probe(args, ckpt, span, features)
    found = {f: finding(result, f) for f in FEATURES}
    print(f"{ckpt.name}: {len(span.text):,} characters of the test split from {span.start:,}, "
          f"{result.meta['units']:,} cell-state units, streams={args.streams} warmup={args.warmup}")
    for f in found.values():
        print(describe(f))
    report = build_report(ckpt, span, result, features, max_chars=args.show_chars)
    summary = {"script": "quote_and_line", "model": ckpt.name, "chars": len(span.text), "start": span.start,
               "streams": args.streams, "warmup": args.warmup, "states": "c", "findings": found,
               "notes": result.meta["notes"]}
    path = save("quote_and_line", report, summary, args.out)
    if args.png:
        # The quote unit's panel (the first: in_quote's top unit): the gallery's picture.
        screenshot(path, args.png, ".textview[data-panel='p0']")
    return summary


if __name__ == "__main__":
    main()
