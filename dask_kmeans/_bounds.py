"""Exact bounded Lloyd passes: Lloyd's labels, computing distances only for rows whose bounds fail.

Triangle-inequality bounds prove, row by row, that a row keeps its centre without computing its
distances. Each row keeps an upper bound ``u`` on its distance to its own centre and lower bounds on its
distances to the other centres: one (Hamerly 2010) or one per group of centres (Yinyang, Ding et al.
2015; the groups are a k-means of the initial centres, about ten centres each). When the centres move
by ``delta``, ``u`` grows by its centre's move and each lower bound shrinks by the largest move in its
group. A row whose ``u`` is below all its lower bounds (or below half the gap from its centre to the
nearest other centre) keeps its label; the others get ``u`` tightened to the exact distance, and those
that still fail are gathered and assigned by the one kernel (:func:`assign_sets`, GEMM and all), which
also gives their new bounds.

The answer is Lloyd's, bit for bit: a row skips only when its label provably stays the label of the
exact distances (ties to the lowest index: the test is strict, and bounds are widened by the rounding
of the distances as computed); a chunk's sums and counts are added up a block of rows at a time in row
order exactly as the kernel adds them (:func:`block_statistics`), recomputing only the blocks where a
label changed. The inertia of an iteration comes from per-cluster weighted sums of squares about the
chunk's mean (relative error about ``eps * spread / cluster width``), not from every row's distance.

The per-row state (labels, bounds, block statistics) stays in the memory of the process that ran the
chunk's task, keyed by the fit, the centre set and the chunk, and tagged with the pass it belongs to. A
task that finds no state of the previous pass (first pass, a worker that died or restarted, a task
that ran elsewhere) computes its chunk in full: lost state costs a recomputation of that chunk, never
a different answer. :func:`drop_states` frees a fit's state on every worker when the fit ends.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from ._kernels import (
    LloydPartials,
    assign_sets,
    bound_slack,
    compiled,
    exact_sq_distance,
    feature_moments,
    pairwise_sq_distances,
    sum_block_rows,
    update_centers,
)
from ._scheduler import current_client, dask_threads_in_this_process, memory_for_data

ALGORITHMS = ("lloyd", "hamerly", "yinyang")
ORIGIN_ROWS = 1024
CENTERS_PER_GROUP = 10  # Yinyang's groups: about k / 10 (Ding et al.)

_STATES: dict[tuple, ChunkState] = {}
_STATES_LOCK = threading.Lock()


def bound_groups(centers: np.ndarray, algorithm: str) -> np.ndarray:
    """Each centre's group: all in one for Hamerly; for Yinyang, a k-means of the centres into k / 10."""
    k = len(centers)
    n_groups = max(1, k // CENTERS_PER_GROUP) if algorithm == "yinyang" else 1
    if n_groups == 1:
        return np.zeros(k, dtype=np.int64)
    group_centers = centers[np.linspace(0, k - 1, n_groups).astype(int)]
    for _ in range(5):  # a few Lloyd steps, as the paper's grouping
        groups = pairwise_sq_distances(centers, group_centers).argmin(axis=1)
        group_centers, _ = update_centers(_group_partials(centers, groups, n_groups), group_centers)
    return pairwise_sq_distances(centers, group_centers).argmin(axis=1).astype(np.int64)


def _group_partials(centers, groups, n_groups) -> LloydPartials:
    sums = np.zeros((n_groups, centers.shape[1]))
    np.add.at(sums, groups, centers)
    empty = {"sq_dist": np.zeros(0), "index": np.zeros(0, np.int64), "rows": np.zeros((0, centers.shape[1])),
             "weights": np.zeros(0), "labels": np.zeros(0, np.int64)}
    return LloydPartials(sums, np.bincount(groups, minlength=n_groups).astype(float), 0.0, empty,
                         {"count": 0, "first_row": -1})


@dataclass(frozen=True)
class BoundsPlan:
    """What every chunk's task needs to move one set's bounds from its previous centres to the current
    ones, computed once on the client: ``moved`` (k,) each centre's move, ``group_moved`` (t,) the
    largest move in each group and ``group_second`` the second largest, ``group_mover`` the centre
    that moved most, and ``half_gap`` (k,) half the distance from each centre to its nearest other one.
    ``version`` is the pass the state must come from (-1: compute in full)."""

    centers: np.ndarray
    groups: np.ndarray
    version: int
    moved: np.ndarray
    group_moved: np.ndarray
    group_second: np.ndarray
    group_mover: np.ndarray
    half_gap: np.ndarray


def plan(centers: np.ndarray, groups: np.ndarray, previous: np.ndarray | None, version: int) -> BoundsPlan:
    """A set's :class:`BoundsPlan` for a pass; ``previous`` are the centres of the pass ``version``."""
    k, d = centers.shape
    slack = bound_slack(d)
    n_groups = int(groups.max()) + 1
    moved = np.zeros(k)
    if previous is not None:
        moved = np.sqrt(((centers - previous) ** 2).sum(axis=1)) * (1.0 + slack)
    group_moved, group_second = np.zeros(n_groups), np.zeros(n_groups)
    group_mover = np.full(n_groups, -1, dtype=np.int64)
    for j in np.argsort(-moved, kind="stable"):  # largest first: the first seen of a group is its mover
        g = groups[j]
        if group_mover[g] < 0:
            group_mover[g], group_moved[g] = j, moved[j]
        elif group_second[g] == 0.0:
            group_second[g] = moved[j]
    gaps = pairwise_sq_distances(centers, centers)
    np.fill_diagonal(gaps, np.inf)
    half_gap = 0.5 * np.sqrt(gaps.min(axis=1)) * (1.0 - 4.0 * slack) if k > 1 else np.full(k, np.inf)
    return BoundsPlan(centers, groups, version if previous is not None else -1, moved, group_moved,
                      group_second, group_mover, half_gap)


@dataclass
class ChunkState:
    """One set's state for one chunk, as of pass ``version``: labels (-1 for rows left out), bounds and
    per-block weighted sums, counts and squared distances to ``origin`` (a point near the chunk's rows;
    ``row_squares`` holds each row's)."""

    version: int
    labels: np.ndarray
    upper: np.ndarray
    lower: np.ndarray
    block_sums: np.ndarray
    block_counts: np.ndarray
    block_squares: np.ndarray
    row_squares: np.ndarray
    origin: np.ndarray
    non_finite: dict
    n_computed: int = 0
    seconds: float = 0.0
    lloyd_seconds: float = 0.0

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.labels, self.upper, self.lower, self.block_sums,
                                      self.block_counts, self.block_squares, self.row_squares))


