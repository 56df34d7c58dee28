"""Regularised linear probes chosen by cross-validation, solved faster than scikit-learn's per-fit estimators
and to the same answers: the solvers of the sparse stage (_sparse).

    >>> grams = FoldGrams(X, folds)                       # once per design matrix, shared by every count feature
    >>> w, b = ridge_cv(grams, y, cols, alphas)           # RidgeCV(alphas, cv=folds) on X[:, cols]
    >>> alpha, w, b = lasso_cv(grams, y, alphas)          # LassoCV(alphas=alphas, cv=folds, precompute=True)
    >>> w, b = logistic_cv(X, y, folds, Cs)               # GridSearchCV(LogisticRegression(liblinear), {"C": Cs})
    >>> C, w, b = l1_logistic_cv(X, y, folds, Cs)         # the same with the L1 penalty, liblinear itself

Every count feature's ridge and Lasso see the same units on the same folds, so the centred Gram
matrix of each fold's training rows is computed once (FoldGrams: one symmetric product per fold
block, the training Grams as sums of blocks) instead of once per fit; the Lasso then runs scikit-
learn's own coordinate descent (`lasso_path` with the Gram). Folds, grids, the choice of strength
(best mean fold score, first of equals; LassoCV: least mean squared error) and the refit on all
rows are those of the scikit-learn estimators named above.
"""
from __future__ import annotations

import threading

import numpy as np

from .. import stats

_LIBLINEAR = threading.Lock()


class FoldGrams:
    """Centred Gram matrices X[train].T @ X[train] of each fold's training rows, and of all rows.

    X: [n, U] float64; folds: [(train, val)] whose val index sets partition the rows (KFold). Memory:
    len(folds) + 1 matrices of U x U float64, made on first use.
    """

    def __init__(self, X: np.ndarray, folds):
        self.X, self.folds = X, list(folds)
        self._grams: dict = {}

    def gram(self, f: int | None) -> tuple[np.ndarray, np.ndarray]:
        """(centred Gram [U, U], column means [U]) of fold f's training rows (None: all rows)."""
        if not self._grams:
            self._build()
        return self._grams[f]

    def _build(self):
        X = self.X
        blocks = []                                     # (raw X_b.T @ X_b, column sums, rows) per val block
        for _, val in self.folds:
            Xb = rows(X, val)
            blocks.append((Xb.T @ Xb, Xb.sum(axis=0), len(Xb)))
        total = blocks[0][0].copy()
        for G, _, _ in blocks[1:]:
            total += G
        s_all, n_all = sum(b[1] for b in blocks), len(X)
        for f, (G, s, nb) in enumerate(blocks):
            np.subtract(total, G, out=G)                # the block's buffer becomes its fold's training Gram
            self._grams[f] = _centred(G, s_all - s, n_all - nb)
        self._grams[None] = _centred(total, s_all, n_all)


