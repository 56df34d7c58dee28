"""The report's altair charts, each built from a small tidy frame (data is binned here, so specs stay small).

    >>> ranking_chart(top_rows, num_layers=3)       # bar chart of r for a feature's top units
    >>> saturation_chart(saturation, num_layers=3)   # one scatter per gate, one point per unit

Every chart that shows units colours them by layer with the same scale, so layer 0 is always the
first colour. A dictionary's latents (names.Latent) are drawn on their own scale instead of the
shown value's [-1, 1] (latent_distribution_chart). Functions return None when there is nothing to draw.
"""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from ..names import Latent
from ..stats import shown
from ._excerpt import SATURATED

GATE_NAMES = {"f": "forget gate", "i": "input gate", "o": "output gate", "r": "reset gate", "z": "update gate"}
SHOWN_AXIS = "shown value"    # axis title of a unit's shown value (stats.SHOWN, spelled out in each chart's caption)
SHOWN_RANGE = (-1.0, 1.0)     # the scale of a shown value: the page's colours (blue to green) and these axes


def _layer_colour(num_layers: int) -> alt.Color:
    return alt.Color("layer:N", title="layer", scale=alt.Scale(domain=[str(i) for i in range(num_layers)]))


def clip_to_scale(v: np.ndarray) -> np.ndarray:
    """Shown values clipped to SHOWN_RANGE: one outside it (h of a ReLU RNN) counts as the scale's end."""
    return np.clip(v, *SHOWN_RANGE)


MAX_CURVE_POINTS = 1000      # a longer training curve is drawn from this many evenly spaced points


def thin_curve(curve: list[dict], max_points: int = MAX_CURVE_POINTS) -> list[dict]:
    """At most max_points points of a training curve, evenly spaced by position, the first and the last
    kept: a run evaluated every 10 steps for 200,000 steps stores 20,000, which would make the page
    heavy and slow to draw without showing more than a thousand can."""
    if len(curve) <= max_points:
        return list(curve)
    keep = np.unique(np.linspace(0, len(curve) - 1, max_points).round().astype(int))
    return [curve[i] for i in keep]


def loss_chart(curve: list[dict]) -> alt.Chart | None:
    """Every *loss column of a training curve (train, val) against the step."""
    df = pd.DataFrame(curve)
    losses = [c for c in df.columns if c.endswith("loss")]
    if "step" not in df.columns or not losses:
        return None
    long = df.melt(id_vars=["step"], value_vars=losses, var_name="curve", value_name="loss").dropna()
    long["curve"] = long["curve"].str.replace("_loss", "", regex=False)
    return alt.Chart(long).mark_line(point=True).encode(
        x=alt.X("step:Q", title="training step"),
        y=alt.Y("loss:Q", title="nats per char", scale=alt.Scale(zero=False)),
        color=alt.Color("curve:N", title=None), tooltip=["step", "curve", alt.Tooltip("loss:Q", format=".4f")],
    ).properties(width=520, height=240)


def ranking_chart(top: pd.DataFrame, num_layers: int) -> alt.Chart:
    """Pearson r of a feature's top rows of the ranking, in ranking order."""
    df = top[["unit_id", "layer", "state", "r"]].copy()
    df["layer"] = df["layer"].astype(str)
    return alt.Chart(df).mark_bar().encode(
        x=alt.X("r:Q", title="Pearson r", scale=alt.Scale(domain=[-1, 1])),
        y=alt.Y("unit_id:N", sort=list(df["unit_id"]), title=None),
        color=_layer_colour(num_layers),
        tooltip=["unit_id", "state", alt.Tooltip("r:Q", format="+.3f")],
    ).properties(width=320, height=max(80, 18 * len(df)))


