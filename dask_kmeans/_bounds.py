"""Exact bounded Lloyd passes: Lloyd's labels, computing distances only for rows whose bounds fail.

Triangle-inequality bounds prove, row by row, that a row keeps its centre without computing its
distances. Each row keeps an upper bound ``u`` on its distance to its own centre and lower bounds on its
distances to the other centres: one (Hamerly 2010) or one per group of centres (Yinyang, Ding et al.
2015; the groups are a k-means of the initial centres, about ten centres each). When the centres move,
``u`` grows by its centre's move and each lower bound shrinks by the largest move in its group. A row
whose ``u`` is below all its lower bounds (or below half the gap from its centre to the nearest other
centre) keeps its label; the others are gathered and assigned by the one kernel (:func:`assign_sets`,
GEMM and all), which also gives their new bounds.

The labels are Lloyd's: a row skips only when its label provably stays the label of the exact distances
(ties to the lowest index: the test is strict, and bounds are widened by the rounding of the distances
as computed, and rounded outward to float32 to be kept: Hamerly's two take 8 bytes a row, not 16). They
are kept relative to the centres' moves added up since the chunk's state began and moved to now on
the fly (:func:`failing_rows`), so that a pass writes only the bounds of the rows it computes. A
chunk's sums and counts are Lloyd's in its first pass and then move with the rows that change cluster
(:func:`move_rows`): time proportional to the changes, not to the chunk. They then differ from Lloyd's
in the last bits; each cluster's possible rounding drift is tracked, and a chunk's sums are recomputed
from its labels before it could reach ``DRIFT_LIMIT`` of the largest value. The inertia of an
iteration comes from per-cluster weighted sums of squared distances to a point near the chunk (relative
error about ``eps * spread / cluster width``), not from every row's distance.

The per-row state (labels and bounds) and the chunk's per-cluster sums stay in the memory of the process
that ran the chunk's task, keyed by the fit, the centre set and the chunk, and tagged with the pass it
belongs to. A task that finds no state of the previous pass (first pass, a worker that died or
restarted, a task that ran elsewhere) computes its chunk in full: lost state costs a recomputation of
that chunk, never a different label. :func:`drop_states` frees a fit's state on every worker when the
fit ends.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from ._kernels import (
    LloydPartials,
    assign_sets,
    bound_slack,
    compiled,
    feature_moments,
    inertia_from_squares,
    lloyd_partials_sets,
    lower_bound32,
    move_rows,
    nearest_center,
    pairwise_sq_distances,
    signed_upper_bound32,
    squares_about,
    upper_bound32,
    usable_rows,
)
from ._scheduler import current_client, dask_threads_in_this_process, memory_for_data
from ._seeding import lloyd_in_memory

ALGORITHMS = ("lloyd", "hamerly", "yinyang")
ORIGIN_ROWS = 1024
CENTERS_PER_GROUP = 10  # Yinyang's groups: about k / 10 (Ding et al.)
# A chunk's sums are recomputed from its labels once a cluster's rounding drift could exceed this share
# of its largest value (a bound, not an estimate: rounding errors mostly cancel). 1e-12 recomputed the
# chunks of bench_bounds' anisotropic data twice in 20 iterations (a Lloyd pass's sums each time).
DRIFT_LIMIT = 1e-11
# Moves added up before the bounds are rebased (every row's written as of now, relative to no moves):
# after many passes, for the rounding of the sums; and once the moves are large against the gaps
# between centres, since a bound stored relative to them keeps float32's precision of the moves.
MAX_MOVES = 1000
REBASE_MOVES = 4096.0

_EPS = float(np.finfo(np.float64).eps)
_STATES: dict[tuple, ChunkState] = {}
_STATES_LOCK = threading.Lock()


def bound_groups(centers: np.ndarray, algorithm: str) -> np.ndarray:
    """Each centre's group: all in one for Hamerly; for Yinyang, a k-means of the centres into k / 10."""
    k = len(centers)
    n_groups = max(1, k // CENTERS_PER_GROUP) if algorithm == "yinyang" else 1
    if n_groups == 1:
        return np.zeros(k, dtype=np.int64)
    first = centers[np.linspace(0, k - 1, n_groups).astype(int)]
    group_centers, _ = lloyd_in_memory(centers, None, first, max_steps=5)  # as the paper's grouping
    return nearest_center(centers, group_centers)[0].astype(np.int64)


@dataclass(frozen=True)
class BoundsPlan:
    """What every chunk's task needs to move one set's bounds from its previous centres to the current
    ones, computed once on the client: ``moved`` (k,) each centre's move, ``group_moved`` (t,) the
    largest move in each group, ``own_drift`` (k,) the largest move in each centre's group but its own,
    ``half_gap`` (k,) half the distance from each centre to its nearest other one, and ``rebase_moves``
    the moves beyond which a chunk's bounds are rebased (``REBASE_MOVES`` x the median half gap).
    ``version`` is the pass the state must come from (-1: compute in full). ``run`` names the set (its
    state's key). A plan without ``groups`` asks for a plain Lloyd pass of the set (its first pass, or
    bounds that did not pay, see :func:`bounds_still_pay`)."""

    run: int
    centers: np.ndarray
    groups: np.ndarray | None = None
    version: int = -1
    moved: np.ndarray | None = None
    group_moved: np.ndarray | None = None
    own_drift: np.ndarray | None = None
    half_gap: np.ndarray | None = None
    rebase_moves: float = np.inf


def plan(run: int, centers: np.ndarray, groups: np.ndarray | None, previous: np.ndarray | None,
         version: int) -> BoundsPlan:
    """A set's :class:`BoundsPlan` for a pass; ``previous`` are the centres of the pass ``version``."""
    if groups is None:
        return BoundsPlan(run, centers)
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
    own_drift = np.where(group_mover[groups] == np.arange(k), group_second[groups], group_moved[groups])
    finite_gaps = half_gap[(half_gap > 0) & np.isfinite(half_gap)]
    rebase_moves = REBASE_MOVES * float(np.median(finite_gaps)) if len(finite_gaps) else np.inf
    return BoundsPlan(run, centers, groups, version if previous is not None else -1, moved, group_moved,
                      own_drift, half_gap, rebase_moves)


@dataclass
class ChunkState:
    """One set's state for one chunk, as of pass ``version``: labels (-1 for rows left out), bounds,
    and per cluster the weighted sums of rows and of squared distances to ``origin`` (a point near
    the chunk's rows), the weights, the members (rows of positive weight) and the rounding ``drift``
    the sums may have gathered (see :func:`move_rows`).

    ``moves`` adds up the plans' ``moved``, ``own_drift`` and ``group_moved`` of the ``n_moves``
    passes since the bounds' base, and the bounds are stored relative to it: a row's upper bound now
    is ``upper[i] + moves[label]`` and its lower bound ``lower[i] - moves[k + label]`` (Yinyang's other
    groups': ``- moves[2 k + g]``), so that a pass writes only the bounds of the rows it computes
    (their bounds less the moves so far)."""

    version: int
    labels: np.ndarray
    upper: np.ndarray
    lower: np.ndarray
    moves: np.ndarray
    origin: np.ndarray
    sums: np.ndarray
    counts: np.ndarray
    squares: np.ndarray
    members: np.ndarray
    drift: np.ndarray
    non_finite: dict
    n_computed: int = 0
    n_moves: int = 0


def state_bytes_per_row(n_clusters: int, n_features: int, algorithm: str) -> float:
    """Memory a row's state takes (label, float32 upper and lower bound(s); the per-cluster sums are a
    chunk's, not a row's)."""
    if algorithm == "lloyd":
        return 0.0
    n_groups = max(1, n_clusters // CENTERS_PER_GROUP) if algorithm == "yinyang" else 1
    return 4 + 4 + 4 * n_groups


# Bounds cost more than Lloyd's pass where most rows' bounds fail (data without clusters): a set goes
# back to Lloyd once its bounded passes have cost this many Lloyd passes more than Lloyd's would have.
LOSS_BUDGET = 2.0
# What a bounded pass costs, in Lloyd passes: a fixed share (the bound checks) and a share per row whose
# distances it computes (gathered, they cost more than streamed). bench_bounds' data, 5M rows: 12% of the
# rows computed ~0.31 (anisotropic, k=32), 36% ~0.70 (no clusters), 75% ~1.1, every row ~1.35. A model,
# not a clock: whether a set keeps its bounds, and so its answer to the last bit, does not depend on
# how busy the machine is.
PASS_COST = (0.2, 1.15)


def bounds_still_pay(loss: float, share_computed: float) -> tuple[float, bool]:
    """The Lloyd passes a set's bounded passes have lost against Lloyd so far, with this pass's (which
    computed the distances of ``share_computed`` of the rows), and whether the set should keep its
    bounds."""
    loss += PASS_COST[0] + PASS_COST[1] * share_computed - 1.0
    return loss, loss <= LOSS_BUDGET


def choose_algorithm(requested: str, n_clusters: int, n_features: int, n_rows: int, n_sets: int,
                     data_bytes: int | None) -> tuple[str, str]:
    """The algorithm a fit runs, and why: ``requested`` unless it is "auto".

    "auto" takes Hamerly where the data are in memory (``data_bytes``, None when they are streamed from
    their store) and its per-row state fits beside them in half the workers' memory (of this machine's
    free memory with a local scheduler), else Lloyd. Streamed data keep Lloyd: the state would live in
    worker memory outside dask's accounting, beside the chunks being read, which is where a streamed fit
    needs its memory (a 512 MiB worker streaming an 832 MB file paused). Hamerly, not Yinyang: on the
    data of benchmarks/bench_bounds.py Yinyang's group bounds skip a few more rows but computing them for
    the rows that are reassigned costs more than that saves, and its state is larger. Tasks of a local
    process pool run in processes this fit cannot reach to free their state: Lloyd there.
    """
    if requested != "auto":
        return requested, f"{requested} as asked"
    client = current_client()
    if client is None and dask_threads_in_this_process() == 0:
        return "lloyd", "lloyd: tasks run in a local process pool, where per-row bounds could not be freed"
    if data_bytes is None:
        return "lloyd", ("lloyd: the data are streamed from their source, and per-row bounds would take "
                         "worker memory the chunks need (persist them to use bounds)")
    state = n_rows * n_sets * state_bytes_per_row(n_clusters, n_features, "hamerly")
    memory = memory_for_data()
    held = data_bytes if client is not None else 0  # a local scheduler's free memory excludes the data
    if state + held > 0.5 * memory:
        return "lloyd", (f"lloyd: per-row bounds ({state / 2**20:,.0f} MiB) and the data would take more "
                         f"than half of the memory ({memory / 2**20:,.0f} MiB)")
    return "hamerly", f"hamerly: its per-row state, {state / 2**20:,.0f} MiB, fits beside the data in memory"


def bounded_chunk(X, w, plans: list[BoundsPlan], token: str, this_pass: int, with_moments: bool, *, chunk):
    """One chunk's :class:`LloydPartials` for every set, from its state where it has one.

    ``farthest`` is left empty (the bounds never compute the farthest rows): the driver redoes a pass
    whose counts leave a cluster empty as a plain Lloyd pass, which relocates as Lloyd does. Sets
    whose plan has no groups get a plain Lloyd chunk (and their state is freed): every set's first
    pass, and sets whose bounds did not pay.
    """
    states, fresh, plain = [None] * len(plans), [], []
    for s, p in enumerate(plans):
        state = _take_state((token, p.run, chunk.index))
        if p.groups is None:
            plain.append(s)
        elif _is_current(state, p) and _advance_state(X, w, p, state):
            states[s] = state
        else:  # no state of the previous pass here (first pass, lost, ran elsewhere): afresh
            fresh.append(s)
    if fresh:
        origin = _origin(X)
        results = assign_sets(X, [plans[s].centers for s in fresh], w, with_sums=True,
                              row_offset=chunk.row_offset, bound_groups=[plans[s].groups for s in fresh],
                              cluster_inertia=True)
        for s, result in zip(fresh, results):
            states[s] = _new_state(X, w, result, plans[s].centers, origin)
    partials = [None if state is None else _keep(state, p, (token, p.run, chunk.index), this_pass)
                for state, p in zip(states, plans)]
    if plain:
        centers = [plans[s].centers for s in plain]
        results = lloyd_partials_sets(X, w, centers, row_offset=chunk.row_offset,
                                      n_farthest=[len(c) - 1 for c in centers])
        for s, part in zip(plain, results):
            partials[s] = part
    if with_moments:  # the first pass
        if partials[0].non_finite["count"] == 0:
            partials[0].moments = feature_moments(X)
        else:  # the rows left out are those the kernel leaves out
            labels = nearest_center(X, plans[0].centers)[0]
            partials[0].moments = feature_moments(X[labels >= 0])
    return partials


def _is_current(state: ChunkState | None, p: BoundsPlan) -> bool:
    return state is not None and p.version >= 0 and state.version == p.version


def _origin(X) -> np.ndarray:
    """A point near the chunk's rows, which keeps the sums of squared distances to it from cancelling:
    the mean of its first rows that are not left out, cheap, and a function of the chunk alone, so that
    a chunk computed afresh later gets the same one."""
    first = X[:ORIGIN_ROWS]
    first = first[usable_rows(first)]
    return first.mean(axis=0, dtype=np.float64) if len(first) else np.zeros(X.shape[1])


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


def _new_state(X, w, result: dict, centers: np.ndarray, origin: np.ndarray) -> ChunkState:
    labels, sums, counts = result["labels"], result["sums"], result["counts"]
    weighted = labels if w is None else labels[np.asarray(w) > 0]
    members = np.bincount(weighted[weighted >= 0], minlength=len(counts)).astype(np.int64)
    # Each cluster's sum of squared distances to the origin, from those to its centre (computed anyway).
    squares = squares_about(result["cluster_inertia"], sums, counts, centers, origin)
    lower = np.ascontiguousarray(result["lower"])
    return ChunkState(
        version=-1, labels=labels, upper=result["upper"], lower=lower,
        moves=np.zeros(2 * len(counts) + lower.shape[1]),
        origin=origin, sums=np.array(sums), counts=np.array(counts), squares=squares, members=members,
        drift=np.zeros(len(members)), non_finite=result["non_finite"],
        n_computed=len(labels) - result["non_finite"]["count"],
    )


def _weights(w):
    return None if w is None else np.ascontiguousarray(w, dtype=np.float64)


def _advance_state(X, w, p: BoundsPlan, state: ChunkState) -> bool:
    """Move the bounds to the plan's centres, reassign the rows whose bounds fail, move the sums of the
    rows whose label changed. False when a row came out left out (its distance overflows): then the chunk
    is computed in full, as Lloyd would see it."""
    failing = failing_rows(state, p, X.shape[1])
    state.n_computed = len(failing)
    if len(failing):
        result = assign_sets(X, [p.centers], w, rows=failing, bound_groups=[p.groups])[0]
        if result["non_finite"]["count"]:
            return False
        changed, old_labels = store_rows(state, failing, result, p.groups)
        if len(changed):
            move_rows(X, _weights(w), changed, old_labels, state.labels, state.origin, state.sums,
                      state.counts, state.squares, state.members, state.drift)
            if np.any(state.drift * _EPS > DRIFT_LIMIT * state.counts):
                _recompute_sums(X, w, state)
    return True


def failing_rows(state: ChunkState, p: BoundsPlan, n_features: int) -> np.ndarray:
    """Add the plan's moves to the state's and return the rows whose bounds no longer prove that they
    keep their centre (rows left out never fail)."""
    n, k = len(state.labels), len(p.moved)
    if state.n_moves >= MAX_MOVES or state.moves.max() > p.rebase_moves:
        _rebase(state.labels, state.upper, state.lower, state.moves, k, _rounding(state.n_moves), p.groups,
                bound_slack(n_features))
        state.moves[:], state.n_moves = 0.0, 0
    state.moves += np.concatenate([p.moved, p.own_drift, p.group_moved])
    state.n_moves += 1
    failing = np.empty(n, dtype=np.int64)
    n_failing = _filter_rows(state.labels, state.upper, state.lower, state.moves, k, _rounding(state.n_moves),
                             p.groups, p.half_gap, bound_slack(n_features), failing)
    return failing[:n_failing]


def store_rows(state: ChunkState, rows: np.ndarray, result: dict,
               groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep the kernel's labels and bounds of the reassigned ``rows`` (relative to the moves so far);
    returns the rows whose label changed and their old labels."""
    old_labels = np.empty(len(rows), dtype=np.int32)
    rows = rows.copy()
    n_changed = _store_rows(rows, result["labels"], result["upper"], result["lower"], state.labels,
                            state.upper, state.lower, state.moves, len(groups), groups, old_labels)
    return rows[:n_changed], old_labels[:n_changed]


def _rounding(n_moves: int) -> float:
    """The relative rounding a sum of ``n_moves`` moves (and a bound relative to it) may have gathered:
    each of the two sums a difference stands for errs by at most ``n eps / 2`` (non-negative terms)."""
    return (2 * n_moves + 4) * _EPS


def _recompute_sums(X, w, state: ChunkState) -> None:
    """The chunk's sums afresh from its labels: every row moved in, from no cluster, onto zeros."""
    for array in (state.sums, state.counts, state.squares, state.members):
        array[...] = 0
    rows = np.flatnonzero(state.labels >= 0)
    move_rows(X, _weights(w), rows, np.full(len(rows), -1, dtype=np.int32), state.labels, state.origin,
              state.sums, state.counts, state.squares, state.members, state.drift)
    state.drift[:] = 0.0  # sums computed afresh: no drift (move_rows added to it)


def _partials(state: ChunkState, p: BoundsPlan) -> LloydPartials:
    inertia = inertia_from_squares(state.sums, state.counts, state.squares, p.centers, state.origin)
    empty = {"sq_dist": np.zeros(0), "index": np.zeros(0, np.int64), "weights": np.zeros(0),
             "labels": np.zeros(0, np.int32)}
    # Copies: the state's arrays move on in the next pass.
    return LloydPartials(sums=state.sums.copy(), counts=state.counts.copy(), inertia=inertia, farthest=empty,
                         non_finite=dict(state.non_finite), n_computed=state.n_computed)


def drop_states(token: str) -> None:
    """Free every chunk state of a fit in this process."""
    with _STATES_LOCK:
        for key in [key for key in _STATES if key[0] == token]:
            del _STATES[key]


def drop_states_everywhere(token: str, workers_reachable: bool = True) -> None:
    """Free a fit's chunk states on every worker (and in this process, where local schedulers ran them).

    Best effort, as it runs when a fit ends, failed fits included: not when the client has lost its
    scheduler (``workers_reachable`` False: it would wait for it to come back, and log each try), and a
    worker that cannot answer is skipped.
    """
    drop_states(token)
    client = current_client()
    if workers_reachable and client is not None and client.status == "running":
        client.run(drop_states, token, on_error="ignore")


# ----------------------------------------------------------------------------------------------------
# Compiled loops over a chunk's bounds


@compiled(inline="always")
def _moved_upper(i, labels, upper, moves, rounding, grow):
    """Row ``i``'s upper bound now: its stored one plus its centre's moves (see :class:`ChunkState`),
    widened by their rounding."""
    c = max(labels[i], 0)
    v = np.float64(upper[i])
    return (v + moves[c] + rounding * (abs(v) + moves[c])) * grow


@compiled(inline="always")
def _column(labels, i, g, k, groups):
    """Where in ``moves`` the drift of row ``i``'s lower bound for group ``g`` is added up."""
    c = max(labels[i], 0)
    return k + c if g == groups[c] else 2 * k + g


@compiled(inline="always")
def _moved_lower(i, g, labels, lower, moves, k, rounding, groups, shrink):
    """Row ``i``'s lower bound for group ``g`` now: its stored one less the largest moves of the group's
    centres (but its own centre's, in its own group), widened by their rounding."""
    v = np.float64(lower[i, g])
    drift = moves[_column(labels, i, g, k, groups)]
    return (v - drift - rounding * (v + drift)) * shrink


@compiled()
def _filter_rows(labels, upper, lower, moves, k, rounding, groups, half_gap, slack, failing):
    """List in ``failing`` the rows whose bounds, moved to now, no longer prove that they keep their
    centre; returns how many. Rows left out (label -1) are never listed. Nothing is written but
    ``failing``: with two threads, writing every row's bounds back took half of a pass's bound checks
    (5M x 16 float32, k=32: 30 -> 15 task-ms a pass).

    (Hamerly tightens a failing row's upper bound to its exact distance first; here the kernel
    reassigns them all: a failing row's row of X is a cache miss either way, and the kernel's gather
    overlaps them where a row-by-row exact distance waits on each: 5M x 16 float32, k=32, one core, a
    pass of the middle iterations 130 -> 100 ms.)"""
    n, t = lower.shape
    grow = 1.0 + 2.0 * slack
    shrink = 1.0 - 2.0 * slack
    n_failing = 0
    if t == 1:  # Hamerly: the same test without the loop over groups, which the compiler keeps
        for i in range(n):
            u = _moved_upper(i, labels, upper, moves, rounding, grow)
            value = _moved_lower(i, 0, labels, lower, moves, k, rounding, groups, shrink)
            failing[n_failing] = i
            n_failing += (labels[i] >= 0) & (u >= max(value, half_gap[max(labels[i], 0)]))
        return n_failing
    for i in range(n):
        u = _moved_upper(i, labels, upper, moves, rounding, grow)
        smallest = np.inf
        for g in range(t):
            smallest = min(smallest, _moved_lower(i, g, labels, lower, moves, k, rounding, groups, shrink))
        failing[n_failing] = i
        n_failing += (labels[i] >= 0) & (u >= max(smallest, half_gap[max(labels[i], 0)]))
    return n_failing


@compiled()
def _rebase(labels, upper, lower, moves, k, rounding, groups, slack):
    """Write every row's bounds as of now, rounded outward to float32: relative to no moves."""
    n, t = lower.shape
    grow = 1.0 + 2.0 * slack
    shrink = 1.0 - 2.0 * slack
    for i in range(n):
        for g in range(t):
            lower[i, g] = lower_bound32(_moved_lower(i, g, labels, lower, moves, k, rounding, groups, shrink))
        upper[i] = upper_bound32(_moved_upper(i, labels, upper, moves, rounding, grow))


@compiled()
def _store_rows(rows, labels, upper, lower, all_labels, all_upper, all_lower, moves, k, groups, old_labels):
    """Write the reassigned rows' labels and bounds into the chunk's, relative to the ``moves`` so far
    (see :class:`ChunkState`); the rows whose label changed are moved to the front of ``rows`` (their
    old labels in ``old_labels``). Returns how many changed."""
    n_changed = 0
    for m in range(rows.shape[0]):
        i = rows[m]
        if labels[m] != all_labels[i]:
            old_labels[n_changed] = all_labels[i]
            rows[n_changed] = i
            n_changed += 1
            all_labels[i] = labels[m]
        c = max(labels[m], 0)
        # Less the moves so far: the float64 difference errs by at most eps of its terms.
        shift = moves[c] * (1.0 - 2.0 * _EPS)
        all_upper[i] = signed_upper_bound32(np.float64(upper[m]) * (1.0 + 2.0 * _EPS) - shift)
        for g in range(lower.shape[1]):
            drift = moves[_column(all_labels, i, g, k, groups)]
            all_lower[i, g] = lower_bound32(np.float64(lower[m, g]) + drift)
    return n_changed
