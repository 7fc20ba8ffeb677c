"""The per-chunk kernel on its own: against brute force, and additive across any split of rows."""

from functools import partial

import numpy as np
import pytest

from dask_kmeans._kernels import (
    LloydPartials,
    assign,
    assign_sets,
    block_rows,
    combine_moments,
    feature_moments,
    lloyd_partials,
    nearest_center,
    plan_assignment,
    update_centers,
)


def _data(n=5000, d=7, k=9, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(dtype) * 3, rng.standard_normal((k, d)) * 3


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_nearest_center_matches_brute_force(dtype):
    X, C = _data(n=3 * block_rows(9) + 17, dtype=dtype)  # several sub-blocks and a ragged end
    labels, sq_dist = nearest_center(X, C)
    exact = ((X.astype(np.float64)[:, None] - C[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(labels, exact.argmin(1))
    np.testing.assert_allclose(sq_dist, exact.min(1), rtol=1e-4 if dtype == np.float32 else 1e-9, atol=1e-4)
    assert labels.dtype == np.int32 and sq_dist.dtype == np.float64


@pytest.mark.parametrize("k", [32, 33, 34, 35])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_centre_is_swept_whatever_k_modulo_four(k, dtype):
    # From 24 (float32) / 32 (float64) centres the sweep takes four centres at a time, then the rest one by
    # one: rows drawn about each centre, the last ones included, must each find their own.
    rng = np.random.default_rng(k)
    C = rng.standard_normal((k, 5)) * 10
    X = (C[np.arange(40 * k) % k] + rng.standard_normal((40 * k, 5)) * 0.01).astype(dtype)
    labels, _ = nearest_center(X, C)
    np.testing.assert_array_equal(labels, np.arange(40 * k) % k)


def test_a_plan_serves_only_rows_of_its_dtype():
    X, C = _data(n=300, k=40)
    plan = plan_assignment([C[:30], C[30:]], np.float64)
    for mine, planned in zip(assign_sets(X, [C[:30], C[30:]], with_sums=True),
                             assign_sets(X, plan, with_sums=True)):
        for key in ("labels", "sq_dist", "sums", "counts"):
            np.testing.assert_array_equal(planned[key], mine[key])
    with pytest.raises(ValueError, match="float64 rows cannot assign float32"):
        assign_sets(X.astype(np.float32), plan)


def test_partials_add_up_across_any_split():
    X, C = _data()
    w = np.random.default_rng(1).uniform(0, 2, len(X))
    whole = lloyd_partials(X, w, C, n_farthest=4, with_moments=True)
    cuts = [0, 1, 777, 778, 3000, 5000]
    parts = [
        lloyd_partials(X[a:b], w[a:b], C, row_offset=a, n_farthest=4, with_moments=True)
        for a, b in zip(cuts, cuts[1:])
    ]
    # Combine in a tree of two levels, as the driver does.
    combine = partial(LloydPartials.combine, n_farthest=4)
    total = combine([combine(parts[:2]), combine(parts[2:])])
    np.testing.assert_allclose(total.sums, whole.sums, rtol=1e-12)
    np.testing.assert_allclose(total.counts, whole.counts, rtol=1e-12)
    np.testing.assert_allclose(total.inertia, whole.inertia, rtol=1e-12)
    for key in ("index", "labels", "sq_dist"):
        np.testing.assert_array_equal(total.farthest[key], whole.farthest[key])
    np.testing.assert_allclose(total.moments["mean"], X.mean(0), rtol=1e-12)
    np.testing.assert_allclose(total.moments["m2"] / total.moments["n"], X.var(0), rtol=1e-12)


def test_partials_against_direct_formulas():
    X, C = _data(n=2000)
    w = np.random.default_rng(2).uniform(0, 2, len(X))
    p = lloyd_partials(X, w, C, n_farthest=3)
    labels = ((X[:, None] - C[None]) ** 2).sum(-1).argmin(1)
    for j in range(len(C)):
        np.testing.assert_allclose(p.sums[j], (w[labels == j, None] * X[labels == j]).sum(0), rtol=1e-10)
        np.testing.assert_allclose(p.counts[j], w[labels == j].sum(), rtol=1e-12)
    d2 = ((X - C[labels]) ** 2).sum(1)
    np.testing.assert_allclose(p.inertia, (w * d2).sum(), rtol=1e-9)
    np.testing.assert_array_equal(p.farthest["index"], np.argsort(-d2, kind="stable")[:3])


def test_cluster_sums_are_blocked_not_one_running_sum():
    # 2^20 rows of 0.1 (float64) in two interleaved clusters: one running float64 sum per cluster errs by
    # about 1.5e-11 of it; blocks of at most _SUM_BLOCK_ROWS rows of a cluster, by about 2e-14.
    X = np.full((1 << 20, 1), 0.1)
    X[1::2] = -0.1
    p = lloyd_partials(X, None, np.array([[1.0], [-1.0]]))
    np.testing.assert_array_equal(p.counts, [1 << 19, 1 << 19])
    np.testing.assert_allclose(p.sums[:, 0], [0.1 * (1 << 19), -0.1 * (1 << 19)], rtol=1e-13, atol=0)


def test_farthest_ties_go_to_the_lower_row_index():
    X = np.array([[0.0], [2.0], [-2.0], [0.0]])
    p = lloyd_partials(X, None, np.array([[0.0]]), n_farthest=1)
    assert p.farthest["index"].tolist() == [1]


def test_moments_of_an_empty_chunk_are_neutral():
    X, _ = _data(n=100)
    combined = combine_moments([feature_moments(X[:0]), feature_moments(X), feature_moments(X[:0])])
    np.testing.assert_allclose(combined["m2"] / combined["n"], X.var(0), rtol=1e-12)


def test_update_keeps_the_old_centre_of_a_cluster_left_empty():
    C = np.array([[0.0], [5.0], [9.0]])
    partials = LloydPartials(
        sums=np.array([[2.0], [0.0], [0.0]]),
        counts=np.array([2.0, 0.0, 0.0]),
        inertia=0.0,
        farthest={key: np.empty(0) for key in ("sq_dist", "index", "weights", "labels")},
        non_finite={"count": 0, "first_row": -1},
    )
    centers, n_relocated = update_centers(partials, C, rows_at=None)  # no row to read
    np.testing.assert_array_equal(centers, [[1.0], [5.0], [9.0]])
    assert n_relocated == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("offset", [0.0, 5e3])
def test_centre_sets_in_one_gemm_give_each_set_its_own_answer(dtype, offset):
    # Stacking sets changes the GEMM (its shape, precision and shift follow all the centres), never the
    # answer: labels come from exact distances, so every set's result is bitwise that of its own call.
    rng = np.random.default_rng(8)
    X = (offset + rng.standard_normal((3000, 7))).astype(dtype)
    X[5] = np.nan
    w = rng.uniform(0, 2, len(X))
    sets = [X[rng.choice(len(X), k, replace=False)].astype(np.float64) for k in (1, 3, 16, 40)]
    sets[0][0] = X[7]  # and sets[2] holds two copies of one centre: exact ties go to the lowest index
    sets[2][5] = sets[2][9]
    together = assign_sets(X, sets, w, with_sums=True, row_offset=100)
    for centers, got in zip(sets, together):
        alone = assign(X, centers, w, with_sums=True, row_offset=100)
        assert got["non_finite"] == alone["non_finite"] == {"count": 1, "first_row": 105}
        for key in ("labels", "sq_dist", "sums", "counts"):
            np.testing.assert_array_equal(got[key], alone[key], err_msg=key)
        assert got["inertia"] == alone["inertia"]
