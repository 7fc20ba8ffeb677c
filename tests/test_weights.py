"""Sample weights: integer weights give the same fit as repeating rows."""

import dask.array as da
import numpy as np
import pytest

from dask_kmeans import KMeans

from .conftest import make_blobs, pick_rows


@pytest.mark.parametrize("as_dask", [False, True])
def test_integer_weights_equal_repeated_rows(as_dask):
    X, _ = make_blobs(3000, 4, 5, std=3.0, seed=61)
    w = np.random.default_rng(62).integers(0, 4, size=len(X))
    X_rep = np.repeat(X, w, axis=0)
    C0 = pick_rows(X[w > 0], 5, seed=63)
    weighted_in = da.from_array(X, chunks=(700, 4)) if as_dask else X
    weights_in = da.from_array(w, chunks=300) if as_dask else w
    weighted = KMeans(5, init=C0, tol=0).fit(weighted_in, sample_weight=weights_in)
    repeated = KMeans(5, init=C0, tol=0).fit(X_rep)
    assert weighted.n_iter_ == repeated.n_iter_
    np.testing.assert_allclose(weighted.cluster_centers_, repeated.cluster_centers_, rtol=1e-10)
    np.testing.assert_allclose(weighted.inertia_, repeated.inertia_, rtol=1e-10)
    np.testing.assert_array_equal(np.repeat(weighted.labels_, w), repeated.labels_)


def test_zero_weight_rows_do_not_move_centres():
    X, _ = make_blobs(2000, 3, 4, seed=64)
    outliers = np.full((50, 3), 500.0)
    w = np.concatenate([np.ones(len(X)), np.zeros(len(outliers))])
    C0 = pick_rows(X, 4, seed=65)
    with_outliers = KMeans(4, init=C0, tol=0).fit(np.vstack([X, outliers]), sample_weight=w)
    without = KMeans(4, init=C0, tol=0).fit(X)
    np.testing.assert_allclose(with_outliers.cluster_centers_, without.cluster_centers_, rtol=1e-12)
    np.testing.assert_allclose(with_outliers.inertia_, without.inertia_, rtol=1e-12)


@pytest.mark.parametrize("init", ["k-means||", "k-means++", "random"])
def test_initializers_never_start_from_zero_weight_rows(init):
    X, _ = make_blobs(2000, 2, 3, seed=66)
    far = np.full((30, 2), 1000.0)
    w = np.concatenate([np.ones(len(X)), np.zeros(len(far))])
    km = KMeans(3, init=init, random_state=0, max_iter=1).fit(
        da.from_array(np.vstack([X, far]), chunks=(500, 2)), sample_weight=w
    )
    assert np.abs(km.cluster_centers_).max() < 100
