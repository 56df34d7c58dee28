"""Probe a CharRNN: which units track a feature, how strongly, is it real, does the model use it?

    >>> from neuroscope.features import label
    >>> result = probe(ckpt, text, {"in_quote": label(text, "in_quote")}, ablate=4)
    >>> result.ranking.head()               # one row per (feature, layer, state, unit), by |r|
    >>> result.top_units("in_quote", 3)     # ["l2.c.323", ...]
    >>> result.topk, result.sparse, result.ablation, result.baselines, result.meta

A unit's value is h, or tanh(c) for a cell state (what the cell passes on, h = o * tanh(c); some
cells integrate c into the thousands). What is computed on which characters of `text` (N characters,
row k = state after reading text[k], label k = the feature after reading text[k]):

| what | characters |
| --- | --- |
| r, mean_on, mean_off, baseline_max_abs_r | all N, one streaming pass (float64 sufficient statistics) |
| control_max_abs_r, selectivity | all N, one streaming pass of the control model |
| auroc, spearman, p_value, p_adjusted | the sample: the first min(N, sample_chars, sample_mb cap) |
| sparse probes, top-k curve | the first sparse_chars of the sample: fit on its first 2/3, scored on the rest |
| ablation | the first ablate_chars |

The sample is the text's first characters, kept contiguous so that the null keeps the
autocorrelation; only it (float32, all recorded units, at most sample_mb) is held in memory, so
probing 10M characters costs the sample plus O(units x features), never [N x units].
"""
from __future__ import annotations

import html
import json
import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from .errors import UserError
from .record import Intervention, char_losses, iter_blocks, parse_states, state_names
from .stats import CORRECTIONS, CorrAccumulator, circular_shift_null, fast_length, rank_stats

MIN_CHARS = 100          # below this no statistic here means anything
CV_FOLDS = 3             # contiguous folds (KFold without shuffling) inside the fitting part
SPARSE_CS = (0.01, 0.03, 0.1)         # inverse L1 strength for the sparse logistic probe (liblinear)
TOPK_CS = (0.01, 0.1, 1.0)             # inverse L2 strength for the top-k curve's logistic probes
RIDGE_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)
LASSO_ALPHAS = (0.003, 0.01, 0.03, 0.1)  # L1 strength for the Lasso probe of count features (standardised units)


