"""The sparse-probe stage of neuroscope.probe: how well do a few units, or all of them, predict a feature?

    >>> topk, sparse, meta, notes = sparse_probes(sample, squash, features, kinds, unit_ids, cfg)

Fit on the first 2/3 of the sample's first cfg.sparse_chars characters, scored on the rest (never
the same characters); regularisation by CV over contiguous folds of the fitting part only; units
standardised on the fitting part.

Binary features: an L1 logistic regression (liblinear), C by CV on AUROC; the top-k curve's
k < all points are L2 logistic regressions on the k best units. Count features: Lasso (alpha by CV
on R^2) and ridge for the curve, on standardised labels. Units are ranked by |r| on the fitting part
only. A binary feature's sparse probe sees the SCREEN best of them (all, if there are fewer), its
weights for the others 0: on in_quote (wp_lstm3x512, 12,000 test characters) it kept 5 units and
the same held-out AUROC (0.9998) as on all 3,072 units, in a fifth of the time. The Lasso of a count
feature keeps hundreds of units (568 for line_position), and screened to 512 it lost 0.016 of held-
out R^2, so it sees all units. The curve's last point, k = all units, is the sparse probe.

The L2 probes are solved to convergence rather than with scikit-learn's per-C fits: ridge in closed
form (one eigendecomposition per fold gives every alpha), logistic by Newton's method on liblinear's
objective (the intercept penalised like a weight), each C warm-started from the previous one; the
folds, grids, the choice of C (best mean fold score, first of equals) and the refit are
GridSearchCV's.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd

from .probe_config import ProbeConfig
from .stats import tanh_

CV_FOLDS = 3                          # contiguous folds (KFold without shuffling) inside the fitting part
SPARSE_CS = (0.01, 0.03, 0.1)         # inverse L1 strength for the sparse logistic probe (liblinear)
TOPK_CS = (0.01, 0.1, 1.0)            # inverse L2 strength for the top-k curve's logistic probes
RIDGE_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)
SCREEN = 512                          # units the binary sparse probe sees: the largest |r| with the label on the fitting part
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
    from tqdm.auto import tqdm
    U = sample.shape[0]
    n = min(sample.shape[1], cfg.sparse_chars)
    n_fit = (2 * n) // 3
    ks = [int(k) for k in 2 ** np.arange(0, 20) if k < U and k <= cfg.topk_max]
    Xf, Xs = _design(sample, squash, n, n_fit)
    rows_k, rows_s, notes = [], [], []
    bar = tqdm(total=len(features) * (len(ks) + 1), desc="sparse: probes", disable=not cfg.progress)
    for name, lab in features.items():
        y = np.asarray(lab[:n], dtype=np.float64)
        yf, ys = y[:n_fit], y[n_fit:]
        if yf.min() == yf.max() or ys.min() == ys.max():
            notes.append(f"{name}: no sparse probe (constant on the fitting or the scoring part of the "
                         f"first {n:,} characters)")
            bar.update(len(ks) + 1)
            continue
        probe = _FeatureProbe(Xf, Xs, yf, ys, kinds[name] == "binary")
        for k in ks:
            score, failed = probe.topk(k)
            notes += [f"{name}: top-{k} probe failed ({failed})"] if failed else []
            rows_k.append([name, k, score, probe.metric, "l2", n_fit, n - n_fit])
            bar.update(1)
        try:
            strength, score, coef = probe.sparse()
            nz = np.flatnonzero(coef)
            best = nz[np.argsort(-np.abs(coef[nz]), kind="stable")][:TOP_WEIGHTS]
            rows_s.append([name, "l1", strength, score, probe.metric, int(len(nz)), U,
                           ",".join(unit_ids[i] for i in best), n_fit, n - n_fit])
            rows_k.append([name, U, score, probe.metric, "l1", n_fit, n - n_fit])
        except ValueError as exc:
            notes.append(f"{name}: sparse probe failed ({_first_line(exc)})")
        bar.update(1)
    bar.close()
    topk = pd.DataFrame(rows_k, columns=TOPK_COLUMNS) if rows_k else pd.DataFrame(columns=TOPK_COLUMNS)
    sparse = pd.DataFrame(rows_s, columns=SPARSE_COLUMNS) if rows_s else pd.DataFrame(columns=SPARSE_COLUMNS)
    return topk, sparse, _meta(n, n_fit, ks + [U]), notes


def _design(sample: np.ndarray, squash: np.ndarray, n: int, n_fit: int) -> tuple[np.ndarray, np.ndarray]:
    """The units' values on the first n characters, standardised on the first n_fit: (fit [n_fit, U],
    score [n - n_fit, U]), float64."""
    X = np.ascontiguousarray(sample[:, :n].T, dtype=np.float64)      # [n, U]
    X[:, squash] = tanh_(X[:, squash])
    mu, sd = X[:n_fit].mean(axis=0), X[:n_fit].std(axis=0)
    sd[sd == 0] = 1.0                                                # constant units stay 0 after scaling
    X -= mu
    X /= sd
    return X[:n_fit], X[n_fit:]


class _FeatureProbe:
    """The probes of one feature on one split: top-k curve points and the sparse probe."""

    def __init__(self, Xf: np.ndarray, Xs: np.ndarray, yf: np.ndarray, ys: np.ndarray, binary: bool):
        from sklearn.model_selection import KFold
        self.Xf, self.Xs, self.binary = Xf, Xs, binary
        if binary:
            self.yf, self.ys, self.metric = yf.astype(int), ys.astype(int), "auroc"
        else:                                    # standardised labels make one alpha grid fit all counts
            m_y, s_y = yf.mean(), yf.std()
            self.yf, self.ys, self.metric = (yf - m_y) / s_y, (ys - m_y) / s_y, "r2"
        self.cv = KFold(CV_FOLDS, shuffle=False)                      # contiguous folds
        self.folds = list(self.cv.split(Xf))
        self.order = np.argsort(-np.abs(Xf.T @ (self.yf - self.yf.mean())), kind="stable")  # units by |r| on fit
        self.starts: dict = {}                   # the curve's logistic fits, warm starts for the next k

    def topk(self, k: int) -> tuple[float, str]:
        """(held-out score of an L2 probe on the k best units, "" or why it failed (score NaN))."""
        cols = self.order[:k]
        Xf, Xs = self.Xf[:, cols], self.Xs[:, cols]
        try:
            if self.binary:
                w, b = _logistic_cv(Xf, self.yf, self.folds, TOPK_CS, self.starts)
                return self._score(Xs @ w + b), ""
            w, b = _ridge_cv(Xf, self.yf, self.folds, RIDGE_ALPHAS)
            return self._score(Xs @ w + b), ""
        except ValueError as exc:
            return float("nan"), _first_line(exc)

    def sparse(self) -> tuple[float, float, np.ndarray]:
        """(strength chosen by CV, held-out score, weights [U]) of the L1 probe on the SCREEN units with
        the largest |r| on the fitting part (weights of the others are 0); ValueError if it cannot be fit."""
        from joblib import parallel_config
        from sklearn.linear_model import LassoCV, LogisticRegression
        from sklearn.model_selection import GridSearchCV
        cols = np.sort(self.order[:SCREEN]) if self.binary else np.arange(self.Xf.shape[1])
        Xf, Xs = self.Xf[:, cols], self.Xs[:, cols]
        coef = np.zeros(self.Xf.shape[1])
        # The folds' fits side by side in threads (liblinear and the coordinate descent release the GIL).
        jobs = len(os.sched_getaffinity(0))
        with warnings.catch_warnings(), parallel_config(backend="threading", n_jobs=jobs):
            warnings.simplefilter("ignore")
            if self.binary:
                est = LogisticRegression(l1_ratio=1.0, solver="liblinear", tol=1e-3)
                m = GridSearchCV(est, {"C": SPARSE_CS}, cv=self.cv, scoring="roc_auc", n_jobs=jobs).fit(Xf, self.yf)
                coef[cols] = np.ravel(m.best_estimator_.coef_)
                return float(m.best_params_["C"]), self._score(m.decision_function(Xs)), coef
            m = LassoCV(alphas=LASSO_ALPHAS, cv=self.cv, precompute=True, max_iter=2000, n_jobs=jobs).fit(Xf, self.yf)
            coef[cols] = m.coef_
            return float(m.alpha_), self._score(m.predict(Xs)), coef

    def _score(self, predicted: np.ndarray) -> float:
        return _auroc(self.ys, predicted) if self.binary else _r2(self.ys, predicted)


def _auroc(y: np.ndarray, score: np.ndarray) -> float:
    """roc_auc_score(y, score) (0/1 labels; ties count one half); ValueError with one class."""
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(y, score))


def _r2(y: np.ndarray, predicted: np.ndarray) -> float:
    from sklearn.metrics import r2_score
    return float(r2_score(y, predicted))


def _best(scores: list[list[float]]) -> int:
    """Index of the best mean fold score, the first of equals, as GridSearchCV picks it: a failed fold
    (one class in it) makes its candidate's mean NaN, ranked last, so when every candidate has one the
    first strength is taken and the refit on the whole fitting part still gives a held-out score."""
    mean = np.nan_to_num(np.array([np.mean(s) for s in scores]), nan=-np.inf)
    return int(np.flatnonzero(mean == mean.max())[0])


def _ridge_cv(X: np.ndarray, y: np.ndarray, folds, alphas) -> tuple[np.ndarray, float]:
    """RidgeCV(alphas, cv=folds) in closed form, (weights [k], intercept): one eigendecomposition of
    each fold's centred Gram matrix gives every alpha (scikit-learn fits each alpha from scratch)."""
    def fit(rows):
        Xr, yr = X[rows], y[rows]
        mx, my = Xr.mean(axis=0), yr.mean()
        Xc = Xr - mx
        lam, V = np.linalg.eigh(Xc.T @ Xc)                          # [k], [k, k]
        proj = V.T @ (Xc.T @ (yr - my))
        return lambda a: (V @ (proj / (np.maximum(lam, 0.0) + a)), mx, my)

    scores = [[] for _ in alphas]
    for train, val in folds:
        solve = fit(train)
        for i, a in enumerate(alphas):
            w, mx, my = solve(a)
            scores[i].append(_r2(y[val], (X[val] - mx) @ w + my))
    w, mx, my = fit(np.arange(len(y)))(alphas[_best(scores)])
    return w, float(my - mx @ w)


