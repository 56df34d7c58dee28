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
from _common import findings_script, parser  # noqa: E402

FEATURES = ("in_if_condition", "in_comment", "in_string", "brace_depth", "indent_depth")


def main(argv=None) -> dict:
    args = parser(__doc__, "linux_lstm3x512.pt", "linux.txt", chars=40_000).parse_args(argv)
    return findings_script("code_cells", args, FEATURES, lang="c")[0]


if __name__ == "__main__":
    main()
