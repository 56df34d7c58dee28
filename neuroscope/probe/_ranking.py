"""The ranking stage of neuroscope.probe: every unit against every label, over the whole text.

    >>> units = unit_layout(net.config, cfg)                     # which units, in which order
    >>> sample = new_sample(sample_length(N, units, cfg), units)  # [U, Ns], filled by the pass
    >>> stats = stream_statistics(net, ids, units, labels, cfg, sample)
    >>> ranks = sample_ranks(sample, labels, kinds, cfg.rank_chars)   # AUROC / Spearman on the sample
    >>> ranking, baselines = rank_table(units, labels, features, kinds, stats, ranks, pvalues, control_r, cfg)

One streaming pass gives Pearson r and the binary means of every unit with every label (float64
sufficient statistics, stats.CorrAccumulator) and copies the sample's rows as they pass, so the
cost is the sample plus O(units x labels), never [N x units]. Units are laid out quantity by
quantity (all H units of "rnn.l0.h", then "rnn.l0.c", ...): unit column i * H + j is unit j of
quantity i, in the sample and in every [U, ...] array. With a dictionary (neuroscope.dictionary) the
units are its latents instead ("l1.c/d.123"): the quantity is recorded and encoded block by block, the
control model's states through the same encoder.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import pandas as pd
import torch

from ..names import DICTIONARY_MARK, latent_id, parse_quantity, squashes, unit_id
from ..record import iter_blocks, recorded_names, stream_layout, window_chars
from ..stats import CorrAccumulator, fast_length, rank_stats, shown
from ._config import ProbeConfig

# The ranking's columns; the baselines table keeps the first BASELINE_COLUMNS of them.
COLUMNS = ["feature", "kind", "rank", "layer", "state", "unit", "unit_id", "r", "abs_r", "auroc", "mean_on",
           "mean_off", "spearman", "p_value", "p_adjusted", "significant", "control_max_abs_r", "selectivity",
           "baseline_max_abs_r", "baseline_best", "flag"]
BASELINE_COLUMNS = 13
BASELINE_ROWS = 5        # rows of each baseline kept in ProbeResult.baselines
# A random-weights model forgets where it started within a few dozen characters: after 32 warm-up
# characters its states equal those of one exact stream to float32 rounding (max |dh| 3e-7 for the
# LSTM and GRU controls of wp_lstm3x512, wp_lstm2x128 and enwiki_lstm2x512; docs/probing.md), so
# its pieces need no more warm-up than this, whatever the ranking's.
CONTROL_WARMUP = 32


@dataclass
class Units:
    """The recorded units, in the order of every [U, ...] array."""

    names: list[str]         # quantity names, e.g. ["rnn.l0.h", "rnn.l0.c", ...]
    hidden: int              # H, units per quantity
    squash: list[bool]       # per quantity: is its value tanh(c)
    table: pd.DataFrame      # one row per unit: layer, state, unit (0-based), unit_id ("l2.c.323")
    states: tuple = ("h", "c")               # what the recorder records to make them
    encode: Callable | None = None           # recorded {name: [T, B, H]} -> {names[0]: [T, B, hidden]}

    def __len__(self) -> int:
        return len(self.names) * self.hidden

    @property
    def squash_mask(self) -> np.ndarray:
        """bool [U]: units whose value is tanh(c)."""
        return np.repeat(self.squash, self.hidden)


def unit_layout(config, cfg: ProbeConfig, dictionary=None) -> Units:
    """The units of a model config for cfg.states (or the latents of a dictionary); UserError if there is none."""
    if dictionary is not None:
        return _latent_layout(dictionary)
    names = recorded_names(config, cfg.states)             # refuses what this cell cannot give, in one line
    H = config.hidden_size
    quantities = [parse_quantity(n) for n in names]
    layer = np.repeat([q.layer for q in quantities], H)
    state = np.repeat([q.state for q in quantities], H)
    unit = np.tile(np.arange(H), len(names))
    table = pd.DataFrame({"layer": layer, "state": state, "unit": unit,
                          "unit_id": [unit_id(a, b, c) for a, b, c in zip(layer, state, unit)]})
    return Units(names, H, [cfg.squash_c and squashes(q.state) for q in quantities], table, tuple(cfg.states))


def _latent_layout(d) -> Units:
    """The latents of dictionary d as units: one quantity "rnn.l1.c/d" of d_sae columns, their value the
    activation the encoder gives the shown value of d's quantity."""
    q = parse_quantity(d.quantity)
    n = d.sae.d_sae
    table = pd.DataFrame({"layer": np.full(n, q.layer), "state": f"{q.state}{DICTIONARY_MARK}", "unit": np.arange(n),
                          "unit_id": [latent_id(d.quantity, i) for i in range(n)]})
    name = d.quantity + DICTIONARY_MARK

    def encode(values: dict) -> dict:
        V = values[d.quantity]                                              # [T, B, H]
        return {name: d.latents(V).to(V.device)}
    return Units([name], n, [False], table, (q.state,), encode)


