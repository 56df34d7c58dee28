"""Static HTML reports: the seed post's pictures for any model, in one file that opens anywhere.

    >>> report = build_report(ckpt, span, result, features)   # result: a ProbeResult, or None
    >>> report.save("report.html")                             # atomic; one self-contained file
    >>> report                                                 # in Jupyter: the page, in a frame
    >>> report.view("units")                                   # one section of it
    >>> report.charts["gates"]                                 # any chart, as an altair object

Sections, in order: 1 model card (config, parameters, test loss, loss curves); 2 samples through
training; 3 neuron ranking per feature (table, bar chart of r, top-k probe curve); 4 the excerpt
coloured by each selected unit (tanh(c) for cell states, h as is), with the feature's labels
underlined and a picker among the feature's top units; 5 predictions (the text coloured by the
probability of each actual character, and the model's top 5 guesses under each character);
6 activation inside vs outside each feature; 7 gate saturation per layer (LSTM and GRU).

Content is built as plain data first (`Report.sections`, `Report.data`), then rendered by
neuroscope.page. Recording covers only the shown excerpt (at most `max_chars` characters), one
chunk at a time, so memory stays bounded whatever the span's length.
"""
from __future__ import annotations

import math
import os
import re
import tempfile
from dataclasses import dataclass, field, replace

import altair as alt
import numpy as np
import pandas as pd
import torch

from .errors import UserError
from .model import count_parameters
from .page import iframe, render_page
from .record import iter_states, state_names

N_UNITS = 5        # units per feature in the unit picker
N_ROWS = 10        # rows of each ranking table
TOP_K = 5          # guesses shown under each character
PAGE = 400         # characters per page of the guesses grid
SATURATED = (0.1, 0.9)   # a gate is left-/right-saturated below / above these (Karpathy et al. 2015)


# ------------------------------------------------------------------ units

@dataclass(frozen=True)
class Unit:
    """One recorded unit, addressed as on the command line: "l2.c.323" (all 0-based)."""

    layer: int
    state: str          # h, c, gate_i, gate_f, ...
    index: int

    @property
    def id(self) -> str:
        return f"l{self.layer}.{self.state}.{self.index}"

    @property
    def quantity(self) -> str:
        """The recorder's name of the unit's layer state, e.g. "rnn.l2.c"."""
        return f"rnn.l{self.layer}.{self.state}"

    @property
    def squash(self) -> bool:
        """Cell states are unbounded (|c| reaches thousands), so they are shown as tanh(c)."""
        return self.state == "c"


UNIT_ID = re.compile(r"^l(\d+)\.([a-z_]+)\.(\d+)$")


def parse_unit(text: str, config) -> Unit:
    """"l2.c.323" -> Unit(2, "c", 323), checked against the model; UserError when it does not exist."""
    m = UNIT_ID.match(text.strip())
    if not m:
        raise UserError(f"bad unit {text!r}: write layer.state.unit, e.g. l2.c.323 (0-based)")
    unit = Unit(int(m.group(1)), m.group(2), int(m.group(3)))
    known = state_names(config, ("h", "c", "gates"))
    if unit.quantity not in known:
        states = sorted({n.split(".")[-1] for n in known})
        raise UserError(f"unit {text!r} does not exist: the model has layers 0..{config.num_layers - 1} "
                        f"and states {', '.join(states)}")
    if unit.index >= config.hidden_size:
        raise UserError(f"unit {text!r} does not exist: layers have {config.hidden_size} units (0..{config.hidden_size - 1})")
    return unit


def colour_value(unit: Unit, values: np.ndarray) -> np.ndarray:
    """What the colours show, in [-1, 1]: tanh(c) for cell states, the value itself otherwise."""
    return np.tanh(values) if unit.squash else np.clip(values, -1.0, 1.0)


# ------------------------------------------------------------------ recording the excerpt

def saturation_gates(cell: str) -> tuple[str, ...]:
    """The sigmoid gates whose saturation the paper plots: forget, input, output (LSTM); reset, update (GRU)."""
    return {"lstm": ("f", "i", "o"), "gru": ("r", "z")}.get(cell, ())


