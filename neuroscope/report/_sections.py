"""The report's sections: one function per section, each returning (section, charts).

    >>> section, charts = gates_section(config, saturation, n)
    >>> section["kind"], [c for c, _ in section["charts"]], list(charts)
    ('charts', ['gates'], ['gates'])

A section is a dict with "id", "title", "kind" (the _page macro that renders it), "notes" and the
fields its kind needs; charts maps the chart ids a section names to altair charts. Most sections
are plain data that their macro lays out. Two are of kind "html" and carry a ready fragment
instead: explain_section and match_section write their tables and marked contexts here, escaping
every piece of text they put in.
A panel (see _build) is one unit picker: its feature, the feature's kind, its units and why. With a
dictionary the panels hold its latents (names.Latent) instead, and each section says so: the text is
coloured by a latent's activation from 0 to its largest on the excerpt, the distributions are drawn on
that scale, and the gate section says that it shows the model's gate units, which latents do not have.
"""
from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd

from ..features import FEATURES
from ..model import count_parameters
from ..names import Latent
from ..stats import SHOWN, shown
from ._charts import distribution_chart, loss_chart, ranking_chart, saturation_chart, thin_curve, topk_chart
from ._excerpt import SATURATED

N_ROWS = 10        # rows of each ranking table


def shown_path(path: str | os.PathLike) -> str:
    """A path as a page shows it: as the user gave it, or relative to the current folder when it
    lies inside it or beside it, so that a committed page does not carry one machine's folders."""
    path = os.fspath(path)
    if not os.path.isabs(path):
        return path
    try:
        rel = os.path.relpath(path)
    except ValueError:                 # another drive (Windows)
        return path
    return rel if not rel.startswith(os.pardir + os.sep + os.pardir) else path


def latent_panels(panels: list[dict]) -> bool:
    """Whether the panels show a dictionary's latents (never mixed with units)."""
    return any(isinstance(u, Latent) for p in panels for u in p["units"] or ())


VALUE_OF = {"unit": f"each unit's shown value ({SHOWN})",          # what a unit and a latent are read as
            "latent": "each latent's activation (the dictionary's encoder applied to the shown value of its "
                      "quantity, tanh(c) for a cell state)"}


def subtitle(span, n: int, vocab, ranked: bool, dictionary=None) -> list[str]:
    """Where the excerpt comes from, whether it is cut, what the vocabulary could not read, and the
    dictionary whose latents the page shows."""
    lines = [f"{shown_path(span.source)}, characters {span.start:,} to {span.start + n:,}"
             + (f" ({span.split} split)" if span.split else "")]
    if len(span.text) > n:
        lines.append(f"Showing the first {n:,} of {len(span.text):,} characters"
                     + ("; the ranking covers the probe's whole text." if ranked else "."))
    unknown = vocab.count_unknown(span.text[:n])
    if unknown:
        lines.append(f"{unknown} characters are not in the model's vocabulary and were read as "
                     f"{vocab.chars[vocab.fallback_id]!r}.")
    if dictionary is not None:
        d = dictionary
        lines.append(f"Latents of the dictionary {shown_path(d.path) if d.path else '(in memory)'} over {d.quantity} "
                     f"({d.sae.d_sae:,} latents, {'about ' if d.sae.threshold is not None else ''}{d.sae.k} on per "
                     "character) take the units' place.")
    return lines