def _logistic_cv(X: np.ndarray, y: np.ndarray, folds, Cs, starts: dict | None = None) -> tuple[np.ndarray, float]:
    """GridSearchCV(LogisticRegression(solver="liblinear"), {"C": Cs}, cv=folds, scoring="roc_auc"),
    solved by Newton's method to convergence: (weights [k], intercept). liblinear's objective (the
    intercept is a column of ones, penalised like a weight).

    Each C starts from the previous C's answer, the refit from the chosen C's last fold, and, with
    `starts` (a dict kept between calls on growing prefixes of the same columns), each fit from the
    answer on the previous, shorter prefix, the new columns at 0. The objective is strictly convex,
    so the starts change the time, not the answer.
    """
    starts = {} if starts is None else starts
    Xb = np.hstack([X, np.ones((len(X), 1))])                       # [n, k + 1]
    s = np.where(y > 0, 1.0, -1.0)
    scores = [[] for _ in Cs]
    last = {}
    for f, (train, val) in enumerate(folds):
        if len(np.unique(y[train])) < 2 or len(np.unique(y[val])) < 2:
            for sc in scores:
                sc.append(np.nan)
            continue
        w = None
        for i, C in enumerate(Cs):
            w = _newton_logistic(Xb[train], s[train], C, _grown(starts.get((f, i)), X.shape[1]) if w is None else w)
            starts[f, i] = last[i] = w
            scores[i].append(_auroc(y[val], Xb[val] @ w))
    best = _best(scores)
    w = _newton_logistic(Xb, s, Cs[best], last.get(best))
    return w[:-1], float(w[-1])


