"""neuroscope.stats pinned on synthetic activations whose answers are known."""
import numpy as np
import pytest
import scipy.stats
import torch
from sklearn.metrics import roc_auc_score

from neuroscope.errors import UserError
from neuroscope.stats import (CorrAccumulator, auroc, average_ranks, bh, circular_shift_null, fast_length, holm,
                              rank_stats, spearman, tanh_)


def runs_label(n: int, mean_run: float, rng) -> np.ndarray:
    """0/1 labels in alternating runs of geometric length (autocorrelated, like in_quote)."""
    out = np.empty(n, dtype=np.uint8)
    i, v = 0, 0
    while i < n:
        k = int(rng.geometric(1 / mean_run))
        out[i:i + k] = v
        i, v = i + k, 1 - v
    return out


def ar1(n: int, phi: float, rng) -> np.ndarray:
    """A slowly drifting unit unrelated to any label: x_t = phi x_{t-1} + noise."""
    e = rng.standard_normal(n)
    x = np.empty(n)
    x[0] = e[0]
    for t in range(1, n):
        x[t] = phi * x[t - 1] + e[t]
    return x


def test_streamed_r_equals_numpy_corrcoef_on_the_whole():
    rng = np.random.default_rng(0)
    n, U = 20_000, 9
    X = rng.standard_normal((n, U)) * np.arange(1, U + 1) + 2400.0     # cell-state-like offsets
    X[:, 0] += np.linspace(0, 50, n)                                    # a drifting unit
    y = runs_label(n, 80, rng)
    c = rng.poisson(3, n)
    Y = np.stack([y, c], 1)
    X[:, 1] += 3 * y
    acc = CorrAccumulator()
    for a, b in zip([0, 1, 700, 4096, 13_000], [1, 700, 4096, 13_000, n]):   # uneven chunks, a 1-row one
        acc.update(X[a:b].astype(np.float32), Y[a:b])
    want = np.corrcoef(np.c_[X.astype(np.float32).astype(np.float64), Y].T)[:U, U:]
    np.testing.assert_allclose(acc.corr(), want, atol=2e-6)
    assert acc.n == n


def test_chunk_order_does_not_change_r():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((5000, 4)).astype(np.float32)
    Y = rng.integers(0, 2, (5000, 1))
    a, b = CorrAccumulator(), CorrAccumulator()
    for s in range(0, 5000, 1000):
        a.update(X[s:s + 1000], Y[s:s + 1000])
    for s in reversed(range(0, 5000, 1000)):
        b.update(X[s:s + 1000], Y[s:s + 1000])
    np.testing.assert_allclose(a.corr(), b.corr(), atol=1e-12)


def test_constant_unit_or_label_gives_r_zero_not_nan():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((3000, 3)).astype(np.float32)
    X[:, 1] = 7.25                                                      # a dead unit
    Y = np.stack([rng.integers(0, 2, 3000), np.zeros(3000)], 1)         # second label constant
    acc = CorrAccumulator()
    for s in range(0, 3000, 512):
        acc.update(X[s:s + 512], Y[s:s + 512])
    r = acc.corr()
    assert np.isfinite(r).all()
    assert (r[1] == 0).all() and (r[:, 1] == 0).all()
    assert acc.constant_x().tolist() == [False, True, False]
    assert acc.constant_y().tolist() == [False, True]


def test_mean_on_and_mean_off_equal_the_group_means():
    rng = np.random.default_rng(3)
    X = (rng.standard_normal((8000, 5)) * 10 + 1000).astype(np.float32)
    y = runs_label(8000, 50, rng)
    X[:, 2] += 4 * y
    acc = CorrAccumulator()
    for s in range(0, 8000, 999):
        acc.update(X[s:s + 999], y[s:s + 999, None])
    on, off = acc.binary_means()
    X64 = X.astype(np.float64)
    np.testing.assert_allclose(on[:, 0], X64[y == 1].mean(0), rtol=0, atol=1e-6)
    np.testing.assert_allclose(off[:, 0], X64[y == 0].mean(0), rtol=0, atol=1e-6)


