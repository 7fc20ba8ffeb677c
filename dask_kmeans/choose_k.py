"""Choosing k: Lloyd for several values of k in shared passes, with inertia and silhouette per k.

Every pass over the data serves all the values of k still running: each chunk is read once and gives the
partial sums of every k. The values of k start from greedy k-means++ on one uniform sample of the rows
(drawn in the first pass), stop on scikit-learn's tolerance rule one by one, and a last pass gives each
k's inertia. The silhouette score, which needs all pairwise distances, is computed on that sample
(bounded size), in row blocks so that memory stays at a block times the sample.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from ._base import clone
from ._kernels import nearest_center, pairwise_sq_distances
from ._lloyd import CenterSet, LloydConfig, advance, final_pass
from ._passes import ChunkedRows
from ._scheduler import blas_threads_for_dask, should_persist
from ._seeding import search_centers
from ._validation import (
    NamedRows,
    check_array,
    check_n_samples,
    resolve_seed,
    split_feature_names,
    to_dask_array,
)
from .estimator import KMeans


@dataclass
class KSelection:
    """What :func:`choose_k` found.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per k (the index): ``inertia`` (over all rows), ``silhouette`` (on the sample),
        ``n_iter``, ``converged``.
    suggested_k : int
        The elbow of the inertia curve when its silhouette is at least ``min_silhouette_ratio`` times the
        best silhouette; otherwise the k with the best silhouette (see :func:`choose_k`).
    reason : str
        Why, in a sentence, with the elbow of the inertia curve for comparison.
    centers : dict of int to ndarray
        The converged centres of each k (in the scaled space when ``preprocessing`` was given).
    initial_centers : dict of int to ndarray
        Where each k started over all rows (the best of the k-means++ starts refined on the sample).
    n_passes : int
        Passes over the data the sweep used, all values of k together.
    sample_size : int
        Rows in the silhouette sample.
    elbow_k : int
        The k at the elbow of the inertia curve (the point farthest below the chord from the first to the
        last k, both axes scaled to [0, 1]).
    preprocessing : fitted StandardScaler or None
    persisted : bool
        Whether the (scaled) data was persisted in memory for the passes (``persist``); reading it in
        costs one more read of the source, not counted in ``n_passes``.
    """

    table: object
    suggested_k: int
    reason: str
    centers: dict = field(repr=False)
    initial_centers: dict = field(repr=False)
    n_passes: int
    sample_size: int
    elbow_k: int
    preprocessing: object = None
    persisted: bool = False

    def model(self, k: int | None = None, **params):
        """An unfitted ``KMeans`` that starts from the sweep's centres for ``k`` (default: the suggested k).

        Its ``fit`` converges in one or two iterations on the same data.
        """
        k = self.suggested_k if k is None else k
        if k not in self.centers:
            raise ValueError(f"k={k} was not in the sweep; it has {sorted(self.centers)}.")
        preprocessing = None if self.preprocessing is None else clone(self.preprocessing)
        return KMeans(k, init=self.centers[k], n_init=1, preprocessing=preprocessing, **params)


def silhouette_scores(X: np.ndarray, labelings: list[np.ndarray], block_rows: int = 1024) -> list[float]:
    """Mean silhouette coefficient (Euclidean) of ``X`` under each labelling, sharing the distances.

    Equal to ``sklearn.metrics.silhouette_score`` for each labelling: a row alone in its cluster scores
    0. Memory: ``block_rows x len(X)`` distances at a time.
    """
    X = np.asarray(X, dtype=np.float64)
    n = len(X)
    onehots, counts = [], []
    for labels in labelings:
        k = int(labels.max()) + 1
        onehot = np.zeros((n, k))
        onehot[np.arange(n), labels] = 1.0
        onehots.append(onehot)
        counts.append(onehot.sum(axis=0))
    totals = np.zeros(len(labelings))
    for start in range(0, n, block_rows):
        rows = slice(start, min(start + block_rows, n))
        dist = np.sqrt(pairwise_sq_distances(X[rows], X))
        for i, (labels, onehot, count) in enumerate(zip(labelings, onehots, counts)):
            per_cluster = dist @ onehot  # summed distance of each row to every cluster
            own = labels[rows]
            local = np.arange(len(own))
            own_size = count[own]
            a = per_cluster[local, own] / np.maximum(own_size - 1, 1)
            mean_other = per_cluster / count
            mean_other[local, own] = np.inf
            b = mean_other.min(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                s = (b - a) / np.maximum(a, b)
            s[(own_size <= 1) | ~np.isfinite(s)] = 0.0
            totals[i] += s.sum()
    return (totals / n).tolist()


def elbow(ks: list[int], inertias: list[float]) -> int:
    """The k farthest below the straight line from the first to the last point, on [0, 1] axes."""
    ks_arr, y = np.asarray(ks, dtype=np.float64), np.asarray(inertias, dtype=np.float64)
    if len(ks) < 3 or y[0] == y[-1]:
        return ks[0]
    x = (ks_arr - ks_arr[0]) / (ks_arr[-1] - ks_arr[0])
    y = (y - y[-1]) / (y[0] - y[-1])
    below_chord = (1.0 - x) - y
    return ks[int(np.argmax(below_chord))]


def choose_k(
    X,
    k_range=range(2, 13),
    *,
    sample_size: int = 10_000,
    n_init: int = 10,
    preprocessing=None,
    max_iter: int = 300,
    tol: float = 1e-4,
    random_state=None,
    nan_policy: str = "raise",
    persist="auto",
    min_silhouette_ratio: float = 0.75,
) -> KSelection:
    """Run K-means for every k in ``k_range`` in shared passes; report inertia and silhouette; suggest k.

    Parameters
    ----------
    X : array-like, dask array, DataFrame or ``dask_kmeans.io.Table`` of shape (n_samples, n_features)
    k_range : iterable of int, default=range(2, 13)
        The values of k to try, each at least 2 (a silhouette needs two clusters).
    sample_size : int, default=10_000
        Rows of the uniform sample that seeds every k (k-means++) and scores the silhouettes. The
        silhouette costs ``sample_size ** 2`` distances: keep it in the tens of thousands.
    n_init : int, default=10
        At most this many k-means++ starts per k, each refined by Lloyd on the sample (in memory, no pass
        over the data), then a swap search from the best, as a fit seeds from its k-means|| candidates;
        the result starts the Lloyd passes over all rows.
    preprocessing : StandardScaler or None
        Fitted on ``X`` first (one more pass) and applied chunk by chunk; the centres are in its space.
    max_iter, tol : as for ``KMeans``; each k stops on its own.
    random_state : int or None
        Seeds the sample and the k-means++ draws.
    nan_policy : {"raise", "omit"}
        As for ``KMeans``: rows with NaN or infinity stop the sweep, or are left out.
    persist : "auto", bool, default="auto"
        As for ``KMeans.fit``: keep the (scaled) data in the workers' memory between passes when it fits.
    min_silhouette_ratio : float, default=0.75
        How the suggestion is made. The silhouette alone favours the coarsest clear split (often k=2:
        everyone against the largest group), the elbow alone can sit on a poorly separated k. The
        suggestion is the elbow of the inertia curve when its silhouette is at least this fraction of
        the best one, and the k with the best silhouette otherwise; 1 always takes the best silhouette.

    Returns
    -------
    KSelection

    Notes
    -----
    Passes over the data: one for the sample, one per iteration of the slowest k, one for the inertias
    (plus one for ``preprocessing``): about what a single ``KMeans`` fit costs, instead of one fit per k.
    Each k's result is a local optimum from the best sample start, as with any K-means.
    """
    import pandas as pd

    ks = sorted(set(k_range))
    if not ks or any(not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 2 for k in ks):
        raise ValueError(
            f"k_range must hold integers of at least 2 (a silhouette needs 2 clusters); got {ks}."
        )
    ks = [int(k) for k in ks]
    if nan_policy not in ("raise", "omit"):
        raise ValueError(f"nan_policy must be 'raise' or 'omit'; got {nan_policy!r}.")
    if not (isinstance(n_init, numbers.Integral) and n_init >= 1):
        raise ValueError(f"n_init must be a positive integer; got {n_init!r}.")
    if not (isinstance(sample_size, numbers.Integral) and sample_size >= 2):
        raise ValueError(f"sample_size must be an integer of at least 2; got {sample_size!r}.")
    n_passes = 0
    X, feature_names = split_feature_names(X)
    X = check_array(X)
    scaler = None
    if preprocessing is not None:
        scaler = clone(preprocessing).fit(NamedRows(X, feature_names))
        n_passes += 1
        X = scaler.transform(X)
    n_samples, n_features = X.shape
    check_n_samples(n_samples, n_features, max(ks))
    data = ChunkedRows(to_dask_array(X))
    persisted = should_persist(X, persist)
    if persisted:
        data = ChunkedRows(data.X.persist())
    rng = np.random.default_rng(resolve_seed(random_state))

    with blas_threads_for_dask():
        m = min(sample_size, n_samples)
        sample = data.rows(np.sort(rng.choice(n_samples, size=m, replace=False))).astype(np.float64)
        n_passes += 1
        sample = sample[np.isfinite(sample).all(axis=1)]
        distinct = len(np.unique(sample, axis=0))
        if distinct < max(ks):
            raise ValueError(
                f"The sample of {m} rows has {distinct} distinct finite rows, fewer than k={max(ks)}: "
                "use a smaller k_range or a larger sample_size."
            )
        # The fit's own seeding (k-means++ restarts, Lloyd and swaps), on the sample: milliseconds a k.
        initial_centers = {k: search_centers(sample, None, k, rng, max_restarts=n_init) for k in ks}
        # Every k is a centre set of the one Lloyd driver: each pass reads a chunk once for all of them.
        runs = {k: CenterSet(initial_centers[k]) for k in ks}
        advance(data, list(runs.values()), LloydConfig(max_iter=max_iter, tol=tol, nan_policy=nan_policy))
        centers = {k: run.centers for k, run in runs.items()}
        n_iter = {k: len(run.history) for k, run in runs.items()}
        converged = {k: run.converged for k, run in runs.items()}
        n_passes += max(n_iter.values())
        # Non-finite rows were already refused or counted by the Lloyd passes; here they add nothing.
        inertias = final_pass(data, [centers[k] for k in ks], keep_labels=False).inertias
        n_passes += 1

    labelings = [nearest_center(sample, centers[k])[0] for k in ks]
    silhouettes = silhouette_scores(sample, labelings)
    table = pd.DataFrame(
        {
            "inertia": inertias,
            "silhouette": silhouettes,
            "n_iter": [n_iter[k] for k in ks],
            "converged": [converged[k] for k in ks],
        },
        index=pd.Index(ks, name="k"),
    )
    elbow_k = elbow(ks, inertias)
    suggested, reason = _suggest(table, elbow_k, min_silhouette_ratio, len(sample))
    return KSelection(
        table=table, suggested_k=suggested, reason=reason, centers=centers, initial_centers=initial_centers,
        n_passes=n_passes,
        sample_size=len(sample), elbow_k=elbow_k, preprocessing=scaler, persisted=persisted,
    )


def _suggest(table, elbow_k: int, min_ratio: float, sample_size: int) -> tuple[int, str]:
    best = int(table["silhouette"].idxmax())
    best_score, elbow_score = table.loc[best, "silhouette"], table.loc[elbow_k, "silhouette"]
    on_sample = f"on a sample of {sample_size:,} rows"
    if elbow_k == best:
        return best, (
            f"k={best}: the inertia curve bends most there and it has the highest silhouette score "
            f"({best_score:.3f} {on_sample})."
        )
    if elbow_score >= min_ratio * best_score:
        return elbow_k, (
            f"k={elbow_k}: the inertia curve bends most there, and its silhouette score ({elbow_score:.3f} "
            f"{on_sample}) is {elbow_score / best_score:.0%} of the best (k={best}: {best_score:.3f}), "
            f"above the {min_ratio:.0%} asked: the finer split keeps the clusters well apart."
        )
    return best, (
        f"k={best} has the highest silhouette score ({best_score:.3f} {on_sample}); the inertia curve bends "
        f"most at k={elbow_k}, but its silhouette ({elbow_score:.3f}) is below {min_ratio:.0%} of the best."
    )
