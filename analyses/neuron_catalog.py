"""A catalogue of every unit of one model: its best-matching feature, |r|, and top contexts.

The post estimates that about 5% of the cells are "interpretable" by eye. Here a unit counts as
interpretable when its best structural (non char-class) feature reaches |r| >= --threshold, beats
the best |r| any unit of a random-weights model reaches with that feature (selectivity > 0), and
beats the unit's own best char-class baseline (is_space, is_upper, ...), so it is not just a
character detector. Units that track a char class at |r| >= threshold are counted separately.

    python analyses/neuron_catalog.py            # wp_lstm2x128, writes reports/neuron_catalog.html
"""
from __future__ import annotations

import html
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Report, load, parser, resolve, save, setup  # noqa: E402

from neuroscope.explain import EXPLAINED_IOU, EXPLAINED_R, explain_values
from neuroscope.explain._contexts import top_contexts
from neuroscope.features import FEATURES, baseline_names
from neuroscope.names import parse_unit
from neuroscope.probe import probe
from neuroscope.record import record


def main(argv=None) -> dict:
    p = parser(__doc__, "wp_lstm2x128.pt", "warpeace.txt", chars=60_000)
    p.add_argument("--threshold", type=float, default=0.5, help="|r| a unit needs to count as interpretable")
    p.add_argument("--context-chars", type=int, default=20_000, help="characters searched for top contexts")
    args = p.parse_args(argv)
    setup()
    ckpt, span = load(args)
    text = span.text
    labels = resolve(text, all_features=True)
    base = set(baseline_names())
    result = probe(ckpt, text, labels, states=("h", "c"), null=False, sparse=False, baselines=False,
                   streams=args.streams, warmup=args.warmup, progress=True)
    rk = result.ranking
    absr = rk.pivot(index="unit_id", columns="feature", values="abs_r")
    sign = rk.pivot(index="unit_id", columns="feature", values="r")
    ctrl = rk.groupby("feature")["control_max_abs_r"].first()
    structural = [f for f in absr.columns if f not in base]
    baselines = [f for f in absr.columns if f in base]
    cat = pd.DataFrame(index=absr.index)
    cat["feature"] = absr[structural].idxmax(axis=1)
    cat["abs_r"] = absr[structural].max(axis=1)
    cat["r"] = [sign.at[u, f] for u, f in zip(cat.index, cat["feature"])]
    cat["control_max_abs_r"] = ctrl[cat["feature"]].to_numpy()
    cat["baseline"] = absr[baselines].idxmax(axis=1)
    cat["baseline_abs_r"] = absr[baselines].max(axis=1)
    cat["interpretable"] = ((cat["abs_r"] >= args.threshold) & (cat["abs_r"] > cat["control_max_abs_r"])
                            & (cat["abs_r"] > cat["baseline_abs_r"]))
    cat["char_class"] = ~cat["interpretable"] & (cat["baseline_abs_r"] >= args.threshold)

    ctx_text = text[:args.context_chars]
    acts = record(ckpt.model, ckpt.vocab.encode(text), states=("h", "c"), streams=args.streams, warmup=args.warmup)
    shown = {}
    for u in cat.index:
        unit = parse_unit(u)
        v = acts[unit.quantity][:, unit.index]
        shown[u] = np.tanh(v) if unit.squash else v
    ctx = {u: top_contexts(ctx_text, v[:len(ctx_text)]) for u, v in shown.items()}
    # Every unit's best formula over features (neuroscope.explain), fitted on the first 2/3 of the text.
    live = [u for u, v in shown.items() if np.ptp(v) > 0]
    ex = explain_values(np.stack([shown[u] for u in live], 1), text, live, progress=True)
    best = ex[ex["rank"] == 1].set_index("unit")
    cat["formula"] = best["formula"].reindex(cat.index).fillna("(constant)")
    cat["simulation_r"] = best["simulation_r"].reindex(cat.index)
    cat["explained"] = best["explained"].reindex(cat.index).fillna(False).astype(bool)
    cat = cat.sort_values("abs_r", ascending=False)

    U, k, c = len(cat), int(cat["interpretable"].sum()), int(cat["char_class"].sum())
    e = int(cat["explained"].sum())
    by_feature = cat[cat["interpretable"]]["feature"].value_counts().to_dict()
    print(f"{ckpt.name}: {U} units (h and c), {len(text):,} characters of the test split from {span.start:,}")
    print(f"interpretable (best structural |r| >= {args.threshold}, above the random model and the unit's "
          f"char-class baselines): {k} of {U} = {k / U:.1%}; by feature: {by_feature}")
    print(f"char-class detectors (a baseline |r| >= {args.threshold}): {c} = {c / U:.1%}")
    print(f"explained by a formula (simulation r >= {EXPLAINED_R}, held-out IoU >= {EXPLAINED_IOU}): {e} = {e / U:.1%}")
    print(cat.head(10)[["feature", "r", "control_max_abs_r", "baseline", "baseline_abs_r"]].to_string(float_format=lambda x: f"{x:.3f}"))

    rows = []
    for u, r in cat.iterrows():
        tag = "interpretable" if r["interpretable"] else "char class" if r["char_class"] else ""
        rows.append(f"<tr><td>{u}</td><td>{html.escape(r['feature'])}</td><td>{r['r']:+.3f}</td>"
                    f"<td>{html.escape(r['baseline'])} {r['baseline_abs_r']:.3f}</td><td>{tag}</td>"
                    f"<td><code>{html.escape(r['formula'])}</code> {r['simulation_r']:+.2f}"
                    f"{' explained' if r['explained'] else ''}</td>"
                    "<td>" + "<br>".join(f"<span class='ctx'>{html.escape(s)}</span>" for s in ctx[u]) + "</td></tr>")
    table = ("<table><tr><th>unit</th><th>best feature</th><th>r</th><th>best char-class |r|</th><th></th>"
             "<th>best formula, simulation r (held-out)</th>"
             "<th>top contexts (the [character] after which the unit peaks)</th></tr>" + "".join(rows) + "</table>")
    feats = "".join(f"<li><b>{html.escape(f)}</b>: {html.escape(FEATURES[f].description)}; random-model max |r| "
                    f"{ctrl.get(f, np.nan):.3f}</li>" for f in absr.columns if f in FEATURES)
    doc = Report(f"Neuron catalogue: {ckpt.name}", [
        f"{U} units (h and c of every layer), ranked over {len(text):,} characters of the {Path(args.text).name} "
        f"test split (from character {span.start:,}; {args.streams} streams, {args.warmup} warm-up characters).",
        f"Interpretable: best structural feature |r| >= {args.threshold}, above the random-weights model's best "
        f"|r| for that feature and above the unit's best char-class |r|: {k} of {U} units ({k / U:.1%}); "
        f"the post estimates about 5%. Char-class detectors: {c} ({c / U:.1%}). Explained by a formula over "
        f"features (neuroscope.explain: chosen on the first 2/3 of the text, simulation r >= {EXPLAINED_R} and "
        f"held-out IoU >= {EXPLAINED_IOU} on the last 1/3): {e} ({e / U:.1%}).",
        f"Top contexts are searched in the first {len(ctx_text):,} characters (tanh c for cell states)."],
        [{"id": "features", "title": "Features", "kind": "html", "html": f"<ul>{feats}</ul>"},
         {"id": "units", "title": "Units", "kind": "html", "html": table}], {})
    summary = {"script": "neuron_catalog", "model": ckpt.name, "chars": len(text), "start": span.start,
               "units": U, "threshold": args.threshold, "interpretable": k, "interpretable_share": k / U,
               "interpretable_by_feature": by_feature, "char_class": c, "char_class_share": c / U,
               "explained": e, "explained_share": e / U,
               "top": cat.head(10).reset_index().to_dict(orient="records"), "notes": result.meta["notes"]}
    save("neuron_catalog", doc, summary, args.out)
    return summary


if __name__ == "__main__":
    main()