def test_planted_unit_ranks_first_with_its_analytic_r():
    # unit = label + N(0, sigma^2): r = sqrt(p(1-p)) / sqrt(p(1-p) + sigma^2).
    rng = np.random.default_rng(4)
    n, U, sigma = 200_000, 40, 0.8
    y = runs_label(n, 200, rng)
    X = rng.standard_normal((n, U)).astype(np.float32)
    X[:, 17] = y + sigma * rng.standard_normal(n)
    acc = CorrAccumulator()
    for s in range(0, n, 4096):
        acc.update(X[s:s + 4096], y[s:s + 4096, None])
    r = acc.corr()[:, 0]
    p = y.mean()
    expected = np.sqrt(p * (1 - p)) / np.sqrt(p * (1 - p) + sigma ** 2)
    assert np.argmax(np.abs(r)) == 17
    assert r[17] == pytest.approx(expected, abs=0.01)                  # ~6 standard errors
    assert np.delete(np.abs(r), 17).max() < 0.05


def test_auroc_equals_sklearn_roc_auc_score_with_ties():
    rng = np.random.default_rng(5)
    n = 4000
    y = runs_label(n, 30, rng)
    X = np.round(rng.standard_normal((n, 6)) + np.outer(y, [0, 0.5, 1, 2, -1, 0]), 1)   # many ties
    X[:, 5] = 1.0                                                       # all tied: 0.5
    got = auroc(X, y)
    want = [roc_auc_score(y, X[:, u]) for u in range(6)]
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert got[5] == 0.5
    assert auroc(X[:, 3], y) == pytest.approx(want[3], abs=1e-12)


def test_spearman_equals_scipy_with_ties():
    rng = np.random.default_rng(6)
    n = 3000
    depth = np.cumsum(rng.choice([-1, 1], n)).clip(0) % 7             # a count label with many ties
    X = np.round(np.c_[depth + rng.standard_normal(n), rng.standard_normal(n), -depth], 1)
    got = spearman(X, depth)
    want = [scipy.stats.spearmanr(X[:, u], depth)[0] for u in range(3)]
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert got[2] == pytest.approx(-1.0)


def test_rank_stats_blocks_give_the_same_answer_as_one_block():
    rng = np.random.default_rng(7)
    S = rng.standard_normal((300, 500))
    yb = rng.integers(0, 2, (500, 2))
    yc = rng.poisson(2, (500, 1))
    a1, r1 = rank_stats(S, yb, yc, block=300)
    a2, r2 = rank_stats(S, yb, yc, block=7)
    np.testing.assert_allclose(a1, a2, atol=1e-12)
    np.testing.assert_allclose(r1, r2, atol=1e-12)


def test_float32_ranks_from_the_integer_sort_equal_scipy_rankdata():
    """The float32 fast path (bits packed above the index, one integer sort) ranks like argsort:
    negatives, -0.0 and +0.0 as one tie, infinities, whole rows tied, rows of one value."""
    rng = np.random.default_rng(8)
    S = rng.standard_normal((6, 3001)).astype(np.float32)
    S[0, :500] = np.round(S[0, :500])                                 # ties among negatives and positives
    S[1, :3] = [-0.0, 0.0, -0.0]
    S[2, :4] = [np.inf, -np.inf, np.inf, -1e-38]
    S[3] = 7.5
    S[4] = -S[4] * 1e30
    got = average_ranks(S)
    want = np.stack([scipy.stats.rankdata(row) for row in S.astype(np.float64)])
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(average_ranks(np.float32([[2.0]])), [[1.0]])
    yb, yc = rng.integers(0, 2, (3001, 2)), rng.poisson(2, (3001, 1))
    auc32, rho32 = rank_stats(S, yb, yc)
    auc64, rho64 = rank_stats(S.astype(np.float64), yb, yc)
    np.testing.assert_array_equal(auc32, auc64)
    np.testing.assert_array_equal(rho32[~np.isnan(rho64)], rho64[~np.isnan(rho64)])


