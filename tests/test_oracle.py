"""Same data, same initial centres, same number of iterations: scikit-learn's Lloyd is the oracle."""

import dask.array as da
import numpy as np
import pytest
from sklearn.cluster import KMeans as SKKMeans

from dask_kmeans import KMeans

from .conftest import make_blobs, pick_rows

CHUNKINGS = {
    "numpy": None,
    "one-chunk": (4000,),
    "even": (1000,),
    "uneven": ((1, 999, 333, 1667, 1000),),
}


def _as_input(X, chunking):
    if chunking is None:
        return X
    return da.from_array(X, chunks=(chunking[0], X.shape[1]))


def _oracle(X, C0, max_iter, sample_weight=None):
    return SKKMeans(len(C0), init=C0, n_init=1, max_iter=max_iter, tol=0, algorithm="lloyd").fit(
        X, sample_weight=sample_weight
    )


@pytest.mark.parametrize("chunking", CHUNKINGS.values(), ids=CHUNKINGS.keys())
@pytest.mark.parametrize("max_iter", [1, 4, 300])
def test_matches_sklearn_lloyd(chunking, max_iter):
    X, _ = make_blobs(4000, 6, 7, std=2.5, seed=1)
    C0 = pick_rows(X, 7, seed=2)
    ours = KMeans(7, init=C0, max_iter=max_iter, tol=0).fit(_as_input(X, chunking))
    ref = _oracle(X, C0, max_iter)
    assert ours.n_iter_ == ref.n_iter_
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-7)
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    np.testing.assert_allclose(ours.inertia_, ref.inertia_, rtol=1e-7)


@pytest.mark.parametrize("chunking", CHUNKINGS.values(), ids=CHUNKINGS.keys())
def test_matches_sklearn_with_sample_weight(chunking):
    X, _ = make_blobs(4000, 4, 5, std=3.0, seed=3)
    w = np.random.default_rng(4).uniform(0.1, 5.0, size=len(X))
    C0 = pick_rows(X, 5, seed=5)
    ours = KMeans(5, init=C0, max_iter=6, tol=0).fit(_as_input(X, chunking), sample_weight=w)
    ref = _oracle(X, C0, 6, sample_weight=w)
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-7)
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    np.testing.assert_allclose(ours.inertia_, ref.inertia_, rtol=1e-7)


def test_tolerance_stops_where_sklearn_stops():
    X, _ = make_blobs(5000, 3, 4, std=4.0, seed=6)
    C0 = pick_rows(X, 4, seed=7)
    for tol in (1e-2, 1e-4):
        ours = KMeans(4, init=C0, tol=tol).fit(da.from_array(X, chunks=(700, 3)))
        ref = SKKMeans(4, init=C0, n_init=1, tol=tol, algorithm="lloyd").fit(X)
        assert ours.n_iter_ == ref.n_iter_
        np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-7)


def test_float32_matches_sklearn_float32():
    X, _ = make_blobs(4000, 5, 6, std=2.0, seed=8, dtype=np.float32)
    C0 = pick_rows(X, 6, seed=9)
    ours = KMeans(6, init=C0, max_iter=5, tol=0).fit(da.from_array(X, chunks=(900, 5)))
    ref = _oracle(X, C0, 5)
    assert ours.cluster_centers_.dtype == np.float32
    # scikit-learn sums float32 data in float32; we sum in float64, so agreement is to float32 rounding.
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ours.labels_, ref.labels_)


def test_float32_far_from_zero_keeps_its_labels():
    # Spending-like data: values around 20,000 with spreads of a few units. In float32,
    # ||x||^2 - 2 x.c + ||c||^2 would cancel to noise; the kernel shifts rows before the GEMM.
    X, _ = make_blobs(3000, 4, 3, std=1.0, seed=10)
    X32 = (X + 20_000).astype(np.float32)
    C0 = pick_rows(X32, 3, seed=11)
    ours = KMeans(3, init=C0, max_iter=10, tol=0).fit(da.from_array(X32, chunks=(1000, 4)))
    ref = _oracle(X32.astype(np.float64), C0.astype(np.float64), 10)
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-6)
    np.testing.assert_array_equal(ours.predict(X32), ref.labels_)


def test_matches_sklearn_on_a_process_cluster(process_client):
    # The compiled kernel in fresh worker processes (loaded from numba's cache or compiled there) gives
    # the oracle's answer too, for float64 and float32.
    X, _ = make_blobs(4000, 6, 7, std=2.5, seed=1)
    C0 = pick_rows(X, 7, seed=2)
    ours = KMeans(7, init=C0, max_iter=300, tol=0).fit(_as_input(X, CHUNKINGS["uneven"]))
    X32 = da.from_array(X.astype(np.float32), chunks=(900, 6))
    ours32 = KMeans(7, init=C0, max_iter=5, tol=0).fit(X32)
    ref = _oracle(X, C0, 300)
    assert ours.n_iter_ == ref.n_iter_
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-7)
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    ref32 = _oracle(X.astype(np.float32), C0.astype(np.float32), 5)
    np.testing.assert_allclose(ours32.cluster_centers_, ref32.cluster_centers_, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ours32.labels_, ref32.labels_)
