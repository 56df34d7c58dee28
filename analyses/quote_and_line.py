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
from _common import REPORTS, findings_script, parser, screenshot  # noqa: E402

FEATURES = ("in_quote", "line_position", "line_remaining")


def main(argv=None) -> dict:
    p = parser(__doc__, "wp_lstm3x512.pt", "warpeace.txt", chars=40_000)
    p.add_argument("--png", default=str(REPORTS / "quote_cell.png"), help="screenshot of the quote unit ('' = none)")
    args = p.parse_args(argv)
    summary, path = findings_script("quote_and_line", args, FEATURES)
    if args.png:
        # The quote unit's panel (the first: in_quote's top unit): the gallery's picture.
        screenshot(path, args.png, ".textview[data-panel='p0']")
    return summary


if __name__ == "__main__":
    main()