def test_circular_shift_null_equals_brute_force_rotation():
    rng = np.random.default_rng(8)
    N, min_shift = 400, 30
    y = runs_label(N, 15, rng).astype(float)
    S = np.stack([ar1(N, 0.9, rng), y + rng.standard_normal(N), rng.standard_normal(N)])
    null = circular_shift_null(S, y, min_shift=min_shift)
    K = null.shifts
    assert K == N - 2 * min_shift + 1
    for u in range(3):
        r0 = np.corrcoef(S[u], y)[0, 1]
        rs = np.array([np.corrcoef(S[u], np.roll(y, -s))[0, 1] for s in range(min_shift, N - min_shift + 1)])
        want = (1 + np.sum(np.abs(rs) >= abs(r0) - 1e-9)) / (1 + K)
        assert null.p_perm[u] == pytest.approx(want, abs=1.5 / (1 + K))   # one borderline tie at most
        z = np.arctanh(rs)
        want_normal = 2 * scipy.stats.norm.sf(abs(np.arctanh(r0) - z.mean()) / z.std())
        assert null.p_normal[u] == pytest.approx(want_normal, rel=1e-3, abs=1e-12)
        assert null.p[u] == max(null.p_perm[u], null.p_normal[u])


def test_autocorrelated_unrelated_units_are_not_significant_but_a_planted_one_is():
    # Independent, strongly autocorrelated sequences correlate "significantly" by the naive test;
    # the circular-shift null, corrected over all units, must not be fooled by any of them.
    rng = np.random.default_rng(9)
    N, U, drifting = 20_000, 50, 20
    y = runs_label(N, 400, rng)
    S = rng.standard_normal((U, N))
    for u in range(drifting):
        S[u] = ar1(N, 0.999, rng)                                      # unrelated to y
    S[drifting] = y + 1.0 * rng.standard_normal(N)                     # planted: r about 0.45
    naive_p = min(scipy.stats.pearsonr(S[u], y)[1] for u in range(drifting))
    assert naive_p < 1e-6                                              # the naive test is fooled
    null = circular_shift_null(S, y, min_shift=1000)
    adj = holm(null.p, m=U)
    assert (adj[:drifting] > 0.05).all()
    # Counting alone is fooled: some drifting unit beats (nearly) every rotation.
    assert (holm(null.p_perm, m=U)[:drifting] <= 0.05).any()
    assert null.p[drifting] == pytest.approx(1 / (1 + null.shifts))    # beats every rotation, far out
    assert adj[drifting] <= 0.05
    assert (adj[drifting + 1:] > 0.05).all()


def test_circular_shift_null_needs_room_for_shifts():
    with pytest.raises(UserError, match="needs more than 2001 characters"):
        circular_shift_null(np.zeros((2, 1500)), np.zeros(1500), min_shift=1000)


def test_holm_and_bh_match_hand_computed_values():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(bh(p), [0.02, 0.04, 0.04, 0.02])
    # A family of 100 of which 2 were tested: the others count as p = 1.
    np.testing.assert_allclose(holm(np.array([0.0001, 0.002]), m=100), [0.01, 0.198])
    np.testing.assert_allclose(holm(np.array([0.0001, np.nan, 0.002]), m=100), [0.01, 1.0, 0.198])
    np.testing.assert_allclose(bh(np.array([0.0001, 0.002]), m=100), [0.01, 0.1])
    with pytest.raises(ValueError):
        holm(np.array([0.1, 0.2, 0.3]), m=2)


def test_fast_length_is_the_largest_5_smooth_length_not_above_n():
    def smooth(k):
        for f in (2, 3, 5):
            while k % f == 0:
                k //= f
        return k == 1
    for n in list(range(16, 400)) + [80_000, 87_000, 65_537]:
        k = fast_length(n)
        assert k <= n and smooth(k)
        assert not any(smooth(j) for j in range(k + 1, n + 1))


def test_tanh_squashes_in_place_tensors_and_arrays():
    x = np.linspace(-30, 30, 1001, dtype=np.float32)
    t = torch.from_numpy(x.copy())
    assert tanh_(t) is t
    np.testing.assert_allclose(t.numpy(), np.tanh(x), atol=2e-7)            # the fast sigmoid form
    a = x.astype(np.float64)
    view = a[::2]
    assert tanh_(view) is view
    np.testing.assert_array_equal(a[::2], np.tanh(x[::2].astype(np.float64)))  # exact, through the view
    np.testing.assert_array_equal(a[1::2], x[1::2])
