"""Initial centres: random rows, k-means++, k-means|| (Bahmani et al. 2012), or a given array.

Each initializer takes the validated data, the number of clusters and an int seed and returns (k, d) float64
centres. Random draws depend only on the seed, what they are for (a stream number), the round and the chunk
index, so the centres do not depend on the scheduler or the number of workers.

Passes over the data (a pass reads every chunk once; picking given rows reads only the chunks that hold
them):

- ``random``: none (rows are picked by index); with sample weights one pass over the weights alone.
- ``k-means++`` on an in-memory array: none through dask (greedy k-means++ in memory, as scikit-learn).
- ``k-means++`` on a dask array: ``k`` passes (greedy, the trials of one centre drawn per pass).
- ``k-means||``: ``init_rounds + 1`` passes (the rounds, then one to weight the candidates).

Each initializer starts one run per seed (``n_init`` runs), and the runs share every pass and every read
of drawn rows: ``n_init`` starts cost the passes of one.
"""

from __future__ import annotations

from functools import partial

import dask.array as da
import numpy as np

from ._kernels import (
    combine_non_finite,
    flagged_rows,
    nearest_center,
    non_finite_rows,
    pairwise_sq_distances,
    usable_rows,
)
from ._passes import ChunkedRows, combine_each, map_reduce
from ._scheduler import compute
from ._seeding import kmeans_plusplus, search_centers
from ._validation import NonFiniteDataError, check_finite_total, check_non_finite

# Stream numbers keep the draws made for different purposes independent of each other.
_STREAM_FIRST_CENTER = 1
_STREAM_RANDOM = 2
_STREAM_PLUSPLUS = 3
_STREAM_PARALLEL = 4
_STREAM_TOP_UP = 5
_STREAM_REDUCE = 6
_STREAM_SAMPLE = 7

_FLOAT32_MIN_CANDIDATES = 48
# The search finds near-global centres of a uniform sample of about this many rows a cluster better than
# of the k-means|| candidates (which D^2 sampling draws from the clusters' edges): bench_quality's
# 16-D k=15 sigma=0.45, 5 seeds, inertia / sklearn n_init=10: candidates 1.0050 (CI 0.8), 100 rows a
# cluster 1.0001-1.0028 (CI 0-0.6), every row 1.0000 (CI 0); 32-D k=50: 1.0008 (CI 0.6) against
# 0.9975-0.9983 (CI 0-0.2), with 40 rows a cluster 1.0009. Where the sample would cost the search more
# than this many multiply-adds per assignment (large k), it searches the candidates.
SAMPLE_PER_CLUSTER = 100
# ... and at least this many (every row of a smaller data set): on 16-D k=15 sigma=0.45 (5000 rows) the
# search on every row gives 1.0000, CI 0, where 1500 rows gave 1.0018, CI 0.2. Far more rows buy nothing
# and cost the search its restarts: every row of the 32-D set (50,000) gave 1.0008, of the grid (100,000)
# the same 0.935 in 26 s instead of 4.7.
MIN_SAMPLE_ROWS = 5000
_SAMPLE_FLOPS = 2.5e8


def chunk_rng(seed: int, stream: int, step: int, chunk_index: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, step, chunk_index])


# ----------------------------------------------------------------------------------------------------
# Drawing rows


def _exponential_keys(w: np.ndarray, seed: int, stream: int, block_info=None) -> np.ndarray:
    # Efraimidis-Spirakis: the m largest log(u)/w are a weighted sample without replacement.
    chunk_index = block_info[0]["chunk-location"][0]
    u = chunk_rng(seed, stream, 0, chunk_index).random(w.shape[0])
    with np.errstate(divide="ignore"):
        return np.log(u) / w


def draw_row_indices(data: ChunkedRows, m: int, seeds: list[int], stream: int) -> list[np.ndarray]:
    """For each seed, ``m`` distinct global row indices drawn with probability proportional to the weight.

    With weights, the draws of every seed come from one pass over the weights.
    """
    if data.weights is None:
        return [np.random.default_rng([seed, stream]).choice(data.n_samples, size=m, replace=False)
                for seed in seeds]
    keys = [data.weights.map_blocks(_exponential_keys, seed, stream, dtype=np.float64) for seed in seeds]
    # Not optimised, so that the weights' chunks keep the tasks the passes give them (see ChunkedRows.rows).
    drawn = compute(*[da.argtopk(k, m) for k in keys], optimize_graph=False)
    return [np.asarray(indices) for indices in drawn]


