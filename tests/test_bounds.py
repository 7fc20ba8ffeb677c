"""Bounded passes (algorithm="hamerly" / "yinyang"): Lloyd's labels and iterations on every scheduler,
centres within rounding (the sums move with the rows that change cluster)."""

from __future__ import annotations

import logging
import os
import signal

import dask
import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dask_kmeans import KMeans, _bounds
from dask_kmeans._bounds import (
    _STATES,
    _new_state,
    bound_groups,
    bounds_still_pay,
    choose_algorithm,
    drop_states,
    failing_rows,
    plan,
    store_rows,
)
from dask_kmeans._kernels import assign, assign_sets, move_rows, weighted_cluster_sums
from dask_kmeans._lloyd import CenterSet, LloydConfig, advance
from dask_kmeans._passes import ChunkedRows

from .conftest import local_cluster, make_blobs, pick_rows

BOUNDED = ("hamerly", "yinyang")


def _fit(X, algorithm, **params):
    params.setdefault("max_iter", 100)
    return KMeans(algorithm=algorithm, **params).fit(X)


def assert_same_centers(ours, theirs):
    """Centres equal to 1e-9 of the data's scale (the issue's rtol, without failing on coordinates near 0);
    float32 centres are rounded from the same float64 ones, so they may differ by one float32 ulp."""
    scale = np.abs(theirs).max()
    tolerance = 1e-9 if theirs.dtype == np.float64 else 2 * float(np.finfo(np.float32).eps)
    np.testing.assert_allclose(ours, theirs, rtol=tolerance, atol=tolerance * scale)


def assert_same_fit(bounded, lloyd):
    """The same labels, iterations and relocations; centres, shifts and inertias within rounding."""
    np.testing.assert_array_equal(bounded.labels_, lloyd.labels_)
    assert bounded.n_iter_ == lloyd.n_iter_
    assert_same_centers(bounded.cluster_centers_, lloyd.cluster_centers_)
    np.testing.assert_allclose(bounded.inertia_, lloyd.inertia_, rtol=1e-9)
    for ours, theirs in zip(bounded.history_, lloyd.history_):
        assert ours["n_relocated"] == theirs["n_relocated"]
        np.testing.assert_allclose(ours["center_shift"], theirs["center_shift"], rtol=1e-6, atol=1e-20)
        np.testing.assert_allclose(ours["inertia"], theirs["inertia"], rtol=1e-9)


def _moving_blobs(n=6000, d=6, k=12, seed=0, dtype=np.float64):
    """Overlapping blobs and starting centres far from the answer: many iterations, many changes."""
    X, _ = make_blobs(n, d, k, std=3.0, seed=seed, dtype=dtype)
    return X, pick_rows(X, k, seed=seed + 1)


@pytest.mark.parametrize("algorithm", BOUNDED)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_equal_to_lloyd(algorithm, dtype):
    X, C0 = _moving_blobs(dtype=dtype)
    X_dask = da.from_array(X, chunks=(1500, X.shape[1]))
    lloyd = _fit(X_dask, "lloyd", n_clusters=12, init=C0)
    bounded = _fit(X_dask, algorithm, n_clusters=12, init=C0)
    assert bounded.algorithm_ == algorithm and lloyd.n_iter_ > 10
    computed = [h["rows_computed"] for h in bounded.history_]
    assert min(computed[3:]) < 0.5 * len(X), "the bounds skip rows"
    assert_same_fit(bounded, lloyd)


@pytest.mark.parametrize("algorithm", BOUNDED)
def test_equal_to_lloyd_with_weights_and_rows_left_out(algorithm):
    X, C0 = _moving_blobs(seed=3)
    rng = np.random.default_rng(3)
    weights = rng.uniform(0, 3, len(X))
    weights[::17] = 0.0
    X[rng.choice(len(X), 40, replace=False), rng.integers(X.shape[1], size=40)] = np.nan
    X_dask = da.from_array(X, chunks=(1000, X.shape[1]))
    fits = [
        KMeans(12, init=C0, algorithm=a, nan_policy="omit", max_iter=100).fit(X_dask, sample_weight=weights)
        for a in ("lloyd", algorithm)
    ]
    assert fits[1].n_omitted_ == 40
    assert_same_fit(fits[1], fits[0])


