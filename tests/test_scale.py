"""Out of core and fault tolerant: data larger than the workers' memory, killed workers, small graphs."""

from __future__ import annotations

import logging
import os
import signal

import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from dask.callbacks import Callback

from dask_kmeans import KMeans
from dask_kmeans.io import read

from .conftest import local_cluster, make_blobs, pick_rows


def _write_blobs_zarr(path, n_rows: int, n_features: int, chunk_rows: int, seed: int) -> None:
    """float32 blobs written chunk by chunk: the test process never holds the whole array."""
    centers = np.random.default_rng(seed).uniform(-10, 10, (8, n_features))
    z = zarr.create_array(  # uncompressed: random floats barely compress, and it writes 3x faster
        path, shape=(n_rows, n_features), chunks=(chunk_rows, n_features), dtype="f4", compressors=None
    )
    for i, start in enumerate(range(0, n_rows, chunk_rows)):
        rng = np.random.default_rng([seed, i])
        rows = min(chunk_rows, n_rows - start)
        block = centers[rng.integers(8, size=rows)] + 2.0 * rng.standard_normal((rows, n_features))
        z[start : start + rows] = block.astype(np.float32)


def _worker_pids(client) -> dict:
    return client.run(os.getpid)


def _reset_peak_memory(client) -> None:
    """Restart each worker's kernel-kept peak RSS (VmHWM) from its current RSS (Linux)."""
    client.run(lambda: open("/proc/self/clear_refs", "w").write("5"))


def _peak_memory(client) -> dict:
    """Each worker's VmHWM in bytes: the highest RSS since the reset, however short the peak."""
    def vm_hwm():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))

    return client.run(vm_hwm)