def _grown(w: np.ndarray | None, k: int) -> np.ndarray | None:
    """Weights [k_old + 1] (intercept last) for the first k_old of k columns -> [k + 1], new ones 0."""
    if w is None or len(w) - 1 > k:
        return None
    return np.concatenate([w[:-1], np.zeros(k - (len(w) - 1)), w[-1:]])


def _newton_logistic(X: np.ndarray, s: np.ndarray, C: float, w: np.ndarray | None, tol: float = 1e-7,
                     max_iter: int = 100) -> np.ndarray:
    """argmin_w 0.5 |w|^2 + C sum log(1 + exp(-s * (X @ w))) (s = +-1), by Newton steps with a
    backtracking line search, from w (None: zeros). Strictly convex, so the answer does not depend on
    the start; it stops when the gradient is below tol of its size at zero or a step would change the
    objective by less than 1e-12 of itself (rounding)."""
    from scipy.special import expit, log_expit
    n, k = X.shape
    w = np.zeros(k) if w is None else w.copy()
    loss = lambda v: 0.5 * v @ v - C * log_expit(s * (X @ v)).sum()       # noqa: E731
    g0 = C * np.abs(X.T @ s).max() / 2 + 1e-300                      # |gradient| at w = 0
    X32 = X.astype(np.float32)                                       # the Hessian in float32: half the time;
                                                                     # the gradient and the steps' checks stay float64
    f = loss(w)
    for _ in range(max_iter):
        m = s * (X @ w)
        q = expit(-m)                                                # 1 - sigmoid(margin)
        g = w - C * (X.T @ (s * q))
        if np.abs(g).max() <= tol * g0:
            break
        H = ((X32 * (C * q * (1.0 - q)).astype(np.float32)[:, None]).T @ X32).astype(np.float64)   # [k, k]
        H[np.diag_indices(k)] += 1.0
        step = -np.linalg.solve(H, g)
        t, slope = 1.0, g @ step
        if -slope <= 1e-12 * (1.0 + abs(f)):                        # the Newton decrement: converged
            break
        while True:
            f_new = loss(w + t * step)
            if f_new <= f + 1e-4 * t * slope or t < 1e-10:
                break
            t *= 0.5
        w, f = w + t * step, f_new
    return w


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
