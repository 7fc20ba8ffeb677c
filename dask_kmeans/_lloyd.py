"""The Lloyd iteration driver: one pass over the data per iteration, a final pass for labels.

One driver, :func:`advance`, runs every Lloyd loop of the package: a fit's ``n_init`` runs and every k of
``choose_k`` alike, any number of centre sets (of any k) sharing each pass. Each iteration maps
:func:`lloyd_partials_sets` over the row chunks (every active set from one read of the chunk and one
GEMM per block of rows),
tree-reduces the partial sums, counts, inertia and farthest points, and turns them into new centres on
the client. The first pass also brings the per-feature moments that set the tolerance, and every pass's
distances double as the NaN/inf check. :func:`final_pass` then measures every set's inertia for its
final centres in one more pass and keeps the labels of the best.

Convergence follows scikit-learn: a set stops when its centres do not change at all, or when its summed
squared centre shift is at most ``tol * mean(var(X, axis=0))``; ``max_iter`` bounds the loop.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np

from ._bounds import bound_groups, bounded_chunk, bounds_still_pay, drop_states_everywhere, plan
from ._kernels import (
    LloydPartials,
    assign_sets,
    combine_non_finite,
    lloyd_partials_sets,
    plan_assignment,
    update_centers,
)
from ._passes import ChunkedRows, SchedulerLostError, combine_each, map_reduce
from ._scheduler import compute
from ._validation import NonFiniteDataError, check_finite_total, check_non_finite

logger = logging.getLogger("dask_kmeans")


@dataclass(frozen=True)
class LloydConfig:
    """What the driver needs to know, resolved from the caller's parameters (not the estimator)."""

    max_iter: int
    tol: float
    nan_policy: str = "raise"
    metric: str = "euclidean"
    algorithm: str = "lloyd"  # or "hamerly" / "yinyang": the same answer, from bounded passes (_bounds)
    fall_back: bool = False  # a set whose bounds cost more than Lloyd goes back to Lloyd ("auto")


def metric_scale(metric: str) -> float:
    """What the kernel's squared distances are multiplied by to be the metric's: on unit rows and unit
    centres (``metric="cosine"``), ``||x - c||^2 = 2 (1 - cos)``."""
    return 0.5 if metric == "cosine" else 1.0


def unit_rows(centers: np.ndarray) -> np.ndarray:
    """Centres scaled to unit norm: a spherical k-means centre is the direction of its rows' sum."""
    norms = np.linalg.norm(centers, axis=1, keepdims=True)
    return np.divide(centers, norms, out=centers.copy(), where=norms > 0)


@dataclass
class CenterSet:
    """One Lloyd run in progress: its centres (float64, (k, d)), its history so far, whether it is done."""

    centers: np.ndarray
    history: list[dict] = field(default_factory=list)
    converged: bool = False

    @property
    def n_iter(self) -> int:
        return len(self.history)


def _lloyd_chunk(X, w, assignment, with_moments, *, chunk):
    # One read of the chunk and one GEMM per block serve every active set.
    return lloyd_partials_sets(X, w, assignment, row_offset=chunk.row_offset,
                               n_farthest=[k - 1 for k in assignment.set_sizes], with_moments=with_moments)


def _lloyd_pass(data: ChunkedRows, active: list[int], sets: list[CenterSet], need_moments: bool) -> list:
    """A Lloyd pass for the active sets: their partials (the centres' side of the kernel made once)."""
    assignment = plan_assignment([sets[i].centers for i in active], data.dtype)
    return _pass(data, _lloyd_chunk, active, sets, (assignment, need_moments))


