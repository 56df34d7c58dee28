"""Gate saturation of the three reference LSTMs: the picture of Karpathy, Johnson & Fei-Fei (2015), fig. 3.

For every forget, input and output gate unit: the fraction of characters where it is left-
saturated (< 0.1) and right-saturated (> 0.9), read exactly (one stream) over the first --chars
characters of each model's test split. The paper: first-layer gates are rarely saturated; in
higher layers some forget gates are right-saturated almost always (units that remember), and
few gates are left-saturated all the time.

    python analyses/gate_saturation.py            # writes reports/gate_saturation.html
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, Report, save, setup  # noqa: E402

from neuroscope.checkpoint import choose_text, load_checkpoint
from neuroscope.report._charts import saturation_chart
from neuroscope.report._excerpt import read_excerpt

MODELS = (("wp_lstm3x512.pt", "warpeace.txt"), ("linux_lstm3x512.pt", "linux.txt"),
          ("enwiki_lstm2x512.pt", "enwiki.xml"))


def summarize(sat: pd.DataFrame) -> pd.DataFrame:
    """Per (layer, gate): mean fractions, and how many units are saturated more than half the time."""
    g = sat.groupby(["layer", "gate"], sort=True)
    return pd.DataFrame({"units": g.size(), "mean_left": g["left"].mean(), "mean_right": g["right"].mean(),
                         "units_right_gt_0.5": g["right"].apply(lambda v: int((v > 0.5).sum())),
                         "units_left_gt_0.5": g["left"].apply(lambda v: int((v > 0.5).sum())),
                         "units_never_saturated": g.apply(lambda d: int(((d["left"] + d["right"]) < 0.1).sum()),
                                                          include_groups=False)}).reset_index()


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--models", nargs="+", default=[str(SHARED / "models" / m) for m, _ in MODELS])
    p.add_argument("--texts", nargs="+", default=[str(SHARED / "data" / t) for _, t in MODELS])
    p.add_argument("--chars", type=int, default=5000, help="characters of each test split, read as one stream")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    setup()
    sections, charts, summary = [], {}, {"script": "gate_saturation", "chars": args.chars, "models": {}}
    for i, (mpath, tpath) in enumerate(zip(args.models, args.texts)):
        ckpt = load_checkpoint(mpath)
        span = choose_text(ckpt, tpath, split="test")
        ids = ckpt.vocab.encode(span.text[:args.chars])
        sat = read_excerpt(ckpt.model, ids, [], progress=True).saturation
        table = summarize(sat)
        print(f"{ckpt.name} ({len(ids):,} chars from {span.start:,}):")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        summary["models"][ckpt.name] = table.to_dict(orient="records")
        charts[f"g{i}"] = saturation_chart(sat, ckpt.config.num_layers).properties(title=ckpt.name)
        sections.append({"id": f"m{i}", "title": ckpt.name, "kind": "html", "charts": [(f"g{i}", None)],
                         "notes": [f"{len(ids):,} characters of the test split of {Path(tpath).name} from "
                                   f"character {span.start:,}, one exact stream."],
                         "html": table.to_html(index=False, float_format="%.3f")})
    doc = Report("Gate saturation of the reference LSTMs",
                 ["Each dot is one gate unit: the fraction of characters where it is below 0.1 (x) and above 0.9 "
                  "(y). Karpathy, Johnson & Fei-Fei (2015), figure 3, show the same picture for their models."],
                 sections, {}, charts)
    save("gate_saturation", doc, summary, args.out)
    return summary


if __name__ == "__main__":
    main()
