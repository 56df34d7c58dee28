"""How the random-weights control's bound converges with the characters it reads.

probe's control (neuroscope.probe._ranking.control_max_abs_r) reads about control_chars characters in
windows spread over the text (the first control_chars / streams of each of the ranking's pieces)
and reports the largest |r| any control unit reaches with a feature. This computes that bound for
the six reference findings' features on each model's whole test split, for control_chars from
4,096 up to the whole split, with the probe's defaults otherwise (64 pieces after 256 warm-up
characters for the ranking, the control's own 32). Prints a Markdown table and writes
reports/control_convergence.json.

    python analyses/control_convergence.py            # about 5 minutes on a 2-core CPU
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPORTS, SHARED, setup  # noqa: E402
from reference_units import CASES  # noqa: E402 (the six reference findings)

from neuroscope.checkpoint import choose_text, load_checkpoint
from neuroscope.features import label
from neuroscope.files import write_json
from neuroscope.probe._config import ProbeConfig
from neuroscope.probe._ranking import control_max_abs_r, unit_layout

SIZES = (4_096, 8_192, 16_384, 32_768, 65_536, 131_072)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--shared", default=str(SHARED), help="folder with models/ and data/")
    p.add_argument("--out", default=str(REPORTS / "control_convergence.json"))
    args = p.parse_args(argv)
    setup()
    rows = []
    for model, corpus, feats in CASES:
        ckpt = load_checkpoint(Path(args.shared) / "models" / f"{model}.pt")
        text = choose_text(ckpt, Path(args.shared) / "data" / corpus, split="test").text
        ids = ckpt.vocab.encode(text)
        labels = {f: label(text, f) for f in feats}
        cfg = ProbeConfig(streams=64, warmup=256)
        units = unit_layout(ckpt.config, cfg)
        for size in (*SIZES, len(text)):
            t0 = time.perf_counter()
            bound, read = control_max_abs_r(ckpt.model, ids, units, labels, replace(cfg, control_chars=size))
            rows.append({"model": model, "chars": len(text), "control_chars": size, "read": read["chars"],
                         "seconds": round(time.perf_counter() - t0, 1),
                         **{f: round(float(bound[f]), 4) for f in feats}})
            print(rows[-1], flush=True)
    _table(rows)
    write_json(args.out, rows, force=True)          # the script regenerates its own file
    return rows


def _table(rows: list[dict]) -> None:
    print("| model | feature | " + " | ".join(f"{s:,}" for s in SIZES) + " | whole split |")
    print("| --- | --- | " + " | ".join("---" for _ in SIZES) + " | --- |")
    for model, _, feats in CASES:
        mine = [r for r in rows if r["model"] == model]
        for f in feats:
            print(f"| {model} | `{f}` | " + " | ".join(f"{r[f]:.3f}" for r in mine) + " |")


if __name__ == "__main__":
    main()