@torch.no_grad()
def record_units(model, ids: np.ndarray, units: list[Unit], gates: bool = True, chunk: int = 1024,
                 progress: bool = False) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """One pass over ids: the selected units' values and the gates' saturation.

    Returns ({unit id: float32 [len(ids)]}, DataFrame with one row per (layer, gate, unit) and
    columns left, right: the fraction of characters where the gate was < 0.1, > 0.9).
    Only the selected columns and per-unit counts are kept, never [len(ids), H] per chunk.
    """
    cfg = model.config
    sat = saturation_gates(cfg.cell) if gates else ()
    wanted = sorted({u.quantity for u in units})
    gate_names = [f"rnn.l{l}.gate_{g}" for l in range(cfg.num_layers) for g in sat]
    states = sorted({q.split(".")[-1] for q in wanted} | {f"gate_{g}" for g in sat})
    cols: dict[str, list[np.ndarray]] = {u.id: [] for u in units}
    left = {n: np.zeros(cfg.hidden_size) for n in gate_names}
    right = {n: np.zeros(cfg.hidden_size) for n in gate_names}
    for _, acts in iter_states(model, ids, states=tuple(states), chunk=chunk, progress=progress):
        for u in units:
            cols[u.id].append(np.asarray(acts[u.quantity][:, u.index], dtype=np.float32))
        for n in gate_names:
            g = acts[n]
            left[n] += (g < SATURATED[0]).sum(0)
            right[n] += (g > SATURATED[1]).sum(0)
    values = {k: np.concatenate(v) for k, v in cols.items()}
    rows = []
    for n in gate_names:
        layer, gate = int(n.split(".")[1][1:]), n.rsplit("_", 1)[1]
        rows.append(pd.DataFrame({"layer": layer, "gate": gate, "unit": np.arange(cfg.hidden_size),
                                  "left": left[n] / len(ids), "right": right[n] / len(ids)}))
    saturation = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["layer", "gate", "unit", "left", "right"])
    return values, saturation


@torch.no_grad()
def most_variable_units(model, ids: np.ndarray, n: int = N_UNITS, chunk: int = 1024,
                        progress: bool = False) -> list[Unit]:
    """The n units (h and c of every layer) whose shown value (tanh(c), h) varies most over ids."""
    cfg = model.config
    s1: dict[str, np.ndarray] = {}
    s2: dict[str, np.ndarray] = {}
    for _, acts in iter_states(model, ids, states=("h", "c"), chunk=chunk, progress=progress):
        for name, v in acts.items():
            v = np.tanh(v) if name.endswith(".c") else v
            s1[name] = s1.get(name, 0) + v.sum(0, dtype=np.float64)
            s2[name] = s2.get(name, 0) + (v.astype(np.float64) ** 2).sum(0)
    scored = []
    for name in s1:
        var = s2[name] / len(ids) - (s1[name] / len(ids)) ** 2
        layer, state = int(name.split(".")[1][1:]), name.split(".")[2]
        scored += [(float(var[i]), Unit(layer, state, i)) for i in range(cfg.hidden_size)]
    scored.sort(key=lambda t: -t[0])
    return [u for _, u in scored[:n]]


@torch.no_grad()
def predict(model, ids: np.ndarray, k: int = TOP_K, chunk: int = 2048) -> dict[str, np.ndarray]:
    """The model's guesses over a span read as one stream from a zero state.

    Returns top_ids int [N, k] and top_p float [N, k] (guesses for character t+1 after reading
    ids[:t+1]), and p_actual float [N] (the probability given to ids[t] before reading it; NaN at t=0).
    """
    model.eval()
    device = next(model.parameters()).device
    x = torch.as_tensor(np.asarray(ids), dtype=torch.long, device=device)
    top_ids, top_p, p_actual = [], [], [np.array([np.nan])]
    state = None
    for s in range(0, len(ids), chunk):
        logits, state = model(x[s:s + chunk][None], state)               # [1, T, V]
        probs = torch.softmax(logits[0].float(), dim=-1)                  # [T, V]
        p, i = probs.topk(min(k, probs.shape[1]), dim=-1)
        top_ids.append(i.cpu().numpy())
        top_p.append(p.cpu().numpy())
        nxt = x[s + 1:s + 1 + probs.shape[0]]                            # the characters that came next
        p_actual.append(probs[torch.arange(len(nxt), device=device), nxt].cpu().numpy())
    return {"top_ids": np.concatenate(top_ids), "top_p": np.concatenate(top_p),
            "p_actual": np.concatenate(p_actual)[:len(ids)]}