@dataclass
class ProbeResult:
    """What probe() found. All tables are tidy pandas DataFrames.

    ranking: one row per (feature, layer, state, unit), sorted by feature (in the order given),
        then abs_r descending. Columns: feature, kind ("binary" | "count"), rank (1 = best),
        layer, state, unit (0-based), unit_id ("l2.c.323"), r (Pearson r of the unit's value, h or
        tanh(c), with the label; whole text), abs_r,
        auroc (binary; sample), mean_on, mean_off (binary; mean activation where the label is 1 / 0,
        whole text), spearman (count; sample), p_value (circular-shift null; sample; NaN for units
        not tested), p_adjusted (Holm or BH over all units, untested units counted as p = 1),
        significant (p_adjusted <= alpha), control_max_abs_r (largest |r| of any unit of the
        random-weights control model with this feature), selectivity (abs_r - control_max_abs_r),
        baseline_max_abs_r / baseline_best (the unit's largest |r| with a char-class baseline, and
        which), flag (comma-joined: "n.s." not significant, "control" selectivity <= 0,
        "char_class" a baseline tracks the unit at least as well; "" = a clean finding).
    topk: feature, k, score, metric ("auroc" | "r2"), penalty, n_fit, n_score: held-out score of a
        probe on the k best units (k = 1, 2, 4, ... up to topk_max: L2; the last row, k = all
        units: the L1 sparse probe).
    sparse: feature, penalty ("l1"), strength (C or alpha chosen by CV), score, metric, n_nonzero
        (units with a nonzero weight), units (all), top_units (the 10 largest weights), n_fit, n_score.
    ablation: feature, k, units, chars, on_chars, off_chars, base_loss, delta_on, delta_off,
        random_on_mean, random_on_std, random_off_mean, random_off_std, draws (nats/char).
    baselines: the ranking's columns for the char-class baseline features, top rows of each.
    meta: what was computed on which characters, the null's and probes' settings, timings, notes.
    """

    ranking: pd.DataFrame
    topk: pd.DataFrame
    sparse: pd.DataFrame
    ablation: pd.DataFrame
    baselines: pd.DataFrame
    meta: dict = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        return list(dict.fromkeys(self.ranking["feature"]))

    def top_units(self, feature: str, n: int = 10) -> list[str]:
        """Unit ids of the n units with the largest |r| for a feature, best first."""
        rows = self.ranking[self.ranking["feature"] == feature]
        if rows.empty:
            raise UserError(f"feature {feature!r} was not probed; probed: {', '.join(self.features)}")
        return list(rows["unit_id"].head(n))

    def feature_json(self, feature: str, top: int | None = 20) -> dict:
        """{"feature", "kind", "chars", "control_max_abs_r", "units": [top rows by |r|], "topk",
        "sparse", "ablation"} for one feature; NaN becomes null."""
        rows = self.ranking[self.ranking["feature"] == feature]
        if rows.empty:
            raise UserError(f"feature {feature!r} was not probed; probed: {', '.join(self.features)}")
        units = rows if top is None else rows.head(top)
        sel = lambda df: df[df["feature"] == feature].drop(columns="feature") if len(df) else df
        return {"feature": feature, "kind": str(rows["kind"].iloc[0]), "chars": int(self.meta["chars"]),
                "control_max_abs_r": _json_number(rows["control_max_abs_r"].iloc[0]),
                "units": _records(units.drop(columns=["feature", "kind"])),
                "topk": _records(sel(self.topk)), "sparse": _records(sel(self.sparse)),
                "ablation": _records(sel(self.ablation))}

    def to_json(self, top: int | None = 20) -> dict:
        """{"chars", "features": [feature_json(f) for each feature], "baselines", "meta"}."""
        return {"chars": int(self.meta["chars"]), "features": [self.feature_json(f, top) for f in self.features],
                "baselines": _records(self.baselines), "meta": _plain(self.meta)}

    def _repr_html_(self) -> str:
        cols = ["unit_id", "r", "auroc", "spearman", "p_adjusted", "selectivity", "baseline_best", "flag"]
        parts = [f"<p>ProbeResult over {self.meta.get('chars', 0):,} characters, "
                 f"{self.meta.get('units', 0):,} units</p>"]
        for f in self.features:
            rows = self.ranking[self.ranking["feature"] == f].head(10)
            parts.append(f"<h4>{html.escape(f)}</h4>")
            parts.append(rows[[c for c in cols if rows[c].notna().any()]].to_html(index=False, float_format="%.3g"))
            for name in ("topk", "sparse", "ablation"):
                df = getattr(self, name)
                if len(df) and (df["feature"] == f).any():
                    parts.append(f"<p>{name}</p>" + df[df["feature"] == f].drop(columns="feature")
                                 .to_html(index=False, float_format="%.3g"))
        return "\n".join(parts)