def draw_finite_rows(data: ChunkedRows, m: int, seeds: list[int], stream: int) -> list[np.ndarray]:
    """For each seed, ``m`` distinct rows drawn as by :func:`draw_row_indices`, skipping non-finite rows.

    A centre must be finite even when ``nan_policy="omit"`` leaves such rows in the data. The rows drawn
    for every seed are read together (each chunk that holds some is read once) and checked; a seed that
    drew too few finite rows draws again, more.
    """
    drawn: list[np.ndarray | None] = [None] * len(seeds)
    pending, size = list(range(len(seeds))), m
    for attempt in range(2):
        size = min(data.n_samples, size)
        indices = draw_row_indices(data, size, [seeds[i] for i in pending], stream + 100 * attempt)
        rows = data.rows(np.concatenate(indices)).reshape(len(pending), size, data.n_features)
        for i, run_rows in zip(list(pending), rows):
            finite = usable_rows(run_rows)
            if np.count_nonzero(finite) >= m:
                drawn[i] = run_rows[finite][:m].astype(np.float64)
                pending.remove(i)
        if not pending:
            return drawn
        size = 4 * m + 16
    raise NonFiniteDataError(
        f"Only {np.count_nonzero(finite)} of {size} rows drawn at random are free of NaN and infinity, "
        f"too few to start {m} centre(s): the data are mostly non-finite. Clean them before fitting."
    )


def random_init(data: ChunkedRows, n_clusters: int, seeds: list[int]) -> list[np.ndarray]:
    """For each seed, ``n_clusters`` distinct rows drawn uniformly (or by weight)."""
    return draw_finite_rows(data, n_clusters, seeds, _STREAM_RANDOM)


def _each_run(X, w, run_fn, keeps_state, n_own, *args, chunk, state=None):
    """``run_fn`` once per run on one read of the chunk, for initializers that start several runs at once.

    The first ``n_own`` of ``args`` are lists with one entry per run (zipped into each run's own
    arguments), the rest are shared by all runs; ``state`` holds each run's state from the last pass.
    With ``keeps_state`` the runs' states and partials come back as two lists, for the next pass.
    """
    own, shared = zip(*args[:n_own]), args[n_own:]
    states = [None] * len(args[0]) if state is None else state
    results = [run_fn(X, w, *mine, *shared, chunk=chunk, state=s) for mine, s in zip(own, states)]
    if keeps_state:
        return [r[0] for r in results], [r[1] for r in results]
    return results


# ----------------------------------------------------------------------------------------------------
# k-means++ on a dask array: greedy, one pass per centre
#
# Pass p gets the centre chosen after pass p-1 and the trial candidates drawn in pass p-1. It folds the
# chosen centre into each row's distance to its nearest centre (kept per chunk between passes), computes
# the potential each trial would leave, and, for every trial, draws the next trials as if that trial won
# (one exponential race per draw). The client then keeps the best trial and its draws.


def _plusplus_chunk(X, w, chosen, trials, seed, n_draws, step, *, chunk, state=None):
    n = X.shape[0]
    w = np.ones(n) if w is None else w
    d2 = state
    non_finite = {"count": 0, "first_row": -1}
    if len(chosen):
        _, d_chosen = nearest_center(X, chosen)
        non_finite = non_finite_rows(d_chosen, chunk.row_offset)
        d_chosen[~np.isfinite(d_chosen)] = 0.0  # non-finite rows are never drawn
        d2 = d_chosen if d2 is None else np.minimum(d2, d_chosen)
    # fmin: a non-finite row's distance to a trial is NaN; it keeps its 0 and stays out of the draws.
    trial_d2 = d2[None, :] if len(trials) == 0 else np.fmin(d2[None, :], pairwise_sq_distances(X, trials).T)
    weighted = trial_d2 * w
    log_u = np.log(chunk_rng(seed, _STREAM_PLUSPLUS, step, chunk.index).random((n_draws, n)))
    best_index = np.zeros((len(weighted), n_draws), dtype=np.int64)
    best_key = np.full((len(weighted), n_draws), -np.inf)
    if n:
        with np.errstate(divide="ignore", invalid="ignore"):
            for t, wd in enumerate(weighted):
                keys = log_u / wd  # exponential race: the row with the largest key is a D^2 draw
                keys[np.isnan(keys)] = -np.inf
                best_index[t] = keys.argmax(axis=1)
                best_key[t] = keys[np.arange(n_draws), best_index[t]]
    return d2, {
        "non_finite": non_finite,
        "potentials": weighted.sum(axis=1),
        "key": best_key,
        "index": best_index + chunk.row_offset,
        "rows": X[best_index].astype(np.float64) if n else np.zeros(best_index.shape + X.shape[1:]),
    }


