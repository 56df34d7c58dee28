"""Statistics for ranking units against per-character features, built for long, autocorrelated text.

    >>> acc = CorrAccumulator()
    >>> for X, Y in chunks:                   # X float32 [n, U] activations, Y [n, F] labels
    ...     acc.update(X, Y)
    >>> acc.corr()                             # Pearson r [U, F] over every row seen, float64
    >>> auc, rho = rank_stats(S, yb, yc)       # AUROC / Spearman on a sample S [U, N] held in memory
    >>> null = circular_shift_null(S_top, y, min_shift=1000)   # null.p [U_top], null.shifts
    >>> holm(p, m=U)                           # Holm-adjusted p-values, untested units counted in m
    >>> tanh_(c)                               # a cell state's value, in place

- Pearson r streams: CorrAccumulator keeps float64 means and centred co-moments ([U], [F], [U, F])
  and merges each chunk with Chan et al.'s pairwise update, so a 10M-character text costs
  O(U x F) memory and no catastrophic cancellation for cell states that sit far from 0.
- AUROC and Spearman need ranks, and the null needs whole sequences: they run on a bounded
  sample (the caller chooses it; neuroscope.probe keeps the span's first characters, contiguous).
- The null keeps the autocorrelation of both sides: the labels are rotated against the
  activations by every shift s with min_shift <= s <= N - min_shift (computed at once as a circular
  cross-correlation with FFTs); p is the larger of the permutation p-value
  (1 + #{s: |r_s| >= |r_0|}) / (1 + #shifts) and a normal tail fitted to the shifts' Fisher z
  (see circular_shift_null for why both).

This module imports nothing of neuroscope's but its error type (torch for CorrAccumulator's arithmetic).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.special
import torch
from tqdm.auto import tqdm

from .errors import UserError

# A unit (or label) whose variance is below this fraction of its squared scale is constant:
# its r is defined as 0, never NaN.
CONSTANT_RTOL = 1e-12


def _as_tensor(x) -> torch.Tensor:
    """A CPU tensor sharing x's memory where it can (numpy float32 arrays, tensors)."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    return torch.from_numpy(np.asarray(x, dtype=np.float32))


