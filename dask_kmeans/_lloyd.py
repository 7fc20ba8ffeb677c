"""The Lloyd iteration driver: one pass over the data per iteration, a final pass for labels.

One driver, :func:`advance`, runs every Lloyd loop of the package: a fit's run and every k of
``choose_k`` alike, any number of centre sets sharing each pass. Each iteration maps
:func:`lloyd_partials` over the row chunks (once per active set, on one read of the chunk),
tree-reduces the partial sums, counts, inertia and farthest points, and turns them into new centres on
the client. The first pass also brings the per-feature moments that set the tolerance, and every pass's
distances double as the NaN/inf check.
Convergence follows scikit-learn: stop when the centres do not change at all, or when the summed squared
centre shift is at most ``tol * mean(var(X, axis=0))``; ``max_iter`` bounds the loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from ._kernels import combine_lloyd_partials, label_partials, lloyd_partials, update_centers
from ._passes import ChunkedRows, map_chunks, map_reduce
from ._validation import NonFiniteDataError, check_finite_total, check_non_finite

logger = logging.getLogger("dask_kmeans")


@dataclass
class LloydResult:
    """What one Lloyd run found. ``history`` has one dict per iteration."""

    centers: np.ndarray
    labels: np.ndarray | None
    sizes: np.ndarray
    inertia: float
    n_omitted: int
    n_iter: int
    converged: bool
    mean_variance: float | None
    history: list[dict] = field(default_factory=list)


@dataclass
class CenterSet:
    """One Lloyd run in progress: its centres (float64, (k, d)), its history so far, whether it is done."""

    centers: np.ndarray
    history: list[dict] = field(default_factory=list)
    converged: bool = False


def _lloyd_chunk(X, w, centers_list, with_moments, *, chunk):
    # One read of the chunk serves every active set; the data's moments ride on the first set's partials.
    return [
        lloyd_partials(
            X, w, centers, row_offset=chunk.row_offset, n_farthest=len(centers) - 1,
            with_moments=with_moments and i == 0,
        )
        for i, centers in enumerate(centers_list)
    ]


def _combine_sets(parts: list[list[dict]], n_farthest: tuple[int, ...]) -> list[dict]:
    return [combine_lloyd_partials([p[i] for p in parts], n_farthest=n) for i, n in enumerate(n_farthest)]


def advance(
    data: ChunkedRows,
    sets: list[CenterSet],
    *,
    max_iter: int,
    tol: float,
    mean_variance: float | None = None,
    nan_policy: str = "raise",
    on_iteration: Callable[[int, CenterSet, float], None] | None = None,
) -> float:
    """Lloyd iterations for every set in ``sets``, all sets sharing one pass over the data per iteration.

    Each set moves until its centres stop moving, its summed squared shift is at most
    ``tol * mean_variance``, or it has ``max_iter`` iterations in its history; finished sets drop out
    of later passes. Sets are updated in place (``centers``, ``history``, ``converged``), so a set
    restored from a checkpoint goes on as it would have. ``mean_variance`` is ``mean(var(X, axis=0))``;
    when it is unknown the first pass measures it. ``on_iteration(index, set, mean_variance)`` is called
    after each iteration of each set (to write a checkpoint). Returns ``mean_variance``.
    """
    started = time.perf_counter() - max((s.history[-1]["elapsed"] for s in sets if s.history), default=0.0)
    while True:
        active = [i for i, s in enumerate(sets) if not s.converged and len(s.history) < max_iter]
        if not active:
            return mean_variance
        need_moments = mean_variance is None
        combine = partial(_combine_sets, n_farthest=tuple(len(sets[i].centers) - 1 for i in active))
        stats = map_reduce(
            data, _lloyd_chunk, combine, args=([sets[i].centers for i in active], need_moments)
        )
        check_non_finite(stats[0]["non_finite"], data.X.chunks[0], nan_policy)
        if need_moments:
            moments = stats[0]["moments"]
            if moments["n"] == 0:
                raise NonFiniteDataError("Every row holds NaN or infinity: nothing is left to cluster.")
            mean_variance = float(np.mean(moments["m2"] / moments["n"]))
        elapsed = time.perf_counter() - started
        for i, set_stats in zip(active, stats):
            name = "" if len(sets) == 1 else f"Set {i}: "
            _update(sets[i], set_stats, tol, mean_variance, elapsed, name)
            if on_iteration is not None:
                on_iteration(i, sets[i], mean_variance)


def _update(center_set: CenterSet, stats: dict, tol: float, mean_variance: float, elapsed: float,
            name: str) -> None:
    """Move one set's centres to the means of its clusters, record the iteration, test convergence."""
    check_finite_total(stats["inertia"], "inertia")
    centers = center_set.centers
    new_centers, n_relocated = update_centers(stats, centers)
    shift = float(((new_centers - centers) ** 2).sum())
    unchanged = np.array_equal(new_centers, centers)
    center_set.centers = new_centers
    # The shift relative to the data's variance is what tol bounds.
    relative_shift = shift / mean_variance if mean_variance else float("inf") if shift else 0.0
    iteration = len(center_set.history) + 1
    center_set.history.append(
        {
            "iteration": iteration,
            "inertia": stats["inertia"],
            "center_shift": shift,
            "relative_shift": relative_shift,
            "n_relocated": n_relocated,
            "elapsed": elapsed,
        }
    )
    logger.info(
        "%sIteration %d: inertia %.6g, relative shift %.3g (tol %.3g), %d relocated, %.2fs",
        name, iteration, stats["inertia"], relative_shift, tol, n_relocated, elapsed,
    )
    center_set.converged = unchanged or shift <= tol * (mean_variance or 0.0)
    if center_set.converged:
        logger.info("%sConverged at iteration %d.", name, iteration)