def test_data_larger_than_the_workers_memory_streams_through(tmp_path):
    # 1.2 GB of float32 against two workers limited to 384 MiB each (1.45x their combined memory; a
    # worker process alone takes about 120 MiB, and numba's import and JIT another 120 MiB).
    path = tmp_path / "big.zarr"
    n_rows, n_features, chunk_rows = 9_375_000, 32, 125_000
    _write_blobs_zarr(path, n_rows, n_features, chunk_rows, seed=1)
    table = read(str(path))
    assert table.X.nbytes >= 1.4 * 2 * 384 * 2**20
    C0 = np.asarray(table.X[:: n_rows // 8][:8].compute(), dtype=np.float64)
    with local_cluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="384MiB") as client:
        pids = _worker_pids(client)
        _reset_peak_memory(client)
        # persist="auto" must stream; compute_labels=False: nothing per row on the client.
        km = KMeans(8, init=C0, tol=0, max_iter=3, compute_labels=False).fit(table.X)
        assert not hasattr(km, "labels_")
        labels = km.predict(table.X).compute()
        assert _worker_pids(client) == pids, "a worker was restarted"
        peak = _peak_memory(client)
    # The high-water mark of the fit and the predict pass, not the memory left afterwards.
    assert max(peak.values()) < 384 * 2**20, {pid: f"{value / 2**20:.0f} MiB" for pid, value in peak.items()}
    # The same centres as the in-memory fit from the same start (sums in another order: rtol 1e-9).
    X = zarr.open_array(path, mode="r")[:]
    in_memory = KMeans(8, init=C0, tol=0, max_iter=3).fit(X)
    np.testing.assert_allclose(km.cluster_centers_, in_memory.cluster_centers_, rtol=1e-6)
    np.testing.assert_array_equal(labels, in_memory.labels_)
    assert km.inertia_ == pytest.approx(in_memory.inertia_, rel=1e-9)


class _KillAWorkerAt(logging.Handler):
    """Kills one worker process (SIGKILL) when the fit logs the given iteration."""

    def __init__(self, client, iteration: int):
        super().__init__()
        self.client, self.iteration, self.killed = client, iteration, None

    def emit(self, record):
        if self.killed is None and record.getMessage().startswith(f"Iteration {self.iteration}:"):
            address, pid = sorted(self.client.run(os.getpid).items())[0]
            os.kill(pid, signal.SIGKILL)
            self.killed = address


@pytest.mark.parametrize("persist", [False, True])
def test_a_killed_worker_does_not_change_the_result(tmp_path, persist, process_client):
    path = tmp_path / "data.zarr"
    _write_blobs_zarr(path, 200_000, 8, 20_000, seed=2)
    table = read(str(path))
    logger = logging.getLogger("dask_kmeans")
    undisturbed = KMeans(8, random_state=4, tol=0, max_iter=8).fit(table.X, persist=persist)
    killer = _KillAWorkerAt(process_client, iteration=3)
    logger.addHandler(killer)
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
        disturbed = KMeans(8, random_state=4, tol=0, max_iter=8).fit(table.X, persist=persist)
    finally:
        logger.removeHandler(killer)
        logger.setLevel(previous)
    assert killer.killed is not None
    assert np.array_equal(disturbed.cluster_centers_, undisturbed.cluster_centers_)
    np.testing.assert_array_equal(disturbed.labels_, undisturbed.labels_)
    assert disturbed.inertia_ == undisturbed.inertia_


class _GraphSizes(Callback):
    def __init__(self):
        super().__init__()
        self.sizes = []

    def _start(self, dsk):
        self.sizes.append(len(dsk))


def test_the_graph_of_an_iteration_is_small_and_does_not_grow():
    X, _ = make_blobs(40_000, 4, 5, std=2.0, seed=3)
    n_chunks = 40
    data = da.from_array(X, chunks=(1000, 4))
    with dask.config.set(scheduler="threads"), _GraphSizes() as graphs:
        km = KMeans(5, init=pick_rows(X, 5), tol=0, max_iter=6).fit(data, persist=False)
    iterations = graphs.sizes[: km.n_iter_]
    assert len(set(iterations)) == 1, iterations
    # One task per chunk to read it, one for the kernel, a tree of combines, the centres: O(chunks).
    assert iterations[0] <= 3 * n_chunks + 10


def test_same_result_on_one_or_two_workers_threads_or_processes(tmp_path):
    path = tmp_path / "data.zarr"
    _write_blobs_zarr(path, 60_000, 6, 7_000, seed=6)
    table = read(str(path))
    results = []
    for n_workers, processes in [(1, True), (2, True), (2, False)]:
        with local_cluster(n_workers=n_workers, threads_per_worker=2 // n_workers, processes=processes):
            results.append(KMeans(8, random_state=9, tol=1e-6).fit(table.X, persist=False))
    for other in results[1:]:
        assert np.array_equal(other.cluster_centers_, results[0].cluster_centers_)
        np.testing.assert_array_equal(other.labels_, results[0].labels_)


def test_a_chunk_too_big_for_the_workers_gets_an_error_naming_it():
    # distributed's bare KilledWorker names a task key; the fit's error names the chunk, its size and
    # what to do. One worker of 450 MiB (about 300 of them taken before any data) and a chunk of 480 MiB.
    from dask_kmeans import WorkerDiedError

    rows = (1000, 1_500_000, 1000)

    def block(block_id=None):
        return np.random.default_rng(block_id[0]).standard_normal((rows[block_id[0]], 42))

    X = da.map_blocks(block, chunks=(rows, (42,)), dtype=np.float64)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            local_cluster(1, 1, memory_limit="450MiB"):
        expected = (r"most likely out of memory, beyond their memory limit of 450 MiB. The largest chunk, "
                    r"chunk 1, holds 1,500,000 rows x 42 features = 481 MiB")
        with pytest.raises(WorkerDiedError, match=expected):
            KMeans(3, init=np.zeros((3, 42)) + np.arange(3)[:, None], max_iter=2).fit(X, persist=False)


def test_one_parquet_file_larger_than_a_worker_streams_through_in_row_group_chunks(tmp_path):
    # A Parquet file was one chunk, which killed workers smaller than the file; now chunks of whole row
    # groups (about 32 MiB) stream through them. 832 MB in 52 row groups, two workers of 512 MiB (a worker
    # holds about 330 MiB with numba's and arrow's code loaded, before any data).
    import pyarrow as pa
    import pyarrow.parquet as pq

    path, n_features, group_rows = tmp_path / "big.parquet", 32, 125_000
    centers = np.random.default_rng(3).uniform(-10, 10, (8, n_features))
    schema = pa.schema([(f"f{j}", pa.float32()) for j in range(n_features)])
    with pq.ParquetWriter(path, schema, compression="none") as writer:
        for g in range(52):
            rng = np.random.default_rng([3, g])
            noise = 2 * rng.standard_normal((group_rows, n_features))
            block = centers[rng.integers(8, size=group_rows)] + noise
            columns = list(block.astype(np.float32).T)
            writer.write_table(pa.table(columns, schema=schema), row_group_size=group_rows)
    table = read(str(path))
    assert table.X.nbytes > 1.5 * 512 * 2**20 and len(table.X.chunks[0]) >= 13
    assert max(table.X.chunks[0]) * n_features * 4 <= 64 * 2**20
    C0 = np.asarray(table.X[::812_500][:8].compute(), dtype=np.float64)
    with local_cluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="512MiB") as client:
        pids = _worker_pids(client)
        _reset_peak_memory(client)
        km = KMeans(8, init=C0, tol=0, max_iter=2, compute_labels=False).fit(table.X, persist=False)
        assert _worker_pids(client) == pids, "a worker was restarted"
        peak = _peak_memory(client)
    assert max(peak.values()) < 512 * 2**20, {pid: f"{value / 2**20:.0f} MiB" for pid, value in peak.items()}
    assert km.n_iter_ == 2 and np.isfinite(km.inertia_)