def model_section(ckpt, pred: dict, n: int) -> tuple[dict, dict]:
    """The model card (config, size, losses) and the training curve."""
    cfg, tr = ckpt.config, ckpt.train
    card = [("checkpoint", shown_path(ckpt.path) if ckpt.path else ckpt.name),
            ("corpus", shown_path(tr["text"]) if tr.get("text") else "unknown"),
            ("cell", cfg.cell.upper()), ("layers x units", f"{cfg.num_layers} x {cfg.hidden_size}"),
            ("embedding", str(cfg.embedding_dim)), ("dropout", str(cfg.dropout)),
            ("vocabulary", f"{len(ckpt.vocab)} characters"), ("parameters", f"{count_parameters(ckpt.model):,}")]
    if tr.get("test_loss_nats") is not None:
        nats = float(tr["test_loss_nats"])
        card.append(("test loss", f"{nats:.4f} nats/char, {nats / math.log(2):.4f} bits/char"))
    if tr.get("best_val_loss_nats") is not None:
        card.append(("best validation loss", f"{float(tr['best_val_loss_nats']):.4f} nats/char"))
    for key, label in (("steps", "training steps"), ("seconds", "training time (s)"), ("device", "trained on")):
        if tr.get(key) is not None:
            card.append((label, str(tr[key])))
    surprise = -np.log(np.clip(pred["p_actual"][1:], 1e-12, None))
    card.append(("loss on the shown excerpt", f"{surprise.mean():.4f} nats/char, {surprise.mean() / math.log(2):.4f} "
                 f"bits/char over {n - 1:,} predictions"))
    s = {"id": "model", "title": "Model", "kind": "model", "card": card, "chart": None, "notes": []}
    curve = tr.get("curve") or []
    drawn = thin_curve(curve)
    chart = loss_chart(drawn)
    if chart is None:
        s["notes"].append("This checkpoint stores no loss curve.")
        return s, {}
    if len(drawn) < len(curve):
        s["notes"].append(f"The training curve holds {len(curve):,} points; the chart draws {len(drawn):,} of them, "
                          "evenly spaced, the first and the last included.")
    s["chart"] = "loss"
    return s, {"loss": chart}


def samples_section(ckpt) -> tuple[dict, dict]:
    """The samples stored at training steps, then the final ones.

    A sample that is only whitespace (at a low temperature a small code model can stay in a run of
    indentation) would be an empty box: its label says so and its characters are drawn as marks.
    """
    stored = ckpt.train.get("samples") or {}
    samples = [(f"step {int(k):,}", v) for k, v in sorted(stored.items(), key=lambda kv: int(kv[0]))]
    for key, label in (("final_sample_t1", "final model, temperature 1"),
                       ("final_sample_t05", "final model, temperature 0.5")):
        if ckpt.train.get(key):
            samples.append((label, ckpt.train[key]))
    marks = {" ": "·", "\n": "↵\n", "\t": "→"}
    for i, (label, text) in enumerate(samples):
        if not text.strip():
            shown = "".join(marks.get(c, "␣") for c in text)
            samples[i] = (f"{label}: only whitespace, {len(text):,} characters shown as marks "
                          f"(· space, ↵ line break, → tab, ␣ other)" if text else f"{label}: empty", shown)
    notes = [] if samples else ["This checkpoint stores no samples."]
    return {"id": "samples", "title": "Samples through training", "kind": "samples",
            "samples": samples, "notes": notes}, {}


def _fmt(v, spec: str) -> str:
    if v is None or (isinstance(v, (float, np.floating)) and not np.isfinite(v)):
        return "–"
    if spec == "p":
        return "<1e-300" if v < 1e-300 else f"{v:.2g}"
    return format(v, spec)


def _ranking_rows(top: pd.DataFrame, what: str = "unit") -> tuple[list[str], list[list[str]]]:
    """A ranking table's header and rows of formatted cells (missing numbers as "–")."""
    p_col = "p_adjusted" if "p_adjusted" in top.columns else "p_value"
    columns = ["#", what, "layer", "state", "r", "AUROC", "p (adjusted)" if p_col == "p_adjusted" else "p",
               "selectivity", "control max |r|", "flag"]
    rows = []
    for rank, (_, r) in enumerate(top.iterrows(), 1):
        def get(c):
            v = r[c] if c in r.index else None
            return None if v is None or (isinstance(v, (float, np.floating)) and np.isnan(v)) else v
        rows.append([str(rank), r["unit_id"], str(int(r["layer"])), str(r["state"]), _fmt(get("r"), "+.3f"),
                     _fmt(get("auroc"), ".3f"), _fmt(get(p_col), "p"), _fmt(get("selectivity"), ".2f"),
                     _fmt(get("control_max_abs_r"), ".3f"), str(get("flag") or "")])
    return columns, rows