def topk_chart(topk: pd.DataFrame | None) -> alt.Chart | None:
    """Probe score against the number of top units used; k doubles (1, 2, 4, ... then all), so log axis."""
    df = topk[["k", "score", "metric"]].dropna() if topk is not None else None
    if df is None or df.empty:
        return None
    return alt.Chart(df).mark_line(point=True).encode(
        x=alt.X("k:Q", title="units used (k, log scale)", scale=alt.Scale(type="log", base=2),
                axis=alt.Axis(format="d")),
        y=alt.Y("score:Q", title="score", scale=alt.Scale(zero=False)),
        color=alt.Color("metric:N", title=None), tooltip=["k", "metric", alt.Tooltip("score:Q", format=".3f")],
    ).properties(width=300, height=200)


def _binary_frame(feature: str, labels: np.ndarray, v: np.ndarray, unit_id: str,
                  edges: np.ndarray | None = None) -> list[pd.DataFrame]:
    """Histogram of v inside and outside a binary feature (edges: 40 bins over SHOWN_RANGE), as fractions
    of each group's characters (NaNs, a latent's off characters, fall in no bin)."""
    edges = np.linspace(*SHOWN_RANGE, 41) if edges is None else edges
    out = []
    for name, mask in ((f"inside {feature}", labels == 1), (f"outside {feature}", labels == 0)):
        if mask.sum() == 0:
            continue
        counts, _ = np.histogram(v[mask], bins=edges)
        out.append(pd.DataFrame({"unit": unit_id, "group": f"{name} (n={int(mask.sum())})",
                                 "value": (edges[:-1] + edges[1:]) / 2, "fraction": counts / mask.sum()}))
    return out


def _count_groups(labels: np.ndarray, v: np.ndarray):
    """v grouped by count value (counts binned into ~30 when there are many)."""
    lab = labels.astype(np.float64)
    if len(np.unique(lab)) > 40:      # many distinct counts (a line position up to 500): bin them
        width = np.ptp(lab) / 30
        lab = np.floor((lab - lab.min()) / (width + 1e-12)) * width + lab.min()
    return pd.DataFrame({"count": lab, "v": v}).groupby("count")["v"]


def _count_frame(labels: np.ndarray, v: np.ndarray, unit_id: str) -> pd.DataFrame:
    """Quartiles of v per count value."""
    groups = _count_groups(labels, v)
    stats = groups.quantile([0.25, 0.5, 0.75]).unstack()
    stats.columns = ["q25", "median", "q75"]
    stats["n"] = groups.size()
    return stats.reset_index().assign(unit=unit_id)


def distribution_chart(feature: str, kind: str, labels: np.ndarray, values: dict[str, np.ndarray],
                       units: list) -> alt.Chart | None:
    """One row per unit. Binary: histogram of the shown value inside vs outside the feature;
    count: median and quartiles of the shown value against the count. Latents: latent_distribution_chart."""
    if any(isinstance(u, Latent) for u in units):
        return latent_distribution_chart(feature, kind, labels, values, units)
    frames = []
    for u in units:
        v = clip_to_scale(shown(np.asarray(values[u.id], dtype=np.float32), u.squash))
        frames += _binary_frame(feature, labels, v, u.id) if kind == "binary" else [_count_frame(labels, v, u.id)]
    if not frames:
        return None
    data = pd.concat(frames, ignore_index=True)
    if kind == "binary":
        base = alt.Chart(data).mark_area(interpolate="step-after", opacity=0.55).encode(
            x=alt.X("value:Q", title=SHOWN_AXIS, scale=alt.Scale(domain=list(SHOWN_RANGE))),
            y=alt.Y("fraction:Q", title="fraction", stack=None),
            color=alt.Color("group:N", title=None, scale=alt.Scale(range=["#e6550d", "#6b7a8f"])),
            tooltip=["group", alt.Tooltip("value:Q", format=".2f"), alt.Tooltip("fraction:Q", format=".3f")])
    else:
        band = alt.Chart().mark_area(opacity=0.3, color="#1a9850").encode(
            x=alt.X("count:Q", title=feature),
            y=alt.Y("q25:Q", title=SHOWN_AXIS, scale=alt.Scale(domain=list(SHOWN_RANGE))),
            y2="q75:Q")
        line = alt.Chart().mark_line(point=True, color="#1a9850").encode(
            x="count:Q", y="median:Q", tooltip=["count", "n", alt.Tooltip("median:Q", format=".3f")])
        base = alt.layer(band, line, data=data)
    return base.properties(width=460, height=90).facet(row=alt.Row("unit:N", title=None, sort=[u.id for u in units]))


