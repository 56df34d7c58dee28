"""The sparse-probe stage of neuroscope.probe: how well do a few units, or all of them, predict a feature?

    >>> topk, sparse, meta, notes = sparse_probes(sample, squash, features, kinds, unit_ids, cfg)

Fit on the first 2/3 of the sample's first cfg.sparse_chars characters, scored on the rest (never
the same characters); regularisation by CV over contiguous folds of the fitting part only; units
standardised on the fitting part.

Binary features: an L1 logistic regression (liblinear), C by CV on AUROC; the top-k curve's
k < all points are L2 logistic regressions on the k best units. Count features: Lasso (alpha by CV
on mean squared error, as LassoCV) and ridge for the curve, on standardised labels. Units are ranked
by |r| on the fitting part only. A binary feature's sparse probe sees the SCREEN best of them (all,
if there are fewer), its weights for the others 0: on wp_lstm3x512's 12,000 first test characters the
L1 probes keep 7-107 units, and their held-out AUROC on 256 screened units is that on 512 within
0.0002 (in_quote 0.99944 both, is_lower 0.99995 / 0.99998) for 0.6 of the time. The Lasso of a count
feature keeps hundreds of units (547 for line_position; screened to 512 it lost 0.016 of held-out
R^2), so it sees all units. The curve's last point, k = all units, is the sparse probe.

The solvers (_solvers) give the answers of the scikit-learn estimators they stand for
(tests/test_probe.py compares them) in less time: ridge in closed form and the Lasso by scikit-learn's
coordinate descent, both from the fold Gram matrices every count feature shares; the L2 logistic by
Newton's method, warm-started along C and k. Features are fitted two at a time in threads, each on
one BLAS thread (cfg.sparse_chars x units is too small to keep two busy).
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
import torch

from ..stats import shown
from ._config import ProbeConfig
from ._solvers import FoldGrams, auroc, l1_logistic_cv, lasso_cv, logistic_cv, r2, ridge_cv

CV_FOLDS = 3                          # contiguous folds (KFold without shuffling) inside the fitting part
SPARSE_CS = (0.01, 0.03, 0.1)         # inverse L1 strength for the sparse logistic probe (liblinear)
TOPK_CS = (0.01, 0.1, 1.0)            # inverse L2 strength for the top-k curve's logistic probes
RIDGE_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)
SCREEN = 256                          # units the binary sparse probe sees: the largest |r| with the label on the fitting part
LASSO_ALPHAS = (0.003, 0.01, 0.03, 0.1)  # L1 strength for the Lasso probe of count features (standardised units)
TOP_WEIGHTS = 10                      # units named in the sparse table's top_units

TOPK_COLUMNS = ["feature", "k", "score", "metric", "penalty", "n_fit", "n_score"]
SPARSE_COLUMNS = ["feature", "penalty", "strength", "score", "metric", "n_nonzero", "units", "top_units", "n_fit",
                  "n_score"]


def sparse_probes(sample: np.ndarray, squash: np.ndarray, features: dict[str, np.ndarray], kinds: dict[str, str],
                  unit_ids: list[str], cfg: ProbeConfig) -> tuple[pd.DataFrame, pd.DataFrame, dict, list[str]]:
    """(topk, sparse, meta, notes) for every feature; empty tables and {"computed": False} if not cfg.sparse.

    sample: [U, Ns] raw values; squash: bool [U], units whose value is tanh(c); features: {name:
    labels [N]}; kinds: {name: "binary" | "count"}; unit_ids: [U], for the sparse table's top_units.
    topk and sparse have the columns of ProbeResult.topk and ProbeResult.sparse.
    """
    if not cfg.sparse:
        return pd.DataFrame(columns=TOPK_COLUMNS), pd.DataFrame(columns=SPARSE_COLUMNS), {"computed": False}, []
    from concurrent.futures import ThreadPoolExecutor

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import KFold
    from threadpoolctl import threadpool_limits
    from tqdm.auto import tqdm
    U = sample.shape[0]
    n = min(sample.shape[1], cfg.sparse_chars)
    n_fit = (2 * n) // 3
    ks = [int(k) for k in 2 ** np.arange(0, 20) if k < U and k <= cfg.topk_max]
    Xf, Xs = _design(sample, squash, n, n_fit)
    folds = list(KFold(CV_FOLDS, shuffle=False).split(Xf))           # contiguous folds
    grams = FoldGrams(Xf, folds)
    ys = {name: np.asarray(lab[:n], dtype=np.float64) for name, lab in features.items()}
    fitted = [name for name in features if not _constant(ys[name], n_fit)]
    if any(kinds[name] == "count" for name in fitted):
        grams.gram(None)                                             # built once, before the threads share it
    bar = tqdm(total=len(features) * (len(ks) + 1), desc="sparse: probes", disable=not cfg.progress)

    def one(name):
        probe = _FeatureProbe(grams, Xs, ys[name][:n_fit], ys[name][n_fit:], kinds[name] == "binary")
        return _feature_rows(name, probe, ks, unit_ids, (n_fit, n - n_fit), bar)

    # Most of a feature's fits are too small to keep two BLAS threads busy, so two features are fitted
    # side by side on one BLAS thread each (numpy, liblinear and the coordinate descent release the GIL):
    # the same answers in a quarter less time on two cores (docs/probing.md).
    jobs = min(len(os.sched_getaffinity(0)), max(1, len(fitted)))
    with warnings.catch_warnings(), threadpool_limits(1 if jobs > 1 else None, user_api="blas"), \
            ThreadPoolExecutor(jobs) as pool:
        # Set here, not per fit: the warnings filters are global, and changing them from two threads races.
        # liblinear at tol 1e-3 and the coordinate descent at 2,000 sweeps may stop short on tiny models.
        warnings.simplefilter("ignore", ConvergenceWarning)
        done = dict(zip(fitted, pool.map(one, fitted)))
    rows_k, rows_s, notes = [], [], []
    for name in features:
        if name not in done:
            notes.append(f"{name}: no sparse probe (constant on the fitting or the scoring part of the "
                         f"first {n:,} characters)")
            bar.update(len(ks) + 1)
            continue
        rows_k += done[name][0]
        rows_s += done[name][1]
        notes += done[name][2]
    bar.close()
    topk = pd.DataFrame(rows_k, columns=TOPK_COLUMNS) if rows_k else pd.DataFrame(columns=TOPK_COLUMNS)
    sparse = pd.DataFrame(rows_s, columns=SPARSE_COLUMNS) if rows_s else pd.DataFrame(columns=SPARSE_COLUMNS)
    return topk, sparse, _meta(n, n_fit, ks + [U]), notes


def _constant(y: np.ndarray, n_fit: int) -> bool:
    return y[:n_fit].min() == y[:n_fit].max() or y[n_fit:].min() == y[n_fit:].max()


def _feature_rows(name: str, probe: "_FeatureProbe", ks: list[int], unit_ids: list[str], sizes: tuple[int, int],
                  bar) -> tuple[list, list, list[str]]:
    """One feature's (top-k rows, sparse rows, notes); sizes: (fitting, scoring) characters."""
    rows_k, rows_s, notes = [], [], []
    for k in ks:
        score, failed = probe.topk(k)
        notes += [f"{name}: top-{k} probe failed ({failed})"] if failed else []
        rows_k.append([name, k, score, probe.metric, "l2", *sizes])
        bar.update(1)
    U = len(unit_ids)
    try:
        strength, score, coef = probe.sparse()
        nz = np.flatnonzero(coef)
        best = nz[np.argsort(-np.abs(coef[nz]), kind="stable")][:TOP_WEIGHTS]
        rows_s.append([name, "l1", strength, score, probe.metric, int(len(nz)), U,
                       ",".join(unit_ids[i] for i in best), *sizes])
        rows_k.append([name, U, score, probe.metric, "l1", *sizes])
    except ValueError as exc:
        notes.append(f"{name}: sparse probe failed ({_first_line(exc)})")
    bar.update(1)
    return rows_k, rows_s, notes