def ranking_section(result, ranked: list[str], panels: list[dict], num_layers: int) -> tuple[dict, dict]:
    """Per ranked feature: the top rows of the ranking, a bar chart of r and the top-k probe curve."""
    what = "latent" if latent_panels(panels) else "unit"
    s = {"id": "ranking", "title": "Latent ranking" if what == "latent" else "Neuron ranking", "kind": "ranking",
         "features": [], "notes": []}
    if not ranked:
        s["notes"].append(f"No probe result, so no ranking: probe features to rank the {what}s by how well "
                          "they track each.")
        return s, {}
    charts = {}
    panel_of = {p["feature"]: p["id"] for p in panels}
    meta = getattr(result, "meta", {}) or {}
    if meta.get("chars"):
        s["notes"].append(f"Ranked over {int(meta['chars']):,} characters; r is Pearson's correlation of "
                          f"{VALUE_OF[what]} with the labels. Click a row to colour the text by that {what}.")
    s["notes"] += [f"Probe note: {n}" for n in meta.get("notes", [])]
    topk = getattr(result, "topk", None)
    for i, f in enumerate(ranked):
        top = result.ranking[result.ranking["feature"] == f].head(N_ROWS)
        columns, rows = _ranking_rows(top, what)
        charts[f"rank{i}"] = ranking_chart(top, num_layers)
        tk = topk_chart(topk[topk["feature"] == f]) if topk is not None and len(topk) else None
        if tk is None:
            s["notes"].append(f"No top-k probe curve for {f}: the probe result holds no finite top-k scores for it.")
        else:
            charts[f"topk{i}"] = tk
        description = getattr(FEATURES.get(f), "description", "")
        s["features"].append({"name": f, "description": description, "columns": columns, "rows": rows,
                              "panel": panel_of.get(f, ""), "chart": f"rank{i}",
                              "topk_chart": f"topk{i}" if tk is not None else None})
    return s, charts


def units_section(panels: list[dict], result, ranked: list[str]) -> tuple[dict, dict]:
    """One unit picker per panel, over the excerpt coloured by the picked unit (drawn by the page)."""
    what = "latent" if latent_panels(panels) else "unit"
    What = what.capitalize()
    out = []
    for p in panels:
        r_of = {}
        if result is not None and p["feature"] in ranked:
            rk = result.ranking[result.ranking["feature"] == p["feature"]].set_index("unit_id")["r"]
            r_of = {u: float(v) for u, v in rk.items()}
        options = [{"id": u.id, "label": u.id + (f"   r = {r_of[u.id]:+.3f}" if u.id in r_of else "")}
                   for u in p["units"]]
        title = f"{What}s for {p['feature']}" if p["feature"] is not None else f"Selected {what}s"
        out.append({"id": p["id"], "title": title, "feature": p["feature"], "kind": p["kind"], "options": options})
    colour = (f"the unit's shown value after reading it ({SHOWN})" if what == "unit" else
              "the latent's activation after reading it, from white (0: off) to green (its largest value on the "
              "shown excerpt; a latent's scale is its own)")
    notes = [f"Each character is coloured by {colour}. Hover for the value."
             + (" Picker: " + panels[0]["why"] + "." if panels else "")]
    return {"id": "units", "title": f"Text coloured by {what}", "kind": "units", "panels": out, "notes": notes,
            "latents": what == "latent"}, {}


def predictions_section(pred: dict) -> tuple[dict, dict]:
    """The excerpt coloured by surprise, and the model's top guesses (drawn by the page)."""
    return {"id": "predictions", "title": "Predictions", "kind": "predictions", "k": int(pred["top_ids"].shape[1]),
            "notes": ["Top: each character coloured by the probability the model gave it before reading it. "
                      "Below: under each character, the model's most likely next characters, shaded by "
                      "probability."]}, {}


