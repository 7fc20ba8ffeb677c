"""Initializers: k-means|| sampling against a direct numpy computation, and the quality of the result."""

import dask.array as da
import numpy as np
import pytest
from sklearn.cluster import KMeans as SKKMeans

from dask_kmeans import KMeans
from dask_kmeans._init import (
    _STREAM_PARALLEL,
    _combine_samples,
    _parallel_round_chunk,
    chunk_rng,
    draw_row_indices,
    kmeans_parallel_init,
)
from dask_kmeans._passes import ChunkedRows, map_reduce
from dask_kmeans._seeding import kmeans_plusplus

from .conftest import make_blobs


def _data(X, chunks, w=None):
    X_d = da.from_array(X, chunks=(chunks, X.shape[1]))
    return ChunkedRows(X_d, None if w is None else da.from_array(w, chunks=(X_d.chunks[0],)))


@pytest.mark.parametrize("weighted", [False, True])
def test_parallel_round_samples_exactly_the_bahmani_set(weighted):
    # Each row is sampled when u < l * w * d^2 / phi; the chunks keep a superset and the tree prunes it.
    # Recompute the same draws and the exact distances in numpy and compare the sampled rows one for one.
    X, _ = make_blobs(5000, 3, 4, std=2.0, seed=41)
    w = np.random.default_rng(42).uniform(0, 3, len(X)) if weighted else None
    data = _data(X, (800, 1700, 2500), w)
    candidates = X[[7, 1234, 4321]]
    oversampling, seed, round_index = 12.0, 43, 2
    args = (candidates, 0, X[0], seed, oversampling, round_index)
    sample, _ = map_reduce(data, _parallel_round_chunk, _combine_samples, args=args, keep_state=True)
    d2 = ((X[:, None, :] - candidates[None]) ** 2).sum(-1).min(1)
    wd2 = d2 if w is None else w * d2
    phi = wd2.sum()
    u = np.concatenate([
        chunk_rng(seed, _STREAM_PARALLEL, round_index, c.index).random(n)
        for c, n in zip(data.chunks, data.X.chunks[0])
    ])
    probability = oversampling * wd2 / phi
    expected = np.flatnonzero(u < probability)
    # The sampling distances are float32 (relative to the first centre): only rows whose draw is within
    # float32 rounding of their probability may come out differently.
    np.testing.assert_allclose(sample["phi"], phi, rtol=1e-5)
    picked = np.sort(sample["index"][sample["score"] > sample["phi"]])
    differ = np.setxor1d(picked, expected)
    assert np.all(np.abs(u[differ] - probability[differ]) <= 1e-5 * probability[differ])
    assert 0.3 * oversampling < len(expected) < 3 * oversampling


def test_first_centre_is_drawn_at_random_not_row_zero():
    X, _ = make_blobs(2000, 2, 3, seed=44)
    data = _data(X, 500)
    firsts = {int(draw_row_indices(data, 1, [seed], 1)[0][0]) for seed in range(30)}
    assert len(firsts) > 20


def test_weighted_draws_skip_zero_weight_rows():
    X, _ = make_blobs(2000, 2, 3, seed=45)
    w = np.zeros(len(X))
    w[[5, 600, 1500, 1999]] = [1.0, 2.0, 3.0, 4.0]
    data = _data(X, 500, w)
    for seed in range(10):
        assert set(draw_row_indices(data, 4, [seed], 2)[0]) == {5, 600, 1500, 1999}


def test_kmeans_parallel_finds_every_blob():
    X, truth = make_blobs(20000, 5, 8, std=0.3, seed=46)
    centers = kmeans_parallel_init(_data(X, 2500), 8, seeds=[0], oversampling_factor=2.0, init_rounds=5)[0]
    # Well separated blobs: one centre per blob, each close to the blob's mean.
    blob_means = np.array([X[truth == j].mean(0) for j in range(8)])
    nearest = ((centers[:, None] - blob_means[None]) ** 2).sum(-1).argmin(1)
    assert sorted(nearest) == list(range(8))


def test_kmeans_plusplus_in_memory_respects_weights():
    X = np.array([[0.0], [1.0], [10.0], [11.0], [50.0]])
    w = np.array([1.0, 1.0, 1.0, 1.0, 0.0])
    for seed in range(10):
        centers = kmeans_plusplus(X, 2, w, np.random.default_rng(seed))
        assert 50.0 not in centers


@pytest.mark.parametrize("init", ["k-means||", "k-means++"])
def test_inertia_within_one_percent_of_sklearn_kmeans_plusplus(init):
    ratios = []
    for seed in range(5):
        X, _ = make_blobs(20000, 8, 10, std=3.0, seed=100 + seed)
        ours = KMeans(10, init=init, random_state=seed).fit(da.from_array(X, chunks=(2500, 8)))
        ref = SKKMeans(10, init="k-means++", n_init=1, random_state=seed).fit(X)
        ratios.append(ours.inertia_ / ref.inertia_)
    assert np.mean(ratios) <= 1.01, ratios


def test_random_init_picks_distinct_rows():
    from dask_kmeans._init import random_init

    X, _ = make_blobs(3000, 3, 4, seed=47)
    centers = random_init(_data(X, 700), 12, seeds=[0])[0]
    rows = {tuple(r) for r in X}
    assert len({tuple(c) for c in centers}) == 12 and all(tuple(c) in rows for c in centers)


def test_kmeans_parallel_covers_a_small_cluster_far_from_the_rest():
    # 15 rows of 100,015, 230 away from ten clusters of 10,000: the uniform sample the search runs on
    # (5,000 rows) misses them about half the time; the k-means|| candidates, drawn by D^2, do not, and
    # the search must see them. A centre there is worth 1.5x less inertia (scikit-learn finds it too).
    for seed in range(5):
        rng = np.random.default_rng(seed)
        means = rng.uniform(-10, 10, (10, 16))
        far = rng.standard_normal((15, 16)) * 0.5 + 60.0
        X = np.concatenate([rng.standard_normal((10_000, 16)) + m for m in means] + [far])
        X = X[rng.permutation(len(X))]
        centers = kmeans_parallel_init(_data(X, 25_000), 11, seeds=[seed], oversampling_factor=2.0,
                                       init_rounds=5)[0]
        assert np.linalg.norm(centers - far.mean(axis=0), axis=1).min() < 10.0, seed  # 230 without
