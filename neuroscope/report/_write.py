"""write_report: the `neuroscope report` command as one Python call, from a checkpoint file to a page on disk.

    >>> write_report("wp.pt", "report.html", {"text_path": "warpeace.txt", "split": "test", "chars": 5000},
    ...              {"names": ["in_quote"]}, max_chars=2000, progress=True)

Stages: check what can be checked before any work (the settings, the output, the units, a live
page's model, a dictionary's fit), then choose the text, label it, optionally match a span and rank
the units (neuroscope.probe), build the report (build_report) and save it. With a dictionary its
latents take the units' place in every stage: match, probe and the page.
"""
from __future__ import annotations

import os
from dataclasses import replace

from ..checkpoint import choose_text, load_checkpoint
from ..config import configured
from ..dictionary import as_dictionary, latents_of
from ..errors import UserError
from ..features import resolve
from ..files import check_output
from ..match import match
from ..names import parse_unit
from ..probe import probe
from ._build import Report, build_report, check_inputs
from ._config import ReportConfig
from ._live import check_live


def _check_first(ckpt, out, inputs: list, cfg: ReportConfig, force: bool, d=None) -> None:
    """Everything that can fail before the slow part: units (latents of d), a live page's model, the output."""
    if d is None:
        for u in cfg.units or ():
            parse_unit(u, ckpt.config)
    else:
        latents_of(d, cfg.units or ())
    if cfg.live:
        check_live(ckpt.model, cfg.live_force)
    check_output(out, "html", force, inputs=inputs)


def write_report(ckpt: str | os.PathLike, out: str | os.PathLike, span: dict | None = None,
                 features: dict | None = None, null: bool = True, match_span: str | None = None,
                 force: bool = False, config: ReportConfig | None = None, dictionary=None, **overrides) -> Report:
    """Load a checkpoint, choose its text, label it, rank the units, build the report and save it to out.

    ckpt: path of a checkpoint; out: the HTML file to write (an existing one is replaced only with
    force, never an input); span: neuroscope.checkpoint.choose_text's keywords (text_path, split,
    start, chars; None: the checkpoint's stored excerpt); features: neuroscope.features.resolve's
    keywords (names, regexes, files, spans, all_features, lang); with any labels, every unit is
    ranked over the whole span first (neuroscope.probe, with its circular-shift null unless null is
    False); match_span: "A:B" adds a match section (neuroscope.match over the span); dictionary: a
    dictionary folder (or Dictionary) of this checkpoint's model, whose latents the match, the ranking
    and the page take in place of units (refused in one line, before any work, when it does not fit);
    config / overrides: ReportConfig fields, as build_report. Returns the Report written.
    """
    cfg = configured(ReportConfig, config, overrides)
    if os.path.isdir(out):
        raise UserError(f"{out} is a directory; give a file name such as report.html")
    c = load_checkpoint(ckpt)
    span = dict(span or {})
    inputs = [ckpt, span.get("text_path"), dictionary if isinstance(dictionary, (str, os.PathLike)) else None]
    d = as_dictionary(dictionary, c.model)
    _check_first(c, out, inputs, cfg, force, d)
    chosen = choose_text(c, **span)
    labels = resolve(chosen.text, offset=chosen.start, **(features or {}))
    check_inputs(chosen, labels, cfg.max_chars)                  # before the match and the probe, not after
    if match_span:
        cfg = replace(cfg, match=match(c, chosen.text, match_span, progress=cfg.progress, dictionary=d))
    result = probe(c, chosen.text, labels, null=null, progress=cfg.progress, dictionary=d) if labels else None
    report = build_report(c, chosen, result, labels, cfg, dictionary=d)
    report.save(out, force=force, inputs=inputs)
    return report
