"""Same data, chunking and seed give bitwise-identical results on every scheduler and worker count."""

import dask
import dask.array as da
import numpy as np
import pytest
from distributed import Client, LocalCluster

from dask_kmeans import KMeans

from .conftest import make_blobs


@pytest.fixture(scope="module")
def blobs():
    X, _ = make_blobs(12000, 6, 8, std=2.5, seed=51)
    return X


def _fit(X, init="k-means||"):
    # Two random initialisations are enough to check that the best run is picked the same way.
    km = KMeans(8, init=init, n_init=2 if init == "random" else "auto", random_state=7, tol=1e-6)
    km.fit(da.from_array(X, chunks=(1500, 6)))
    return km.cluster_centers_, km.labels_, km.inertia_, km.n_iter_


@pytest.fixture(scope="module")
def reference(blobs):
    with dask.config.set(scheduler="sync"):
        return {init: _fit(blobs, init) for init in ("k-means||", "k-means++", "random")}


def _assert_identical(result, expected):
    centers, labels, inertia, n_iter = result
    assert np.array_equal(centers, expected[0])
    assert np.array_equal(labels, expected[1])
    assert inertia == expected[2] and n_iter == expected[3]


@pytest.mark.parametrize("init", ["k-means||", "k-means++", "random"])
def test_threaded_scheduler_matches_sync(blobs, reference, init):
    with dask.config.set(scheduler="threads", num_workers=2):
        _assert_identical(_fit(blobs, init), reference[init])


@pytest.mark.parametrize("n_workers", [1, 2])
def test_local_cluster_processes_match_sync(blobs, reference, n_workers):
    with LocalCluster(n_workers=n_workers, threads_per_worker=2 // n_workers, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster):
        for init in ("k-means||", "k-means++", "random"):
            _assert_identical(_fit(blobs, init), reference[init])


def test_numpy_input_on_cluster_matches_numpy_input_locally(blobs):
    local = KMeans(8, random_state=3).fit(blobs)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster):
        remote = KMeans(8, random_state=3).fit(blobs)
        labels = remote.predict(da.from_array(blobs, chunks=(5000, 6))).compute()
    assert np.array_equal(local.cluster_centers_, remote.cluster_centers_)
    assert np.array_equal(local.labels_, labels)