def _combine_plusplus(parts: list[dict]) -> dict:
    key = np.stack([p["key"] for p in parts])  # (parts, trials, draws)
    index = np.stack([p["index"] for p in parts])
    rows = np.stack([p["rows"] for p in parts])  # (parts, trials, draws, features)
    # Largest key wins; ties go to the smaller row index, so the chunking does not matter.
    winner = np.lexsort((index, -key), axis=0)[0]
    trial, draw = np.indices(winner.shape)
    return {
        "non_finite": combine_non_finite([p["non_finite"] for p in parts]),
        "potentials": np.sum([p["potentials"] for p in parts], axis=0),
        "key": key[winner, trial, draw],
        "index": index[winner, trial, draw],
        "rows": rows[winner, trial, draw],
    }


def kmeans_plusplus_dask(
    data: ChunkedRows, n_clusters: int, seeds: list[int], nan_policy: str = "raise"
) -> list[np.ndarray]:
    """Greedy k-means++ over a dask array in ``n_clusters`` passes, one run per seed in the same passes.

    Each new centre is the best, by potential, of ``2 + log(k)`` trials drawn with probability
    proportional to ``weight * D(x)^2``.
    """
    n_draws = 2 + int(np.log(n_clusters))
    firsts = draw_finite_rows(data, 1, seeds, _STREAM_FIRST_CENTER)
    if n_clusters == 1:
        return firsts
    no_rows = np.empty((0, data.n_features))
    centers = [[first[0]] for first in firsts]
    chosen, trials, state = list(firsts), [no_rows] * len(seeds), None
    combine = partial(combine_each, combines=[_combine_plusplus] * len(seeds))
    for step in range(n_clusters):
        results, state = map_reduce(
            data, _each_run, combine,
            args=(_plusplus_chunk, True, 3, chosen, trials, list(seeds), n_draws, step),
            state=state, keep_state=True,
        )
        for run, result in enumerate(results):
            check_non_finite(result["non_finite"], data.X.chunks[0], nan_policy)
            check_finite_total(float(result["potentials"].min()), "k-means++ potential")
            best = int(np.argmin(result["potentials"]))
            if len(trials[run]):
                centers[run].append(trials[run][best])
            chosen[run] = trials[run][best][None, :] if len(trials[run]) else no_rows
            trials[run] = result["rows"][best]
        if len(centers[0]) == n_clusters:
            break
    return [np.array(run_centers) for run_centers in centers]


# ----------------------------------------------------------------------------------------------------
# k-means|| (Bahmani et al. 2012)


def _nearest_candidate(X, new_candidates, first_new_id, state, origin):
    """Update each row's (squared distance, index) of its nearest candidate with the new candidates.

    Distances may be computed in float32 relative to ``origin`` (the first centre): sampling needs no more.
    The state is kept small, since it waits on the workers between rounds for every row and every run:
    float32 distances and int16 indices while they fit (6 bytes a row, not 12).
    """
    if len(new_candidates) == 0:
        return state
    # float32 halves the GEMM but has a slower argmin: it pays from about 48 candidates (measured, d=32).
    use_float32 = X.dtype == np.float32 or len(new_candidates) >= _FLOAT32_MIN_CANDIDATES
    labels, d2 = nearest_center(X, new_candidates, float32_from=origin if use_float32 else None)
    index_dtype = np.int16 if first_new_id + len(new_candidates) <= np.iinfo(np.int16).max else np.int32
    labels = (labels + first_new_id).astype(index_dtype)
    d2 = d2.astype(np.float32)  # sampling weights need no more
    bad = ~np.isfinite(d2)
    if bad.any():  # rows with NaN or inf: never sampled, never counted (label -1)
        d2[bad], labels[bad] = 0.0, -1
    if state is None:
        return d2, labels
    old_d2, old_labels = state
    closer = d2 < old_d2
    return np.where(closer, d2, old_d2), np.where(closer, labels, old_labels)