def _design(sample: np.ndarray, squash: np.ndarray, n: int, n_fit: int) -> tuple[np.ndarray, np.ndarray]:
    """The units' values on the first n characters, standardised on the first n_fit: (fit [n_fit, U],
    score [n - n_fit, U]), float64."""
    v = torch.from_numpy(sample[:, :n].T)                           # [n, U]: a view of a char-major sample
    X = v.to(torch.float64, memory_format=torch.contiguous_format)   # a C-contiguous copy
    cols = torch.from_numpy(np.flatnonzero(squash))
    if len(cols):
        X[:, cols] = shown(v[:, cols], True, inplace=True).double()  # v[:, cols] is a copy: the sample is untouched
    mu, sd = X[:n_fit].numpy().mean(axis=0), X[:n_fit].numpy().std(axis=0)
    sd[sd == 0] = 1.0                                                # constant units stay 0 after scaling
    X.sub_(torch.from_numpy(mu)).div_(torch.from_numpy(sd))
    X = X.numpy()
    return X[:n_fit], X[n_fit:]


class _FeatureProbe:
    """The probes of one feature on one split: top-k curve points and the sparse probe."""

    def __init__(self, grams: FoldGrams, Xs: np.ndarray, yf: np.ndarray, ys: np.ndarray, binary: bool):
        self.grams, self.Xf, self.Xs, self.binary = grams, grams.X, Xs, binary
        if binary:
            self.yf, self.ys, self.metric = yf.astype(int), ys.astype(int), "auroc"
        else:                                    # standardised labels make one alpha grid fit all counts
            m_y, s_y = yf.mean(), yf.std()
            self.yf, self.ys, self.metric = (yf - m_y) / s_y, (ys - m_y) / s_y, "r2"
        self.folds = grams.folds
        self.order = np.argsort(-np.abs(self.Xf.T @ (self.yf - self.yf.mean())), kind="stable")  # units by |r| on fit
        self.starts: dict = {}                   # the curve's logistic fits, warm starts for the next k

    def topk(self, k: int) -> tuple[float, str]:
        """(held-out score of an L2 probe on the k best units, "" or why it failed (score NaN))."""
        cols = self.order[:k]
        try:
            if self.binary:
                w, b = logistic_cv(self.Xf[:, cols], self.yf, self.folds, TOPK_CS, self.starts)
            else:
                w, b = ridge_cv(self.grams, self.yf, cols, RIDGE_ALPHAS)
            return self._score(self.Xs[:, cols] @ w + b), ""
        except ValueError as exc:
            return float("nan"), _first_line(exc)

    def sparse(self) -> tuple[float, float, np.ndarray]:
        """(strength chosen by CV, held-out score, weights [U]) of the L1 probe on the SCREEN units with
        the largest |r| on the fitting part (weights of the others are 0); ValueError if it cannot be fit."""
        if not self.binary:
            alpha, w, b = lasso_cv(self.grams, self.yf, LASSO_ALPHAS)
            return alpha, self._score(self.Xs @ w + b), w
        cols = np.sort(self.order[:SCREEN])
        C, w, b = l1_logistic_cv(self.Xf[:, cols], self.yf, self.folds, SPARSE_CS)
        coef = np.zeros(self.Xf.shape[1])
        coef[cols] = w
        return C, self._score(self.Xs[:, cols] @ w + b), coef

    def _score(self, predicted: np.ndarray) -> float:
        return auroc(self.ys, predicted) if self.binary else r2(self.ys, predicted)


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:100]


def _meta(n: int, n_fit: int, ks: list[int]) -> dict:
    return {"computed": True, "chars": n, "fit": [0, n_fit], "score": [n_fit, n],
            "cv": f"{CV_FOLDS} contiguous folds of the fitting part", "scaling": "standardised on the fitting part",
            "binary": f"sparse: L1 logistic regression, C in {list(SPARSE_CS)} by CV on AUROC; "
                      f"top-k (k < all): L2 logistic, C in {list(TOPK_CS)} by CV",
            "count": f"sparse: Lasso, alpha in {list(LASSO_ALPHAS)} by CV on R^2; top-k: ridge, "
                     f"alpha in {list(RIDGE_ALPHAS)} by CV; labels standardised",
            "screen": f"a binary feature's sparse probe sees the {SCREEN} units with the largest |r| on the fitting "
                      "part; a count feature's Lasso sees all",
            "k": ks}
