"""The probe pipeline: one function per stage (ranking, null, control, sparse probes, ablation), called in order."""
from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np

from ..checkpoint import model_and_vocab
from ..config import configured
from ..dictionary import as_dictionary
from ..errors import UserError
from ..features import baseline_names, kind_of, label
from ..record import stream_layout
from ..stats import SHOWN
from ._ablation import ablation
from ._config import MIN_CHARS, ProbeConfig
from ._null import check_null_length, null_pvalues
from ._ranking import (control_max_abs_r, new_sample, rank_table, sample_length, sample_ranks, stream_statistics,
                       unit_layout)
from ._result import ProbeResult
from ._sparse import sparse_probes


def probe(model, text: str, features: dict[str, np.ndarray], config: ProbeConfig | None = None, *, vocab=None,
          dictionary=None, **overrides) -> ProbeResult:
    """Rank every recorded unit by how well it tracks each feature, with honest statistics.

    model: a Checkpoint (model + vocab) or a CharRNN with `vocab` given.
    text: the characters to probe (str, N characters).
    features: {name: labels [N]}: binary or count labels as neuroscope.features.label makes them
        (features.kind_of tells which). Features constant on the text are skipped with a note (a
        UserError if all are).
    config: a ProbeConfig (default ProbeConfig()); overrides: any of its fields by name, e.g.
        probe(ckpt, text, features, null=False, streams=16). ProbeConfig documents each.
    dictionary: a neuroscope.dictionary.Dictionary (or its folder) trained on this model: rank its
        latents ("l1.c/d.123") instead of the units, with the same statistics (the control: the same
        encoder over the random-weights model's states); ablate takes the top latents' part of the
        reconstruction out inside the recurrence.
    Raises UserError for a text too short for the statistics asked for, labels of the wrong length,
    no features, or only constant features.
    """
    t_start = time.perf_counter()
    cfg = configured(ProbeConfig, config, overrides)
    net, vocab = model_and_vocab(model, vocab)
    N = len(text)
    if N < MIN_CHARS:
        raise UserError(f"the text has {N} characters; probing needs at least {MIN_CHARS}")
    feats, kinds, notes = _check_features(features, N)
    base = _baseline_labels(text, feats) if cfg.baselines else {}
    labels, kinds = {**feats, **base}, {**kinds, **dict.fromkeys(base, "binary")}
    _check_ablate(cfg, net.config.hidden_size)
    d = as_dictionary(dictionary, net)
    units = unit_layout(net.config, cfg, d)
    Ns = sample_length(N, units, cfg)
    check_null_length(Ns, cfg)
    sample = new_sample(Ns, units)
    ids = vocab.encode(text)

    streams, _, warmup = stream_layout(N, cfg.streams, cfg.warmup)

    seconds: dict[str, float] = {}
    with _timed(seconds, "ranking_pass"):
        stats = stream_statistics(net, ids, units, list(labels.values()), cfg, sample)
    with _timed(seconds, "sample_ranks"):
        ranks = sample_ranks(sample, labels, kinds, cfg.rank_chars, progress=cfg.progress)
    with _timed(seconds, "control", cfg.control):
        control_r, control_read = control_max_abs_r(net, ids, units, feats, cfg)
    with _timed(seconds, "null", cfg.null):
        pvalues, null_meta, null_notes = null_pvalues(stats.r, feats, sample, units.squash_mask, cfg)
    ranking, baselines = rank_table(units, labels, list(feats), kinds, stats, ranks, pvalues, control_r, cfg)
    with _timed(seconds, "sparse", cfg.sparse):
        topk, sparse, sparse_meta, sparse_notes = sparse_probes(sample, units.squash_mask, feats, kinds,
                                                                list(units.table["unit_id"]), cfg)
    with _timed(seconds, "ablation", cfg.ablate):
        abl, ablation_notes = ablation(net, ids, feats, ranking, cfg, d)
    seconds["total"] = time.perf_counter() - t_start

    value = SHOWN if cfg.squash_c else "h and c as they are"
    if d is not None:
        value = f"the activation of latents of {d.path or 'a dictionary'} over {d.quantity} ({SHOWN})"
    meta = {"chars": N, "units": len(units), "quantities": units.names, "states": list(units.states),
            "features": list(feats), "value": value, "kinds": {k: kinds[k] for k in feats}, "baselines": list(base),
            "streams": streams, "warmup": warmup, "recording": _recording(streams, warmup, cfg),
            "ranking": {"chars": N, "what": "Pearson r, mean_on/mean_off over every character (streamed)"},
            "sample": {"chars": Ns, "rank_step": ranks.step, "rank_chars": ranks.chars,
                       "what": f"p-values on the first {Ns:,} characters; auroc, spearman on "
                               + (f"every {ranks.step}th of them ({ranks.chars:,})" if ranks.step > 1 else "all of them")},
            "null": null_meta, "sparse": sparse_meta, "control": _control_meta(cfg, control_read, streams),
            "ablation": _ablation_meta(cfg, N), "alpha": cfg.alpha, "seconds": seconds,
            "notes": notes + null_notes + sparse_notes + ablation_notes}
    return ProbeResult(ranking=ranking, topk=topk, sparse=sparse, ablation=abl, baselines=baselines, meta=meta)


