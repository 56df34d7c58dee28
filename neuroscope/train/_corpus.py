"""A corpus every machine has: the Python standard library's own sources."""
from __future__ import annotations

import os
import sysconfig

from ..errors import UserError


def stdlib_corpus(max_chars: int = 2_000_000) -> str:
    """Up to max_chars characters of the Python standard library's own .py sources, concatenated.

    Files are read in sorted path order under sysconfig's "stdlib" folder (site-packages, test
    suites and caches left out; files that are not UTF-8 skipped), so the same Python gives the
    same text. A corpus that exists wherever Python does: the demo's default.
    """
    root = sysconfig.get_paths()["stdlib"]
    skip = {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test"}
    parts, total = [], 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in skip)
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            try:
                with open(os.path.join(folder, name), encoding="utf-8") as fh:
                    src = fh.read()
            except (OSError, UnicodeDecodeError):
                continue
            parts.append(src[:max_chars - total])
            total += len(parts[-1])
            if total >= max_chars:
                return "".join(parts)
    if not parts:
        raise UserError(f"no Python sources found under {root}")
    return "".join(parts)
