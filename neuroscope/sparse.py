"""The sparse-probe stage of neuroscope.probe: how well do a few units, or all of them, predict a feature?

    >>> topk, sparse, meta, notes = sparse_probes(sample, squash, features, kinds, unit_ids, cfg)

Fit on the first 2/3 of the sample's first cfg.sparse_chars characters, scored on the rest (never
the same characters); regularisation by CV over contiguous folds of the fitting part only; units
standardised on the fitting part.

Binary features: an L1 logistic regression (liblinear) on all units, C by CV on AUROC; the top-k
curve's k < all points are L2 logistic regressions on the k best units. Count features: Lasso
(alpha by CV on R^2) and ridge for the curve, on standardised labels. The curve's last point,
k = all units, is the sparse probe. Units are ranked for the curve by |r| on the fitting part only.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .probe_config import ProbeConfig
from .stats import tanh_

CV_FOLDS = 3                          # contiguous folds (KFold without shuffling) inside the fitting part
SPARSE_CS = (0.01, 0.03, 0.1)         # inverse L1 strength for the sparse logistic probe (liblinear)
TOPK_CS = (0.01, 0.1, 1.0)            # inverse L2 strength for the top-k curve's logistic probes
RIDGE_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)
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
    bar = tqdm(total=len(features) * (len(ks) + 1), desc="sparse probes", disable=not cfg.progress)
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
        self.order = np.argsort(-np.abs(Xf.T @ (self.yf - self.yf.mean())), kind="stable")  # units by |r| on fit

    def topk(self, k: int) -> tuple[float, str]:
        """(held-out score of an L2 probe on the k best units, "" or why it failed (score NaN))."""
        from sklearn.linear_model import LogisticRegression, RidgeCV
        from sklearn.model_selection import GridSearchCV
        cols = self.order[:k]
        Xf, Xs = self.Xf[:, cols], self.Xs[:, cols]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # convergence notes and one-class folds of a rare feature
                if self.binary:
                    m = GridSearchCV(LogisticRegression(solver="liblinear", tol=1e-3), {"C": TOPK_CS},
                                     cv=self.cv, scoring="roc_auc").fit(Xf, self.yf)
                    return self._score(m.decision_function(Xs)), ""
                m = RidgeCV(alphas=RIDGE_ALPHAS, cv=self.cv).fit(Xf, self.yf)
                return self._score(m.predict(Xs)), ""
        except ValueError as exc:
            return float("nan"), _first_line(exc)

    def sparse(self) -> tuple[float, float, np.ndarray]:
        """(strength chosen by CV, held-out score, weights [U]) of the L1 probe on all units; ValueError
        if it cannot be fit."""
        from sklearn.linear_model import LassoCV, LogisticRegression
        from sklearn.model_selection import GridSearchCV
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.binary:
                est = LogisticRegression(l1_ratio=1.0, solver="liblinear", tol=1e-3)
                m = GridSearchCV(est, {"C": SPARSE_CS}, cv=self.cv, scoring="roc_auc").fit(self.Xf, self.yf)
                return (float(m.best_params_["C"]), self._score(m.decision_function(self.Xs)),
                        np.ravel(m.best_estimator_.coef_))
            m = LassoCV(alphas=LASSO_ALPHAS, cv=self.cv, precompute=True, max_iter=2000).fit(self.Xf, self.yf)
            return float(m.alpha_), self._score(m.predict(self.Xs)), m.coef_

    def _score(self, predicted: np.ndarray) -> float:
        from sklearn.metrics import r2_score, roc_auc_score
        return float(roc_auc_score(self.ys, predicted) if self.binary else r2_score(self.ys, predicted))


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:100]


def _meta(n: int, n_fit: int, ks: list[int]) -> dict:
    return {"computed": True, "chars": n, "fit": [0, n_fit], "score": [n_fit, n],
            "cv": f"{CV_FOLDS} contiguous folds of the fitting part", "scaling": "standardised on the fitting part",
            "binary": f"sparse: L1 logistic regression, C in {list(SPARSE_CS)} by CV on AUROC; "
                      f"top-k (k < all): L2 logistic, C in {list(TOPK_CS)} by CV",
            "count": f"sparse: Lasso, alpha in {list(LASSO_ALPHAS)} by CV on R^2; top-k: ridge, "
                     f"alpha in {list(RIDGE_ALPHAS)} by CV; labels standardised",
            "k": ks}