@pytest.mark.parametrize("algorithm", BOUNDED)
def test_empty_clusters_are_relocated_as_lloyd_relocates_them(algorithm):
    # Centres drawn over two blobs: one loses its rows in the second iteration, a bounded pass (the
    # first is a timed Lloyd pass), which is then redone as a Lloyd pass to relocate it.
    rng = np.random.default_rng(62)
    X = np.concatenate([rng.normal(0, 1, (150, 2)), rng.normal(5, 1, (150, 2))])
    C0 = rng.uniform(-2, 7, (12, 2))
    lloyd = _fit(X, "lloyd", n_clusters=12, init=C0)
    assert 2 in [h["iteration"] for h in lloyd.history_ if h["n_relocated"]]
    assert_same_fit(_fit(X, algorithm, n_clusters=12, init=C0), lloyd)


def test_equal_to_lloyd_with_n_init_and_cosine():
    X, _ = _moving_blobs(seed=5)
    X_dask = da.from_array(X, chunks=(2000, X.shape[1]))
    for params in ({"n_init": 3, "init": "random"}, {"metric": "cosine", "init": "k-means++"}):
        fits = [_fit(X_dask, a, n_clusters=8, random_state=0, **params) for a in ("lloyd", "hamerly")]
        assert_same_fit(fits[1], fits[0])


@pytest.mark.parametrize("scheduler", ["sync", "threads"])
def test_equal_to_lloyd_on_local_schedulers(scheduler):
    X, C0 = _moving_blobs(seed=7)
    X_dask = da.from_array(X, chunks=(700, X.shape[1]))
    with dask.config.set(scheduler=scheduler):
        fits = [_fit(X_dask, a, n_clusters=12, init=C0) for a in ("lloyd", "hamerly")]
    assert_same_fit(fits[1], fits[0])


def test_equal_to_lloyd_on_a_cluster_and_state_freed(process_client):
    X, C0 = _moving_blobs(seed=8)
    X_dask = da.from_array(X, chunks=(1000, X.shape[1]))
    with dask.config.set(scheduler="sync"):
        lloyd = _fit(X_dask, "lloyd", n_clusters=12, init=C0)
    bounded = _fit(X_dask, "auto", n_clusters=12, init=C0)
    assert bounded.algorithm_ == "hamerly"
    assert_same_fit(bounded, lloyd)
    assert process_client.run(_states_here) == dict.fromkeys(process_client.run(os.getpid), 0)


def _states_here() -> int:
    from dask_kmeans import _bounds  # run on a worker: its module, not a copy of the client's

    return len(_bounds._STATES)


def test_a_worker_killed_mid_fit_leaves_the_answer_unchanged():
    X, C0 = _moving_blobs(n=8000, seed=9)
    data_chunks = (1000, X.shape[1])
    with dask.config.set(scheduler="sync"):
        expected = [CenterSet(C0.copy())]
        advance(ChunkedRows(da.from_array(X, chunks=data_chunks)), expected, LloydConfig(100, 1e-4))
    with local_cluster(n_workers=2, threads_per_worker=1) as client:
        data = ChunkedRows(da.from_array(X, chunks=data_chunks).persist())
        killed = []

        def kill_a_worker(sets, mean_variance):
            if sets[0].n_iter == 5:  # bounds in use on both workers by now
                pid = next(iter(client.run(os.getpid).values()))
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        sets = [CenterSet(C0.copy())]
        advance(data, sets, LloydConfig(100, 1e-4, algorithm="hamerly"), on_pass=kill_a_worker)
    assert killed
    assert_same_sets(sets[0], expected[0])


def assert_same_sets(ours: CenterSet, theirs: CenterSet) -> None:
    assert ours.n_iter == theirs.n_iter
    assert_same_centers(ours.centers, theirs.centers)
    np.testing.assert_allclose([h["center_shift"] for h in ours.history],
                               [h["center_shift"] for h in theirs.history], rtol=1e-6, atol=1e-20)