def distribution_section(panels: list[dict], labels: dict, values: dict) -> tuple[dict, dict]:
    """Per labelled panel: its units' shown values inside vs outside (or against) the feature."""
    s = {"id": "distribution", "title": "Activation against feature", "kind": "charts", "charts": [], "notes": []}
    charts = {}
    for i, p in enumerate(panels):
        f = p["feature"]
        chart = distribution_chart(f, p["kind"], labels[f], values, p["units"]) if f in labels else None
        if chart is None:
            continue
        charts[f"dist{i}"] = chart
        s["charts"].append((f"dist{i}", _distribution_caption(f, p["kind"], latent_panels([p]))))
    if not s["charts"]:
        s["notes"].append("No feature labels given, so nothing to compare the activations with.")
    return s, charts


def _distribution_caption(feature: str, kind: str, latents: bool) -> str:
    if not latents:
        what = "inside vs outside" if kind == "binary" else "median and quartiles against"
        return f"Shown value ({SHOWN}) {what} {feature}, on the shown excerpt"
    if kind == "binary":
        return (f"Latent activation where the latent is on (> 0), inside vs outside {feature}, as a fraction of "
                "each group's characters, on the shown excerpt; each row has its own axes, from 0 to the latent's "
                "largest, and names how often the latent is on in each group")
    return f"Share of characters where the latent is on (> 0) against {feature}, on the shown excerpt"


def gates_section(cfg, saturation: pd.DataFrame, n: int, latents: bool = False) -> tuple[dict, dict]:
    """Each gate unit's saturated fractions on the excerpt (LSTM and GRU; a plain RNN has no gates). With
    latents elsewhere on the page, a note says that this section shows the model's gate units."""
    s = {"id": "gates", "title": "Gate saturation", "kind": "charts", "charts": [], "notes": []}
    if latents:
        s["notes"].append("A dictionary's latents have no gates: this section shows the model's own gate units.")
    chart = saturation_chart(saturation, cfg.num_layers)
    if chart is None:
        s["notes"].append(f"A plain {cfg.cell.upper()} has no gates.")
        return s, {}
    s["charts"].append(("gates", f"Per unit: the fraction of the {n:,} shown characters where the gate is below "
                                 f"{SATURATED[0]} or above {SATURATED[1]} (one point per unit, coloured by layer)"))
    return s, {"gates": chart}


def match_section(result, number_of_hits: int = 20, title: str = "Match") -> tuple[dict, dict]:
    """A neuroscope.match result: the query units, the features' precision among the hits, and the
    best hits with their context, the hit characters marked (kind "html": escaped here)."""
    import html as h
    m = result.meta
    a, b = m["span"]
    what = m.get("candidates", "units")
    units = ", ".join(f"{r.unit} ({r.on_inside:.0%} in, {r.on_around:.0%} around)" for r in result.query.itertuples())
    feats = result.features[result.features["scope"] == "top"].sort_values("precision", ascending=False)
    rows = "".join(f"<tr><td>{h.escape(r.feature)}</td><td>{_fmt(r.precision, '.2f')}</td>"
                   f"<td>{_fmt(r.recall, '.3f')}</td><td>{_fmt(r.base_rate, '.3f')}</td></tr>"
                   for r in feats.itertuples() if r.base_rate > 0)
    hits = "".join(f"<div><code>{r.rank:>3} [{r.start}, {r.end}) {r.score:.3f}</code> "
                   f"<span style=\"color:#888\">{h.escape(r.before)}</span><mark>{h.escape(r.text)}</mark>"
                   f"<span style=\"color:#888\">{h.escape(r.after)}</span></div>"
                   for r in result.hits.head(number_of_hits).itertuples())
    body = (f"<p>Span [{a}, {b}): <mark>{h.escape(m['span_text'])}</mark></p><p>Query {what}: {h.escape(units)}.</p>"
            f"<table><tr><th>feature</th><th>precision</th><th>recall</th><th>base rate</th></tr>{rows}</table>"
            f"<div style=\"white-space:pre-wrap;font-family:monospace\">{hits}</div>")
    notes = [f"{m['hits']:,} hits over {m['chars']:,} characters: runs where at least {m['cut']:.0%} of the query "
             f"{what} are on (each above its {m['threshold']} quantile, from {m['thresholds_from']}), at least "
             f"{m['min_length']} characters long; precision and recall over the top {m['top']} hits' characters."]
    return {"id": f"match-{a}", "title": title, "kind": "html", "html": body, "notes": notes}, {}