def _label_chunk(X, w, centers, keep_labels, *, chunk):
    labels, inertia, non_finite = label_partials(X, w, centers, chunk.row_offset)
    sizes = np.bincount(labels[labels >= 0], minlength=len(centers))
    return (labels if keep_labels else None), inertia, non_finite, sizes


def lloyd(
    data: ChunkedRows,
    centers: np.ndarray,
    *,
    max_iter: int,
    tol: float,
    mean_variance: float | None = None,
    nan_policy: str = "raise",
    history: list[dict] = (),
    converged: bool = False,
    on_iteration: Callable[[np.ndarray, list[dict], float, bool], None] | None = None,
    compute_labels: bool = True,
) -> LloydResult:
    """One Lloyd run from ``centers`` (float64, shape (k, d)) through :func:`advance`, then its labels.

    Passes over the data: ``n_iter`` iterations plus one for the final labels and inertia. Rows with NaN
    or infinity stop the fit at the first pass (``nan_policy="raise"``) or are left out ("omit").

    To resume, pass the ``history`` (and ``converged``) of the iterations already done, with their
    centres: the loop goes on from there as it would have. ``on_iteration(centers, history,
    mean_variance, converged)`` is called after every iteration (to write a checkpoint).
    """
    run = CenterSet(np.asarray(centers, dtype=np.float64), list(history), converged)
    report = None
    if on_iteration is not None:
        def report(_, center_set, mean_variance):
            on_iteration(center_set.centers, center_set.history, mean_variance, center_set.converged)
    mean_variance = advance(
        data, [run], max_iter=max_iter, tol=tol, mean_variance=mean_variance, nan_policy=nan_policy,
        on_iteration=report,
    )
    labels, inertia, n_omitted, sizes = final_labels(data, run.centers, compute_labels)
    return LloydResult(
        centers=run.centers,
        labels=labels,
        sizes=sizes,
        inertia=inertia,
        n_omitted=n_omitted,
        n_iter=len(run.history),
        converged=run.converged,
        mean_variance=mean_variance,
        history=run.history,
    )


def final_labels(
    data: ChunkedRows, centers: np.ndarray, keep_labels: bool = True
) -> tuple[np.ndarray | None, float, int, np.ndarray]:
    """One pass: the rows' labels (-1 for rows left out; None unless ``keep_labels``), the weighted
    inertia, how many rows were left out, and the number of rows in each cluster.

    The centres are rounded to the data's dtype first, as ``cluster_centers_`` keeps them, so that
    ``labels_`` and ``inertia_`` are what ``predict`` and ``score`` give for the same rows.
    """
    centers = np.asarray(centers).astype(data.dtype).astype(np.float64)
    parts = map_chunks(data, _label_chunk, args=(centers, keep_labels))
    inertia = float(np.sum([p[1] for p in parts]))
    check_finite_total(inertia, "inertia")
    labels = np.concatenate([p[0] for p in parts]) if keep_labels else None
    return labels, inertia, sum(p[2]["count"] for p in parts), np.sum([p[3] for p in parts], axis=0)