def advance(
    data: ChunkedRows,
    sets: list[CenterSet],
    config: LloydConfig,
    *,
    mean_variance: float | None = None,
    on_pass: Callable[[list[CenterSet], float], None] | None = None,
) -> float:
    """Lloyd iterations for every set in ``sets``, all sets sharing one pass over the data per iteration.

    Each set moves until its centres stop moving, its summed squared shift is at most
    ``tol * mean_variance``, or it has ``max_iter`` iterations in its history; finished sets drop out
    of later passes. Sets are updated in place (``centers``, ``history``, ``converged``), so sets
    restored from a checkpoint go on as they would have. ``mean_variance`` is ``mean(var(X, axis=0))``;
    when it is unknown the first pass measures it. ``on_pass(sets, mean_variance)`` is called after each
    pass (to write a checkpoint). Returns ``mean_variance``.
    """
    started = time.perf_counter() - max((s.history[-1]["elapsed"] for s in sets if s.history), default=0.0)
    bounds = _BoundedPasses(config) if config.algorithm != "lloyd" else None
    workers_reachable = True
    try:
        while True:
            active = [i for i, s in enumerate(sets) if not s.converged and s.n_iter < config.max_iter]
            if not active:
                return mean_variance
            need_moments = mean_variance is None
            if bounds is not None:
                stats = bounds.run(data, sets, active, need_moments)
            else:
                stats = _lloyd_pass(data, active, sets, need_moments)
            check_non_finite(stats[0].non_finite, data.X.chunks[0], config.nan_policy)
            if need_moments:
                moments = stats[0].moments
                if moments["n"] == 0:
                    raise NonFiniteDataError("Every row holds NaN or infinity: nothing is left to cluster.")
                mean_variance = float(np.mean(moments["m2"] / moments["n"]))
            elapsed = time.perf_counter() - started
            for i, set_stats in zip(active, stats):
                name = "" if len(sets) == 1 else f"Run {i}: "
                _update(sets[i], set_stats, config, mean_variance, elapsed, name, data)
            if on_pass is not None:
                on_pass(sets, mean_variance)
    except SchedulerLostError:
        workers_reachable = False  # and their state went with the scheduler
        raise
    finally:
        if bounds is not None:
            drop_states_everywhere(bounds.token, workers_reachable)


def _pass(data: ChunkedRows, chunk_fn, active: list[int], sets: list[CenterSet], args: tuple) -> list:
    combines = [partial(LloydPartials.combine, n_farthest=len(sets[i].centers) - 1) for i in active]
    return map_reduce(data, chunk_fn, partial(combine_each, combines=combines), args=args)


class _BoundedPasses:
    """The bounded passes of one :func:`advance` call, and what they keep from pass to pass: per set, its
    bound groups (None: a plain Lloyd pass; none yet: its first pass, a Lloyd pass), its last pass's
    centres and the Lloyd passes its bounded passes have lost against Lloyd (see
    :func:`bounds_still_pay`)."""

    def __init__(self, config: LloydConfig):
        self.config = config
        self.token = uuid.uuid4().hex  # names this call's per-row state on the workers
        self.this_pass = 0
        self.groups, self.previous, self.losses = {}, {}, {}

    def run(self, data: ChunkedRows, sets: list[CenterSet], active: list[int], need_moments: bool) -> list:
        """One pass for the active sets: their partials, as a Lloyd pass gives them."""
        plans = [plan(i, sets[i].centers, self.groups.get(i), self.previous.get(i), self.this_pass - 1)
                 for i in active]
        stats = _pass(data, bounded_chunk, active, sets, (plans, self.token, self.this_pass, need_moments))
        # The bounds never look for the farthest rows: a pass that leaves a cluster empty is redone as a
        # Lloyd pass to relocate it as Lloyd does.
        redo = [n for n, (p, part) in enumerate(zip(plans, stats))
                if p.groups is not None and np.any(part.counts == 0)]
        if redo:
            again = _lloyd_pass(data, [active[n] for n in redo], sets, False)
            for n, part in zip(redo, again):
                stats[n] = replace(part, n_computed=stats[n].n_computed, moments=stats[n].moments)
        for i, p, part in zip(active, plans, stats):
            self.previous[i] = sets[i].centers
            if i not in self.groups:  # its first pass: bounds from the next one on
                self.groups[i] = bound_groups(sets[i].centers, self.config.algorithm)
            elif p.groups is not None and self.config.fall_back:
                share = part.n_computed / max(1, data.n_samples)
                self.losses[i], pay = bounds_still_pay(self.losses.get(i, 0.0), share)
                if not pay:
                    self.groups[i] = None
                    logger.info("%sBounds do not pay on these data (%.1f%% of the rows computed in the last "
                                "iteration; about %.1f Lloyd passes lost): Lloyd from iteration %d on.",
                                "" if len(sets) == 1 else f"Run {i}: ", 100 * share, self.losses[i],
                                sets[i].n_iter + 2)
        self.this_pass += 1
        return stats


