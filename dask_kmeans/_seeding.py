"""Seeding in memory: k-means++, Lloyd, and a search for near-global centres of a small weighted set.

Nothing here touches dask. k-means|| ends with a uniform sample of rows (about 100 a cluster) and a
weighted candidate set (a few candidates per cluster, each weighted by the rows nearest to it; searched
instead for large k), and ``choose_k`` with a uniform sample of rows: all small enough to cluster well on
the client, at no cost in passes over the data. :func:`search_centers` does so:
restarts of weighted k-means++ + Lloyd, then a swap search that moves one centre at a time to a point far
from the centres (Fränti's random swap, with the centre to move chosen by what removing it would cost),
keeping a swap when it lowers the weighted cost. One k-means++ run often puts two centres in one cluster
and none in another; Lloyd cannot undo that, a swap can.

The work is bounded by a budget in flops, so that large k stays a few seconds (see :func:`search_centers`).
"""

from __future__ import annotations

import numpy as np

from ._kernels import lloyd_partials, pairwise_sq_distances, update_centers

# Work allowed for the search, in multiply-adds of distance computations (a few seconds on one core for
# k=1000 on 10,000 candidates of 32 features; milliseconds for tens of clusters).
_SEARCH_FLOPS = 2e10
_MAX_RESTARTS = 10
_LLOYD_STEPS = 100
_SWAP_LLOYD_STEPS = 2


def kmeans_plusplus(
    X: np.ndarray, n_clusters: int, weights: np.ndarray | None, rng: np.random.Generator
) -> np.ndarray:
    """Greedy k-means++ (Arthur & Vassilvitskii 2007) on an in-memory array.

    Each new centre is the best, by potential, of ``2 + log(k)`` candidates drawn with probability
    proportional to ``weight * D(x)^2``, as scikit-learn does.
    """
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    n_local_trials = 2 + int(np.log(n_clusters))
    centers = np.empty((n_clusters, X.shape[1]))
    centers[0] = X[rng.choice(n, p=w / w.sum())]
    closest = pairwise_sq_distances(X, centers[:1])[:, 0]
    potential = closest @ w
    for c in range(1, n_clusters):
        targets = rng.random(n_local_trials) * potential
        candidate_ids = np.searchsorted(np.cumsum(w * closest), targets)
        np.clip(candidate_ids, None, n - 1, out=candidate_ids)
        trial = np.minimum(closest, pairwise_sq_distances(X, X[candidate_ids]).T)
        trial_potentials = trial @ w
        best = int(np.argmin(trial_potentials))
        potential, closest = trial_potentials[best], trial[best]
        centers[c] = X[candidate_ids[best]]
    return centers


def lloyd_in_memory(
    X: np.ndarray, weights: np.ndarray | None, centers: np.ndarray, max_steps: int
) -> tuple[np.ndarray, float]:
    """Up to ``max_steps`` Lloyd steps on an in-memory array (no dask), until the centres stop moving.

    Returns the centres and their weighted cost (inertia) on ``X``.
    """
    stats = lloyd_partials(X, weights, centers, n_farthest=len(centers))
    for _ in range(max_steps):
        new_centers, _ = update_centers(stats, centers, X.__getitem__)
        if np.array_equal(new_centers, centers):
            break
        centers = new_centers
        stats = lloyd_partials(X, weights, centers, n_farthest=len(centers))
    return centers, stats.inertia


def _swap_once(X, w, centers, rng):
    """A trial: move one centre to a point drawn by ``w * D^2`` and take two Lloyd steps from there.

    Half the time the centre moved is the one whose removal would cost least (its rows go to their
    second-nearest centre), half the time one at random (which escapes where the cheapest keeps failing).
    """
    k = len(centers)
    d2 = pairwise_sq_distances(X, centers)
    labels = d2.argmin(axis=1)
    two = np.partition(d2, 1, axis=1)
    nearest, second = two[:, 0], two[:, 1]
    weighted = w * nearest
    total = weighted.sum()
    if not total > 0:
        return None  # every point sits on a centre
    if rng.random() < 0.5:
        removal_cost = np.bincount(labels, weights=w * (second - nearest), minlength=k)
        moved = int(np.argmin(removal_cost))
    else:
        moved = int(rng.integers(k))
    point = int(np.searchsorted(np.cumsum(weighted), rng.random() * total))
    trial = centers.copy()
    trial[moved] = X[min(point, len(X) - 1)]
    return lloyd_in_memory(X, w, trial, _SWAP_LLOYD_STEPS)


def search_centers(
    X: np.ndarray, weights: np.ndarray | None, n_clusters: int, rng: np.random.Generator,
    *, max_restarts: int = _MAX_RESTARTS, flops: float = _SEARCH_FLOPS,
) -> np.ndarray:
    """Near-global centres for a small weighted set: k-means++ restarts, Lloyd, then swaps.

    Parameters
    ----------
    X : ndarray of shape (m, d)
        The points (k-means|| candidates, or a sample of rows).
    weights : ndarray of shape (m,) or None
        Their weights (the rows each candidate stands for).
    n_clusters : int
    rng : numpy Generator
        The only source of randomness: the same seed gives the same centres on any scheduler.
    max_restarts : int
        At most this many k-means++ + Lloyd restarts.
    flops : float
        The work allowed. One assignment of the points costs ``m * k * d``; a restart about 40 of them
        (k-means++ and Lloyd), a swap about 3. Restarts (1 to 10) take half, swaps the rest (at most
        ``4k + 50``): at k=1000, m=10,000, d=32 that is one restart and a few swaps.

    Returns
    -------
    centers : ndarray of shape (n_clusters, d)
        Never of higher weighted cost than the first k-means++ + Lloyd run, which the search starts from.
        With fewer distinct points than clusters some centres coincide (the fit then warns).
    """
    X = np.asarray(X, dtype=np.float64)
    w = np.ones(len(X)) if weights is None else np.asarray(weights, dtype=np.float64)
    assignment = float(max(1, len(X) * n_clusters * X.shape[1]))
    restarts = int(np.clip(flops / 2 / (40 * assignment), 1, max_restarts))
    best, best_cost = None, np.inf
    for _ in range(restarts):
        centers, cost = lloyd_in_memory(X, w, kmeans_plusplus(X, n_clusters, w, rng), _LLOYD_STEPS)
        if cost < best_cost:
            best, best_cost = centers, cost
    if n_clusters == 1:
        return best
    swaps = int(np.clip(flops / 2 / (3 * assignment), 0, 4 * n_clusters + 50))
    improved = False
    for _ in range(swaps):
        trial = _swap_once(X, w, best, rng)
        if trial is None:
            break
        if trial[1] < best_cost:
            (best, best_cost), improved = trial, True
    if improved:  # a kept swap had two Lloyd steps: let it settle
        best, _ = lloyd_in_memory(X, w, best, _LLOYD_STEPS)
    return best