def explain_section(units: list, values: dict[str, np.ndarray], text: str, title: str = "Explanations"
                    ) -> tuple[dict | None, dict]:
    """Per shown unit, the formula over features that best matches where it is on (neuroscope.explain:
    chosen on 2/3 of the shown text, scored on the other 1/3, in blocks), its simulation r and verdict,
    and its contexts, as one HTML fragment (kind "html": escaped here); (None, {}) when the text is
    too short for the two parts. Constant units are listed as such; a unit whose held-out part holds
    none of its on-characters or of its formula's is marked untested, with a note saying why."""
    import html as h

    from ..errors import UserError
    from ..explain import ExplainConfig, explain_values, split_words, untested
    cfg = ExplainConfig()
    try:
        fit = ~cfg.check(len(text)).held
    except UserError:
        return None, {}
    # a unit constant where formulas are chosen has no quantile to threshold at (a sparse latent often is)
    varying = [u for u in units if np.ptp(values[u.id][fit]) > 0]
    # a latent (no squash) is read as its activation is
    V = np.stack([shown(values[u.id], getattr(u, "squash", False)) for u in varying], 1) if varying else None
    table = explain_values(V, text, [u.id for u in varying], cfg) if varying else pd.DataFrame(columns=["rank"])
    best = table[table["rank"] == 1]
    why = {r["unit"]: untested(r) for _, r in best.iterrows()}           # held-out scores that say nothing
    rows = "".join(f"<tr><td>{h.escape(r.unit)}</td><td>{'high' if r.sign > 0 else 'low'} (q {r.quantile})</td>"
                   f"<td><code>{h.escape(r.formula or '–')}</code></td><td>{_fmt(r.iou_heldout, '.3f')}</td>"
                   f"<td>{_fmt(r.simulation_r, '+.3f')}</td>"
                   f"<td>{'explained' if r.explained else 'untested' if why[r.unit] else '–'}</td>"
                   f"<td><code>{h.escape(r.best_atom)}</code> ({_fmt(r.best_atom_iou_heldout, '.3f')})</td></tr>"
                   for r in best.itertuples())
    rows += "".join(f"<tr><td>{h.escape(u.id)}</td><td colspan=\"6\">constant on the fitting part of this "
                    "text: nothing to explain</td></tr>"
                    for u in units if u not in varying)
    signs = dict(zip(best["unit"], best["sign"]))
    body_ctx = "".join(_contexts_html(u.id, V[:, j], text, int(signs[u.id])) for j, u in enumerate(varying))
    body = ("<div class=\"wide\"><table class=\"explain\"><tr><th>unit</th><th>on where</th><th>best formula</th>"
            "<th>held-out IoU</th><th>simulation r</th><th>verdict</th><th>best single atom (held-out IoU)</th></tr>"
            f"{rows}</table></div>{body_ctx}")
    meta = table.attrs.get("meta", {})
    split = meta.get("split") or cfg.check(len(text)).describe()
    notes = [f"Formulas of up to 3 features (AND, OR, NOT) chosen on the fitting part of the shown text, scored "
             f"on the held-out part ({split_words(split)}); explained = simulation r >= {cfg.min_r} and held-out "
             f"IoU >= {cfg.min_iou} (docs/explain.md)."]
    quiet = [r.unit for r in best.itertuples() if why[r.unit] and r.on_heldout == 0]
    blind = [f"{r.unit}: {r.formula}" for r in best.itertuples() if why[r.unit] and r.on_heldout > 0]
    if quiet or blind:
        where = " or ".join(part for part in (f"where they are on ({', '.join(quiet)})" if quiet else "",
                                               f"where their formula holds ({'; '.join(blind)})" if blind else "")
                            if part)
        notes.append(f"Untested units: their held-out IoU and simulation r say nothing, because the held-out part "
                     f"holds no character {where}. "
                     "The command neuroscope explain scores them on as much text as you give it.")
    return {"id": "explanations", "title": title, "kind": "html", "html": body, "notes": notes}, {}


