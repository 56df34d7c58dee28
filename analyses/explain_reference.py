"""Explanations of the reference models' units on their test splits, and the share of explained units.

Every h and c unit of wp_lstm3x512 and linux_lstm3x512 is explained on the first CHARS characters
of its model's test split (fitting part the first 2/3, held-out the last 1/3); enwiki_lstm2x512's
two wiki units are explained alone. For each reference unit (the best unit of probe's reference
table) it prints the best formula with its held-out IoU and simulation r, beside the best single
atom; for the two whole models, the share of units that clear the bar (explain.EXPLAINED_R and
EXPLAINED_IOU), and the share whose formula uses a structural feature (not only the character
classes of this, the previous or the next character), to set beside the post's "about 5%". Writes reports/explain_reference.json.

    python analyses/explain_reference.py              # about 10 minutes on a 2-core CPU
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPORTS, SHARED, setup  # noqa: E402

from neuroscope.checkpoint import choose_text, load_checkpoint
from neuroscope.explain import EXPLAINED_IOU, EXPLAINED_R, explain
from neuroscope.features import baseline_names
from neuroscope.files import write_json
from neuroscope.record import every_unit

# model, corpus, the reference units (probe's best unit per feature on the whole test split), all units?
CHAR_CLASSES = set(baseline_names())
CASES = [("wp_lstm3x512", "warpeace.txt", {"l2.c.328": "in_quote", "l2.h.498": "line_position"}, True),
         ("linux_lstm3x512", "linux.txt", {"l0.c.338": "in_comment", "l1.c.122": "brace_depth"}, True),
         ("enwiki_lstm2x512", "enwiki.xml", {"l1.c.0": "in_wikilink", "l1.c.12": "in_url"}, False)]


def structural(formula: str) -> bool:
    """Whether a formula uses a feature beyond the character classes of this, the previous or the next
    character: the post's "interpretable" cells track structure (quotes, lines, brackets), not letters."""
    atoms = [t for t in formula.replace("(", " ").replace(")", " ").split() if t not in ("AND", "OR", "NOT")]
    return any(not a.startswith(("prev:", "next:")) and a.split(">=")[0] not in CHAR_CLASSES for a in atoms)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--shared", default=str(SHARED), help="folder with models/ and data/")
    p.add_argument("--chars", type=int, default=100_000, help="first CHARS of each test split")
    p.add_argument("--streams", type=int, default=64)
    p.add_argument("--warmup", type=int, default=256)
    p.add_argument("--block", type=int, default=2000, help="explain's split (0: the last third held out)")
    p.add_argument("--out", default=str(REPORTS / "explain_reference.json"))
    args = p.parse_args(argv)
    setup()
    out = {"script": "explain_reference", "chars": args.chars, "streams": args.streams, "warmup": args.warmup,
           "block": args.block,
           "bar": {"simulation_r": EXPLAINED_R, "iou_heldout": EXPLAINED_IOU}, "units": [], "models": []}
    for model, corpus, ref, whole in CASES:
        ckpt = load_checkpoint(Path(args.shared) / "models" / f"{model}.pt")
        span = choose_text(ckpt, Path(args.shared) / "data" / corpus, split="test")
        text = span.text[:args.chars]
        units = [u.id for u in every_unit(ckpt.config)] if whole else list(ref)
        t0 = time.perf_counter()
        res = explain(ckpt, text, units=units, offset=span.start, streams=args.streams, warmup=args.warmup,
                      block=args.block, contexts=False, progress=True)
        best = res.table[res.table["rank"] == 1].set_index("unit")
        if whole:
            n = len(best)
            by_structure = best["explained"] & best["formula"].map(structural)
            out["models"].append({"model": model, "units": n, "explained": int(best["explained"].sum()),
                                  "share": round(float(best["explained"].mean()), 4),
                                  "explained_structural": int(by_structure.sum()),
                                  "share_structural": round(float(by_structure.mean()), 4),
                                  "seconds": round(time.perf_counter() - t0, 1),
                                  "record_s": round(res.meta["seconds"]["record"], 1),
                                  "per_unit_search_s": round(res.meta["seconds"]["per_unit_search"], 4)})
        for uid, feature in ref.items():
            r = best.loc[uid]
            out["units"].append({"model": model, "unit": uid, "feature": feature, "formula": r["formula"],
                                 "sign": int(r["sign"]), "quantile": float(r["quantile"]),
                                 "iou_heldout": round(float(r["iou_heldout"]), 3),
                                 "simulation_r": round(float(r["simulation_r"]), 3), "explained": bool(r["explained"]),
                                 "best_atom": r["best_atom"],
                                 "best_atom_iou_heldout": round(float(r["best_atom_iou_heldout"]), 3)})
    print("| model | unit (probe's feature) | best formula | held-out IoU | simulation r | best single atom (held-out IoU) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for u in out["units"]:
        print(f"| {u['model']} | {u['unit']} ({u['feature']}) | `{u['formula']}` (sign {u['sign']:+d}, q {u['quantile']}) "
              f"| {u['iou_heldout']:.3f} | {u['simulation_r']:.3f} | `{u['best_atom']}` ({u['best_atom_iou_heldout']:.3f}) |")
    for m in out["models"]:
        print(f"{m['model']}: {m['explained']} of {m['units']} units explained ({m['share']:.1%}), "
              f"{m['explained_structural']} by a formula with a structural feature ({m['share_structural']:.1%}); "
              f"{m['seconds']} s, search {m['per_unit_search_s']} s per unit")
    write_json(args.out, out, force=True)          # the script regenerates its own file
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