# ------------------------------------------------------------------ charts (altair)

def loss_chart(curve: list[dict]) -> alt.Chart | None:
    df = pd.DataFrame(curve)
    losses = [c for c in df.columns if c.endswith("loss")]
    if "step" not in df.columns or not losses:
        return None
    long = df.melt(id_vars=["step"], value_vars=losses, var_name="curve", value_name="loss").dropna()
    long["curve"] = long["curve"].str.replace("_loss", "", regex=False)
    return alt.Chart(long).mark_line(point=True).encode(
        x=alt.X("step:Q", title="training step"), y=alt.Y("loss:Q", title="nats per char", scale=alt.Scale(zero=False)),
        color=alt.Color("curve:N", title=None), tooltip=["step", "curve", alt.Tooltip("loss:Q", format=".4f")],
    ).properties(width=520, height=240)


def layer_colour(num_layers: int) -> alt.Color:
    """One colour per layer, the same in every chart (layer 0 is always the first colour)."""
    return alt.Color("layer:N", title="layer", scale=alt.Scale(domain=[str(i) for i in range(num_layers)]))


def ranking_chart(top: pd.DataFrame, num_layers: int) -> alt.Chart:
    df = top[["unit_id", "layer", "state", "r"]].copy()
    df["layer"] = df["layer"].astype(str)
    return alt.Chart(df).mark_bar().encode(
        x=alt.X("r:Q", title="Pearson r", scale=alt.Scale(domain=[-1, 1])),
        y=alt.Y("unit_id:N", sort=list(df["unit_id"]), title=None),
        color=layer_colour(num_layers),
        tooltip=["unit_id", "state", alt.Tooltip("r:Q", format="+.3f")],
    ).properties(width=320, height=max(80, 18 * len(df)))


def topk_chart(topk: pd.DataFrame) -> alt.Chart | None:
    df = topk[["k", "score", "metric"]].dropna() if topk is not None else None
    if df is None or df.empty:
        return None
    return alt.Chart(df).mark_line(point=True).encode(
        x=alt.X("k:Q", title="units used (k)"), y=alt.Y("score:Q", title="score", scale=alt.Scale(zero=False)),
        color=alt.Color("metric:N", title=None), tooltip=["k", "metric", alt.Tooltip("score:Q", format=".3f")],
    ).properties(width=300, height=200)