def probe(model, text: str, features: dict[str, np.ndarray], states=("h", "c"), control: bool = True,
          null: bool = True, sparse: bool = True, ablate: int = 0, streams: int = 1, progress: bool = False,
          seed: int = 0, *, vocab=None, warmup: int = 0, baselines: bool = True, chunk: int = 4096,
          sample_chars: int = 80_000, sample_mb: int = 1024, min_shift: int = 1000, null_units: int = 64,
          correction: str = "holm", alpha: float = 0.05, sparse_chars: int = 12_000, topk_max: int = 256,
          ablate_chars: int = 20_000, ablate_draws: int = 20, squash_c: bool = True) -> ProbeResult:
    """Rank every recorded unit by how well it tracks each feature, with honest statistics.

    model: a Checkpoint (model + vocab) or a CharRNN with `vocab` given.
    text: the characters to probe (str, N characters).
    features: {name: labels [N]}: uint8 (or bool) 0/1 labels are binary features, any other
        numbers count (or continuous) features, as neuroscope.features.label returns them.
        Features constant on the text are skipped with a note (a UserError if all are).
    states: which quantities to record ("h", "c", "gates"), as neuroscope.record.state_names takes them.
    control: also probe a same-architecture model with random weights (PyTorch default init, seeded).
    null: circular-shift p-values for the null_units best units of each feature (by |r|),
        on the sample, shifts of at least min_shift, corrected over all units (`correction`:
        "holm", the default, or "bh").
    sparse: L1 logistic (binary) or Lasso (count) probe on all units, and the top-k curve
        (k = 1, 2, 4, ... <= topk_max, then all), on the first sparse_chars of the sample.
    ablate: zero the top `ablate` units inside the recurrence and compare the loss change with
        `ablate_draws` random sets of as many units from the same layers and states.
    streams, warmup: passed to neuroscope.record.iter_states (parallel streams over the text).
    squash_c: a cell state's value is tanh(c), what the cell passes on (h = o * tanh(c)), for r,
        the means, the null and the probes; raw c (which some units integrate into the thousands)
        with False. AUROC and Spearman are rank statistics, the same for both.
    Raises UserError for a text too short for the statistics asked for, labels of the wrong length,
    no features, or only constant features.
    """
    t_start = time.perf_counter()
    net, vocab = _unwrap(model, vocab)
    N = len(text)
    if N < MIN_CHARS:
        raise UserError(f"the text has {N} characters; probing needs at least {MIN_CHARS}")
    if correction not in CORRECTIONS:
        raise UserError(f"unknown correction {correction!r}; choose one of {', '.join(CORRECTIONS)}")
    states = parse_states(states)
    notes: list[str] = []
    feats, kinds = _check_features(features, N, notes)
    base = _baseline_labels(text, feats) if baselines else {}
    names = state_names(net.config, states)
    if not names:
        raise UserError(f"nothing to record for states {tuple(states)} in a {net.config.cell} model")
    units = _unit_table(names, net.config.hidden_size)
    U = len(units)
    squash = (units["state"] == "c").to_numpy() & squash_c         # [U]: units whose value is tanh(c)
    ids = vocab.encode(text)

    # The sample: the first Ns characters of every unit, for ranks, the null and the sparse probes.
    cap = max(1, sample_mb * 2**20 // (4 * U))
    Ns = min(N, sample_chars, cap)
    if null and Ns > 16_384:                      # any length works; FFT-friendly ones are faster
        Ns = fast_length(Ns)                      # (at most 4% shorter)
    if null and Ns < 2 * min_shift + MIN_CHARS:
        raise UserError(f"the circular-shift null needs at least {2 * min_shift + MIN_CHARS:,} characters "
                        f"(shifts of {min_shift:,} or more each way); this text gives {Ns:,}. "
                        f"Give a longer text or pass --no-null")
    # Filled char-major ([Ns, U]: each streamed block lands as contiguous rows), used as the [U, Ns] view.
    # Allocated by PyTorch: numpy asks the kernel for huge pages on large arrays, and where none come
    # (this VM) first-touching 1 GB took 2.7 s instead of 0.3 s.
    sample = torch.empty((Ns, U), dtype=torch.float32).numpy().T
    all_labels = {**feats, **base}
    label_names = list(all_labels)

    # One streaming pass: r of every unit with every feature and baseline, and the sample.
    seconds = {}
    t0 = time.perf_counter()
    acc = _stream(net, ids, states, names, [all_labels[k] for k in label_names], chunk, streams, warmup, progress,
                  sample, squash_c)
    seconds["ranking_pass"] = time.perf_counter() - t0
    r_all = acc.corr()                                               # [U, F_all]
    on_all, off_all = acc.binary_means()

    t0 = time.perf_counter()
    bin_names = [k for k in label_names if kinds.get(k, "binary") == "binary"]
    cnt_names = [k for k in label_names if kinds.get(k, "binary") == "count"]
    auc, rho = rank_stats(sample,
                          np.stack([all_labels[k][:Ns] for k in bin_names], 1) if bin_names else None,
                          np.stack([all_labels[k][:Ns] for k in cnt_names], 1) if cnt_names else None)
    auc_of = {k: auc[:, i] for i, k in enumerate(bin_names)}
    rho_of = {k: rho[:, i] for i, k in enumerate(cnt_names)}
    seconds["sample_ranks"] = time.perf_counter() - t0

    ctrl_max = {}
    if control:
        t0 = time.perf_counter()
        ctrl = _control_model(net, seed)
        cacc = _stream(ctrl, ids, states, names, [feats[k] for k in feats], chunk, streams, warmup, progress, None,
                       squash_c)
        ctrl_max = dict(zip(feats, np.abs(cacc.corr()).max(axis=0)))
        seconds["control"] = time.perf_counter() - t0

    frames, base_frames = [], []
    col = {k: i for i, k in enumerate(label_names)}
    base_cols = [col[b] for b in base]
    for name in label_names:
        i = col[name]
        df = units.copy()
        df.insert(0, "kind", kinds.get(name, "binary"))
        df.insert(0, "feature", name)
        df["r"] = r_all[:, i]
        df["abs_r"] = np.abs(r_all[:, i])
        binary = df["kind"].iloc[0] == "binary"
        df["auroc"] = auc_of[name] if binary else np.nan
        df["mean_on"] = on_all[:, i] if binary else np.nan
        df["mean_off"] = off_all[:, i] if binary else np.nan
        df["spearman"] = np.nan if binary else rho_of[name]
        df["p_value"], df["p_adjusted"] = np.nan, np.nan              # filled in by the null, if asked
        if name in feats:
            others = [j for j in base_cols if j != i]
            if others:
                babs = np.abs(r_all[:, others])
                df["baseline_max_abs_r"] = babs.max(axis=1)
                df["baseline_best"] = [label_names[others[j]] for j in babs.argmax(axis=1)]
            else:
                df["baseline_max_abs_r"], df["baseline_best"] = np.nan, ""
            frames.append(df)
        else:
            base_frames.append(df)

    # The null, on the sample, for the best units of each feature; corrected over all U units.
    null_meta = {"computed": False}
    if null:
        t0 = time.perf_counter()
        null_meta = _null_pvalues(frames, feats, sample, squash, min_shift, null_units, correction, alpha, notes)
        seconds["null"] = time.perf_counter() - t0
    for df in frames:
        cm = ctrl_max.get(df["feature"].iloc[0], np.nan)
        df["control_max_abs_r"] = cm
        df["selectivity"] = df["abs_r"] - cm
        df["significant"] = df["p_adjusted"] <= alpha
        tags = [("n.s.", ~df["significant"] if null else False), ("control", (df["selectivity"] <= 0) & control),
                ("char_class", df["baseline_max_abs_r"] >= df["abs_r"])]
        hit = pd.DataFrame({tag: np.broadcast_to(np.asarray(v, dtype=bool), len(df)) for tag, v in tags})
        df["flag"] = [",".join(t for t, on in zip(hit.columns, row) if on) for row in hit.itertuples(index=False)]

    ranking = _sort(frames, list(feats))
    order = ["feature", "kind", "rank", "layer", "state", "unit", "unit_id", "r", "abs_r", "auroc", "mean_on",
             "mean_off", "spearman", "p_value", "p_adjusted", "significant", "control_max_abs_r", "selectivity",
             "baseline_max_abs_r", "baseline_best", "flag"]
    ranking = ranking[order]
    base_df = _sort(base_frames, list(base)).groupby("feature", sort=False).head(5) if base_frames else \
        pd.DataFrame(columns=order[:13])
    base_df = base_df[order[:13]].reset_index(drop=True)

    topk = pd.DataFrame(columns=["feature", "k", "score", "metric", "penalty", "n_fit", "n_score"])
    sparse_df = pd.DataFrame(columns=["feature", "penalty", "strength", "score", "metric", "n_nonzero", "units",
                                      "top_units", "n_fit", "n_score"])
    sparse_meta = {"computed": False}
    if sparse:
        t0 = time.perf_counter()
        rows_k, rows_s, sparse_meta = _sparse_probes(sample, squash, feats, kinds, units, sparse_chars, topk_max,
                                                     notes, progress)
        topk = pd.DataFrame(rows_k, columns=topk.columns) if rows_k else topk
        sparse_df = pd.DataFrame(rows_s, columns=sparse_df.columns) if rows_s else sparse_df
        seconds["sparse"] = time.perf_counter() - t0

    abl = pd.DataFrame(columns=["feature", "k", "units", "chars", "on_chars", "off_chars", "base_loss", "delta_on",
                                "delta_off", "random_on_mean", "random_on_std", "random_off_mean", "random_off_std",
                                "draws"])
    if ablate:
        t0 = time.perf_counter()
        rows = _ablation(net, ids, feats, ranking, units, ablate, ablate_chars, ablate_draws, seed, chunk, notes,
                         progress)
        abl = pd.DataFrame(rows, columns=abl.columns)
        seconds["ablation"] = time.perf_counter() - t0

    seconds["total"] = time.perf_counter() - t_start
    meta = {
        "chars": N, "units": U, "quantities": names, "states": list(states), "features": list(feats),
        "value": "h as is, tanh(c) for cell states" if squash_c else "h and c as they are",
        "kinds": {k: kinds[k] for k in feats}, "baselines": list(base), "streams": streams, "warmup": warmup,
        "ranking": {"chars": N, "what": "Pearson r, mean_on/mean_off over every character (streamed)"},
        "sample": {"chars": Ns, "what": f"auroc, spearman, p-values on the first {Ns:,} characters"},
        "null": null_meta, "sparse": sparse_meta,
        "control": ({"init": "PyTorch default (nn.Embedding N(0,1), nn.LSTM/GRU U(-1/sqrt(H), 1/sqrt(H)))",
                     "seed": seed, "chars": N} if control else {"computed": False}),
        "ablation": ({"k": ablate, "chars": min(N, ablate_chars), "draws": ablate_draws, "seed": seed,
                      "on": "the label of the character just read (the state that makes the prediction)"}
                     if ablate else {"computed": False}),
        "alpha": alpha, "seconds": seconds, "notes": notes,
    }
    return ProbeResult(ranking=ranking, topk=topk, sparse=sparse_df, ablation=abl, baselines=base_df, meta=meta)


# ---------------------------------------------------------------- helpers

def _unwrap(model, vocab):
    if hasattr(model, "model") and hasattr(model, "vocab"):        # a Checkpoint
        return model.model, vocab or model.vocab
    if vocab is None:
        raise UserError("probe() needs the model's vocabulary: pass a Checkpoint, or vocab=")
    return model, vocab


def _check_features(features: dict, n: int, notes: list[str]) -> tuple[dict, dict]:
    if not features:
        raise UserError("no feature given: name at least one (--feature NAME, see `neuroscope features`)")
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
        # The kind follows the dtype, as neuroscope.features makes them (binary uint8, count int32),
        # so a count feature that happens to stay within 0..1 on this text is still a count.
        binary = lab.dtype in (np.uint8, np.bool_) and lo == 0 and hi == 1
        feats[name], kinds[name] = lab, "binary" if binary else "count"
    if constant and not feats:
        raise UserError(f"feature {' and '.join(constant)} is constant on this text: nothing to rank")
    if constant:
        notes.append("skipped, constant on this text: " + ", ".join(constant))
    return feats, kinds


def _baseline_labels(text: str, feats: dict) -> dict:
    """The char-class baselines (neuroscope.features), minus the features probed and constant ones."""
    from .features import baseline_names, label
    out = {}
    for name in baseline_names():
        if name in feats:
            continue
        lab = label(text, name)
        if lab.min() != lab.max():
            out[name] = lab
    return out


def _unit_table(names: list[str], H: int) -> pd.DataFrame:
    layers, states = [], []
    for name in names:
        _, layer, state = name.split(".", 2)            # "rnn.l2.c"
        layers.append(int(layer[1:]))
        states.append(state)
    layer = np.repeat(layers, H)
    state = np.repeat(states, H)
    unit = np.tile(np.arange(H), len(names))
    return pd.DataFrame({"layer": layer, "state": state, "unit": unit,
                         "unit_id": [f"l{a}.{b}.{c}" for a, b, c in zip(layer, state, unit)]})


def _stream(net, ids, states, names, labels: list[np.ndarray], chunk, streams, warmup, progress,
            sample: np.ndarray | None, squash_c: bool = True) -> CorrAccumulator:
    """One recording pass: merge each recorded block (about `chunk` characters, all streams) into a
    CorrAccumulator as the recurrence wrote it (per quantity [T x B, H], no copy; cell states
    squashed to tanh(c) in place), and copy the sample's rows (the first sample.shape[1] characters,
    c itself) as they pass. The statistics do not depend on the order of rows.
    """
    Ns = 0 if sample is None else sample.shape[1]
    rows_of_sample = None if sample is None else torch.from_numpy(sample.T)     # [Ns, U], C-contiguous
    H = net.config.hidden_size
    acc = CorrAccumulator()
    for pos, values in iter_blocks(net, ids, states=states, chunk=chunk, progress=progress,
                                   streams=streams, warmup=warmup):
        # The sample's rows: per stream, a run of consecutive positions (pos[:, b]) below Ns.
        runs = [(b, int(pos[0, b]), int(np.count_nonzero((pos[:, b] >= 0) & (pos[:, b] < Ns))))
                for b in range(pos.shape[1]) if 0 <= pos[0, b] < Ns]
        flat = pos.reshape(-1)
        valid = flat >= 0                                                   # padding: in the last block only
        keep = None if valid.all() else torch.from_numpy(np.flatnonzero(valid))
        flat = flat[valid]
        blocks = []
        for i, name in enumerate(names):
            V = values[name]                                                # [T, B, H]
            for b, p0, n in runs:                                           # the sample keeps c itself
                rows_of_sample[p0:p0 + n, i * H:(i + 1) * H].copy_(V[:n, b])
            X = V.view(-1, H) if keep is None else V.view(-1, H)[keep]      # [T x B, H]
            if squash_c and name.endswith(".c"):
                # tanh(c) = 2 sigmoid(2c) - 1, in place: PyTorch's CPU sigmoid is ~3x faster than its tanh
                X.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)
            blocks.append(X)
        acc.update(blocks, np.stack([lab[flat] for lab in labels], axis=1), overwrite=True)
    if acc.n != len(ids):
        raise RuntimeError(f"the recorder covered {acc.n} of {len(ids)} characters")
    return acc