def test_lost_state_costs_a_full_chunk_not_the_answer():
    X, C0 = _moving_blobs(seed=10)
    data = ChunkedRows(da.from_array(X, chunks=(1500, X.shape[1])))
    expected = [CenterSet(C0.copy())]
    advance(data, expected, LloydConfig(100, 1e-4))
    computed_after_loss = []

    def lose_every_state(sets, mean_variance):
        if sets[0].n_iter == 6:
            for key in list(_STATES):
                drop_states(key[0])
        if sets[0].n_iter == 7:
            computed_after_loss.append(sets[0].history[-1]["rows_computed"])

    sets = [CenterSet(C0.copy())]
    advance(data, sets, LloydConfig(100, 1e-4, algorithm="hamerly"), on_pass=lose_every_state)
    assert computed_after_loss == [len(X)]
    assert_same_sets(sets[0], expected[0])
    assert not _STATES, "the fit frees its state"


def test_sums_moved_with_the_rows_equal_sums_computed_afresh():
    """The bounded passes' sums after many label changes (weights with zeros, data far from zero) equal
    those computed afresh from the labels to rounding; a cluster that loses every member is exactly zero."""
    rng = np.random.default_rng(3)
    n, d, k = 2000, 5, 6
    X = rng.standard_normal((n, d)) + 100.0
    w = rng.uniform(0.0, 2.0, n)
    w[rng.choice(n, 200, replace=False)] = 0.0
    origin = X[:20].mean(axis=0)
    labels = rng.integers(0, k, n).astype(np.int32)
    labels[:30] = -1  # rows left out never join
    def afresh_from(labels):  # with numpy: rows left out and rows of zero weight are in no cluster
        kept = (labels >= 0) & (w > 0)
        at, weight, x = labels[kept], w[kept], X[kept]
        return (weighted_cluster_sums(x, at, weight, k), np.bincount(at, weight, k),
                np.bincount(at, weight * ((x - origin) ** 2).sum(axis=1), k), np.bincount(at, minlength=k))

    sums, counts, squares, members = (a.copy() for a in afresh_from(labels))
    drift = np.zeros(k)
    for step in range(30):
        rows = rng.choice(np.arange(30, n), 150, replace=False)
        new = rng.integers(0, k, len(rows)).astype(np.int32)
        if step == 20:  # every member of cluster 0 leaves it
            rows = np.flatnonzero(labels == 0)
            new = np.ones(len(rows), dtype=np.int32)
        changed = new != labels[rows]
        rows, old = rows[changed].astype(np.int64), labels[rows[changed]].copy()
        labels[rows] = new[changed]
        move_rows(X, w, rows, old, labels, origin, sums, counts, squares, members, drift)
        afresh = afresh_from(labels)
        np.testing.assert_array_equal(members, afresh[3])
        np.testing.assert_allclose(sums, afresh[0], rtol=1e-12, atol=1e-12 * np.abs(afresh[0]).max())
        np.testing.assert_allclose(counts, afresh[1], rtol=1e-12, atol=1e-12 * n)
        np.testing.assert_allclose(squares, afresh[2], rtol=1e-12, atol=1e-12 * np.abs(afresh[2]).max())
        if step == 20:
            assert members[0] == 0 and counts[0] == 0.0 and squares[0] == 0.0 and not sums[0].any()
    assert (drift > 0).all()


def test_sums_recomputed_once_their_drift_could_matter(monkeypatch):
    """With no drift allowed, every pass with changes recomputes its chunks' sums: the same fit."""
    X, C0 = _moving_blobs(seed=11)
    lloyd = _fit(X, "lloyd", n_clusters=len(C0), init=C0)
    recomputed = []
    recompute = _bounds._recompute_sums
    monkeypatch.setattr(_bounds, "DRIFT_LIMIT", 0.0)
    monkeypatch.setattr(_bounds, "_recompute_sums", lambda *a: recomputed.append(1) or recompute(*a))
    assert_same_fit(_fit(X, "hamerly", n_clusters=len(C0), init=C0), lloyd)
    assert len(recomputed) > 5