def distribution_chart(feature: str, kind: str, labels: np.ndarray, values: dict[str, np.ndarray],
                       units: list[Unit]) -> alt.Chart | None:
    """Binary: histogram of the shown value inside vs outside the feature; count: median and
    quartiles of the value against the count. One row per unit. Data is binned here, so it stays small."""
    frames = []
    for u in units:
        v = colour_value(u, values[u.id])
        if kind == "binary":
            edges = np.linspace(-1, 1, 41)
            for name, mask in ((f"inside {feature}", labels == 1), (f"outside {feature}", labels == 0)):
                if mask.sum() == 0:
                    continue
                counts, _ = np.histogram(v[mask], bins=edges)
                frames.append(pd.DataFrame({"unit": u.id, "group": f"{name} (n={int(mask.sum())})",
                                            "value": (edges[:-1] + edges[1:]) / 2,
                                            "fraction": counts / mask.sum()}))
        else:
            lab = labels.astype(np.float64)
            uniq = np.unique(lab)
            # Many distinct counts (a line position up to 500): bin them so each point has data.
            keys = lab if len(uniq) <= 40 else np.floor((lab - lab.min()) / (np.ptp(lab) / 30 + 1e-12)) * (np.ptp(lab) / 30) + lab.min()
            df = pd.DataFrame({"count": keys, "v": v}).groupby("count")["v"]
            stats = df.quantile([0.25, 0.5, 0.75]).unstack()
            stats.columns = ["q25", "median", "q75"]
            stats["n"] = df.size()
            frames.append(stats.reset_index().assign(unit=u.id))
    if not frames:
        return None
    data = pd.concat(frames, ignore_index=True)
    value_title = "tanh c / h"
    if kind == "binary":
        base = alt.Chart(data).mark_area(interpolate="step-after", opacity=0.55).encode(
            x=alt.X("value:Q", title=value_title, scale=alt.Scale(domain=[-1, 1])),
            y=alt.Y("fraction:Q", title="fraction", stack=None),
            color=alt.Color("group:N", title=None, scale=alt.Scale(range=["#e6550d", "#6b7a8f"])),
            tooltip=["group", alt.Tooltip("value:Q", format=".2f"), alt.Tooltip("fraction:Q", format=".3f")])
    else:
        band = alt.Chart().mark_area(opacity=0.3, color="#1a9850").encode(
            x=alt.X("count:Q", title=feature), y=alt.Y("q25:Q", title=value_title, scale=alt.Scale(domain=[-1, 1])),
            y2="q75:Q")
        line = alt.Chart().mark_line(point=True, color="#1a9850").encode(
            x="count:Q", y="median:Q", tooltip=["count", "n", alt.Tooltip("median:Q", format=".3f")])
        base = alt.layer(band, line, data=data)
    return base.properties(width=460, height=90).facet(row=alt.Row("unit:N", title=None, sort=[u.id for u in units]))