def state_bytes_per_row(n_clusters: int, n_features: int, algorithm: str) -> float:
    """Memory a row's state takes (label, bounds, its share of the block statistics)."""
    if algorithm == "lloyd":
        return 0.0
    n_groups = max(1, n_clusters // CENTERS_PER_GROUP) if algorithm == "yinyang" else 1
    block = n_clusters * (n_features + 2) * 8 / sum_block_rows(n_clusters, n_features)
    return 4 + 8 + 8 * n_groups + 8 + block


def choose_algorithm(requested: str, n_clusters: int, n_features: int, n_rows: int, n_sets: int,
                     in_memory: bool) -> tuple[str, str]:
    """The algorithm a fit runs, and why: ``requested`` unless it is "auto".

    "auto" takes Yinyang (measured fastest, see benchmarks/bench_bounds.py) where its per-row state fits
    in a quarter of the workers' memory (of this machine's free memory with a local scheduler), else
    Hamerly's smaller state where that fits, else Lloyd. Tasks of a local process pool run in processes
    this fit cannot reach to free their state: Lloyd there.
    """
    if requested != "auto":
        return requested, f"{requested} as asked"
    if current_client() is None and dask_threads_in_this_process() == 0:
        return "lloyd", "lloyd: tasks run in a local process pool, where per-row bounds could not be freed"
    budget = 0.25 * memory_for_data()
    where = "beside the data in memory" if in_memory else "(the data are streamed from their source)"
    for algorithm in ("yinyang", "hamerly"):
        state = n_rows * n_sets * state_bytes_per_row(n_clusters, n_features, algorithm)
        if state <= budget:
            return algorithm, f"{algorithm}: its per-row state, {state / 2**20:,.0f} MiB, fits {where}"
    return "lloyd", (f"lloyd: per-row bounds would take {state / 2**20:,.0f} MiB, more than a quarter of the "
                     f"memory ({budget * 4 / 2**20:,.0f} MiB)")


def bounded_chunk(X, w, plans: list[BoundsPlan], token: str, this_pass: int, with_moments: bool, *, chunk):
    """One chunk's :class:`LloydPartials` for every set, from its state where it has one.

    ``farthest`` is left empty (the bounds never compute the farthest rows): the driver redoes a pass
    whose counts leave a cluster empty as a plain Lloyd pass, which relocates as Lloyd does.
    ``seconds`` is the time the chunk took per set, ``lloyd_seconds`` what a Lloyd pass would have
    taken (the kernel's time per row it assigned, times the rows), for the driver to tell whether the
    bounds pay.
    """
    states, fresh = [None] * len(plans), []
    for s, p in enumerate(plans):
        state = _take_state((token, s, chunk.index))
        if state is None or p.version < 0 or state.version != p.version or not _advance_state(X, w, p, state):
            fresh.append(s)
        else:
            states[s] = state
    if fresh:
        started = time.perf_counter()
        # Any point near the chunk's rows keeps the sums of squares from cancelling; this one is cheap
        # and depends on the chunk alone, so a chunk computed afresh later gets the same one.
        origin = X[:ORIGIN_ROWS].mean(axis=0, dtype=np.float64) if len(X) else np.zeros(X.shape[1])
        results = assign_sets(X, [plans[s].centers for s in fresh], w, row_offset=chunk.row_offset,
                              bound_groups=[plans[s].groups for s in fresh], block_origin=origin)
        seconds = (time.perf_counter() - started) / len(fresh)
        for s, result in zip(fresh, results):
            states[s] = _new_state(X, plans[s], result, origin, seconds)
    partials = [_keep(state, p, (token, s, chunk.index), this_pass)
                for s, (state, p) in enumerate(zip(states, plans))]
    if with_moments:
        left_out = partials[0].non_finite["count"] > 0
        partials[0].moments = feature_moments(X if not left_out else X[states[0].labels >= 0])
    return partials


def _take_state(key) -> ChunkState | None:
    # Taken out while it is updated: a second run of the same task (a retry) finds none and starts afresh.
    with _STATES_LOCK:
        return _STATES.pop(key, None)


def _keep(state: ChunkState, p: BoundsPlan, key, this_pass: int) -> LloydPartials:
    state.version = this_pass
    partials = _partials(state, p)
    with _STATES_LOCK:
        _STATES[key] = state
    return partials


def _new_state(X, p: BoundsPlan, result: dict, origin: np.ndarray, seconds: float) -> ChunkState:
    n, d = X.shape
    return ChunkState(
        version=-1, labels=result["labels"].copy(),
        upper=np.sqrt(result["sq_dist"]) * (1.0 + bound_slack(d)),
        lower=np.ascontiguousarray(result["lower"]),
        block_sums=np.ascontiguousarray(result["block_sums"]),
        block_counts=np.ascontiguousarray(result["block_counts"]),
        block_squares=np.ascontiguousarray(result["block_squares"]),
        row_squares=result["row_squares"], origin=origin, non_finite=result["non_finite"],
        n_computed=n - result["non_finite"]["count"], seconds=seconds, lloyd_seconds=seconds,
    )


def _weights(w):
    return None if w is None else np.ascontiguousarray(w, dtype=np.float64)


def _advance_state(X, w, p: BoundsPlan, state: ChunkState) -> bool:
    """Move the bounds to the plan's centres, reassign the rows whose bounds fail, refresh the blocks
    where labels changed. False when a row came out left out (its distance overflows): then the chunk
    is computed in full, as Lloyd would see it."""
    started = time.perf_counter()
    n, d = X.shape
    failing = np.empty(n, dtype=np.int64)
    n_failing = _filter_rows(X, state.labels, state.upper, state.lower, p.centers, p.moved, p.groups,
                             p.group_moved, p.group_second, p.group_mover, p.half_gap, bound_slack(d),
                             failing)
    failing = failing[:n_failing]
    state.n_computed = n_failing
    if n_failing:
        assigning = time.perf_counter()
        result = assign_sets(X, [p.centers], w, rows=failing, bound_groups=[p.groups])[0]
        if result["non_finite"]["count"]:
            return False
        if n_failing >= 1000:  # enough rows to time the kernel per row
            state.lloyd_seconds = (time.perf_counter() - assigning) * n / n_failing
        old_labels = np.empty(n_failing, dtype=np.int32)
        n_changed = _store_rows(failing, result["labels"], result["sq_dist"], result["lower"], bound_slack(d),
                                state.labels, state.upper, state.lower, old_labels)
        if n_changed:
            block = sum_block_rows(len(p.centers), d)
            block_statistics(X, _weights(w), state.labels, state.row_squares, block, failing[:n_changed],
                             old_labels[:n_changed], state.block_sums,
                             state.block_counts, state.block_squares)
    state.seconds = time.perf_counter() - started
    return True


def _partials(state: ChunkState, p: BoundsPlan) -> LloydPartials:
    sums, counts, squares = _add_blocks(state.block_sums, state.block_counts, state.block_squares)
    moved = p.centers - state.origin
    shifted_sums = sums - counts[:, None] * state.origin
    per_cluster = squares - 2.0 * np.einsum("ij,ij->i", moved, shifted_sums) + counts * (moved**2).sum(axis=1)
    d = p.centers.shape[1]
    empty = {"sq_dist": np.zeros(0), "index": np.zeros(0, np.int64), "rows": np.zeros((0, d)),
             "weights": np.zeros(0), "labels": np.zeros(0, np.int32)}
    return LloydPartials(sums=sums, counts=counts, inertia=float(np.maximum(per_cluster, 0.0).sum()),
                         farthest=empty, non_finite=dict(state.non_finite), n_computed=state.n_computed,
                         seconds=state.seconds, lloyd_seconds=state.lloyd_seconds)


def drop_states(token: str) -> int:
    """Free every chunk state of a fit in this process; the number of bytes freed."""
    with _STATES_LOCK:
        keys = [key for key in _STATES if key[0] == token]
        return sum(_STATES.pop(key).nbytes for key in keys)


def drop_states_everywhere(token: str) -> None:
    """Free a fit's chunk states on every worker (and in this process, where local schedulers ran them)."""
    drop_states(token)
    client = current_client()
    if client is not None:
        client.run(drop_states, token)


# ----------------------------------------------------------------------------------------------------
# Compiled loops over a chunk's rows


@compiled()
def _filter_rows(X, labels, upper, lower, centers, moved, groups, group_moved, group_second, group_mover,
                 half_gap, slack, failing):
    """Move every row's bounds by the centres' moves and list the rows whose bounds fail after the
    upper bound is tightened to the exact distance. Rows left out (label -1) are never listed."""
    n, t = lower.shape
    grow = 1.0 + 2.0 * slack
    shrink = 1.0 - 2.0 * slack
    n_failing = 0
    for i in range(n):
        a = labels[i]
        if a < 0:
            continue
        u = (upper[i] + moved[a]) * grow
        own = groups[a]
        smallest = np.inf
        for g in range(t):
            drift = group_second[g] if (g == own and group_mover[g] == a) else group_moved[g]
            value = (lower[i, g] - drift) * shrink
            lower[i, g] = value
            smallest = min(smallest, value)
        limit = max(smallest, half_gap[a])
        if u < limit:
            upper[i] = u
            continue
        u = np.sqrt(exact_sq_distance(X[i], centers[a])) * (1.0 + slack)
        upper[i] = u
        if u < limit:
            continue
        failing[n_failing] = i
        n_failing += 1
    return n_failing


@compiled()
def _store_rows(rows, labels, sq_dist, lower, slack, all_labels, upper, all_lower, old_labels):
    """Write the reassigned rows' labels and bounds into the chunk's; the rows whose label changed are
    moved to the front of ``rows`` (their old labels in ``old_labels``). Returns how many changed."""
    n_changed = 0
    for m in range(rows.shape[0]):
        i = rows[m]
        if labels[m] != all_labels[i]:
            old_labels[n_changed] = all_labels[i]
            rows[n_changed] = i
            n_changed += 1
            all_labels[i] = labels[m]
        upper[i] = np.sqrt(sq_dist[m]) * (1.0 + slack)
        for g in range(lower.shape[1]):
            all_lower[i, g] = lower[m, g]
    return n_changed


@compiled()
def block_statistics(X, weights, labels, row_squares, block, rows, old_labels, sums, counts, squares):
    """Recompute the weighted sums, counts and sums of ``row_squares`` of the clusters whose rows changed
    in each block of ``block`` rows: those that ``rows`` left (``old_labels``, -1 for none) or joined
    (their ``labels`` now). Each is recomputed from zero and in row order, so that they are what the
    kernel adds up, bit for bit; clusters of a block that no row joined or left are kept."""
    n, d = X.shape
    n_blocks, k = counts.shape
    touched = np.zeros((n_blocks, k), dtype=np.bool_)
    dirty = np.zeros(n_blocks, dtype=np.bool_)
    for m in range(rows.shape[0]):
        b = rows[m] // block
        dirty[b] = True
        if old_labels[m] >= 0:
            touched[b, old_labels[m]] = True
        if labels[rows[m]] >= 0:
            touched[b, labels[rows[m]]] = True
    for b in range(n_blocks):
        if not dirty[b]:
            continue
        for a in range(k):
            if touched[b, a]:
                sums[b, a] = 0.0
                counts[b, a] = 0.0
                squares[b, a] = 0.0
        for i in range(b * block, min(n, (b + 1) * block)):
            a = labels[i]
            if a < 0 or not touched[b, a]:
                continue
            w = 1.0 if weights is None else weights[i]
            counts[b, a] += w
            row_sums = sums[b, a]
            for f in range(d):
                row_sums[f] += w * np.float64(X[i, f])
            squares[b, a] += w * row_squares[i]


@compiled()
def _add_blocks(block_sums, block_counts, block_squares):
    """The chunk's totals: the blocks added in order, from zero, as the kernel flushes them."""
    n_blocks, k, d = block_sums.shape
    sums = np.zeros((k, d))
    counts = np.zeros(k)
    squares = np.zeros(k)
    for b in range(n_blocks):
        for j in range(k):
            counts[j] += block_counts[b, j]
            squares[j] += block_squares[b, j]
            for f in range(d):
                sums[j, f] += block_sums[b, j, f]
    return sums, counts, squares
