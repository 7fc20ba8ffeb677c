"""Same data, chunking and seed give bitwise-identical results on every scheduler and worker count with
Lloyd passes, and on local schedulers with bounds; with bounds on a cluster, the same labels and centres
to rounding (a task that runs away from its chunk's state recomputes the chunk, whose sums then differ from
the moved ones in the last bits)."""

import subprocess
import sys
import threading

import dask
import dask.array as da
import numpy as np
import pytest

from dask_kmeans import KMeans

from .conftest import LeakError, local_cluster, make_blobs


@pytest.fixture(scope="module")
def blobs():
    X, _ = make_blobs(12000, 6, 8, std=2.5, seed=51)
    return X


def _fit(X, init="k-means||", algorithm="auto"):
    # Four runs in shared passes: every run's sampling, its Lloyd steps and the choice of the best (by
    # an inertia added up in a tree) must not depend on where the tasks ran.
    km = KMeans(8, init=init, n_init=4, random_state=7, tol=1e-6, algorithm=algorithm)
    km.fit(da.from_array(X, chunks=(1500, 6)))
    return km.cluster_centers_, km.labels_, km.inertia_, km.n_iter_


@pytest.fixture(scope="module")
def reference(blobs):
    with dask.config.set(scheduler="sync"):
        expected = {init: _fit(blobs, init) for init in ("k-means||", "k-means++", "random")}
        expected["lloyd"] = _fit(blobs, algorithm="lloyd")
        return expected


def _assert_identical(result, expected):
    centers, labels, inertia, n_iter = result
    assert np.array_equal(centers, expected[0])
    assert np.array_equal(labels, expected[1])
    assert inertia == expected[2] and n_iter == expected[3]


def _assert_same_to_rounding(result, expected):
    centers, labels, inertia, n_iter = result
    np.testing.assert_allclose(centers, expected[0], rtol=1e-12, atol=1e-12 * np.abs(expected[0]).max())
    assert np.array_equal(labels, expected[1])
    assert inertia == pytest.approx(expected[2], rel=1e-12) and n_iter == expected[3]


@pytest.mark.parametrize("init", ["k-means||", "k-means++", "random"])
def test_threaded_scheduler_matches_sync(blobs, reference, init):
    with dask.config.set(scheduler="threads", num_workers=2):
        _assert_identical(_fit(blobs, init), reference[init])


@pytest.mark.parametrize("n_workers", [1, 2])
def test_local_cluster_processes_match_sync(blobs, reference, n_workers):
    with local_cluster(n_workers=n_workers, threads_per_worker=2 // n_workers, processes=True):
        _assert_identical(_fit(blobs, algorithm="lloyd"), reference["lloyd"])
        for init in ("k-means||", "k-means++", "random"):
            _assert_same_to_rounding(_fit(blobs, init), reference[init])


def test_numpy_input_on_cluster_matches_numpy_input_locally(blobs):
    local = KMeans(8, random_state=3).fit(blobs)
    with local_cluster(n_workers=2, threads_per_worker=1, processes=True):
        remote = KMeans(8, random_state=3).fit(blobs)
        labels = remote.predict(da.from_array(blobs, chunks=(5000, 6))).compute()
    np.testing.assert_allclose(remote.cluster_centers_, local.cluster_centers_, rtol=1e-12,
                               atol=1e-12 * np.abs(local.cluster_centers_).max())  # bounds: see above
    assert np.array_equal(local.labels_, labels)


# ----------------------------------------------------------------------------------------------------
# The leak checks of local_cluster fail for real leaks (short grace periods: each case waits them out)


def test_a_child_process_outliving_the_cluster_is_reported_and_killed():
    child = None
    try:
        with pytest.raises(LeakError, match=r"1 child process\(es\) still running") as leak:
            with local_cluster(n_workers=1, threads_per_worker=1, processes=True, process_leak_timeout=1):
                child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        assert f"pid {child.pid}:" in str(leak.value) and "time.sleep(120)" in str(leak.value)
        assert child.wait(timeout=10) is not None, "the checker kills what it reports"
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()


def test_a_thread_outliving_the_cluster_is_reported():
    release = threading.Event()
    thread = threading.Thread(target=release.wait, name="leaky-test-thread")
    try:
        expected = r"1 non-daemon thread\(s\) .*'leaky-test-thread' running Event.wait at .*threading.py"
        with pytest.raises(LeakError, match=expected):
            with local_cluster(n_workers=1, threads_per_worker=1, processes=False, thread_leak_timeout=0.5):
                thread.start()
    finally:
        release.set()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_a_client_outliving_the_cluster_is_reported():
    from distributed import Client

    stray = None
    # Closing the stray client last would restore the scheduler setting it found: "dask.distributed".
    with dask.config.set(scheduler=None):
        try:
            with pytest.raises(LeakError, match=r"a default Client is still registered: <Client"):
                with local_cluster(n_workers=1, threads_per_worker=1, processes=False) as client:
                    stray = Client(client.scheduler.address, set_as_default=True)
        finally:
            if stray is not None:
                stray.close()


def test_passes_give_a_chunk_key_the_same_task_every_time(tmp_path, process_client):
    # Reading drawn rows used to go through array optimisation, which fused the chunk reads and sent
    # the chunks' keys with other tasks than the passes' own: the scheduler then warned "Detected
    # different `run_spec`" (it can deadlock, says distributed) when a pass followed quickly.
    import logging

    import zarr

    from dask_kmeans.io import read

    X, _ = make_blobs(40000, 8, 8, seed=3, dtype=np.float32)
    zarr.create_array(tmp_path / "x.zarr", shape=X.shape, chunks=(10000, 8), dtype="float32")[:] = X
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logging.getLogger("distributed").addHandler(handler)
    try:
        for init, n_init in [("k-means||", 1), ("k-means||", 3), ("random", 4), ("k-means++", 2)]:
            KMeans(8, init=init, n_init=n_init, max_iter=5, tol=0, random_state=0, compute_labels=False).fit(
                read(tmp_path / "x.zarr").X, persist=False)
    finally:
        logging.getLogger("distributed").removeHandler(handler)
    assert not [m for m in messages if "run_spec" in m]


def test_an_empty_cluster_takes_its_far_row_from_the_workers_or_the_store(tmp_path, process_client):
    # Passes carry only the indices of the farthest rows; the driver reads the row an empty cluster
    # moves to from the chunk that holds it: persisted on the workers, or streamed from the store.
    import zarr
    from sklearn.cluster import KMeans as SKKMeans

    from dask_kmeans.io import read

    from .conftest import pick_rows

    X, _ = make_blobs(3000, 4, 5, std=2.0, seed=31)
    init = pick_rows(X, 5, seed=32)
    init[2] = 1000.0  # far from every point: empty after the first assignment
    zarr.create_array(tmp_path / "x.zarr", shape=X.shape, chunks=(700, 4), dtype="float64")[:] = X
    ref = SKKMeans(5, init=init, n_init=1, tol=0, max_iter=50, algorithm="lloyd").fit(X)
    for data, persist in [(da.from_array(X, chunks=(700, 4)), "auto"), (read(tmp_path / "x.zarr").X, False)]:
        km = KMeans(5, init=init, tol=0, max_iter=50).fit(data, persist=persist)
        assert km.history_[0]["n_relocated"] == 1
        np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, rtol=1e-7)
        np.testing.assert_array_equal(km.labels_, ref.labels_)