class CorrAccumulator:
    """Streaming sufficient statistics for Pearson r between U activations and F labels.

    update(X [n, U], Y [n, F]) per chunk; any number of chunks, any sizes, any order.
    Per chunk the data are centred on the chunk's own means (float32, where the matrix product
    runs), and the chunk's co-moments are merged into float64 totals (Chan, Golub & LeVeque 1979).
    """

    def __init__(self):
        self.n = 0
        self.mean_x = self.mean_y = None      # float64 [U], [F]
        self.m2_x = self.m2_y = None          # sum of squared deviations, float64 [U], [F]
        self.m_xy = None                      # sum of cross deviations, float64 [U, F]

    def update(self, X, Y: np.ndarray, overwrite: bool = False) -> "CorrAccumulator":
        """Merge the rows of X [n, U] and Y [n, F]. X is a float32 numpy array or CPU tensor, or a
        list of them side by side ([n, U_1], [n, U_2], ...: the units in that order, never joined).
        overwrite=True lets it centre X in place (X must then be float32 and writable, and the caller
        no longer need it): one copy of X less.

        The arithmetic on X runs in PyTorch (its thread pool, the one the recorder uses; numpy's
        own BLAS threads would compete with it for the cores while a recording runs).
        """
        blocks = [_as_tensor(b) for b in (X if isinstance(X, (list, tuple)) else [X])]
        Y = np.asarray(Y, dtype=np.float32)
        if Y.ndim != 2 or any(b.ndim != 2 or b.shape[0] != Y.shape[0] for b in blocks):
            raise ValueError(f"need X [n, U] and Y [n, F] with the same n, got "
                             f"{[tuple(b.shape) for b in blocks]} and {Y.shape}")
        nb = Y.shape[0]
        if nb == 0:
            return self
        Z, my, m2y, sy = _label_moments(Y)
        mx, m2x, mxy = _unit_moments(blocks, Z, sy, overwrite)
        return self._merge(nb, mx, my, m2x, m2y, mxy)

    def _merge(self, nb: int, mx, my, m2x, m2y, mxy) -> "CorrAccumulator":
        """Add a chunk of nb rows with means mx, my and centred moments m2x, m2y, mxy."""
        if self.n == 0:
            self.n, self.mean_x, self.mean_y = nb, mx, my
            self.m2_x, self.m2_y, self.m_xy = m2x, m2y, mxy
            return self
        na, n = self.n, self.n + nb
        dx, dy = mx - self.mean_x, my - self.mean_y
        w = na * nb / n
        self.m2_x += m2x + dx * dx * w
        self.m2_y += m2y + dy * dy * w
        self.m_xy += mxy + np.outer(dx, dy) * w
        self.mean_x += dx * (nb / n)
        self.mean_y += dy * (nb / n)
        self.n = n
        return self

    def _constant(self, m2: np.ndarray, mean: np.ndarray) -> np.ndarray:
        return m2 <= CONSTANT_RTOL * self.n * (1.0 + mean * mean)

    def constant_x(self) -> np.ndarray:
        """bool [U]: units that did not vary over the rows seen."""
        return self._constant(self.m2_x, self.mean_x)

    def constant_y(self) -> np.ndarray:
        """bool [F]: labels that did not vary over the rows seen."""
        return self._constant(self.m2_y, self.mean_y)

    def corr(self) -> np.ndarray:
        """Pearson r, float64 [U, F]; 0 where the unit or the label is constant."""
        if self.n < 2:
            raise UserError("need at least 2 characters for a correlation")
        denom = np.sqrt(np.outer(self.m2_x, self.m2_y))
        ok = np.outer(~self.constant_x(), ~self.constant_y())
        r = np.zeros_like(self.m_xy)
        np.divide(self.m_xy, denom, out=r, where=ok)
        return np.clip(r, -1.0, 1.0)

    def binary_means(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean where label == 1, mean where label == 0), float64 [U, F], for 0/1 labels.

        Exact from the moments: with p = mean(y), mean_on - mean_off = cov(x, y) / var(y).
        NaN for a label that is constant.
        """
        p = self.mean_y                                              # [F]
        var_y = self.m2_y / self.n
        with np.errstate(divide="ignore", invalid="ignore"):
            diff = (self.m_xy / self.n) / var_y                      # [U, F]
        diff[:, self.constant_y()] = np.nan
        on = self.mean_x[:, None] + (1.0 - p)[None, :] * diff
        off = self.mean_x[:, None] - p[None, :] * diff
        return on, off


def _label_moments(Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A chunk's labels Y [n, F]: (Z, mean float64 [F], centred sum of squares float64 [F], sy).

    Z float32 [F + 1, n] holds the labels centred on their float64 mean, label-major, and a row of
    ones, so that Z @ X gives the cross moments and the sums of X in one product; sy float64 [F] is
    the rounding residual sum(Z[:F]) (about 0), for _unit_moments to correct the cross moments.
    """
    nb, F = Y.shape
    my = Y.mean(axis=0, dtype=np.float64)
    Z = np.empty((F + 1, nb), dtype=np.float32)
    Z[:F] = (Y - my.astype(np.float32)).T
    Z[F] = 1.0
    sy = Z[:F].sum(axis=1, dtype=np.float64)
    m2y = np.maximum(np.einsum("ij,ij->i", Z[:F], Z[:F], dtype=np.float64) - sy * sy / nb, 0.0)
    return Z, my + sy / nb, m2y, sy


