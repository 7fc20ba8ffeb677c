"""Count the passes over the data: one per iteration, one final pass, and the stated init passes."""

import dask.array as da
import numpy as np
import pytest

from dask_kmeans import KMeans

from .conftest import CountingArray, make_blobs, pick_rows

N, D, K, CHUNK = 6000, 4, 5, 1000
N_CHUNKS = N // CHUNK


@pytest.fixture
def source():
    X, _ = make_blobs(N, D, K, std=3.0, seed=11)
    return CountingArray(X)


def _fit(source, persist=False, **params):
    # persist=False: every pass reads the source, so the reads count the passes.
    return KMeans(K, **params).fit(da.from_array(source, chunks=(CHUNK, D)), persist=persist)


def test_lloyd_reads_each_chunk_once_per_iteration_plus_final_pass(source):
    km = _fit(source, init=pick_rows(source.data, K), max_iter=7, tol=0)
    assert km.n_iter_ == 7
    assert dict(source.reads) == {start: km.n_iter_ + 1 for start in range(0, N, CHUNK)}


def test_convergence_check_and_variance_need_no_extra_pass(source):
    km = _fit(source, init=pick_rows(source.data, K), tol=1e-3)
    assert km.converged_ and km.n_iter_ < 300
    assert dict(source.reads) == {start: km.n_iter_ + 1 for start in range(0, N, CHUNK)}


@pytest.mark.parametrize("init_rounds", [1, 3, 5])
def test_kmeans_parallel_uses_init_rounds_plus_one_passes(source, init_rounds):
    km = _fit(source, init="k-means||", init_rounds=init_rounds, random_state=0, max_iter=4, tol=0)
    lloyd_reads = km.n_iter_ + 1
    init_reads = sum(source.reads.values()) - N_CHUNKS * lloyd_reads
    # init_rounds sampling passes, one weighting pass, and the one chunk holding the first centre.
    assert init_reads == N_CHUNKS * (init_rounds + 1) + 1
    assert init_reads <= N_CHUNKS * (init_rounds + 2)


def test_random_init_reads_only_the_chunks_holding_the_rows(source):
    km = _fit(source, init="random", n_init=1, random_state=0, max_iter=3, tol=0)
    init_reads = sum(source.reads.values()) - N_CHUNKS * (km.n_iter_ + 1)
    assert 1 <= init_reads <= K


def test_kmeans_plusplus_on_dask_costs_one_pass_per_centre(source):
    km = _fit(source, init="k-means++", random_state=0, max_iter=3, tol=0)
    init_reads = sum(source.reads.values()) - N_CHUNKS * (km.n_iter_ + 1)
    assert init_reads == N_CHUNKS * K + 1


def test_predict_on_dask_is_lazy_and_reads_once(source):
    X = da.from_array(source, chunks=(CHUNK, D))
    km = KMeans(K, init=pick_rows(source.data, K), max_iter=2).fit(source.data)
    labels = km.predict(X)
    assert isinstance(labels, da.Array) and not source.reads
    np.testing.assert_array_equal(labels.compute(), km.predict(source.data))
    assert dict(source.reads) == {start: 1 for start in range(0, N, CHUNK)}


@pytest.mark.parametrize("persist", [True, "auto"])
def test_persisted_data_is_read_once(source, persist):
    km = _fit(source, persist=persist, init="k-means||", random_state=0, max_iter=5, tol=0)
    assert km.n_iter_ >= 3  # several passes (and the init's) over the persisted chunks
    assert dict(source.reads) == {start: 1 for start in range(0, N, CHUNK)}


def test_persist_auto_streams_data_larger_than_half_the_memory(source, monkeypatch):
    import dask_kmeans._scheduler

    monkeypatch.setattr(dask_kmeans._scheduler, "memory_for_data", lambda: 2 * source.data.nbytes - 1)
    km = _fit(source, persist="auto", init=pick_rows(source.data, K), max_iter=3, tol=0)
    assert dict(source.reads) == {start: km.n_iter_ + 1 for start in range(0, N, CHUNK)}


def test_one_driver_advances_many_centre_sets_in_shared_passes(source):
    # Sets of different k, one of them converging early: each pass reads every chunk once for all the
    # sets still moving, and each set ends exactly where a run of its own ends.
    from dask_kmeans._lloyd import CenterSet, LloydConfig, advance
    from dask_kmeans._passes import ChunkedRows

    starts = [pick_rows(source.data, k, seed=k) for k in (3, 5, 7)]
    sets = [CenterSet(start.copy()) for start in starts]
    data = ChunkedRows(da.from_array(source, chunks=(CHUNK, D)))
    config = LloydConfig(max_iter=12, tol=1e-2)
    advance(data, sets, config)
    passes = max(len(s.history) for s in sets)
    assert dict(source.reads) == {start: passes for start in range(0, N, CHUNK)}
    assert min(len(s.history) for s in sets) < passes  # a set dropped out while others went on
    for start, shared in zip(starts, sets):
        own_data = ChunkedRows(da.from_array(source.data, chunks=(CHUNK, D)))
        alone = CenterSet(start.copy())
        advance(own_data, [alone], config)
        np.testing.assert_array_equal(shared.centers, alone.centers)
        assert shared.n_iter == alone.n_iter and shared.converged == alone.converged
        assert [h["inertia"] for h in shared.history] == [h["inertia"] for h in alone.history]


def test_a_pass_holds_the_centres_once_not_in_every_chunk_task():
    # A fit's centres reach the driver as a list (one array per centre set): the graph keeps that list
    # as one entry that every chunk task refers to, so it travels to the workers once per pass.
    from dask_kmeans._passes import ChunkedRows, _chunk_layer

    centres = [np.ones((3, D)), np.zeros((5, D))]
    data = ChunkedRows(da.from_array(np.zeros((N, D)), chunks=(CHUNK, D)))
    layer = _chunk_layer(data, print, (centres, 5), None, "pass")
    holding = [key for key, value in layer.items() if value is centres]
    assert len(holding) == 1
    tasks = [value for key, value in layer.items() if isinstance(key, tuple)]
    assert len(tasks) == N_CHUNKS and all(holding[0] in task and centres not in task for task in tasks)
