"""build_report: a report's content as plain data (sections, page data, charts), and the Report that renders it."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

import altair as alt
import numpy as np

from .. import files
from ..checkpoint import TextSpan
from ..config import configured
from ..dictionary import as_dictionary, latents_of
from ..errors import UserError
from ..features import kind_of
from ..names import DICTIONARY_MARK, Latent, Unit, parse_unit
from ..stats import shown
from ._config import ReportConfig
from ._excerpt import Excerpt, read_excerpt
from ._live import LIVE_JS, check_live, live_payload, live_section
from ._page import iframe, render_page
from ._sections import (attribution_section, distribution_section, explain_section, gates_section, match_section, model_section,
                        predictions_section, ranking_section, samples_section, subtitle, units_section)

ATTRIBUTION_WINDOW = 100   # characters before the attributed one
PAGE = 400         # characters per page of the guesses grid


@dataclass
class Report:
    """A report as plain data (sections, script data, altair charts); `html` renders it.

    sections: dicts that _page renders by their "kind" (see _sections): plain data, except kind "html",
        whose fragment its section function wrote (explanations, match);
    data: what the page's script reads (the excerpt, unit values, labels, predictions);
    charts: chart id -> altair chart, for the sections that name them;
    scripts: more inline scripts the page runs after its own (the live section's, see _live).
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
        # altair refuses a chart of over 5,000 rows, a guard against passing raw data by mistake. The
        # report's charts are binned frames whose rows grow with the units shown (a distribution chart of
        # --top 100 units holds 8,000; the gate chart of a 4 x 512 LSTM 6,144), and the loss curve is
        # thinned (_charts.thin_curve): so the guard is lifted here, for the report's own data only.
        with alt.data_transformers.disable_max_rows():
            charts = {k: c.to_dict() for k, c in self.charts.items()}
        return render_page(self.title, self.subtitle, self.sections, dict(self.data, charts=charts), self.scripts)

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


def check_inputs(span, features: dict, max_chars: int) -> None:
    """Labels of the text's length, and at least 2 characters to show: write_report checks this before
    its slow stages (match, probe), build_report again for a caller who comes straight to it."""
    for name, lab in features.items():
        if len(lab) != len(span.text):
            raise UserError(f"labels of feature {name!r} cover {len(lab)} characters, the text {len(span.text)}",
                            param="features")
    if min(len(span.text), max_chars) < 2:
        raise UserError("the text to report on needs at least 2 characters")


def _panels(parse, result, ranked: list[str], features: list[str], kinds: dict, cfg: ReportConfig,
            what: str = "units") -> list[dict]:
    """One picker per feature (ranked ones first), or one without a feature: its units and why; parse
    turns an id into a Unit (or a Latent: what = "latents"). A panel with neither units asked for nor a
    ranking gets units None, for the excerpt's most variable ones: read_excerpt finds them, and
    build_report puts them in."""
    n = cfg.n_units
    panels = []
    for i, f in enumerate(list(dict.fromkeys(ranked + features)) or [None]):
        if cfg.units:
            us, why = [parse(u) for u in cfg.units], f"the {what} asked for"
        elif f in ranked:
            us = [parse(u) for u in result.top_units(f, n)]
            why = f"the top {n} {what} for {f} by |r|"
        else:
            us, why = None, f"the {n} most variable {what} on this excerpt (no ranking given)"
        panels.append({"id": f"p{i}", "feature": f, "kind": kinds.get(f), "units": us, "why": why})
    return panels


def _parser(model_config, d):
    """id -> Unit checked against the model, or (with a dictionary d) -> Latent checked against d."""
    if d is None:
        return lambda u: parse_unit(u, model_config)
    return lambda u: latents_of(d, [u])[0]


def check_ranked(result, d) -> None:
    """Refuse a probe result that ranks other things than the report colours by: units without a
    dictionary, the dictionary's own latents with one."""
    ranking = getattr(result, "ranking", None)
    if ranking is None or not len(ranking):
        return
    first = str(ranking["unit_id"].iloc[0])
    if d is None and DICTIONARY_MARK in first:
        raise UserError(f"the probe result ranks latents ({first}); give its dictionary too", param="dictionary")
    if d is not None and not first.startswith(d.prefix + "."):
        raise UserError(f"the probe result ranks {first}, not latents of the dictionary given ({d.prefix}.N): "
                        "probe with that dictionary", param="dictionary")


def _shown_units(panels: list[dict]) -> list:
    """Every unit (or latent) some panel shows, once, in panel order."""
    return list(dict.fromkeys(u for p in panels for u in p["units"] or ()))


def _compact(v: np.ndarray, digits: int) -> list[float]:
    """Floats rounded to `digits` significant digits: small JSON, hover values still exact enough."""
    return [float(f"{x:.{digits}g}") for x in np.asarray(v, dtype=np.float64)]


def _permille(p: np.ndarray) -> list[int]:
    return np.rint(np.nan_to_num(np.asarray(p, dtype=np.float64)) * 1000).astype(int).tolist()


def _unit_data(u: Unit | Latent, v: np.ndarray) -> dict:
    """A unit's values for the page, and how it colours them: tanh first (a cell state) or not; a latent's
    activation from 0 to `max`, its largest on the excerpt (0 where it is never on)."""
    if isinstance(u, Latent):
        return {"values": _compact(v, 4), "max": _compact([v.max(initial=0.0)], 4)[0]}
    return {"values": _compact(v, 4), "tanh": u.squash}


def _page_data(text: str, start: int, vocab, units: list, values: dict, labels: dict,
               panels: list[dict], pred: dict) -> dict:
    """What the page's script reads: the excerpt, unit (or latent) values, labels, panels and predictions."""
    return {
        "text": text, "start": int(start), "vocab": list(vocab.chars),
        "units": {u.id: _unit_data(u, values[u.id]) for u in units},
        "labels": {k: v.astype(int).tolist() if v.dtype.kind in "biu" else _compact(v, 4) for k, v in labels.items()},
        "panels": {p["id"]: {"feature": p["feature"]} for p in panels},
        "pred": {"k": int(pred["top_ids"].shape[1]), "page": PAGE,
                 "top": pred["top_ids"].reshape(-1).astype(int).tolist(),
                 "p": _permille(pred["top_p"].reshape(-1)),
                 "actual": [-1] + _permille(pred["p_actual"][1:])},
    }


def _sections(ckpt, text: str, result, ranked: list[str], panels: list[dict], labels: dict, excerpt: Excerpt,
              payload: dict | None, extras: list, latents: bool) -> tuple[list[dict], dict]:
    """Every section in page order, numbered, and the charts they name (payload: the live page's, or None;
    extras: (section, charts) pairs put last, or (None, {}); latents: the panels show a dictionary's latents)."""
    cfg, n, units = ckpt.config, len(text), _shown_units(panels)
    sections, charts = [], {}
    for section, its_charts in (model_section(ckpt, excerpt.pred, n), samples_section(ckpt),
                                ranking_section(result, ranked, panels, cfg.num_layers),
                                units_section(panels, result, ranked), explain_section(units, excerpt.values, text),
                                predictions_section(excerpt.pred),
                                live_section(payload, panels, text) if payload is not None else (None, {}),
                                distribution_section(panels, labels, excerpt.values),
                                gates_section(cfg, excerpt.saturation, n, latents), *extras):
        if section is None:
            continue
        section["number"] = len(sections) + 1
        sections.append(section)
        charts.update(its_charts)
    return sections, charts


def _attributions(ckpt, text: str, panels: list[dict], excerpt: Excerpt, cfg: ReportConfig, d) -> list:
    """causes.attribute for the first cfg.attribute units of the first panel, each at the character where
    its shown value (a latent's activation) is largest, over the ATTRIBUTION_WINDOW characters before it."""
    from ..causes import attribute
    units = (panels[0]["units"] or [])[:cfg.attribute] if panels else []
    text = ckpt.vocab.decode(ckpt.vocab.encode(text))      # unknown characters as the excerpt read them
    out = []
    for u in units:
        v = shown(np.asarray(excerpt.values[u.id], dtype=np.float32), getattr(u, "squash", False))
        if len(v) < 2 or not np.ptp(v[1:]) > 0:
            continue
        at = 1 + int(np.argmax(v[1:]))
        out.append(attribute(ckpt, text[:at + 1], u.id, at, window=min(ATTRIBUTION_WINDOW, at), dictionary=d))
    return out


def _read(model, ids: np.ndarray, panels: list[dict], cfg: ReportConfig, d) -> Excerpt:
    """The excerpt's one pass (read_excerpt) for the panels' units, the most variable put in where a
    panel has none."""
    n_variable = cfg.n_units if any(p["units"] is None for p in panels) else 0
    excerpt = read_excerpt(model, ids, _shown_units(panels), n_variable, progress=cfg.progress, dictionary=d)
    if n_variable and not excerpt.variable:           # a variance pass keeps only latents that are ever on
        raise UserError("no latent of the dictionary is on anywhere in the shown excerpt: nothing to colour the "
                        "text by", param="dictionary")
    for p in panels:
        p["units"] = excerpt.variable if p["units"] is None else p["units"]
    return excerpt


def build_report(ckpt, text, result=None, features: dict[str, np.ndarray] | None = None,
                 config: ReportConfig | None = None, *, dictionary=None, **overrides) -> Report:
    """Everything the report shows, as plain data, for the first config.max_chars characters of text.

    ckpt: a Checkpoint; text: a TextSpan (text, start, source) or a str (start 0, source "<text>");
    result: a ProbeResult (its ranking, top-k curve and top units) or None; features: {name: labels
    [len(text)]} (uint8 0/1 or int counts); config: a ReportConfig, overrides: any of its fields by
    name, e.g. build_report(ckpt, span, result, features, max_chars=2000, live=True); ReportConfig
    documents each. dictionary: a neuroscope.dictionary.Dictionary (or its folder) of this model: its
    latents ("l1.c/d.12") take the units' place (config.units names latents, result ranks them: probe
    with the same dictionary) and colour the text by their activation, 0 to each one's largest on the
    excerpt. The shown characters are read by the model once (read_excerpt). Raises UserError, before
    that pass, for an unknown setting, labels of the wrong length, a unit (latent) that does not exist,
    a text under 2 characters, (with live) a model the page cannot run, a dictionary of another model
    and a result that ranks units with a dictionary or latents without it.
    """
    cfg = configured(ReportConfig, config, overrides)
    span = text if isinstance(text, TextSpan) else TextSpan(text, 0, "<text>")
    features = dict(features or {})
    check_inputs(span, features, cfg.max_chars)
    model, vocab = ckpt.model, ckpt.vocab
    if cfg.live:
        check_live(model, cfg.live_force)
    d = as_dictionary(dictionary, model)
    check_ranked(result, d)
    shown_text = span.text[:cfg.max_chars]
    labels = {k: np.asarray(v)[:len(shown_text)] for k, v in features.items()}
    ranking = getattr(result, "ranking", None)
    ranked = list(dict.fromkeys(ranking["feature"])) if ranking is not None and len(ranking) else []
    panels = _panels(_parser(ckpt.config, d), result, ranked, list(labels), {k: kind_of(v) for k, v in labels.items()},
                     cfg, "units" if d is None else "latents")
    excerpt = _read(model, vocab.encode(shown_text), panels, cfg, d)
    payload = live_payload(ckpt, cfg.live_force) if cfg.live else None
    extras = [attribution_section(_attributions(ckpt, shown_text, panels, excerpt, cfg, d), span.start),
              match_section(cfg.match) if cfg.match is not None else (None, {})]
    sections, charts = _sections(ckpt, shown_text, result, ranked, panels, labels, excerpt, payload, extras,
                                 d is not None)
    data = _page_data(shown_text, span.start, vocab, _shown_units(panels), excerpt.values, labels, panels,
                      excerpt.pred)
    runs = payload is not None and "cannot_run" not in payload
    if runs:
        data["live"] = payload
    return Report(title=f"neuroscope report: {ckpt.name}",
                  subtitle=subtitle(span, len(shown_text), vocab, result is not None, d),
                  sections=sections, data=data, charts=charts, scripts=[LIVE_JS] if runs else [])