def saturation_chart(sat: pd.DataFrame, num_layers: int) -> alt.Chart | None:
    if sat.empty:
        return None
    df = sat.assign(layer=sat["layer"].astype(str), left=sat["left"].round(4), right=sat["right"].round(4))
    order = [g for g in ("f", "i", "o", "r", "z") if g in set(df["gate"])]
    names = {"f": "forget gate", "i": "input gate", "o": "output gate", "r": "reset gate", "z": "update gate"}
    df["gate"] = df["gate"].map(names)
    return alt.Chart(df).mark_circle(size=14, opacity=0.6).encode(
        x=alt.X("left:Q", title="fraction < 0.1 (left-saturated)", scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("right:Q", title="fraction > 0.9 (right-saturated)", scale=alt.Scale(domain=[0, 1])),
        color=layer_colour(num_layers),
        tooltip=["layer", "unit", alt.Tooltip("left:Q", format=".3f"), alt.Tooltip("right:Q", format=".3f")],
    ).properties(width=230, height=230).facet(column=alt.Column("gate:N", title=None, sort=[names[g] for g in order]))


# ------------------------------------------------------------------ the report

@dataclass
class Report:
    """A report as plain data (sections, script data, altair charts); `html` renders it."""

    title: str
    subtitle: list[str]
    sections: list[dict]
    data: dict
    charts: dict[str, alt.TopLevelMixin] = field(default_factory=dict)

    def view(self, *section_ids: str) -> "Report":
        """The same report with only some sections, e.g. report.view("units"), for Jupyter."""
        unknown = set(section_ids) - {s["id"] for s in self.sections}
        if unknown:
            raise UserError(f"no section {sorted(unknown)[0]!r}; sections: {', '.join(s['id'] for s in self.sections)}")
        keep = [s for s in self.sections if s["id"] in section_ids]
        used = {c for s in keep for c in chart_ids(s)}
        return replace(self, sections=keep, charts={k: v for k, v in self.charts.items() if k in used})

    @property
    def html(self) -> str:
        data = dict(self.data, charts={k: c.to_dict() for k, c in self.charts.items()})
        return render_page(self.title, self.subtitle, self.sections, data)

    def save(self, path: str | os.PathLike) -> str:
        """Write the page atomically (an existing file is replaced only by a complete one); returns the path."""
        return write_atomic(path, self.html)

    def _repr_html_(self) -> str:
        return iframe(self.html)


def write_atomic(path: str | os.PathLike, text: str) -> str:
    """Write text (UTF-8) to path via a temp file in the same folder, fsync and rename; returns the path.

    A failure or a kill midway leaves any previous file untouched. Missing parent folders are made.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise UserError(f"{path} is a directory; give a file name such as report.html")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def chart_ids(section: dict) -> list[str]:
    ids = [section.get("chart")] + [c for c, _ in section.get("charts", [])]
    for f in section.get("features", []):
        ids += [f.get("chart"), f.get("topk_chart")]
    return [c for c in ids if c]


def feature_kind(labels: np.ndarray) -> str:
    """"binary" for 0/1 labels, "count" otherwise (the features module's two kinds)."""
    return "binary" if labels.dtype in (np.bool_, np.uint8) and labels.size and labels.max() <= 1 else "count"


def feature_description(name: str) -> str:
    try:
        from .features import FEATURES
    except ImportError:        # the features module is optional for plain reports
        return ""
    f = FEATURES.get(name)
    return getattr(f, "description", "") if f is not None else ""


def fmt_p(p) -> str:
    if p is None or not np.isfinite(p):
        return "–"
    return "<1e-300" if p < 1e-300 else f"{p:.2g}"


def fmt(v, spec: str) -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def ranking_rows(top: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    p_col = "p_adjusted" if "p_adjusted" in top.columns else "p_value"
    columns = ["#", "unit", "layer", "state", "r", "AUROC", "p (adjusted)" if p_col == "p_adjusted" else "p",
               "selectivity", "control max |r|", "flag"]
    rows = []
    for rank, (_, r) in enumerate(top.iterrows(), 1):
        get = lambda c: r[c] if c in r.index and r[c] is not None and not (isinstance(r[c], float) and math.isnan(r[c])) else None
        rows.append([str(rank), r["unit_id"], str(int(r["layer"])), str(r["state"]), fmt(get("r"), "+.3f"),
                     fmt(get("auroc"), ".3f"), fmt_p(get(p_col)), fmt(get("selectivity"), ".2f"),
                     fmt(get("control_max_abs_r"), ".3f"), str(get("flag") or "")])
    return columns, rows


def build_report(ckpt, span, result=None, features: dict[str, np.ndarray] | None = None,
                 units: list[str] | None = None, max_chars: int = 5000, n_units: int = N_UNITS,
                 progress: bool = False) -> Report:
    """Everything the report shows, as plain data, for the first max_chars characters of span.

    ckpt: a Checkpoint; span: a TextSpan (span.text, span.start, span.source); result: a
    ProbeResult (its ranking, top-k curve and top units) or None; features: {name: labels
    [len(span.text)]} (uint8 0/1 or int counts); units: unit ids to show ("l2.c.323"), by
    default each feature's top n_units of the ranking, or the most variable units without one.
    """
    if max_chars < 1:
        raise UserError(f"--max-chars must be >= 1, got {max_chars}")
    features = dict(features or {})
    for name, lab in features.items():
        if len(lab) != len(span.text):
            raise UserError(f"labels of feature {name!r} cover {len(lab)} characters, the text {len(span.text)}")
    model, vocab, cfg = ckpt.model, ckpt.vocab, ckpt.config
    text = span.text[:max_chars]
    n = len(text)
    if n < 2:
        raise UserError("the text to report on needs at least 2 characters")
    ids = vocab.encode(text)
    labels = {k: np.asarray(v)[:n] for k, v in features.items()}
    kinds = {k: feature_kind(np.asarray(v)) for k, v in features.items()}
    ranking = getattr(result, "ranking", None)
    ranked = list(dict.fromkeys(ranking["feature"])) if ranking is not None and len(ranking) else []
    panel_features = list(dict.fromkeys(ranked + list(labels))) or [None]

    # Which units each panel offers in its picker.
    chosen = [parse_unit(u, cfg) for u in units] if units else None
    fallback = None
    panels = []
    for i, f in enumerate(panel_features):
        if chosen:
            us, why = chosen, "the units asked for"
        elif f in ranked:
            us, why = [parse_unit(u, cfg) for u in result.top_units(f, n_units)], f"the top {n_units} units for {f} by |r|"
        else:
            fallback = fallback or most_variable_units(model, ids, n_units, progress=progress)
            us, why = fallback, f"the {n_units} most variable units on this excerpt (no ranking given)"
        panels.append({"id": f"p{i}", "feature": f, "kind": kinds.get(f), "units": us, "why": why})
    all_units = list(dict.fromkeys(u for p in panels for u in p["units"]))
    values, saturation = record_units(model, ids, all_units, progress=progress)
    pred = predict(model, ids)

    charts: dict[str, alt.TopLevelMixin] = {}
    sections = [model_section(ckpt, pred, n, charts), samples_section(ckpt)]
    sections.append(ranking_section(result, ranked, panels, charts, cfg.num_layers))
    sections.append(units_section(panels, values, ranked, result))
    sections.append(predictions_section(pred))
    sections.append(distribution_section(panels, labels, values, charts))
    sections.append(gates_section(cfg, saturation, n, charts))
    for i, s in enumerate(sections, 1):
        s["number"] = i

    unknown = vocab.count_unknown(text)
    subtitle = [f"{span.source}, characters {span.start:,} to {span.start + n:,}" + (f" ({span.split} split)" if span.split else "")]
    if len(span.text) > n:
        subtitle.append(f"Showing the first {n:,} of {len(span.text):,} characters (--max-chars)"
                        + ("; the ranking covers the probe's whole text." if result is not None else "."))
    if unknown:
        subtitle.append(f"{unknown} characters are not in the model's vocabulary and were read as "
                        f"{vocab.chars[vocab.fallback_id]!r}.")
    data = {
        "text": text, "start": int(span.start), "vocab": list(vocab.chars),
        "units": {u.id: {"values": compact(values[u.id], 4), "tanh": u.squash} for u in all_units},
        "labels": {k: v.astype(int).tolist() if v.dtype.kind in "biu" else compact(v, 4) for k, v in labels.items()},
        "panels": {p["id"]: {"feature": p["feature"]} for p in panels},
        "pred": {"k": int(pred["top_ids"].shape[1]), "page": PAGE,
                 "top": pred["top_ids"].reshape(-1).astype(int).tolist(),
                 "p": permille(pred["top_p"].reshape(-1)),
                 "actual": [-1] + permille(pred["p_actual"][1:])},
    }
    return Report(title=f"neuroscope report: {ckpt.name}", subtitle=subtitle, sections=sections,
                  data=data, charts=charts)


def compact(v: np.ndarray, digits: int) -> list[float]:
    """Floats rounded to `digits` significant digits: small JSON, hover values still exact enough."""
    return [float(f"{x:.{digits}g}") for x in np.asarray(v, dtype=np.float64)]


def permille(p: np.ndarray) -> list[int]:
    return np.rint(np.nan_to_num(np.asarray(p, dtype=np.float64)) * 1000).astype(int).tolist()


def model_section(ckpt, pred, n, charts) -> dict:
    cfg, tr = ckpt.config, ckpt.train
    card = [("checkpoint", ckpt.path or ckpt.name), ("corpus", tr.get("text") or "unknown"),
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
    chart = loss_chart(curve) if curve else None
    if chart is not None:
        charts["loss"] = chart
        s["chart"] = "loss"
    else:
        s["notes"].append("This checkpoint stores no loss curve.")
    return s


def samples_section(ckpt) -> dict:
    stored = ckpt.train.get("samples") or {}
    samples = [(f"step {int(k):,}", v) for k, v in sorted(stored.items(), key=lambda kv: int(kv[0]))]
    for key, label in (("final_sample_t1", "final model, temperature 1"), ("final_sample_t05", "final model, temperature 0.5")):
        if ckpt.train.get(key):
            samples.append((label, ckpt.train[key]))
    notes = [] if samples else ["This checkpoint stores no samples."]
    return {"id": "samples", "title": "Samples through training", "kind": "samples",
            "samples": samples, "notes": notes}


def ranking_section(result, ranked, panels, charts, num_layers: int) -> dict:
    s = {"id": "ranking", "title": "Neuron ranking", "kind": "ranking", "features": [], "notes": []}
    if not ranked:
        s["notes"].append("No probe result: pass --feature to rank the units by how well they track a feature.")
        return s
    panel_of = {p["feature"]: p["id"] for p in panels}
    meta = getattr(result, "meta", {}) or {}
    if meta.get("chars"):
        s["notes"].append(f"Ranked over {int(meta['chars']):,} characters; r is Pearson's correlation of each "
                          "unit's recorded value (h, or c itself) with the labels. Click a row to colour the "
                          "text by that unit.")
    s["notes"] += [f"Probe note: {n}" for n in meta.get("notes", [])]
    topk = getattr(result, "topk", None)
    for i, f in enumerate(ranked):
        top = result.ranking[result.ranking["feature"] == f].head(N_ROWS)
        columns, rows = ranking_rows(top)
        cid = f"rank{i}"
        charts[cid] = ranking_chart(top, num_layers)
        tk = topk_chart(topk[topk["feature"] == f]) if topk is not None and len(topk) else None
        if tk is not None:
            charts[f"topk{i}"] = tk
        if tk is None:
            s["notes"].append(f"No top-k probe curve for {f}: the probe result holds no finite top-k scores for it.")
        s["features"].append({"name": f, "description": feature_description(f), "columns": columns, "rows": rows,
                              "panel": panel_of.get(f, ""), "chart": cid, "topk_chart": f"topk{i}" if tk is not None else None})
    return s


def units_section(panels, values, ranked, result) -> dict:
    out = []
    for p in panels:
        r_of = {}
        if result is not None and p["feature"] in ranked:
            rk = result.ranking[result.ranking["feature"] == p["feature"]].set_index("unit_id")["r"]
            r_of = {u: float(v) for u, v in rk.items()}
        options = [{"id": u.id, "label": u.id + (f"   r = {r_of[u.id]:+.3f}" if u.id in r_of else "")} for u in p["units"]]
        title = f"Units for {p['feature']}" if p["feature"] is not None else "Selected units"
        out.append({"id": p["id"], "title": title, "feature": p["feature"], "kind": p["kind"], "options": options})
    notes = ["Each character is coloured by the unit's value after reading it: tanh(c) for cell states, h as is. "
             "Hover for the value." + (" Picker: " + panels[0]["why"] + "." if panels else "")]
    return {"id": "units", "title": "Text coloured by unit", "kind": "units", "panels": out, "notes": notes}


def predictions_section(pred) -> dict:
    return {"id": "predictions", "title": "Predictions", "kind": "predictions", "k": int(pred["top_ids"].shape[1]),
            "notes": ["Top: each character coloured by the probability the model gave it before reading it. "
                      "Below: under each character, the model's most likely next characters, shaded by probability."]}


def distribution_section(panels, labels, values, charts) -> dict:
    s = {"id": "distribution", "title": "Activation against feature", "kind": "charts", "charts": [], "notes": []}
    for i, p in enumerate(panels):
        f = p["feature"]
        if f is None or f not in labels:
            continue
        chart = distribution_chart(f, p["kind"], labels[f], values, p["units"])
        if chart is None:
            continue
        charts[f"dist{i}"] = chart
        what = "inside vs outside" if p["kind"] == "binary" else "median and quartiles against"
        s["charts"].append((f"dist{i}", f"Shown value (tanh c, h) {what} {f}, on the shown excerpt"))
    if not s["charts"]:
        s["notes"].append("No feature labels given: pass --feature to compare activations with a feature.")
    return s


def gates_section(cfg, saturation, n, charts) -> dict:
    s = {"id": "gates", "title": "Gate saturation", "kind": "charts", "charts": [], "notes": []}
    chart = saturation_chart(saturation, cfg.num_layers)
    if chart is None:
        s["notes"].append(f"A plain {cfg.cell.upper()} has no gates.")
        return s
    charts["gates"] = chart
    s["charts"].append(("gates", f"Per unit: the fraction of the {n:,} shown characters where the gate is below "
                                 f"{SATURATED[0]} or above {SATURATED[1]} (one point per unit, coloured by layer)"))
    return s
