"""Train a char-LSTM on War and Peace with neuroscope and watch the samples and the quote unit appear.

The post shows samples at iterations 100, 300, 500, 700, 1200 and 2000, and says the quote cell
appears as training goes on. This trains with neuroscope.train.train in stages ending at those
steps (each stage resumes the previous run exactly), and after each stage probes in_quote on the
test split: the best |r| of any unit, and the |r| of the final model's quote unit at that step.
The weights probed at a step are the best-validation ones train() keeps (validated every 100 steps).

The default is a small 2 x 128 LSTM (batch 32 x 64 characters) that trains in minutes on a CPU;
on a GPU pass --layers 3 --hidden 512 --batch 128 --seq 128 for the reference size.

    python analyses/training_evolution.py            # writes reports/training_evolution.html
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import altair as alt
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, build_report, save, setup  # noqa: E402

from neuroscope.checkpoint import choose_text
from neuroscope.features import label
from neuroscope.probe import probe
from neuroscope.text import read_text
from neuroscope.train import TrainConfig, train

STAGES = (100, 300, 500, 700, 1200, 2000)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--text", default=str(SHARED / "data" / "warpeace.txt"))
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--stages", default=",".join(map(str, STAGES)), help="steps at which to stop, sample and probe")
    p.add_argument("--probe-chars", type=int, default=20_000, help="characters of the test split probed per step")
    p.add_argument("--workdir", default=None, help="where the checkpoint is written (default: a temp folder)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    setup()
    stages = [int(s) for s in args.stages.split(",")]
    text = read_text(args.text)
    out = Path(args.workdir or tempfile.mkdtemp(prefix="ns-evolution-")) / "evolution.pt"
    rows, rankings, ckpt, t0 = [], {}, None, time.perf_counter()
    for i, step in enumerate(stages):
        cfg = TrainConfig(layers=args.layers, hidden=args.hidden, batch=args.batch, seq=args.seq, steps=step,
                          device=args.device, eval_every=100, val_chars=20_000, test_chars=20_000,
                          sample_at=tuple(stages), final_sample_chars=200)
        ckpt = train(text, cfg, out, progress=True, resume=i > 0, source=Path(args.text).name)
        span = choose_text(ckpt, args.text, split="test")
        probe_text = span.text[:args.probe_chars]
        res = probe(ckpt, probe_text, {"in_quote": label(probe_text, "in_quote")}, states=("h", "c"),
                    control=False, null=False, sparse=False, baselines=False, streams=16, warmup=256)
        top = res.ranking.iloc[0]
        rankings[step] = res.ranking.set_index("unit_id")["r"]
        val = ckpt.train["curve"][-1]["val_loss"]
        rows.append({"step": step, "val_loss": val, "best_step": ckpt.train["best_step"],
                     "best_unit": top["unit_id"], "r": float(top["r"]), "abs_r": float(top["abs_r"]),
                     "seconds": round(time.perf_counter() - t0, 1)})
        print(f"step {step}: val loss {val:.4f} nats/char, best in_quote unit {top['unit_id']} r={top['r']:+.3f}")
    final_unit = rows[-1]["best_unit"]
    for row in rows:
        row["final_unit_r"] = float(rankings[row["step"]][final_unit])
    table = pd.DataFrame(rows)
    print(f"the final quote unit {final_unit} at each step: "
          + ", ".join(f"{r['step']}: {r['final_unit_r']:+.3f}" for r in rows))
    print(f"trained on {ckpt.train['device']} in {ckpt.train['seconds']:.0f} s; test loss "
          f"{ckpt.train['test_loss_nats']:.4f} nats/char on the first 20,000 test characters")

    features = {"in_quote": label(probe_text, "in_quote")}
    span = replace(span, text=probe_text)
    report = build_report(ckpt, span, res, features, max_chars=3000)
    long = table.melt(id_vars=["step"], value_vars=["abs_r", "final_unit_r"], var_name="what", value_name="corr")
    long["what"] = long["what"].map({"abs_r": "best |r| of any unit", "final_unit_r": f"r of {final_unit}"})
    report.charts["evolution"] = alt.Chart(long).mark_line(point=True).encode(
        x=alt.X("step:Q", title="training step"), y=alt.Y("corr:Q", title="correlation with in_quote"),
        color=alt.Color("what:N", title=None)).properties(width=520, height=220)
    card = [(f"step {r['step']:,}", f"val loss {r['val_loss']:.4f}; best unit {r['best_unit']} r = {r['r']:+.3f}; "
             f"{final_unit}: r = {r['final_unit_r']:+.3f}") for r in rows]
    report.sections.insert(2, {"id": "evolution", "title": "The quote unit through training", "kind": "charts",
                               "charts": [("evolution", f"in_quote on {len(span.text):,} test characters, by step")],
                               "notes": [f"{ckpt.config.num_layers} x {ckpt.config.hidden_size} LSTM trained with "
                                         f"neuroscope.train on {ckpt.train['device']} (batch {args.batch} x "
                                         f"{args.seq}); " + "; ".join(f"{k}: {v}" for k, v in card)]})
    for n, s in enumerate(report.sections, 1):
        s["number"] = n
    summary = {"script": "training_evolution", "device": ckpt.train["device"], "layers": args.layers,
               "hidden": args.hidden, "batch": args.batch, "seq": args.seq, "probe_chars": len(span.text),
               "final_unit": final_unit, "stages": rows, "samples": ckpt.train["samples"],
               "test_loss_nats": ckpt.train["test_loss_nats"], "train_seconds": ckpt.train["seconds"]}
    save("training_evolution", report, summary, args.out)
    return summary


if __name__ == "__main__":
    main()
