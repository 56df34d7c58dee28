"""build_report: a report's content as plain data (sections, page data, charts), and the Report that renders it."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

import altair as alt
import numpy as np

from .. import files
from ..errors import UserError
from ..features import kind_of
from ..names import Unit, parse_unit
from ..record import most_variable_units
from ._excerpt import predict, record_units
from ._live import LIVE_JS, check_live, live_payload, live_section
from ._page import iframe, render_page
from ._sections import (distribution_section, explain_section, gates_section, match_section, model_section,
                        predictions_section, ranking_section, samples_section, subtitle, units_section)

N_UNITS = 5        # units per feature in the unit picker
PAGE = 400         # characters per page of the guesses grid


@dataclass
class Report:
    """A report as plain data (sections, script data, altair charts); `html` renders it.

    sections: dicts that neuroscope.page renders by their "kind" (see neuroscope.sections);
    data: what the page's script reads (the excerpt, unit values, labels, predictions);
    charts: chart id -> altair chart, for the sections that name them;
    scripts: more inline scripts the page runs after its own (the live section's, see neuroscope.live).
    """

    title: str
    subtitle: list[str]
    sections: list[dict]
    data: dict
    charts: dict[str, alt.TopLevelMixin] = field(default_factory=dict)
    scripts: list[str] = field(default_factory=list)

    def view(self, *section_ids: str) -> "Report":
        """The same report with only some sections, e.g. report.view("units"), for Jupyter."""
        unknown = set(section_ids) - {s["id"] for s in self.sections}
        if unknown:
            raise UserError(f"no section {sorted(unknown)[0]!r}; sections: "
                            f"{', '.join(s['id'] for s in self.sections)}", param="section_ids")
        keep = [s for s in self.sections if s["id"] in section_ids]
        used = {c for s in keep for c in _chart_ids(s)}
        live = "live" in section_ids
        return replace(self, sections=keep, charts={k: v for k, v in self.charts.items() if k in used},
                       data={k: v for k, v in self.data.items() if live or k != "live"},
                       scripts=self.scripts if live else [])

    @property
    def html(self) -> str:
        data = dict(self.data, charts={k: c.to_dict() for k, c in self.charts.items()})
        return render_page(self.title, self.subtitle, self.sections, data, self.scripts)

    def save(self, path: str | os.PathLike, force: bool = False, inputs=()) -> str:
        """Write the page atomically; an existing page is replaced only with force, never an input
        or a file that is not an HTML page (neuroscope.files). Returns the path."""
        files.write_text(path, self.html, "html", force, inputs)
        return os.fspath(path)

    def _repr_html_(self) -> str:
        return iframe(self.html)


def _chart_ids(section: dict) -> list[str]:
    ids = [section.get("chart")] + [c for c, _ in section.get("charts", [])]
    for f in section.get("features", []):
        ids += [f.get("chart"), f.get("topk_chart")]
    return [c for c in ids if c]


def _check(span, features: dict, max_chars: int) -> None:
    if max_chars < 1:
        raise UserError(f"max_chars must be >= 1, got {max_chars}", param="max_chars")
    for name, lab in features.items():
        if len(lab) != len(span.text):
            raise UserError(f"labels of feature {name!r} cover {len(lab)} characters, the text {len(span.text)}",
                            param="features")
    if min(len(span.text), max_chars) < 2:
        raise UserError("the text to report on needs at least 2 characters", param="span")


def _panels(model, ids, result, ranked: list[str], features: list[str], kinds: dict, units: list[Unit] | None,
            n_units: int, progress: bool) -> list[dict]:
    """One unit picker per feature (ranked ones first), or one without a feature: its units and why."""
    fallback = None
    panels = []
    for i, f in enumerate(list(dict.fromkeys(ranked + features)) or [None]):
        if units:
            us, why = units, "the units asked for"
        elif f in ranked:
            us = [parse_unit(u, model.config) for u in result.top_units(f, n_units)]
            why = f"the top {n_units} units for {f} by |r|"
        else:
            fallback = fallback or most_variable_units(model, ids, n_units, progress=progress)
            us, why = fallback, f"the {n_units} most variable units on this excerpt (no ranking given)"
        panels.append({"id": f"p{i}", "feature": f, "kind": kinds.get(f), "units": us, "why": why})
    return panels


def _compact(v: np.ndarray, digits: int) -> list[float]:
    """Floats rounded to `digits` significant digits: small JSON, hover values still exact enough."""
    return [float(f"{x:.{digits}g}") for x in np.asarray(v, dtype=np.float64)]


def _permille(p: np.ndarray) -> list[int]:
    return np.rint(np.nan_to_num(np.asarray(p, dtype=np.float64)) * 1000).astype(int).tolist()


def _page_data(text: str, start: int, vocab, units: list[Unit], values: dict, labels: dict,
               panels: list[dict], pred: dict) -> dict:
    """What the page's script reads: the excerpt, unit values, labels, panels and predictions."""
    return {
        "text": text, "start": int(start), "vocab": list(vocab.chars),
        "units": {u.id: {"values": _compact(values[u.id], 4), "tanh": u.squash} for u in units},
        "labels": {k: v.astype(int).tolist() if v.dtype.kind in "biu" else _compact(v, 4) for k, v in labels.items()},
        "panels": {p["id"]: {"feature": p["feature"]} for p in panels},
        "pred": {"k": int(pred["top_ids"].shape[1]), "page": PAGE,
                 "top": pred["top_ids"].reshape(-1).astype(int).tolist(),
                 "p": _permille(pred["top_p"].reshape(-1)),
                 "actual": [-1] + _permille(pred["p_actual"][1:])},
    }


def build_report(ckpt, span, result=None, features: dict[str, np.ndarray] | None = None,
                 units: list[str] | None = None, max_chars: int = 5000, n_units: int = N_UNITS,
                 progress: bool = False, live: bool = False, live_force: bool = False, match=None) -> Report:
    """Everything the report shows, as plain data, for the first max_chars characters of span.

    ckpt: a Checkpoint; span: a TextSpan (span.text, span.start, span.source); result: a
    ProbeResult (its ranking, top-k curve and top units) or None; features: {name: labels
    [len(span.text)]} (uint8 0/1 or int counts); units: unit ids to show ("l2.c.323"), by
    default each feature's top n_units of the ranking, or the most variable units without one.
    live: carry the model's weights and run it in the page (neuroscope.live; UserError for a model
    the page cannot run, or a bigger one than neuroscope.live.MAX_LIVE_WEIGHTS without live_force).
    match: a neuroscope.match result to show as a section (its hits marked in their context), or None.
    """
    features = dict(features or {})
    _check(span, features, max_chars)
    model, vocab, cfg = ckpt.model, ckpt.vocab, ckpt.config
    if live:
        check_live(model, live_force)                    # before the slow part
    text = span.text[:max_chars]
    n = len(text)
    ids = vocab.encode(text)
    labels = {k: np.asarray(v)[:n] for k, v in features.items()}
    kinds = {k: kind_of(v) for k, v in features.items()}
    ranking = getattr(result, "ranking", None)
    ranked = list(dict.fromkeys(ranking["feature"])) if ranking is not None and len(ranking) else []
    chosen = [parse_unit(u, cfg) for u in units] if units else None
    panels = _panels(model, ids, result, ranked, list(labels), kinds, chosen, n_units, progress)
    all_units = list(dict.fromkeys(u for p in panels for u in p["units"]))
    values, saturation = record_units(model, ids, all_units, progress=progress)
    pred = predict(model, ids)

    payload = live_payload(ckpt, live_force) if live else None
    sections, charts = [], {}
    for section, its_charts in (model_section(ckpt, pred, n), samples_section(ckpt),
                                ranking_section(result, ranked, panels, cfg.num_layers),
                                units_section(panels, result, ranked), explain_section(all_units, values, text),
                                predictions_section(pred),
                                live_section(payload, panels, text) if live else (None, {}),
                                distribution_section(panels, labels, values), gates_section(cfg, saturation, n),
                                match_section(match) if match is not None else (None, {})):
        if section is None:
            continue
        section["number"] = len(sections) + 1
        sections.append(section)
        charts.update(its_charts)
    data = _page_data(text, span.start, vocab, all_units, values, labels, panels, pred)
    if live:
        data["live"] = payload
    return Report(title=f"neuroscope report: {ckpt.name}", subtitle=subtitle(span, n, vocab, result is not None),
                  sections=sections, data=data, charts=charts, scripts=[LIVE_JS] if live else [])