def _null_pvalues(frames, feats, sample, squash, min_shift, null_units, correction, alpha, notes) -> dict:
    """p_value / p_adjusted columns of each feature's frame: the circular-shift null on the sample
    for its null_units best units by |r|, corrected over all units (untested ones count as p = 1)."""
    U, Ns = sample.shape
    meta = {"computed": False}
    for df in frames:
        name = df["feature"].iloc[0]
        y = np.asarray(feats[name][:Ns], dtype=np.float32)
        if y.min() == y.max():
            notes.append(f"{name} is constant on the sample (first {Ns:,} characters): no p-values")
            continue
        top = np.argsort(-df["abs_r"].to_numpy(), kind="stable")[:null_units]
        x = sample[top]                                               # [null_units, Ns], a copy
        x[squash[top]] = np.tanh(x[squash[top]])
        sn = circular_shift_null(x, y, min_shift=min_shift)
        pv = np.full(U, np.nan)
        pv[top] = sn.p
        df["p_value"] = pv
        df["p_adjusted"] = CORRECTIONS[correction](pv, m=U)
        meta = {"computed": True, "chars": Ns, "min_shift": min_shift, "shifts": sn.shifts,
                "units_tested": int(len(top)), "family": U, "correction": correction, "alpha": alpha,
                "p": "max(permutation p with +1 correction, normal tail of Fisher z over the shifts)",
                "smallest_p": 1.0 / (1 + sn.shifts), "smallest_adjusted_p": min(1.0, U / (1 + sn.shifts))}
    if meta["computed"] and meta["smallest_adjusted_p"] > alpha:
        notes.append(f"with {meta['shifts']:,} shifts the smallest p is 1/{meta['shifts'] + 1:,}, so no unit can "
                     f"pass {correction} over {U:,} units at alpha={alpha}: use a longer text (or a larger "
                     f"sample_chars / sample_mb)")
    return meta