def _check_ablate(cfg: ProbeConfig, H: int) -> None:
    """Each random comparison set draws as many units as were zeroed from the same quantity's other
    units, so at most half of a quantity's units can be ablated."""
    if cfg.ablate < 0 or cfg.ablate > H // 2:
        raise UserError(f"ablate {cfg.ablate} is out of range: between 0 and {H // 2} (half of a layer's {H} "
                        "units, so that random sets of as many other units exist)", param="ablate")


@contextmanager
def _timed(seconds: dict[str, float], key: str, on: bool = True):
    """Record the wall time of the block in seconds[key], if `on` (a stage that was asked for)."""
    t0 = time.perf_counter()
    yield
    if on:
        seconds[key] = time.perf_counter() - t0


def _recording(streams: int, warmup: int, cfg: ProbeConfig) -> str:
    """How the text was read, in words (the CLI prints it)."""
    how = "one exact stream" if streams == 1 else (
        f"{streams} parallel streams, each after {warmup} warm-up characters (not exact near each piece's start)")
    return how + (" (streams auto)" if cfg.streams == "auto" else "")


def _control_meta(cfg: ProbeConfig, read: dict, streams: int) -> dict:
    if not cfg.control:
        return {"computed": False}
    return {"init": "PyTorch default (nn.Embedding N(0,1), nn.LSTM/GRU U(-1/sqrt(H), 1/sqrt(H)))",
            "seed": cfg.seed, "control_chars": cfg.control_chars, "streams": streams, **read}


def _ablation_meta(cfg: ProbeConfig, N: int) -> dict:
    if not cfg.ablate:
        return {"computed": False}
    return {"k": cfg.ablate, "chars": min(N, cfg.ablate_chars), "draws": cfg.ablate_draws, "seed": cfg.seed,
            "on": "the label of the character just read (the state that makes the prediction)"}


def _check_features(features: dict, n: int) -> tuple[dict, dict, list[str]]:
    """(labels, kinds, notes): the features as arrays [n], minus constant ones (named in a note)."""
    if not features:
        raise UserError("no feature given: name at least one in features (see neuroscope.features.FEATURES)",
                        param="features")
    feats, kinds, constant = {}, {}, []
    for name, lab in features.items():
        lab = np.asarray(lab)
        if lab.ndim != 1 or len(lab) != n:
            raise UserError(f"feature {name!r} has {lab.shape} labels for a text of {n:,} characters")
        if not (np.issubdtype(lab.dtype, np.number) or lab.dtype == bool):
            raise UserError(f"feature {name!r} labels must be numbers, got {lab.dtype}")
        if not np.isfinite(lab).all():
            raise UserError(f"feature {name!r} has NaN or infinite labels")
        lo, hi = lab.min(), lab.max()
        if lo == hi:
            constant.append(f"{name} (always {lo:g})")
            continue
        feats[name], kinds[name] = lab, kind_of(lab)
    if constant and not feats:
        raise UserError(f"feature {' and '.join(constant)} is constant on this text: nothing to rank")
    return feats, kinds, ["skipped, constant on this text: " + ", ".join(constant)] if constant else []


def _baseline_labels(text: str, feats: dict) -> dict:
    """The char-class baselines (neuroscope.features), minus the features probed and constant ones."""
    out = {}
    for name in baseline_names():
        if name in feats:
            continue
        lab = label(text, name)
        if lab.min() != lab.max():
            out[name] = lab
    return out