def _unit_moments(blocks: list[torch.Tensor], Z: np.ndarray, sy: np.ndarray,
                  overwrite: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A chunk's units, side by side in blocks [n, U_i]: (mean float64 [U], centred sum of squares
    float64 [U], centred cross moments with the labels float64 [U, F]); Z and sy from _label_moments."""
    nb, F = Z.shape[1], Z.shape[0] - 1
    tZ = torch.from_numpy(Z)
    # Corrected two-pass per block: centre on a float32 estimate c of the chunk mean, then take
    # the exact residual s = sum(X - c) from the same matrix product as the cross moments.
    cs, Ms, sqs = [], [], []
    for b in blocks:
        c = b.sum(dim=0).div_(nb)                                    # float32 [U_i]
        Xc = b if overwrite and b.dtype == torch.float32 else b.to(torch.float32, copy=True)
        Xc.sub_(c)
        cs.append(c.double())
        Ms.append((tZ @ Xc).double())                                # [F + 1, U_i]
        sqs.append(Xc.square().sum(dim=0).double())                  # cascade sum: ~1e-7 relative
    c, M, sq = torch.cat(cs).numpy(), torch.cat(Ms, dim=1).numpy().T, torch.cat(sqs).numpy()
    s = M[:, F]                                                      # sum of (x - c)
    return c + s / nb, np.maximum(sq - s * s / nb, 0.0), M[:, :F] - np.outer(s, sy) / nb


def tanh_(x):
    """tanh in place, of a float tensor or numpy array (a view writes through to its base); returns x.

    A cell state's value is tanh(c), what the cell passes on (h = o * tanh(c)). A tensor (the
    recorder's blocks, the hot path) is computed as 2 sigmoid(2x) - 1, within 1e-7 of tanh:
    PyTorch's CPU sigmoid is ~3x faster than its tanh.
    """
    if isinstance(x, torch.Tensor):
        return x.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)
    return np.tanh(x, out=x)


class Moments:
    """Running float64 sums of values [n, H] per column, for each column's variance over a stream of blocks."""

    def __init__(self):
        self.n, self.s1, self.s2 = 0, 0.0, 0.0

    def add(self, v: np.ndarray) -> None:
        self.n += len(v)
        self.s1 = self.s1 + v.sum(0, dtype=np.float64)
        self.s2 = self.s2 + (v.astype(np.float64) ** 2).sum(0)

    @property
    def mean(self) -> np.ndarray:
        """float64 [H]: each column's mean."""
        return self.s1 / self.n

    def variance(self) -> np.ndarray:
        """float64 [H]: the population variance of each column."""
        return self.s2 / self.n - (self.s1 / self.n) ** 2


SHOWN = "h as is, tanh(c) for cell states"      # how every table, page and note names a unit's value


def shown(x, squash, inplace: bool = False):
    """A unit's shown value, the one every statistic, colour, threshold and formula reads: tanh(x) for a
    cell state (unbounded: |c| reaches thousands; h = o * tanh(c) is what the cell passes on), x as is
    for h and gates.

    x: a float numpy array or torch tensor; squash: True for a cell state (names.squashes(name),
    names.Unit.squash), or a bool array over x's last axis marking its cell-state columns; inplace:
    overwrite x (a view writes through), else x is left as it is. Returns the shown values.
    """
    if np.ndim(squash) == 0:
        if not squash:
            return x
        return tanh_(x if inplace else (x.clone() if isinstance(x, torch.Tensor) else np.array(x, copy=True)))
    cols = np.flatnonzero(np.asarray(squash))
    out = x if inplace else (x.clone() if isinstance(x, torch.Tensor) else np.array(x, copy=True))
    if len(cols):
        if isinstance(out, torch.Tensor):
            idx = torch.as_tensor(cols, device=out.device)
            out.index_copy_(-1, idx, tanh_(out.index_select(-1, idx)))
        else:
            out[..., cols] = np.tanh(out[..., cols])
    return out


def average_ranks(block: np.ndarray) -> np.ndarray:
    """Ranks 1..N along the last axis, ties sharing their average rank, float64 [..., N]."""
    block = np.asarray(block)
    N = block.shape[-1]
    rows = block.reshape(-1, N)
    out = np.empty(rows.shape, dtype=np.float64)
    plain = np.arange(1.0, N + 1.0)
    sort = _Float32Sort(N) if rows.dtype == np.float32 and N < 2**31 else None
    for i, row in enumerate(rows):                # row by row: 2-3x faster than the *_along_axis forms
        order, ordered = sort(row) if sort else _argsort(row)
        tied = ordered[1:] == ordered[:-1]
        ranks = plain
        if tied.any():
            starts = np.flatnonzero(np.r_[True, ~tied])               # each tie group is [start, end)
            ends = np.r_[starts[1:], N]
            ranks = np.repeat((starts + ends + 1) / 2.0, ends - starts)
        out[i, order] = ranks
    return out.reshape(block.shape)


