"""Hand-computed cases: a few points whose centres, labels and inertia are worked out on paper."""

import dask.array as da
import numpy as np
import pytest
from sklearn.cluster import KMeans as SKKMeans

from dask_kmeans import KMeans


@pytest.mark.parametrize("as_dask", [False, True])
def test_weighted_toy(as_dask):
    # Points 0, 2, 10, 12 on a line, weights 1, 3, 1, 1, centres starting at 0 and 12.
    # Iteration 1: {0, 2} and {10, 12}; centres (0*1 + 2*3) / 4 = 1.5 and 11. Iteration 2: no change.
    # Inertia: 1 * 1.5^2 + 3 * 0.5^2 + 1 * 1^2 + 1 * 1^2 = 2.25 + 0.75 + 2 = 5.
    X = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [12.0, 0.0]])
    w = np.array([1.0, 3.0, 1.0, 1.0])
    X_in = da.from_array(X, chunks=(3, 2)) if as_dask else X
    km = KMeans(2, init=np.array([[0.0, 0.0], [12.0, 0.0]])).fit(X_in, sample_weight=w)
    np.testing.assert_array_equal(km.cluster_centers_, [[1.5, 0.0], [11.0, 0.0]])
    np.testing.assert_array_equal(km.labels_, [0, 0, 1, 1])
    assert km.inertia_ == 5.0
    assert km.n_iter_ == 2
    assert km.converged_
    assert km.score(X_in, sample_weight=w) == -5.0


def test_empty_cluster_takes_the_farthest_point():
    # Points 0, 1, 10, 14 and centres 0.5, 11, 100: the third centre gets no point. The point farthest
    # from its centre is 14 (distance^2 9 to centre 11), so the third centre moves to 14 and the second
    # to the mean of what is left, 10. Iteration 2 changes nothing. Inertia: 0.25 + 0.25 = 0.5.
    X = np.array([[0.0], [1.0], [10.0], [14.0]])
    init = np.array([[0.5], [11.0], [100.0]])
    km = KMeans(3, init=init).fit(da.from_array(X, chunks=(2, 1)))
    np.testing.assert_array_equal(km.cluster_centers_, [[0.5], [10.0], [14.0]])
    np.testing.assert_array_equal(km.labels_, [0, 0, 1, 2])
    assert km.inertia_ == 0.5
    assert km.history_[0]["n_relocated"] == 1
    ref = SKKMeans(3, init=init, n_init=1, algorithm="lloyd").fit(X)
    np.testing.assert_array_equal(km.cluster_centers_, ref.cluster_centers_)


def test_empty_cluster_on_blobs_matches_sklearn():
    from .conftest import make_blobs, pick_rows

    X, _ = make_blobs(3000, 4, 5, std=2.0, seed=31)
    init = pick_rows(X, 5, seed=32)
    init[2] = 1000.0  # far from every point: empty after the first assignment
    km = KMeans(5, init=init, tol=0, max_iter=50).fit(da.from_array(X, chunks=(700, 4)))
    ref = SKKMeans(5, init=init, n_init=1, tol=0, max_iter=50, algorithm="lloyd").fit(X)
    assert km.history_[0]["n_relocated"] == 1
    assert np.abs(km.cluster_centers_).max() < 100
    np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, rtol=1e-7)
    np.testing.assert_array_equal(km.labels_, ref.labels_)