# ----------------------------------------------------------------------------------------------------
# The bounds themselves


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_features=st.integers(1, 12),
    n_clusters=st.integers(2, 40),
    move=st.sampled_from([0.0, 1e-12, 1e-6, 1e-3, 0.1, 1.0, 10.0]),
    integer_data=st.booleans(),
    algorithm=st.sampled_from(BOUNDED),
    dtype=st.sampled_from([np.float32, np.float64]),
    max_moves=st.sampled_from([1, 2, _bounds.MAX_MOVES]),
)
def test_bounds_never_skip_a_row_whose_label_changes(seed, n_features, n_clusters, move, integer_data,
                                                     algorithm, dtype, max_moves):
    """After any moves of the centres, every row the bounds let keep its label has that label as its
    nearest centre by the kernel's exact distances (ties to the lowest index), over several moves,
    with the bounds rebased (written as of now) every pass, every other pass or not at all."""
    default, _bounds.MAX_MOVES = _bounds.MAX_MOVES, max_moves
    try:
        _check_bounds_over_moves(seed, n_features, n_clusters, move, integer_data, algorithm, dtype)
    finally:
        _bounds.MAX_MOVES = default


def _check_bounds_over_moves(seed, n_features, n_clusters, move, integer_data, algorithm, dtype):
    rng = np.random.default_rng(seed)
    n = 300
    if integer_data:  # exact ties between centres
        X = rng.integers(-3, 4, (n, n_features)).astype(dtype)
        centers = rng.integers(-3, 4, (n_clusters, n_features)).astype(np.float64)
    else:
        X = (rng.standard_normal((n, n_features)) * rng.uniform(0.1, 100)).astype(dtype)
        centers = X[rng.choice(n, n_clusters, replace=False)].astype(np.float64)
    groups = bound_groups(centers, algorithm)
    origin = X[:16].mean(axis=0, dtype=np.float64)
    result = assign_sets(X, [centers], with_sums=True, bound_groups=[groups], cluster_inertia=True)[0]
    state = _new_state(X, None, result, centers, origin)
    for _ in range(6):
        previous = centers
        step = rng.standard_normal(centers.shape) * move * rng.uniform(0, 1, (n_clusters, 1))
        centers = previous + (np.round(step) if integer_data else step)
        p = plan(0, centers, groups, previous, 0)
        failing = failing_rows(state, p, n_features)
        truth = assign(X, centers)["labels"]
        kept = np.setdiff1d(np.arange(n), failing)
        np.testing.assert_array_equal(state.labels[kept], truth[kept])
        # What a pass does with the rows that failed: the kernel's labels and bounds.
        store_rows(state, failing, assign_sets(X, [centers], rows=failing, bound_groups=[groups])[0], groups)
        np.testing.assert_array_equal(state.labels, truth)


def test_bounds_are_rebased_once_the_moves_dwarf_the_gaps_and_still_hold():
    # Bounds are kept less the moves so far, in float32: once those moves are large against the gaps
    # between centres (here 1e5 against about 1), the bounds are written as of now before the next pass.
    rng = np.random.default_rng(8)
    X = rng.standard_normal((300, 3))
    centers = X[:6].copy()
    groups = bound_groups(centers, "hamerly")
    result = assign_sets(X, [centers], with_sums=True, bound_groups=[groups], cluster_inertia=True)[0]
    state = _new_state(X, None, result, centers, X[:16].mean(axis=0))
    # Moves kept after each pass: the first adds 1e5; the next two start by rebasing (the moves so far
    # are 1e5), the last does not (1e-3).
    for shift, n_moves in zip([1e5, -1e5, 1e-3, -1e-3], [1, 1, 1, 2]):
        previous, centers = centers, centers + shift
        p = plan(0, centers, groups, previous, 0)
        failing = failing_rows(state, p, 3)
        truth = assign(X, centers)["labels"]
        kept = np.setdiff1d(np.arange(len(X)), failing)
        np.testing.assert_array_equal(state.labels[kept], truth[kept])
        store_rows(state, failing, assign_sets(X, [centers], rows=failing, bound_groups=[groups])[0], groups)
        np.testing.assert_array_equal(state.labels, truth)
        assert state.n_moves == n_moves
    assert len(kept) > 250  # small moves after the rebase: the bounds are tight again