def _control_model(net, seed: int):
    """Same architecture, random weights from PyTorch's default init, seeded; the global RNG is untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        ctrl = type(net)(net.config)
    return ctrl.eval()


def _sort(frames: list[pd.DataFrame], order: list[str]) -> pd.DataFrame:
    out = []
    for name in order:
        df = next(f for f in frames if f["feature"].iloc[0] == name)
        df = df.sort_values("abs_r", ascending=False, kind="stable").reset_index(drop=True)
        df.insert(2, "rank", np.arange(1, len(df) + 1))
        out.append(df)
    return pd.concat(out, ignore_index=True)


def _sparse_probes(sample, squash, feats, kinds, units, sparse_chars, topk_max, notes, progress):
    """The sparse probe on all units and the top-k curve, fit on the first 2/3 of the first
    sparse_chars of the sample and scored on the rest (never the same characters); regularisation
    by CV over contiguous folds of the fitting part only; units standardised on the fitting part.

    Binary: L1 logistic regression (liblinear), C by CV on AUROC; the curve's k < all points are L2
    logistic regressions on the k best units. Count: Lasso (alpha by CV on R^2) and ridge for the
    curve, on standardised labels. The curve's last point, k = all units, is the sparse probe.
    Units are ranked for the curve by |r| on the fitting part only.
    """
    import warnings
    from sklearn.linear_model import LassoCV, LogisticRegression, RidgeCV
    from sklearn.metrics import r2_score, roc_auc_score
    from sklearn.model_selection import GridSearchCV, KFold
    from tqdm.auto import tqdm

    n = min(sample.shape[1], sparse_chars)
    n_fit = (2 * n) // 3
    U = sample.shape[0]
    ks = [int(k) for k in 2 ** np.arange(0, 20) if k < U and k <= topk_max]
    meta = {"computed": True, "chars": n, "fit": [0, n_fit], "score": [n_fit, n],
            "cv": f"{CV_FOLDS} contiguous folds of the fitting part", "scaling": "standardised on the fitting part",
            "binary": f"sparse: L1 logistic regression, C in {list(SPARSE_CS)} by CV on AUROC; "
                      f"top-k (k < all): L2 logistic, C in {list(TOPK_CS)} by CV",
            "count": f"sparse: Lasso, alpha in {list(LASSO_ALPHAS)} by CV on R^2; top-k: ridge, "
                     f"alpha in {list(RIDGE_ALPHAS)} by CV; labels standardised",
            "k": ks + [U]}
    X = np.ascontiguousarray(sample[:, :n].T, dtype=np.float64)      # [n, U]
    X[:, squash] = np.tanh(X[:, squash])
    mu, sd = X[:n_fit].mean(axis=0), X[:n_fit].std(axis=0)
    sd[sd == 0] = 1.0                                                # constant units stay 0 after scaling
    X -= mu
    X /= sd
    Xf, Xs = X[:n_fit], X[n_fit:]
    cv = KFold(CV_FOLDS, shuffle=False)                              # contiguous folds
    rows_k, rows_s = [], []
    bar = tqdm(total=len(feats) * (len(ks) + 1), desc="sparse probes", disable=not progress)
    for name, lab in feats.items():
        y = np.asarray(lab[:n], dtype=np.float64)
        yf, ys = y[:n_fit], y[n_fit:]
        binary = kinds[name] == "binary"
        if yf.min() == yf.max() or ys.min() == ys.max():
            notes.append(f"{name}: no sparse probe (constant on the fitting or the scoring part of the "
                         f"first {n:,} characters)")
            bar.update(len(ks) + 1)
            continue
        if binary:
            yf, ys = yf.astype(int), ys.astype(int)
            score_fn, metric = roc_auc_score, "auroc"
        else:                                    # standardised labels make one alpha grid fit all counts
            m_y, s_y = yf.mean(), yf.std()
            yf, ys = (yf - m_y) / s_y, (ys - m_y) / s_y
            score_fn, metric = r2_score, "r2"
        order = np.argsort(-np.abs(Xf.T @ (yf - yf.mean())), kind="stable")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")      # convergence notes and one-class folds of a rare feature
            for k in ks:
                cols = order[:k]
                try:
                    if binary:
                        m = GridSearchCV(LogisticRegression(solver="liblinear", tol=1e-3), {"C": TOPK_CS},
                                         cv=cv, scoring="roc_auc").fit(Xf[:, cols], yf)
                        score = roc_auc_score(ys, m.decision_function(Xs[:, cols]))
                    else:
                        m = RidgeCV(alphas=RIDGE_ALPHAS, cv=cv).fit(Xf[:, cols], yf)
                        score = r2_score(ys, m.predict(Xs[:, cols]))
                except ValueError as exc:
                    notes.append(f"{name}: top-{k} probe failed ({str(exc).splitlines()[0][:100]})")
                    score = np.nan
                rows_k.append([name, k, float(score), metric, "l2", n_fit, n - n_fit])
                bar.update(1)
            try:
                if binary:
                    est = LogisticRegression(l1_ratio=1.0, solver="liblinear", tol=1e-3)
                    m = GridSearchCV(est, {"C": SPARSE_CS}, cv=cv, scoring="roc_auc").fit(Xf, yf)
                    strength, coef = float(m.best_params_["C"]), np.ravel(m.best_estimator_.coef_)
                    score = roc_auc_score(ys, m.decision_function(Xs))
                else:
                    m = LassoCV(alphas=LASSO_ALPHAS, cv=cv, precompute=True, max_iter=2000).fit(Xf, yf)
                    strength, coef = float(m.alpha_), m.coef_
                    score = r2_score(ys, m.predict(Xs))
                nz = np.flatnonzero(coef)
                best = nz[np.argsort(-np.abs(coef[nz]), kind="stable")][:10]
                rows_s.append([name, "l1", strength, float(score), metric, int(len(nz)), U,
                               ",".join(units["unit_id"].iloc[best]), n_fit, n - n_fit])
                rows_k.append([name, U, float(score), metric, "l1", n_fit, n - n_fit])
            except ValueError as exc:
                notes.append(f"{name}: sparse probe failed ({str(exc).splitlines()[0][:100]})")
            bar.update(1)
    bar.close()
    return rows_k, rows_s, meta


def _ablation(net, ids, feats, ranking, units, K, ablate_chars, draws, seed, chunk, notes, progress):
    """Zero the top K units of each feature in the recurrence; compare with random K-unit sets of
    the same layers and states. Loss k is for predicting ids[k+1] from the state after ids[k], so
    it is "on" where the label of character k is nonzero."""
    n = min(len(ids), ablate_chars)
    if n < 2:
        return []
    a_ids = ids[:n]
    base = char_losses(net, a_ids, chunk=chunk)                      # [n-1]
    rng = np.random.default_rng(seed)
    H = net.config.hidden_size
    quantity = {uid: f"rnn.l{l}.{s}" for uid, l, s in zip(units["unit_id"], units["layer"], units["state"])}
    rows = []
    for name, lab in feats.items():
        on = np.asarray(lab[:n - 1]) != 0
        top = ranking[ranking["feature"] == name].head(K)
        groups: dict[str, list[int]] = {}
        for uid, u in zip(top["unit_id"], top["unit"]):
            groups.setdefault(quantity[uid], []).append(int(u))

        def deltas(g):
            loss = char_losses(net, a_ids, interventions=[Intervention(q, tuple(us), "zero") for q, us in g.items()],
                               chunk=chunk)
            d = loss - base
            return (float(d[on].mean()) if on.any() else np.nan, float(d[~on].mean()) if (~on).any() else np.nan)

        d_on, d_off = deltas(groups)
        rand = []
        for _ in range(draws):
            g = {q: rng.choice(np.setdiff1d(np.arange(H), us), size=len(us), replace=False).tolist()
                 for q, us in groups.items()}
            rand.append(deltas(g))
        rand = np.array(rand)
        if not on.any():
            notes.append(f"{name} is never on in the ablation span (first {n:,} characters)")
        rows.append([name, K, ",".join(top["unit_id"]), n, int(on.sum()), int((~on).sum()), float(base.mean()),
                     d_on, d_off, *_mean_std(rand[:, 0]), *_mean_std(rand[:, 1]), draws])
    return rows


def _mean_std(v):
    v = v[np.isfinite(v)]
    return (float(v.mean()), float(v.std(ddof=1))) if len(v) > 1 else (np.nan, np.nan)


def _json_number(v):
    v = float(v)
    return v if math.isfinite(v) else None


def _records(df: pd.DataFrame) -> list[dict]:
    """DataFrame rows as plain JSON-ready dicts (NaN -> None, numpy scalars -> Python)."""
    return json.loads(df.to_json(orient="records", double_precision=6)) if len(df) else []


def _plain(obj):
    """meta as JSON-ready Python: numpy scalars -> Python numbers, NaN -> None."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "item"):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