def _argsort(row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(row)
    return order, row[order]


class _Float32Sort:
    """(order, keys in that order) of float32 rows of length N by one plain integer sort, into buffers
    reused row after row (a fresh array per row costs more in page faults than the sort).

    Each value's bits become an int32 in the same order as the floats (a negative's bits but the sign
    flipped; -0.0 made +0.0 first), packed above its index into an int64: numpy's vectorised integer
    sort is 2-3x faster than argsort, and the order comes back from the low bits. Equal values get
    equal keys, so ties are found as with argsort.
    """

    def __init__(self, N: int):
        self.index = np.arange(N, dtype=np.int64)
        self.bits = np.empty(N, dtype=np.float32)
        self.packed = np.empty(N, dtype=np.int64)
        self.order = np.empty(N, dtype=np.int64)
        self.keys = np.empty(N, dtype=np.int64)

    def __call__(self, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        np.add(row, np.float32(0.0), out=self.bits)
        key = self.bits.view(np.int32)
        flip = self.order.view(np.int32)[:len(key)]                  # scratch: the order is written last
        np.right_shift(key, 31, out=flip)                           # -1 for a negative value, else 0
        np.bitwise_and(flip, np.int32(0x7FFFFFFF), out=flip)
        np.bitwise_xor(key, flip, out=key)
        p = self.packed
        p[:] = key
        np.left_shift(p, 32, out=p)
        np.bitwise_or(p, self.index, out=p)
        p.sort()
        np.bitwise_and(p, 0xFFFFFFFF, out=self.order)
        np.right_shift(p, 32, out=self.keys)
        return self.order, self.keys


def rank_stats(S: np.ndarray, binary: np.ndarray | None = None, counts: np.ndarray | None = None,
               block: int = 64, threads: int | None = None, progress: bool | str = False) -> tuple[np.ndarray, np.ndarray]:
    """AUROC against 0/1 labels and Spearman's rho against count labels, for every unit.

    S: activations, unit-major [U, N] (a sample held in memory; any float dtype).
    binary: [N, Fb] 0/1 labels; counts: [N, Fc] numeric labels.
    Returns (auroc float64 [U, Fb], spearman float64 [U, Fc]). AUROC is the Mann-Whitney
    probability that a unit is higher on a labelled character than on an unlabelled one (ties
    count one half), as sklearn.metrics.roc_auc_score computes it; NaN for a label with only one
    class. Spearman is Pearson r of average ranks; 0 where either side is constant, NaN where the
    label is constant. Units are ranked `block` at a time on `threads` threads (default: the CPUs
    this process may use), so the extra memory is threads x [block, N]. progress: a bar on stderr
    (a string: its label).
    """
    S = np.asarray(S)
    U, N = S.shape
    Yb = np.zeros((N, 0)) if binary is None else np.asarray(binary, dtype=np.float64).reshape(N, -1)
    Yc = np.zeros((N, 0)) if counts is None else np.asarray(counts, dtype=np.float64).reshape(N, -1)
    n1 = Yb.sum(axis=0)                                              # [Fb]
    n0 = N - n1
    with np.errstate(invalid="ignore", divide="ignore"):
        auc_den = np.where((n1 > 0) & (n0 > 0), n1 * n0, np.nan)
    Ry = average_ranks(Yc.T).T if Yc.shape[1] else Yc                # [N, Fc]
    Ry = Ry - Ry.mean(axis=0)
    ry_norm = np.sqrt((Ry * Ry).sum(axis=0))                         # [Fc]
    auc = np.empty((U, Yb.shape[1]))
    rho = np.empty((U, Yc.shape[1]))

    def one_block(a: int) -> int:
        R = average_ranks(np.ascontiguousarray(S[a:a + block]))     # [b, N] (S may be a transposed view)
        if Yb.shape[1]:
            auc[a:a + block] = (R @ Yb - n1 * (n1 + 1) / 2.0) / auc_den
        if Yc.shape[1]:
            Rc = R - (N + 1) / 2.0                                   # mean rank is (N + 1) / 2
            rx_norm = np.sqrt((Rc * Rc).sum(axis=1))                 # [b]
            num = Rc @ Ry                                            # [b, Fc]
            den = np.outer(rx_norm, ry_norm)
            out = np.zeros_like(num)
            np.divide(num, den, out=out, where=den > 0)
            out[:, ry_norm == 0] = np.nan
            rho[a:a + block] = out
        return a

    # sorting releases the GIL, so the blocks run side by side
    threads = max(1, min(threads or len(os.sched_getaffinity(0)), -(-U // block)))
    with ThreadPoolExecutor(threads) as pool, tqdm(total=U, unit="unit", disable=not progress,
                                                   desc=progress if isinstance(progress, str) else "ranks") as bar:
        for a in pool.map(one_block, range(0, U, block)):
            bar.update(min(block, U - a))
    return auc, rho


def auroc(scores: np.ndarray, labels: np.ndarray) -> np.ndarray | float:
    """AUROC of scores [N] or [N, U] against 0/1 labels [N]: a float, or float64 [U]."""
    s = np.asarray(scores)
    single = s.ndim == 1
    auc, _ = rank_stats(s.reshape(len(s), -1).T, binary=np.asarray(labels).reshape(-1, 1))
    return float(auc[0, 0]) if single else auc[:, 0]


def spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray | float:
    """Spearman's rho of x [N] or [N, U] with y [N]: a float, or float64 [U]."""
    x = np.asarray(x)
    single = x.ndim == 1
    _, rho = rank_stats(x.reshape(len(x), -1).T, counts=np.asarray(y).reshape(-1, 1))
    return float(rho[0, 0]) if single else rho[:, 0]


def fast_length(n: int) -> int:
    """The largest length <= n whose FFT is fast (only factors 2, 3, 5); n itself if n < 16."""
    if n < 16:
        return n
    best = 1
    p2 = 1
    while p2 <= n:
        p3 = p2
        while p3 <= n:
            p5 = p3
            while p5 <= n:
                best = max(best, p5)
                p5 *= 5
            p3 *= 3
        p2 *= 2
    return best


@dataclass
class ShiftNull:
    """Circular-shift null of each unit's Pearson r with one label (see circular_shift_null)."""

    p: np.ndarray          # float64 [U]: max(p_perm, p_normal), the p-value to report
    p_perm: np.ndarray     # float64 [U]: (1 + #{s: |r_s| >= |r_0|}) / (1 + shifts)
    p_normal: np.ndarray   # float64 [U]: two-sided normal tail of Fisher z(r_0) against the shifts' z
    shifts: int            # K, the number of shifts counted


def circular_shift_null(S: np.ndarray, y: np.ndarray, min_shift: int = 1000, block: int = 64,
                        workers: int | None = None) -> ShiftNull:
    """A null for |Pearson r| that keeps the autocorrelation of units and labels.

    S: activations, unit-major [U, N] (contiguous text, so its autocorrelation is intact);
    y: labels [N]. The labels are rotated against S by every shift s in [min_shift, N - min_shift]
    (K shifts): each rotation keeps both sequences' autocorrelation and marginals and breaks
    only their alignment. All rotations come from one circular cross-correlation per unit
    (irfft(conj(fft(x)) * fft(y))).

    Two p-values per unit, and the larger is reported (conservative):
    - p_perm = (1 + #{s: |r_s| >= |r_0|}) / (1 + K), the permutation p-value with the +1
      correction; it can be as small as 1 / (1 + K). It assumes the K shifts are exchangeable,
      but neighbouring shifts of a slowly drifting sequence (LSTM cell states integrate) are nearly
      the same draw: a drifting unit unrelated to the label then beats every shift far more often
      than 1 / (1 + K).
    - p_normal: the two-sided normal tail of Fisher z(r_0) = atanh(r_0) against the mean and
      standard deviation of z(r_s) over the shifts, which measures how far outside the null's
      spread r_0 lies instead of counting; slow drift widens that spread, so it is not fooled.
    Raises UserError when N leaves no admissible shift.
    """
    S = np.asarray(S)
    U, N = S.shape
    K = N - 2 * min_shift + 1
    if min_shift < 1 or K < 2:
        raise UserError(f"the circular-shift null needs more than {2 * min_shift + 1} characters "
                        f"(shifts of at least {min_shift} each way); got {N}")
    yc = np.asarray(y, dtype=np.float64)
    yc = yc - yc.mean()
    y_norm = np.sqrt(yc @ yc)
    yf = scipy.fft.rfft(yc.astype(np.float32))
    p_perm, p_normal = np.ones(U), np.ones(U)
    for a in range(0, U, block):
        x = np.asarray(S[a:a + block], dtype=np.float64)
        x = x - x.mean(axis=1, keepdims=True)
        norm = np.sqrt((x * x).sum(axis=1)) * y_norm                            # [b]
        cc = scipy.fft.irfft(np.conj(scipy.fft.rfft(x.astype(np.float32), axis=1, workers=workers)) * yf,
                             n=N, axis=1, workers=workers)                      # [b, N]: sum_t x_t y_{t+s}
        ok = norm > 0                                                           # constant units keep p = 1
        # The shifts' statistics in float32 torch (threaded): the FFT's rounding (~1e-6 of the
        # largest |r|) is far above float32's, so float64 here would add time, not accuracy.
        r = torch.from_numpy(cc.astype(np.float32, copy=False))
        r /= torch.from_numpy(np.where(ok, norm, 1.0).astype(np.float32))[:, None]
        r0, rs = r[:, 0], r[:, min_shift:N - min_shift + 1]                     # observed, [b, K] null
        # A null value within rounding of the observed one counts as reaching it (conservative).
        tol = 1e-5 * r.abs().amax(dim=1)
        hits = (rs.abs() >= (r0.abs() - tol)[:, None]).sum(dim=1).numpy()
        z0 = np.arctanh(np.clip(r0.double().numpy(), -0.999999, 0.999999))
        sd, mu = torch.std_mean(rs.clamp(-0.999999, 0.999999).atanh_(), dim=1, correction=0)
        sd, mu = sd.double().numpy(), mu.double().numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            tail = scipy.special.erfc(np.abs(z0 - mu) / (sd * np.sqrt(2.0)))
        tail = np.where(sd > 0, tail, 1.0)
        p_perm[a:a + block] = np.where(ok, (1.0 + hits) / (1.0 + K), 1.0)
        p_normal[a:a + block] = np.where(ok, tail, 1.0)
    return ShiftNull(p=np.maximum(p_perm, p_normal), p_perm=p_perm, p_normal=p_normal, shifts=K)


def _prepare(p, m):
    p = np.asarray(p, dtype=np.float64)
    q = np.where(np.isnan(p), 1.0, p)                                # untested counts as p = 1
    m = len(q) if m is None else int(m)
    if m < len(q):
        raise ValueError(f"m={m} is smaller than the number of p-values ({len(q)})")
    return q, m


def holm(p: np.ndarray, m: int | None = None) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error), float64 like p.

    m: size of the family (default len(p)); tests not passed in, like NaN entries, count as
    p = 1. Since Holm's adjusted values never fall when a raw p rises, this is conservative for
    units that were not tested.
    """
    q, m = _prepare(p, m)
    order = np.argsort(q, kind="stable")
    mult = m - np.arange(len(q))                                     # m, m-1, ...
    adj = np.minimum(1.0, np.maximum.accumulate(mult * q[order]))
    out = np.empty_like(adj)
    out[order] = adj
    return out


def bh(p: np.ndarray, m: int | None = None) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate), float64 like p.

    m: size of the family (default len(p)); tests not passed in, like NaN entries, count as p = 1.
    """
    q, m = _prepare(p, m)
    order = np.argsort(q, kind="stable")
    ranked = q[order] * m / np.arange(1, len(q) + 1)
    adj = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
    out = np.empty_like(adj)
    out[order] = adj
    return out


CORRECTIONS = {"holm": holm, "bh": bh}
