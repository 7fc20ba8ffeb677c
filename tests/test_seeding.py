"""Near-global seeding: the search on the k-means|| candidates, and what it buys a fit."""

import numpy as np
import pytest

from dask_kmeans import KMeans
from dask_kmeans._init import search_sample_size
from dask_kmeans._kernels import lloyd_partials
from dask_kmeans._seeding import kmeans_plusplus, lloyd_in_memory, search_centers

from .conftest import make_blobs


def _cost(X, w, centers):
    return lloyd_partials(X, w, centers).inertia


@pytest.mark.parametrize("seed", range(8))
def test_search_is_never_worse_than_the_kmeans_plusplus_run_it_starts_from(seed):
    # Weighted points as k-means|| leaves them: a few per cluster, weighted by the rows they stand for.
    X, _ = make_blobs(300, 3, 12, std=1.5, seed=seed)
    w = np.random.default_rng(seed).integers(1, 50, len(X)).astype(float)
    plain, plain_cost = lloyd_in_memory(X, w, kmeans_plusplus(X, 12, w, np.random.default_rng(seed)), 100)
    searched = search_centers(X, w, 12, np.random.default_rng(seed))
    assert _cost(X, w, searched) <= plain_cost
    assert np.array_equal(searched, search_centers(X, w, 12, np.random.default_rng(seed)))  # deterministic


def test_search_with_a_single_restart_and_no_swaps_is_the_plain_run():
    X, _ = make_blobs(300, 3, 6, seed=4)
    plain, _ = lloyd_in_memory(X, None, kmeans_plusplus(X, 6, None, np.random.default_rng(1)), 100)
    searched = search_centers(X, None, 6, np.random.default_rng(1), max_restarts=1, flops=0)
    np.testing.assert_array_equal(searched, plain)


def test_search_with_fewer_distinct_points_than_clusters_returns_coinciding_centres():
    X = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0]]), 10, axis=0)
    centers = search_centers(X, None, 3, np.random.default_rng(0))
    assert centers.shape == (3, 2) and len(np.unique(centers, axis=0)) == 2


def _centroid_index(found: np.ndarray, true: np.ndarray) -> int:
    """Fränti's CI: true centres that no found centre is nearest to (and back); 0 when every one is found."""
    nearest_true = np.unique(((found[:, None] - true[None]) ** 2).sum(-1).argmin(1)).size
    nearest_found = np.unique(((true[:, None] - found[None]) ** 2).sum(-1).argmin(1)).size
    return max(len(true) - nearest_true, len(found) - nearest_found)


def _grid_of_blobs(seed: int):
    # 25 round clusters on a 5 x 5 grid, close enough that one k-means++ run often puts two centres in
    # one cluster and none in a neighbour, a poor optimum that Lloyd cannot leave.
    rng = np.random.default_rng(seed)
    true = 4.0 * np.array([[i, j] for i in range(5) for j in range(5)], dtype=float)
    return np.vstack([c + 0.7 * rng.standard_normal((200, 2)) for c in true]), true


def test_the_default_finds_every_planted_cluster_where_one_kmeans_plusplus_run_often_does_not():
    from sklearn.cluster import KMeans as SKKMeans

    ours, one_run = [], []
    for seed in range(20):
        X, true = _grid_of_blobs(seed)
        ours.append(_centroid_index(KMeans(25, random_state=seed).fit(X).cluster_centers_, true))
        reference = SKKMeans(25, n_init=1, random_state=seed).fit(X)
        one_run.append(_centroid_index(reference.cluster_centers_, true))
    assert sum(ci > 0 for ci in one_run) >= 4, one_run  # the case is hard for a single run
    assert ours == [0] * 20, ours


def test_the_search_runs_on_a_sample_of_rows_unless_k_is_large():
    assert search_sample_size(15, 16) == 5000  # at least MIN_SAMPLE_ROWS (every row of a small set)
    assert search_sample_size(200, 8) == 20_000  # 100 rows a cluster
    assert search_sample_size(280, 32) == 0  # past the search's budget: the k-means|| candidates