def rows(X: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """X[idx]: a view when idx is a run of consecutive rows (KFold's validation folds), else a copy."""
    if len(idx) and idx[-1] - idx[0] + 1 == len(idx):
        return X[idx[0]:idx[-1] + 1]
    return X[idx]


def _xty(X: np.ndarray, y: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, float]:
    """(X[idx].T @ (y[idx] - mean), mean) without copying X[idx]: the other rows weigh 0. With y
    centred, X'y equals the centred X's, so it pairs with a centred Gram."""
    my = float(y[idx].mean())
    z = np.zeros(len(y))
    z[idx] = y[idx] - my
    return X.T @ z, my


def _centred(G: np.ndarray, s: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """sum x x^T over n rows, with sum x = s -> (sum (x - m)(x - m)^T, m), in place."""
    m = s / n
    G -= np.multiply.outer(n * m, m)
    return G, m


def ridge_cv(grams: FoldGrams, y: np.ndarray, cols: np.ndarray, alphas) -> tuple[np.ndarray, float]:
    """RidgeCV(alphas, cv=folds) on X[:, cols] in closed form: (weights [k], intercept). One
    eigendecomposition of each fold's centred Gram gives every alpha (scikit-learn fits each alpha
    from scratch)."""
    X = grams.X

    def fit(f, idx):
        G, m = grams.gram(f)
        xy, my = _xty(X[:, cols], y, idx)
        lam, V = np.linalg.eigh(G[np.ix_(cols, cols)])
        proj = V.T @ xy
        return lambda a: (V @ (proj / (np.maximum(lam, 0.0) + a)), m[cols], my)

    scores = [[] for _ in alphas]
    for f, (train, val) in enumerate(grams.folds):
        solve = fit(f, train)
        for i, a in enumerate(alphas):
            w, mx, my = solve(a)
            scores[i].append(r2(y[val], (rows(X, val)[:, cols] - mx) @ w + my))
    w, mx, my = fit(None, np.arange(len(y)))(alphas[best(scores)])
    return w, float(my - mx @ w)


def lasso_cv(grams: FoldGrams, y: np.ndarray, alphas, max_iter: int = 2000,
             tol: float = 1e-4) -> tuple[float, np.ndarray, float]:
    """LassoCV(alphas=alphas, cv=folds, precompute=True, max_iter, tol) on all columns: (alpha, weights
    [U], intercept), by scikit-learn's coordinate descent on the shared centred Grams."""
    alphas = np.sort(np.asarray(alphas, dtype=np.float64))[::-1]   # LassoCV walks the path downwards
    X = grams.X
    mse = []
    for f, (train, val) in enumerate(grams.folds):
        coefs, m, my = _lasso_path(grams, f, y, train, alphas, max_iter, tol)
        pred = (rows(X, val) - m) @ coefs + my                      # [n_val, alphas]
        mse.append(((pred - y[val][:, None]) ** 2).mean(axis=0))
    alpha = alphas[int(np.argmin(np.mean(mse, axis=0)))]
    coefs, m, my = _lasso_path(grams, None, y, np.arange(len(y)), np.array([alpha]), max_iter, tol)
    w = coefs[:, 0]
    return float(alpha), w, float(my - m @ w)


def _lasso_path(grams, f, y, idx, alphas, max_iter, tol):
    """scikit-learn's lasso_path on fold f's centred Gram -> (coefs [U, alphas], x means, y mean)."""
    from sklearn.linear_model import lasso_path
    G, m = grams.gram(f)
    Xy, my = _xty(grams.X, y, idx)
    shape_only = np.empty((len(idx), G.shape[0]))                   # with a Gram, X only gives the shape
    _, coefs, _ = lasso_path(shape_only, y[idx] - my, alphas=alphas, precompute=G, Xy=Xy, check_input=False,
                             max_iter=max_iter, tol=tol)
    return coefs, m, my


def logistic_cv(X: np.ndarray, y: np.ndarray, folds, Cs, starts: dict | None = None) -> tuple[np.ndarray, float]:
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
        Xt, Xv = rows(Xb, train), rows(Xb, val)
        Xt32 = Xt.astype(np.float32)
        w = None
        for i, C in enumerate(Cs):
            w = newton_logistic(Xt, s[train], C, _grown(starts.get((f, i)), X.shape[1]) if w is None else w, Xt32)
            starts[f, i] = last[i] = w
            scores[i].append(auroc(y[val], Xv @ w))
    chosen = best(scores)
    w = newton_logistic(Xb, s, Cs[chosen], last.get(chosen))
    return w[:-1], float(w[-1])


def l1_logistic_cv(X: np.ndarray, y: np.ndarray, folds, Cs, seed: int = 0) -> tuple[float, np.ndarray, float]:
    """GridSearchCV(LogisticRegression(l1_ratio=1, solver="liblinear", tol=1e-3, random_state=seed),
    {"C": Cs}, cv=folds, scoring="roc_auc"): (C, weights [k], intercept). The fits run
    one at a time, so that the same call gives the same answer; a fold with one class scores NaN, as there."""
    from sklearn.linear_model import LogisticRegression

    def fit(rows_, C):
        Xr, yr = X[rows_], y[rows_]
        # liblinear seeds the C library's one global rand() and draws from it while it fits, so fits
        # running side by side would interleave their draws and the answers would vary run to run.
        with _LIBLINEAR:
            return LogisticRegression(l1_ratio=1.0, solver="liblinear", tol=1e-3, C=C,
                                      random_state=seed).fit(Xr, yr)

    def fold_score(job):
        (train, val), C = job
        if len(np.unique(y[train])) < 2 or len(np.unique(y[val])) < 2:
            return np.nan
        return auroc(y[val], fit(train, C).decision_function(rows(X, val)))

    flat = [fold_score((fold, C)) for C in Cs for fold in folds]
    C = Cs[best([flat[i * len(folds):(i + 1) * len(folds)] for i in range(len(Cs))])]
    m = fit(np.arange(len(y)), C)
    return float(C), np.ravel(m.coef_), float(m.intercept_[0])


def _grown(w: np.ndarray | None, k: int) -> np.ndarray | None:
    """Weights [k_old + 1] (intercept last) for the first k_old of k columns -> [k + 1], new ones 0."""
    if w is None or len(w) - 1 > k:
        return None
    return np.concatenate([w[:-1], np.zeros(k - (len(w) - 1)), w[-1:]])


def newton_logistic(X: np.ndarray, s: np.ndarray, C: float, w: np.ndarray | None, X32: np.ndarray | None = None,
                    tol: float = 1e-7, max_iter: int = 100) -> np.ndarray:
    """argmin_w 0.5 |w|^2 + C sum log(1 + exp(-s * (X @ w))) (s = +-1), by Newton steps with a
    backtracking line search, from w (None: zeros). Strictly convex, so the answer does not depend on
    the start; it stops when the gradient is below tol of its size at zero or a step would change the
    objective by less than 1e-12 of itself (rounding). X32: X as float32, if the caller has it.
    """
    from scipy.special import expit, log_expit
    n, k = X.shape
    w = np.zeros(k) if w is None else w.copy()
    loss = lambda v: 0.5 * v @ v - C * log_expit(s * (X @ v)).sum()       # noqa: E731
    g0 = C * np.abs(X.T @ s).max() / 2 + 1e-300                      # |gradient| at w = 0
    X32 = X.astype(np.float32) if X32 is None else X32               # the Hessian in float32: half the time;
                                                                     # the gradient and the steps' checks stay float64
    f = loss(w)
    for _ in range(max_iter):
        q = expit(-s * (X @ w))                                      # 1 - sigmoid(margin)
        g = w - C * (X.T @ (s * q))
        if np.abs(g).max() <= tol * g0:
            break
        Z = X32 * np.sqrt(C * q * (1.0 - q)).astype(np.float32)[:, None]
        H = (Z.T @ Z).astype(np.float64)                             # [k, k]; Z.T @ Z: numpy's symmetric product
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


def best(scores: list[list[float]]) -> int:
    """Index of the best mean fold score, the first of equals, as GridSearchCV picks it: a failed fold
    (one class in it) makes its candidate's mean NaN, ranked last, so when every candidate has one the
    first strength is taken and the refit on the whole fitting part still gives a held-out score."""
    mean = np.nan_to_num(np.array([np.mean(s) for s in scores]), nan=-np.inf)
    return int(np.flatnonzero(mean == mean.max())[0])


def auroc(y: np.ndarray, score: np.ndarray) -> float:
    """roc_auc_score(y, score) for 0/1 labels (ties count one half), without its checks; NaN with one class."""
    return stats.auroc(score, y)


def r2(y: np.ndarray, predicted: np.ndarray) -> float:
    """sklearn.metrics.r2_score(y, predicted) for one output, without its checks."""
    res = y - predicted
    dev = y - y.mean()
    return float(1.0 - (res @ res) / (dev @ dev))