def _parallel_round_chunk(X, w, new_candidates, first_new_id, origin, seed, oversampling, round_index, *,
                          chunk, state=None):
    state = _nearest_candidate(X, new_candidates, first_new_id, state, origin)
    d2 = state[0].astype(np.float64)
    wd2 = d2 if w is None else w * d2
    phi = float(wd2.sum())
    u = chunk_rng(seed, _STREAM_PARALLEL, round_index, chunk.index).random(d2.shape[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        score = oversampling * wd2 / u
    # A row is sampled when u < l * w * d^2 / phi_total, i.e. score > phi_total. phi_total is not known
    # yet, but it is at least this chunk's phi: keeping score > phi_chunk keeps a superset (at most l
    # rows expected per chunk), and combines prune it as the partial sums of phi grow.
    keep = np.flatnonzero(score > phi)
    return state, {
        "non_finite": flagged_rows(state[1] < 0, chunk.row_offset),
        "phi": phi,
        "score": score[keep],
        "index": keep.astype(np.int64) + chunk.row_offset,
        "rows": X[keep],
    }


def _combine_samples(parts: list[dict]) -> dict:
    phi = float(np.sum([p["phi"] for p in parts]))
    score = np.concatenate([p["score"] for p in parts])
    keep = score > phi
    return {
        "non_finite": combine_non_finite([p["non_finite"] for p in parts]),
        "phi": phi,
        "score": score[keep],
        "index": np.concatenate([p["index"] for p in parts])[keep],
        "rows": np.concatenate([p["rows"] for p in parts])[keep],
    }


def _candidate_weight_chunk(X, w, new_candidates, first_new_id, origin, n_candidates, seed, sample_rate, *,
                            chunk, state=None):
    """Each candidate's weight (the rows nearest to it), and a uniform sample of the usable rows: each
    kept with probability ``sample_rate``, with its weight; and each candidate's weight in the sample
    (of the sampled rows nearest to it)."""
    _, nearest = _nearest_candidate(X, new_candidates, first_new_id, state, origin)
    counted = nearest >= 0
    weights = None if w is None else w[counted]
    u = chunk_rng(seed, _STREAM_SAMPLE, 0, chunk.index).random(len(nearest))
    sampled = np.flatnonzero(counted & (u < sample_rate))
    row_weights = None if w is None else np.asarray(w[sampled], dtype=np.float64)
    return {
        "weights": np.bincount(nearest[counted], weights=weights, minlength=n_candidates).astype(np.float64),
        "in_sample": np.bincount(nearest[sampled], weights=row_weights, minlength=n_candidates).astype(float),
        "rows": np.asarray(X[sampled], dtype=np.float64),
        "row_weights": row_weights,
    }


def _combine_weights(parts: list[dict]) -> dict:
    """Candidate weights added up; sampled rows in chunk order (the tree keeps its leaves' order)."""
    return {
        "weights": np.sum([p["weights"] for p in parts], axis=0),
        "in_sample": np.sum([p["in_sample"] for p in parts], axis=0),
        "rows": np.concatenate([p["rows"] for p in parts]),
        "row_weights": None if parts[0]["row_weights"] is None
        else np.concatenate([p["row_weights"] for p in parts]),
    }


def search_sample_size(n_clusters: int, n_features: int) -> int:
    """Rows of the uniform sample the seeding's search runs on: ``SAMPLE_PER_CLUSTER`` a cluster and at
    least ``MIN_SAMPLE_ROWS``, or 0 (search the k-means|| candidates) where so many rows would take the
    search past its budget."""
    rows = max(SAMPLE_PER_CLUSTER * n_clusters, MIN_SAMPLE_ROWS)
    return rows if rows * n_clusters * n_features <= _SAMPLE_FLOPS else 0


def kmeans_parallel_init(
    data: ChunkedRows,
    n_clusters: int,
    seeds: list[int],
    oversampling_factor: float,
    init_rounds: int,
    nan_policy: str = "raise",
) -> list[np.ndarray]:
    """k-means|| : a few rounds that each sample about ``oversampling_factor * k`` candidates, one pass each.

    The first centre is a row drawn at random. Each round samples every row independently with probability
    ``min(1, l * w * d^2(x) / phi)``, ``d`` being the distance to the nearest candidate so far and ``phi``
    the weighted sum of ``d^2`` over all rows. A last pass weights every candidate by the (weighted) number
    of rows nearest to it and draws a uniform sample of the rows (``SAMPLE_PER_CLUSTER`` a cluster); a
    search on the client (weighted k-means++ restarts, Lloyd and swaps, see
    :func:`~dask_kmeans._seeding.search_centers`) finds ``n_clusters`` centres of the sample, or of the
    weighted candidates where the sample would be too large to search (large k) or too few rows are
    usable. One run per seed, all runs sampled in the same passes.
    """
    oversampling = oversampling_factor * n_clusters
    runs = range(len(seeds))
    firsts = draw_finite_rows(data, 1, seeds, _STREAM_FIRST_CENTER)
    origins = [first[0] for first in firsts]
    candidates = [[first] for first in firsts]
    new, n_seen, state = list(firsts), [0] * len(seeds), None
    combine = partial(combine_each, combines=[_combine_samples] * len(seeds))
    for round_index in range(init_rounds):
        samples, state = map_reduce(
            data, _each_run, combine,
            args=(_parallel_round_chunk, True, 4, new, n_seen, origins, list(seeds), oversampling,
                  round_index),
            state=state, keep_state=True,
        )
        for run, sample in zip(runs, samples):
            check_non_finite(sample["non_finite"], data.X.chunks[0], nan_policy)
            check_finite_total(sample["phi"], "k-means|| cost")
            n_seen[run] += len(new[run])
            picked = sample["score"] > sample["phi"]
            order = np.argsort(sample["index"][picked], kind="stable")
            new[run] = np.asarray(sample["rows"][picked][order], dtype=np.float64)
            candidates[run].append(new[run])
        if all(sample["phi"] == 0 for sample in samples):
            break  # every row sits on a candidate (a run that gets there earlier samples nothing more)
    n_candidates = [sum(len(c) for c in run_candidates) for run_candidates in candidates]
    for run in runs:
        if n_candidates[run] < n_clusters:
            missing = n_clusters - n_candidates[run]
            [extra_rows] = draw_finite_rows(data, missing, [seeds[run]], _STREAM_TOP_UP)
            candidates[run].append(extra_rows)
            new[run] = np.vstack([new[run], extra_rows])
            n_candidates[run] += len(extra_rows)
    sample_rows = search_sample_size(n_clusters, data.n_features)
    sample_rate = min(1.0, sample_rows / data.n_samples)
    weighted = map_reduce(
        data, _each_run, partial(combine_each, combines=[_combine_weights] * len(seeds)),
        args=(_candidate_weight_chunk, False, 5, new, n_seen, origins, n_candidates, list(seeds),
              sample_rate),
        state=state,
    )
    centers = []
    for run, found in zip(runs, weighted):
        if sample_rows and len(found["rows"]) >= 2 * n_clusters:
            points, weights = _sample_with_missed_candidates(found, np.vstack(candidates[run]), sample_rate)
        else:  # no sample (large k), or few usable rows
            points, weights = np.vstack(candidates[run]), found["weights"]
        centers.append(search_centers(points, weights, n_clusters,
                                      np.random.default_rng([seeds[run], _STREAM_REDUCE])))
    return centers


def _sample_with_missed_candidates(found: dict, candidates: np.ndarray, sample_rate: float):
    """The sampled rows, and the candidates none of whose rows were sampled, each with its rows' weight
    in the sample's units: a uniform sample misses a small cluster far from the rest (15 rows of
    100,000, 230 away: 3 seeds of 5), which D^2 sampling finds and the search must see to cover it."""
    missed = (found["in_sample"] == 0) & (found["weights"] > 0)
    if not missed.any():
        return found["rows"], found["row_weights"]
    row_weights = np.ones(len(found["rows"])) if found["row_weights"] is None else found["row_weights"]
    return (np.vstack([found["rows"], candidates[missed]]),
            np.concatenate([row_weights, found["weights"][missed] * sample_rate]))


def initial_centers(
    data: ChunkedRows,
    n_clusters: int,
    init,
    seeds: list[int],
    *,
    oversampling_factor: float,
    init_rounds: int,
    nan_policy: str = "raise",
    in_memory: np.ndarray | None = None,
    in_memory_weights: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Starting centres for one run per seed: dispatch on ``init`` ("random", "k-means++", "k-means||" or
    an array, which makes one run). Runs that need passes over the data share them.
    """
    if not isinstance(init, str):
        return [np.asarray(init, dtype=np.float64)]
    if init == "random":
        return random_init(data, n_clusters, seeds)
    if init == "k-means++":
        if in_memory is not None:
            X, weights = _finite_rows_in_memory(in_memory, in_memory_weights, data, nan_policy)
            return [kmeans_plusplus(X, n_clusters, weights, np.random.default_rng(seed)) for seed in seeds]
        return kmeans_plusplus_dask(data, n_clusters, seeds, nan_policy)
    return kmeans_parallel_init(data, n_clusters, seeds, oversampling_factor, init_rounds, nan_policy)


def _finite_rows_in_memory(X, weights, data: ChunkedRows, nan_policy: str):
    """The rows k-means++ may use: refuse (or leave out) rows with NaN or infinity, as for a pass."""
    finite = usable_rows(X)
    if finite.all():
        return X, weights
    check_non_finite(flagged_rows(~finite, 0), data.X.chunks[0], nan_policy)
    return X[finite], None if weights is None else weights[finite]