def _on_share(on: np.ndarray, mask: np.ndarray) -> str:
    return f"{on[mask].mean():.0%}" if mask.any() else "–"


def latent_distribution_chart(feature: str, kind: str, labels: np.ndarray, values: dict[str, np.ndarray],
                              units: list[Latent]) -> alt.Chart | None:
    """One row per latent. A latent is 0 wherever it is off, which would flatten any histogram into its
    first bin, so: binary: where it is on, the histogram of its activation (40 bins from 0 to its largest
    on the excerpt, each row on its own axes) inside vs outside the feature, as fractions of each group's
    characters, the row named with its on-share in each; count: the share of characters where it is on
    against the count."""
    frames, names = [], []
    for u in units:
        v = np.asarray(values[u.id], dtype=np.float32)
        on = v > 0
        if kind == "binary":
            names.append(f"{u.id}: on {_on_share(on, labels == 1)} inside, {_on_share(on, labels == 0)} outside")
            edges = np.linspace(0.0, max(float(v.max(initial=0.0)), 1e-6), 41)
            frames += _binary_frame(feature, labels, np.where(on, v, np.nan), names[-1], edges)
        else:
            names.append(u.id)
            groups = _count_groups(labels, on.astype(np.float64))
            frames.append(pd.DataFrame({"share": groups.mean(), "n": groups.size()}).reset_index().assign(unit=u.id))
    if not frames:
        return None
    data = pd.concat(frames, ignore_index=True)
    if kind == "binary":
        base = alt.Chart(data).mark_area(interpolate="step-after", opacity=0.55).encode(
            x=alt.X("value:Q", title="activation where on"),
            y=alt.Y("fraction:Q", title="fraction", stack=None),
            color=alt.Color("group:N", title=None, scale=alt.Scale(range=["#e6550d", "#6b7a8f"])),
            tooltip=["group", alt.Tooltip("value:Q", format=".3f"), alt.Tooltip("fraction:Q", format=".3f")])
    else:
        base = alt.Chart(data).mark_line(point=True, color="#1a9850").encode(
            x=alt.X("count:Q", title=feature), y=alt.Y("share:Q", title="share on", scale=alt.Scale(domain=[0, 1])),
            tooltip=["count", "n", alt.Tooltip("share:Q", format=".3f")])
    chart = base.properties(width=460, height=90).facet(
        row=alt.Row("unit:N", title=None, sort=names, header=alt.Header(labelAngle=0, labelAlign="left")))
    return chart.resolve_scale(x="independent", y="independent") if kind == "binary" else chart


def saturation_chart(sat: pd.DataFrame, num_layers: int) -> alt.Chart | None:
    """Per gate: each unit's left- against right-saturated fraction (a frame from record_units)."""
    if sat.empty:
        return None
    df = sat.assign(layer=sat["layer"].astype(str), left=sat["left"].round(4), right=sat["right"].round(4))
    order = [GATE_NAMES[g] for g in GATE_NAMES if g in set(df["gate"])]
    df["gate"] = df["gate"].map(GATE_NAMES)
    lo, hi = SATURATED
    return alt.Chart(df).mark_circle(size=14, opacity=0.6).encode(
        x=alt.X("left:Q", title=f"fraction < {lo} (left-saturated)", scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("right:Q", title=f"fraction > {hi} (right-saturated)", scale=alt.Scale(domain=[0, 1])),
        color=_layer_colour(num_layers),
        tooltip=["layer", "unit", alt.Tooltip("left:Q", format=".3f"), alt.Tooltip("right:Q", format=".3f")],
    ).properties(width=230, height=230).facet(column=alt.Column("gate:N", title=None, sort=order))