def sample_length(N: int, units: Units, cfg: ProbeConfig) -> int:
    """Characters in the sample: min(N, sample_chars, the sample_mb cap), FFT-friendly with the null."""
    cap = max(1, cfg.sample_mb * 2**20 // (4 * len(units)))
    Ns = min(N, cfg.sample_chars, cap)
    if cfg.null and Ns > 16_384:                  # any length works; FFT-friendly ones are faster
        Ns = fast_length(Ns)                      # (at most 4% shorter)
    return Ns


def new_sample(Ns: int, units: Units) -> np.ndarray:
    """An uninitialised float32 sample, filled char-major ([Ns, U]: each streamed block lands as
    contiguous rows) and used as its [U, Ns] view."""
    # Allocated by PyTorch: numpy asks the kernel for huge pages on large arrays, and where none come,
    # first-touching 1 GB takes several times longer.
    return torch.empty((Ns, len(units)), dtype=torch.float32).numpy().T


@dataclass
class Streamed:
    """The whole-text statistics of every unit with every label, float64 [U, F]."""

    r: np.ndarray            # Pearson r
    mean_on: np.ndarray      # mean value where a 0/1 label is 1 (NaN for a constant label)
    mean_off: np.ndarray     # ... where it is 0


def stream_statistics(net, ids: np.ndarray, units: Units, labels: list[np.ndarray], cfg: ProbeConfig,
                      sample: np.ndarray | None = None, label: str = "ranking: record",
                      steps: int | None = None) -> Streamed:
    """One recording pass over ids: the statistics of every unit with every label [N], and the sample
    (the first sample.shape[1] characters, raw c) copied as it passes. The statistics do not depend
    on the order of rows, so streams need no reordering. Recorded in stream_layout(N, cfg.streams,
    cfg.warmup); steps: only the first `steps` characters of each piece (record.iter_blocks); label:
    the progress bar's."""
    acc = _accumulate(net, ids, units, labels, cfg, sample, label, steps)
    on, off = acc.binary_means()
    return Streamed(acc.corr(), on, off)


def _accumulate(net, ids, units: Units, labels, cfg: ProbeConfig, sample, label: str,
                steps: int | None) -> CorrAccumulator:
    # Each block is merged as the recurrence wrote it (per quantity [T x B, H], no copy; cell states
    # squashed in place after the sample took its rows).
    Ns = 0 if sample is None else sample.shape[1]
    rows_of_sample = None if sample is None else torch.from_numpy(sample.T)     # [Ns, U], C-contiguous
    H = units.hidden
    acc = CorrAccumulator()
    streams, m, warmup = stream_layout(len(ids), cfg.streams, cfg.warmup)
    for pos, values in iter_blocks(net, ids, states=units.states, chunk=cfg.chunk, progress=cfg.progress and label,
                                   streams=streams, warmup=warmup, steps=steps):
        if units.encode is not None:
            values = units.encode(values)
        # The sample's rows: per stream, a run of consecutive positions (pos[:, b]) below Ns.
        runs = [(b, int(pos[0, b]), int(np.count_nonzero((pos[:, b] >= 0) & (pos[:, b] < Ns))))
                for b in range(pos.shape[1]) if 0 <= pos[0, b] < Ns]
        flat = pos.reshape(-1)
        valid = flat >= 0                                                   # padding: in the last block only
        keep = None if valid.all() else torch.from_numpy(np.flatnonzero(valid))
        flat = flat[valid]
        blocks = []
        for i, (name, squash) in enumerate(zip(units.names, units.squash)):
            V = values[name]                                                # [T, B, H]
            for b, p0, n in runs:
                rows_of_sample[p0:p0 + n, i * H:(i + 1) * H].copy_(V[:n, b])
            X = V.view(-1, H) if keep is None else V.view(-1, H)[keep]      # [T x B, H]
            blocks.append(shown(X, squash, inplace=True))
        acc.update(blocks, np.stack([lab[flat] for lab in labels], axis=1), overwrite=True)
    want = len(ids) if steps is None else window_chars(len(ids), streams, m, steps)
    if acc.n != want:
        raise RuntimeError(f"the recorder covered {acc.n} of {want} characters")
    return acc


@dataclass
class SampleRanks:
    """Rank statistics on the sample, float64 [U] per label."""

    auroc: dict[str, np.ndarray]      # binary labels
    spearman: dict[str, np.ndarray]   # count labels
    step: int = 1                     # on every step-th character of the sample
    chars: int = 0                    # how many characters that is


def sample_ranks(sample: np.ndarray, labels: dict[str, np.ndarray], kinds: dict[str, str], rank_chars: int,
                 progress: bool = False) -> SampleRanks:
    """AUROC (binary labels) and Spearman (count labels) of every unit on the sample [U, Ns], or on
    every step-th of its characters, step = ceil(Ns / rank_chars).

    Rank statistics are the same for c and tanh(c), so the sample keeps raw c. Every step-th
    character still spans the whole sample: with features and units that stay put for tens to
    thousands of characters, neighbours add little information and the ranks cost O(N log N) per unit
    (docs/probing.md measures the difference).
    """
    Ns = sample.shape[1]
    step = max(1, -(-Ns // max(1, rank_chars)))
    sub = sample[:, ::step]
    binary = [k for k in labels if kinds[k] == "binary"]
    count = [k for k in labels if kinds[k] == "count"]
    stack = lambda names: np.stack([labels[k][:Ns:step] for k in names], 1) if names else None
    auc, rho = rank_stats(sub, stack(binary), stack(count),
                          progress=progress and f"ranks: {sub.shape[1]:,} chars of the sample")
    return SampleRanks({k: auc[:, i] for i, k in enumerate(binary)}, {k: rho[:, i] for i, k in enumerate(count)},
                       step, sub.shape[1])


def control_max_abs_r(net, ids: np.ndarray, units: Units, features: dict[str, np.ndarray],
                      cfg: ProbeConfig) -> tuple[dict[str, float], dict]:
    """({feature: the largest |r| of any unit of a random-weights model of the same architecture},
    {"chars", "windows", "window_chars", "warmup"}: what it read); ({}, {}) if not cfg.control.

    It reads about cfg.control_chars characters: the first ceil(control_chars / streams) of each of
    the ranking's pieces (the same streams, at most CONTROL_WARMUP warm-up characters), so windows spread evenly over the whole text
    and a feature's mix there is the text's, for a fraction of the ranking's cost; the whole text
    when that is not shorter or a feature is constant on the windows. docs/probing.md measures how
    the bound moves with the number of characters.
    """
    if not cfg.control:
        return {}, {}
    N = len(ids)
    ccfg = replace(cfg, warmup=min(cfg.warmup, CONTROL_WARMUP))
    streams, m, warmup = stream_layout(N, ccfg.streams, ccfg.warmup)
    steps = -(-cfg.control_chars // streams)
    read = np.concatenate([np.arange(s, min(s + steps, N)) for s in range(0, N, m)]) if steps < m else None
    if read is not None and any(lab[read].min() == lab[read].max() for lab in features.values()):
        read = None
    ctrl = control_model(net, cfg.seed)
    r = stream_statistics(ctrl, ids, units, list(features.values()), ccfg, label="control: record",
                          steps=None if read is None else steps).r
    where = ({"chars": N, "windows": 1, "window_chars": N} if read is None else
             {"chars": int(len(read)), "windows": streams, "window_chars": steps})
    where["warmup"] = warmup
    return dict(zip(features, np.abs(r).max(axis=0))), where


def control_model(net, seed: int):
    """Same architecture, random weights from PyTorch's default init, seeded; the global RNG is untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        ctrl = type(net)(net.config)
    return ctrl.eval()


def rank_table(units: Units, labels: dict[str, np.ndarray], features: list[str], kinds: dict[str, str],
               stats: Streamed, ranks: SampleRanks, pvalues: dict[str, tuple[np.ndarray, np.ndarray]],
               control_r: dict[str, float], cfg: ProbeConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ranking, baselines): one row per (feature, unit), sorted by feature then |r|, with the flags;
    the baselines' best BASELINE_ROWS rows each. labels: features then baselines, in stats' order;
    pvalues: {feature: (p_value [U], p_adjusted [U])} for the features the null tested."""
    names = list(labels)
    baselines = [k for k in names if k not in features]
    frames = {}
    for i, name in enumerate(names):
        df = units.table.copy()
        df.insert(0, "kind", kinds[name])
        df.insert(0, "feature", name)
        df["r"] = stats.r[:, i]
        df["abs_r"] = np.abs(stats.r[:, i])
        binary = kinds[name] == "binary"
        df["auroc"] = ranks.auroc[name] if binary else np.nan
        df["mean_on"] = stats.mean_on[:, i] if binary else np.nan
        df["mean_off"] = stats.mean_off[:, i] if binary else np.nan
        df["spearman"] = np.nan if binary else ranks.spearman[name]
        df["p_value"], df["p_adjusted"] = pvalues.get(name, (np.nan, np.nan))
        frames[name] = df
    base_r = np.abs(stats.r[:, [names.index(b) for b in baselines]])     # [U, baselines]
    for name in features:
        _judge(frames[name], base_r, baselines, control_r.get(name, np.nan), cfg)
    ranking = _sort([frames[k] for k in features])[COLUMNS]
    if baselines:
        base_df = _sort([frames[k] for k in baselines]).groupby("feature", sort=False).head(BASELINE_ROWS)
    else:
        base_df = pd.DataFrame(columns=COLUMNS[:BASELINE_COLUMNS])
    return ranking, base_df[COLUMNS[:BASELINE_COLUMNS]].reset_index(drop=True)


def _judge(df: pd.DataFrame, base_r: np.ndarray, baselines: list[str], control_r: float, cfg: ProbeConfig) -> None:
    """Add one feature's comparison columns: baselines, control, significance and the flags."""
    if baselines:
        df["baseline_max_abs_r"] = base_r.max(axis=1)
        df["baseline_best"] = [baselines[j] for j in base_r.argmax(axis=1)]
    else:
        df["baseline_max_abs_r"], df["baseline_best"] = np.nan, ""
    df["control_max_abs_r"] = control_r
    df["selectivity"] = df["abs_r"] - control_r
    df["significant"] = df["p_adjusted"] <= cfg.alpha
    tags = [("n.s.", ~df["significant"] if cfg.null else False),
            ("control", (df["selectivity"] <= 0) & cfg.control),
            ("char_class", df["baseline_max_abs_r"] >= df["abs_r"])]
    hit = pd.DataFrame({tag: np.broadcast_to(np.asarray(v, dtype=bool), len(df)) for tag, v in tags})
    df["flag"] = [",".join(t for t, on in zip(hit.columns, row) if on) for row in hit.itertuples(index=False)]


def _sort(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Each frame by |r| descending (stable), ranked from 1, one after another."""
    out = []
    for df in frames:
        df = df.sort_values("abs_r", ascending=False, kind="stable").reset_index(drop=True)
        df.insert(2, "rank", np.arange(1, len(df) + 1))
        out.append(df)
    return pd.concat(out, ignore_index=True)