def _contexts_html(uid: str, v: np.ndarray, text: str, sign: int) -> str:
    """A unit's top, typical (10/50/90% quantiles) and random contexts (neuroscope.explain.unit_contexts), each
    character after which the unit was read marked and coloured by its value (blue -1, green +1)."""
    import html as h

    from ..explain import one_line, unit_contexts
    ctx = unit_contexts(text, v, sign=sign, n_top=3, n_random=2)
    show = lambda t: h.escape(one_line(t))      # noqa: E731
    lines = "".join(
        f"<div><code>{r.kind:>8} {r.value:+.2f}</code> {show(r.before)}<mark style=\"background:"
        f"{'#9ecae1' if r.value < 0 else '#a1d99b'}\">{show(r.char)}</mark>{show(r.after)}</div>"
        for r in ctx.itertuples())
    return (f"<details><summary>{h.escape(uid)}: contexts</summary>"
            f"<div style=\"white-space:pre;font-family:monospace\">{lines}</div></details>")



def attribution_section(attributions: list, text_start: int = 0, title: str = "Attribution") -> tuple[dict | None, dict]:
    """Per attribution (neuroscope.causes.Attribution), heat strips over the characters before the one it
    explains: occlusion and integrated gradients, red where a character drives the value up, blue where it
    drives it down, each strip on its own scale (a CR is drawn as ʳ, a line feed as ⏎); (None, {}) without
    attributions."""
    if not attributions:
        return None, {}
    import html as h
    body = "".join(_strips(a, text_start, h.escape) for a in attributions)
    notes = ["Occlusion: the value minus its value with that one character replaced by a space (exact, one batched "
             "pass). Integrated gradients: from the same window of spaces to the text, through the input embeddings; "
             "the scores sum to the value's change, within the completeness error shown (docs/causes.md)."]
    return {"id": "attribution", "title": title, "kind": "html", "html": body, "notes": notes}, {}


def _strips(a, text_start: int, esc) -> str:
    """One attribution: a line of numbers, then one strip per method that ran."""
    from ..explain import one_line
    from ..features import printable
    t = a.table
    head = (f"<p><b>{esc(a.unit)}</b> after character {a.at + text_start:,} ({esc(printable(t['char'].iloc[-1]))}): "
            f"value {a.value:+.3f}")
    if np.isfinite(a.baseline):
        head += f", {a.baseline:+.3f} with the window of spaces; completeness error {a.completeness:.2%}"
    rows = []
    for method, name in (("occlusion", "occlusion"), ("ig", "integrated gradients")):
        s = t[method].to_numpy()
        if not np.isfinite(s).all():
            continue
        top = t.iloc[int(np.argmax(np.abs(s)))]
        head += f"; {name} puts most on {esc(printable(top['char']))} at {int(top['offset'])}"
        scale = max(float(np.abs(s).max()), 1e-12)
        cells = "".join(f"<span title=\"{int(o)}: {v:+.4f}\" style=\"background:{_heat(v / scale)}\">"
                        f"{esc(one_line(c) or 'ʳ')}</span>" for c, o, v in zip(t["char"], t["offset"], s))
        rows.append(f"<div><code style=\"display:inline-block;width:13em\">{name}</code><span style=\"font-family:monospace;white-space:pre\">"
                    f"{cells}</span></div>")
    return head + ".</p>" + "".join(rows)


def _heat(x: float) -> str:
    """-1 (blue) .. 0 (white) .. +1 (red) as an rgb() colour."""
    x = max(-1.0, min(1.0, x))
    fade = int(255 * (1 - abs(x)))
    return f"rgb(255,{fade},{fade})" if x >= 0 else f"rgb({fade},{fade},255)"