def test_auto_takes_hamerly_where_the_state_fits_and_says_so(caplog):
    X, C0 = _moving_blobs(n=2000, seed=4)
    with caplog.at_level(logging.INFO, logger="dask_kmeans"):
        model = KMeans(12, init=C0, verbose=1).fit(X)
    assert model.algorithm_ == "hamerly"
    assert "Algorithm hamerly: its per-row state" in caplog.text
    assert "distances of" in caplog.text and "of rows computed" in caplog.text
    algorithm, why = choose_algorithm("auto", 1000, 1000, 10**12, 1, data_bytes=8 * 10**15)
    assert algorithm == "lloyd" and "more than half of the memory" in why
    algorithm, why = choose_algorithm("auto", 8, 4, 1000, 1, data_bytes=None)
    assert algorithm == "lloyd" and "streamed" in why
    with dask.config.set(scheduler="processes"):
        assert choose_algorithm("auto", 8, 4, 1000, 1, data_bytes=32000)[0] == "lloyd"
    assert choose_algorithm("yinyang", 8, 4, 10**12, 1, data_bytes=None)[0] == "yinyang"


def test_runs_that_go_back_to_lloyd_mid_fit_end_the_same(monkeypatch, caplog):
    # No loss allowed: under "auto" every run leaves its bounds after its first bounded pass, while the
    # other runs of the same passes may still use theirs.
    monkeypatch.setattr("dask_kmeans._bounds.LOSS_BUDGET", -1.0)
    X, _ = _moving_blobs(seed=6)
    X_dask = da.from_array(X, chunks=(1500, X.shape[1]))
    params = dict(n_clusters=10, init="random", n_init=3, random_state=1, max_iter=100)
    lloyd = KMeans(algorithm="lloyd", **params).fit(X_dask)
    with caplog.at_level(logging.INFO, logger="dask_kmeans"):
        auto = KMeans(**params).fit(X_dask)
    assert caplog.text.count("Bounds do not pay on these data") == 3
    assert [h["rows_computed"] for h in auto.history_][2:] == [len(X)] * (auto.n_iter_ - 2)
    assert_same_fit(auto, lloyd)


def test_bounds_that_lose_give_way_to_lloyd():
    """The cost model: a pass computing every row loses, one computing few gains, a run of passes that
    compute most rows gives the set back to Lloyd once two Lloyd passes are lost."""
    loss, keep = bounds_still_pay(0.0, share_computed=1.0)
    assert keep and loss == pytest.approx(0.35)
    loss, keep = bounds_still_pay(loss, share_computed=0.1)  # a pass that gains
    assert keep and loss == pytest.approx(0.35 - 0.685)
    losses = []
    while keep:
        loss, keep = bounds_still_pay(loss, share_computed=0.9)
        losses.append(loss)
    assert losses == sorted(losses) and losses[-2] <= 2.0 < losses[-1]


def test_the_choice_to_keep_bounds_does_not_depend_on_the_clock(caplog):
    """Runs that leave their bounds (data without clusters, many rows computed) leave them at the same
    iteration in every fit: the same answer to the last bit, however busy the machine."""
    X = np.random.default_rng(4).standard_normal((4000, 20))  # bounds fail for 80-100% of the rows
    X_dask = da.from_array(X, chunks=(1000, 20))
    params = dict(n_clusters=40, init="random", n_init=2, random_state=3, max_iter=60, tol=0.0)
    fits, logs = [], []
    for _ in range(3):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="dask_kmeans"):
            fits.append(KMeans(**params).fit(X_dask))
        logs.append([r.getMessage() for r in caplog.records if "do not pay" in r.getMessage()])
    assert logs[0] and logs[0] == logs[1] == logs[2]
    for fit in fits[1:]:
        np.testing.assert_array_equal(fit.cluster_centers_, fits[0].cluster_centers_)
        assert [h["center_shift"] for h in fit.history_] == [h["center_shift"] for h in fits[0].history_]


def test_bad_algorithm_is_refused():
    with pytest.raises(ValueError, match="algorithm"):
        KMeans(2, algorithm="elkan").fit(np.eye(3))
