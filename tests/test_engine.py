"""n_init runs share every pass: reads counted at the source, and results equal to separate fits."""

import dask.array as da
import numpy as np
import pytest

from dask_kmeans import KMeans
from dask_kmeans._init import initial_centers
from dask_kmeans._passes import ChunkedRows
from dask_kmeans._validation import resolve_seed

from .conftest import CountingArray, make_blobs

N, D, K, CHUNK = 6000, 4, 5, 1000
N_CHUNKS = N // CHUNK


@pytest.fixture
def blobs():
    X, _ = make_blobs(N, D, 8, std=3.0, seed=17)
    return X


def _reads(X, **params) -> tuple[KMeans, dict]:
    # persist=False: every pass reads the source, so the reads count the passes (nothing is persisted).
    source = CountingArray(X)
    km = KMeans(K, random_state=5, **params).fit(da.from_array(source, chunks=(CHUNK, D)), persist=False)
    return km, dict(source.reads)


@pytest.mark.parametrize("init, init_passes", [("random", 1), ("k-means||", 5 + 1 + 1), ("k-means++", K + 1)])
def test_n_init_runs_read_each_chunk_as_often_as_one_run(init, init_passes):
    # max_iter=10, tol=0: ten Lloyd passes and the final one, whatever the number of runs (on data
    # without clusters no run stops early). The init passes: the rows drawn at random (one read of the
    # chunks that hold them), the k-means|| rounds and weighting pass, or k-means++'s pass per centre.
    X = np.random.default_rng(3).standard_normal((N, D))
    one, reads_one = _reads(X, init=init, n_init=1, max_iter=10, tol=0)
    eight, reads_eight = _reads(X, init=init, n_init=8, max_iter=10, tol=0)
    assert one.n_iter_ == eight.n_iter_ == 10
    assert set(reads_eight) == set(range(0, N, CHUNK))
    assert max(reads_eight.values()) <= init_passes + 11
    # The same passes as one run, plus at most one read of a chunk holding rows drawn by another run.
    for start, n in reads_eight.items():
        assert reads_one.get(start, 0) <= n <= reads_one.get(start, 0) + 1, start
    assert sum(reads_one.values()) >= N_CHUNKS * 11


def _separate_fits(X, init, n_init, random_state, **params):
    """What ``n_init`` fits of one run each give, from the starting centres a fit with n_init draws."""
    seeds = np.random.default_rng(resolve_seed(random_state)).integers(0, 2**63 - 1, size=n_init)
    data = ChunkedRows(da.from_array(X, chunks=(CHUNK, D)))
    fits = []
    for seed in seeds:
        [start] = initial_centers(data, params["n_clusters"], init, [int(seed)], oversampling_factor=2.0,
                                  init_rounds=5)
        fits.append(KMeans(init=start, n_init=1, **params).fit(da.from_array(X, chunks=(CHUNK, D))))
    return fits


# 130 clusters: the labels of every run wait on the workers as int16 (int8 up to 127). k-means++ over a
# dask array takes a pass per centre, so it is checked with few centres.
@pytest.mark.parametrize("init, n_clusters", [("random", K), ("k-means||", K), ("k-means++", K),
                                               ("random", 130), ("k-means||", 130)])
def test_n_init_in_shared_passes_equals_separate_fits(blobs, init, n_clusters):
    params = dict(n_clusters=n_clusters, max_iter=15, tol=1e-4)
    fits = _separate_fits(blobs, init, 4, 23, **params)
    shared = KMeans(init=init, n_init=4, random_state=23, **params)
    shared.fit(da.from_array(blobs, chunks=(CHUNK, D)))
    best = int(np.argmin([f.inertia_ for f in fits]))  # ties: the lowest run index
    assert len({f.inertia_ for f in fits}) > 1, "the runs should differ for the choice to mean something"
    # Every set's labels come from its own exact distances, however many sets share the GEMM. Its sums
    # are Lloyd's (the same rows in the same order) or, in bounded passes, moved with the rows that
    # change cluster; "auto" leaves bounds that do not pay at a pass that depends on timings, so the last
    # bits may differ (the issue asks rtol 1e-9).
    np.testing.assert_array_equal(shared.labels_, fits[best].labels_)
    assert shared.n_iter_ == fits[best].n_iter_
    scale = np.abs(fits[best].cluster_centers_).max()
    np.testing.assert_allclose(shared.cluster_centers_, fits[best].cluster_centers_, rtol=1e-12,
                               atol=1e-12 * scale)
    np.testing.assert_allclose(shared.inertia_, fits[best].inertia_, rtol=1e-12)
    for key in ("center_shift", "inertia"):
        got, expected = ([h[key] for h in f.history_] for f in (shared, fits[best]))
        np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_compute_labels_false_keeps_no_labels_and_the_same_centres(blobs):
    params = dict(n_clusters=K, init="random", n_init=3, random_state=2, max_iter=20)
    with_labels = KMeans(**params).fit(blobs)
    without = KMeans(compute_labels=False, **params).fit(blobs)
    assert not hasattr(without, "labels_")
    np.testing.assert_array_equal(without.cluster_centers_, with_labels.cluster_centers_)
    assert without.inertia_ == with_labels.inertia_
    np.testing.assert_array_equal(with_labels.labels_, with_labels.predict(blobs))
