"""The Lloyd iteration driver: one pass over the data per iteration, a final pass for labels.

Each iteration maps :func:`lloyd_partials` over the row chunks, tree-reduces the partial sums, counts,
inertia and farthest points, and turns them into new centres on the client. The first pass also brings the
per-feature moments that set the tolerance, and every pass's inertia doubles as the NaN/inf check.
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


def _lloyd_chunk(X, w, centers, n_farthest, with_moments, *, chunk):
    return lloyd_partials(
        X, w, centers, row_offset=chunk.row_offset, n_farthest=n_farthest, with_moments=with_moments
    )


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
    """Run Lloyd iterations from ``centers`` (float64, shape (k, d)).

    ``mean_variance`` is ``mean(var(X, axis=0))``; when it is unknown the first pass measures it.
    Passes over the data: ``n_iter`` iterations plus one for the final labels and inertia. Rows with NaN
    or infinity stop the fit at the first pass (``nan_policy="raise"``) or are left out ("omit").

    To resume, pass the ``history`` (and ``converged``) of the iterations already done, with their
    centres: the loop goes on from there as it would have. ``on_iteration(centers, history,
    mean_variance, converged)`` is called after every iteration (to write a checkpoint).
    """
    n_clusters = centers.shape[0]
    combine = partial(combine_lloyd_partials, n_farthest=n_clusters)
    history = list(history)
    started = time.perf_counter() - (history[-1]["elapsed"] if history else 0.0)
    for iteration in range(len(history), 0 if converged else max_iter):
        need_moments = mean_variance is None
        stats = map_reduce(
            data, _lloyd_chunk, combine, args=(centers, n_clusters - 1, need_moments)
        )
        check_non_finite(stats["non_finite"], data.X.chunks[0], nan_policy)
        check_finite_total(stats["inertia"], "inertia")
        if need_moments:
            moments = stats["moments"]
            if moments["n"] == 0:
                raise NonFiniteDataError("Every row holds NaN or infinity: nothing is left to cluster.")
            mean_variance = float(np.mean(moments["m2"] / moments["n"]))
        new_centers, n_relocated = update_centers(stats, centers)
        shift = float(((new_centers - centers) ** 2).sum())
        unchanged = np.array_equal(new_centers, centers)
        centers = new_centers
        # The shift relative to the data's variance is what tol bounds.
        relative_shift = shift / mean_variance if mean_variance else float("inf") if shift else 0.0
        history.append(
            {
                "iteration": iteration + 1,
                "inertia": stats["inertia"],
                "center_shift": shift,
                "relative_shift": relative_shift,
                "n_relocated": n_relocated,
                "elapsed": time.perf_counter() - started,
            }
        )
        logger.info(
            "Iteration %d: inertia %.6g, relative shift %.3g (tol %.3g), %d relocated, %.2fs",
            iteration + 1, stats["inertia"], relative_shift, tol, n_relocated, history[-1]["elapsed"],
        )
        converged = unchanged or shift <= tol * (mean_variance or 0.0)
        if on_iteration is not None:
            on_iteration(centers, history, mean_variance, converged)
        if converged:
            logger.info("Converged at iteration %d.", iteration + 1)
            break
    labels, inertia, n_omitted, sizes = final_labels(data, centers, compute_labels)
    return LloydResult(
        centers=centers,
        labels=labels,
        sizes=sizes,
        inertia=inertia,
        n_omitted=n_omitted,
        n_iter=len(history),
        converged=converged,
        mean_variance=mean_variance,
        history=history,
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