def _update(center_set: CenterSet, stats: LloydPartials, config: LloydConfig, mean_variance: float,
            elapsed: float, name: str, data: ChunkedRows) -> None:
    """Move one set's centres to the means of its clusters, record the iteration, test convergence."""
    check_finite_total(stats.inertia, "inertia")
    tol, inertia = config.tol, stats.inertia * metric_scale(config.metric)
    centers = center_set.centers
    # An empty cluster's new centre is a far row: read from the chunks that hold it, and only then.
    new_centers, n_relocated = update_centers(stats, centers, data.rows)
    if config.metric == "cosine":
        new_centers = unit_rows(new_centers)
    shift = float(((new_centers - centers) ** 2).sum())
    unchanged = np.array_equal(new_centers, centers)
    center_set.centers = new_centers
    # The shift relative to the data's variance is what tol bounds.
    relative_shift = shift / mean_variance if mean_variance else float("inf") if shift else 0.0
    iteration = center_set.n_iter + 1
    center_set.history.append(
        {
            "iteration": iteration,
            "inertia": inertia,
            "center_shift": shift,
            "relative_shift": relative_shift,
            "n_relocated": n_relocated,
            "rows_computed": stats.n_computed,
            "elapsed": elapsed,
        }
    )
    computed = f", distances of {stats.n_computed / max(1, data.n_samples):.1%} of rows computed" \
        if config.algorithm != "lloyd" else ""
    logger.info(
        "%sIteration %d: inertia %.6g, relative shift %.3g (tol %.3g), %d relocated%s, %.2fs",
        name, iteration, inertia, relative_shift, tol, n_relocated, computed, elapsed,
    )
    center_set.converged = unchanged or shift <= tol * (mean_variance or 0.0)
    if center_set.converged:
        logger.info("%sConverged at iteration %d.", name, iteration)


# ----------------------------------------------------------------------------------------------------
# The final pass: every set's inertia for its final centres, the labels of the best


@dataclass
class FinalPartials:
    """Per set: the weighted inertia, the rows in each cluster and the rows left out."""

    inertias: np.ndarray
    sizes: list[np.ndarray]
    non_finite: list[dict]

    @classmethod
    def combine(cls, parts: list[FinalPartials]) -> FinalPartials:
        return cls(
            inertias=np.sum([p.inertias for p in parts], axis=0),
            sizes=[np.sum(each, axis=0) for each in zip(*(p.sizes for p in parts))],
            non_finite=[combine_non_finite(list(each)) for each in zip(*(p.non_finite for p in parts))],
        )


@dataclass
class FinalResult:
    """What the final pass found: ``best`` is the set of lowest inertia (ties: the lowest index);
    ``non_finite`` per set, the rows left out (``count``, global ``first_row``)."""

    best: int
    inertias: list[float]
    sizes: list[np.ndarray]
    non_finite: list[dict]
    labels: np.ndarray | None


def _label_dtype(n_clusters: int) -> np.dtype:
    # The labels of every set wait on the workers until the best set is known: keep them small.
    for dtype in (np.int8, np.int16, np.int32):
        if n_clusters <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def _final_chunk(X, w, assignment, keep_labels, *, chunk):
    results = assign_sets(X, assignment, w, row_offset=chunk.row_offset)
    partials = FinalPartials(
        inertias=np.array([r["inertia"] for r in results]),
        sizes=[np.bincount(r["labels"][r["labels"] >= 0], minlength=k)
               for r, k in zip(results, assignment.set_sizes)],
        non_finite=[r["non_finite"] for r in results],
    )
    if not keep_labels:
        return partials
    dtype = _label_dtype(max(assignment.set_sizes))
    return [r["labels"].astype(dtype) for r in results], partials


def final_pass(data: ChunkedRows, centers_list: list[np.ndarray], keep_labels: bool = True,
               metric: str = "euclidean") -> FinalResult:
    """One pass: every set's weighted inertia and cluster sizes for its centres, and the labels of the best.

    The centres are rounded to the data's dtype first, as ``cluster_centers_`` keeps them, so that
    ``labels_`` and ``inertia_`` are what ``predict`` and ``score`` give for the same rows. With
    ``keep_labels``, every set's labels of a chunk stay where the chunk was read (int8 for up to 127
    clusters) until the best set is known; only the best set's labels travel to the client (int32, -1 for
    rows left out).
    """
    assignment = plan_assignment(
        [np.asarray(c).astype(data.dtype).astype(np.float64) for c in centers_list], data.dtype)
    if keep_labels:
        partials, labels_by_chunk = map_reduce(
            data, _final_chunk, FinalPartials.combine, args=(assignment, True), keep_state=True
        )
    else:
        partials = map_reduce(data, _final_chunk, FinalPartials.combine, args=(assignment, False))
    inertias = [float(value) * metric_scale(metric) for value in partials.inertias]
    for value in inertias:
        check_finite_total(value, "inertia")
    best = int(np.argmin(inertias))  # the first of equal inertias
    labels = None
    if keep_labels:
        chunks = compute(*[chunk_labels[best] for chunk_labels in labels_by_chunk])
        labels = np.concatenate(chunks).astype(np.int32)
    return FinalResult(
        best=best, inertias=inertias, sizes=partials.sizes,
        non_finite=partials.non_finite, labels=labels,
    )
