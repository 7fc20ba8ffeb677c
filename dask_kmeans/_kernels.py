"""Per-chunk K-means math in plain numpy.

Everything here works on one in-memory block of rows and knows nothing about dask: the driver maps these
functions over chunks and adds their partial results up in a tree. Distances use
``||x||^2 - 2 x.c + ||c||^2`` so that the work is one GEMM per row block; the block is processed in
sub-blocks of a few thousand rows so that the (rows x k) temporaries stay in cache.

Partials are plain dicts of small numpy arrays and floats; ``combine_*`` functions add them up and are
associative, so any tree of combines gives the same result for the same order of leaves.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

# Rows per sub-block: 8192 measured fastest for k from 4 to 64 (fewer numpy calls per row, the block
# still in L2/L3); fewer rows for large k so that the (rows x k) block stays within 4 MiB.
_SUB_BLOCK_ROWS = 8192
_DISTANCE_BLOCK_BYTES = 4 << 20


def sub_block_rows(n_clusters: int, itemsize: int = 8) -> int:
    """Rows per sub-block so that the distance block stays in cache."""
    rows = _DISTANCE_BLOCK_BYTES // max(1, n_clusters * itemsize)
    return int(min(_SUB_BLOCK_ROWS, max(256, rows)))


def _distance_operands(
    centers: np.ndarray, dtype: np.dtype, augmented: bool
) -> tuple[np.ndarray, np.ndarray]:
    """``-2 C^T`` and ``||c||^2`` in the data's dtype, so the GEMM runs in that precision.

    ``augmented`` stacks ``||c||^2`` under ``-2 C^T`` as one more row, for rows with a trailing 1.
    """
    centers64 = np.asarray(centers, dtype=np.float64)
    center_sq = np.einsum("ij,ij->i", centers64, centers64)
    neg2_ct = (-2.0 * centers64).T
    if augmented:
        neg2_ct = np.vstack([neg2_ct, center_sq[None, :]])
    return np.ascontiguousarray(neg2_ct, dtype=dtype), center_sq.astype(dtype)


class _NearestCenter:
    """Nearest-centre assignment of row blocks; operands and buffers are prepared once per chunk.

    With an ``origin``, rows and centres are shifted by it and the distances computed in float32: half
    the GEMM time, for the initializers' sampling, where the shift (a data row) keeps float32 accurate
    however far the data sit from zero.
    """

    def __init__(self, centers: np.ndarray, dtype: np.dtype, n_features: int, rows: int, origin=None):
        k = centers.shape[0]
        self.origin = origin
        if origin is not None:
            centers = np.asarray(centers, dtype=np.float64) - origin
            dtype = np.dtype(np.float32)
        # With many more centres than features, copying each row block next to a column of ones and
        # letting the GEMM add ||c||^2 is cheaper than adding it to the (rows x k) block afterwards.
        self.augmented = k >= 2 * n_features
        self.operand, self.center_sq = _distance_operands(centers, dtype, self.augmented)
        rows = max(rows, 2)  # a single row is computed as two (see __call__)
        self.dist_buffer = np.empty((rows, k), dtype=dtype)
        self.row_buffer = None
        if self.augmented or origin is not None:
            self.row_buffer = np.ones((rows, n_features + self.augmented), dtype=dtype)
        self.flat_row_starts = np.arange(rows) * k
        # Outputs reused from block to block (callers copy them out): see lloyd_partials on allocations.
        self.best_buffer = np.empty(rows, dtype=np.intp)
        self.nearest_buffer = np.empty(rows, dtype=dtype)
        self.norm_buffer = np.empty(rows, dtype=dtype)

    def __call__(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labels and squared distances (clipped at zero) of the rows of one block.

        The returned arrays are overwritten by the next call: copy them out.
        """
        nb, d = block.shape
        if nb == 1:
            # numpy hands a one-row product to BLAS gemv, which rounds some columns differently from
            # gemm: identical centres would then not tie. Two copies of the row go through gemm.
            best, nearest = self(np.concatenate([block, block]))
            return best[:1], nearest[:1]
        if self.row_buffer is not None:
            rows = self.row_buffer[:nb]
            if self.origin is None:
                rows[:, :d] = block
            else:
                np.subtract(block, self.origin, out=rows[:, :d], casting="same_kind")
            block = rows[:, :d]
        else:
            rows = block
        dist = self.dist_buffer[:nb]
        np.matmul(rows, self.operand, out=dist)
        if not self.augmented:
            dist += self.center_sq
        best = dist.argmin(axis=1, out=self.best_buffer[:nb])
        # ||x||^2 is not needed for the argmin, only for the distance itself.
        nearest = np.take(dist, self.flat_row_starts[:nb] + best, out=self.nearest_buffer[:nb])
        nearest += np.einsum("ij,ij->i", block, block, out=self.norm_buffer[:nb])
        return best, np.maximum(nearest, 0, out=nearest)


def _float32_origin(X: np.ndarray, centers: np.ndarray, float32_from: np.ndarray | None):
    """Where to shift rows to before float32 distances: given, or for float32 data the centres' mean.

    ``||x||^2 - 2 x.c + ||c||^2`` cancels catastrophically in float32 when the data sit far from zero
    (scikit-learn subtracts the mean from a copy of X for the same reason). A shift costs a copy of each
    sub-block (15-20% of a float32 pass), so float32 data are shifted only when the centres sit farther
    from zero than they spread around their mean.
    """
    if float32_from is None and X.dtype == np.float32:
        centers = np.asarray(centers, dtype=np.float64)
        mean = centers.mean(axis=0)
        if mean @ mean > ((centers - mean) ** 2).sum(axis=1).mean():
            return mean
    return float32_from


# NaN or infinite rows make their distances NaN or inf; callers turn that into one clear error, so the
# kernels do not also warn about it.
_quiet_non_finite = np.errstate(invalid="ignore", over="ignore")


def _sub_blocks(n_rows: int, rows: int):
    return (slice(start, start + rows) for start in range(0, n_rows, rows))


@_quiet_non_finite
def nearest_center(
    X: np.ndarray, centers: np.ndarray, *, float32_from: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Index of, and squared distance to, the nearest centre for every row of ``X``.

    Returns ``labels`` (int32) and ``sq_dist`` (float64). Ties go to the lowest centre index. The distance
    comes from the GEMM expansion, so it carries a rounding error of order ``eps * (|x|^2 + |c|^2)``; it is
    clipped at zero. With ``float32_from`` (a point near the data, such as one of its rows), distances are
    computed in float32 relative to that point: faster, and accurate enough for sampling.
    """
    n, d = X.shape
    itemsize = 4 if float32_from is not None else X.dtype.itemsize
    rows = min(sub_block_rows(centers.shape[0], itemsize), max(n, 1))
    assign = _NearestCenter(centers, X.dtype, d, rows, origin=_float32_origin(X, centers, float32_from))
    labels = np.empty(n, dtype=np.int32)
    sq_dist = np.empty(n, dtype=np.float64)
    for rows_slice in _sub_blocks(n, rows):
        labels[rows_slice], sq_dist[rows_slice] = assign(X[rows_slice])
    return labels, sq_dist


@_quiet_non_finite
def exact_sq_distances(X: np.ndarray, centers: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Squared distance of each row to its assigned centre, computed from differences (no cancellation)."""
    centers = np.asarray(centers, dtype=X.dtype)
    out = np.empty(X.shape[0], dtype=np.float64)
    # A sub-block at a time: temporaries of a few MiB, not two more copies of the chunk.
    for rows in _sub_blocks(X.shape[0], _SUB_BLOCK_ROWS):
        diff = X[rows] - centers[labels[rows]]
        out[rows] = np.einsum("ij,ij->i", diff, diff)
    return out


def weighted_cluster_sums(
    X: np.ndarray, labels: np.ndarray, weights: np.ndarray | None, n_clusters: int
) -> np.ndarray:
    """``sums[j] = sum of weights[i] * X[i] over rows i labelled j``, in float64.

    A sparse (k x n) matrix with one entry per column times X: one sequential pass over the rows in C,
    measured 3x faster than a flat ``bincount`` and 10x faster than ``np.add.at``.
    """
    n = X.shape[0]
    values = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    onehot = scipy.sparse.csc_array((values, labels, np.arange(n + 1)), shape=(n_clusters, n))
    return onehot @ X.astype(np.float64, copy=False)  # float32 rows are summed in float64


# ----------------------------------------------------------------------------------------------------
# Lloyd partials: one chunk -> sums, counts, inertia, farthest points (and the data's moments on pass 1)


@_quiet_non_finite
def lloyd_partials(
    X: np.ndarray,
    weights: np.ndarray | None,
    centers: np.ndarray,
    *,
    row_offset: int = 0,
    n_farthest: int = 0,
    with_moments: bool = False,
) -> dict:
    """Assign the rows of one chunk and return what the centre update needs.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        One chunk of rows, float32 or float64.
    weights : ndarray of shape (n,) or None
        Sample weights; None means all ones.
    centers : ndarray of shape (k, d)
        Current centres.
    row_offset : int
        Global index of the chunk's first row, to break ties between equally far points.
    n_farthest : int
        How many of the points farthest from their centre to keep, for empty-cluster relocation.
    with_moments : bool
        Also return the chunk's row count, feature means and centred sums of squares (for the tolerance).

    Returns
    -------
    dict with ``sums`` (k, d) float64, ``counts`` (k,) float64, ``inertia`` float, ``farthest`` (see
    :func:`farthest_points`) and, if asked, ``moments``.
    """
    n, d = X.shape
    n_clusters = centers.shape[0]
    rows = min(sub_block_rows(n_clusters, X.dtype.itemsize), max(n, 1))
    assign = _NearestCenter(centers, X.dtype, d, rows, origin=_float32_origin(X, centers, None))
    labels = np.empty(n, dtype=np.int32)
    sq_dist = np.empty(n, dtype=np.float64)
    # float64 rows are summed in one sparse product per chunk (measured fastest); other dtypes a block
    # at a time, so that each block is upcast to float64 while it is still in cache.
    sum_per_block = X.dtype != np.float64
    sums = np.zeros((n_clusters, d))
    # One float64 buffer for every sub-block's upcast, not a fresh array each time: a fresh MiB-sized
    # array is an mmap and page faults per sub-block wherever glibc's dynamic mmap threshold is off,
    # as in every distributed worker (MALLOC_TRIM_THRESHOLD_ is set): measured 2.3x slower there.
    upcast = np.empty((rows, d)) if sum_per_block else None
    for rows_slice in _sub_blocks(n, rows):
        block = X[rows_slice]
        labels[rows_slice], sq_dist[rows_slice] = assign(block)
        if sum_per_block:
            block_weights = None if weights is None else weights[rows_slice]
            block64 = upcast[: len(block)]
            block64[...] = block
            sums += weighted_cluster_sums(block64, labels[rows_slice], block_weights, n_clusters)
    non_finite = non_finite_rows(sq_dist, row_offset)
    if non_finite["count"]:
        # Rows with NaN or inf (or overflowing squares) are left out of every statistic, through a zero
        # weight on a zeroed copy of the chunk; the driver raises or counts them, as nan_policy says.
        X, weights, labels, sq_dist = _without_non_finite_rows(X, weights, labels, sq_dist)
        sum_per_block = False
    if not sum_per_block:
        sums = weighted_cluster_sums(X, labels, weights, n_clusters)
    if weights is None:
        counts = np.bincount(labels, minlength=n_clusters).astype(np.float64)
        inertia = float(sq_dist.sum())
    else:
        counts = np.bincount(labels, weights=weights, minlength=n_clusters)
        inertia = float(np.dot(weights, sq_dist))
    partials = {
        "sums": sums,
        "counts": counts,
        "inertia": inertia,
        "farthest": farthest_points(X, weights, labels, sq_dist, row_offset, n_farthest),
        "non_finite": non_finite,
    }
    if with_moments:
        finite = slice(None) if not non_finite["count"] else weights > 0
        partials["moments"] = feature_moments(X[finite])
    return partials


def non_finite_rows(sq_dist: np.ndarray, row_offset: int) -> dict:
    """How many rows have a non-finite distance (NaN or inf in the row), and the global index of the first."""
    if np.isfinite(sq_dist.sum()):  # the usual case, one cheap reduction (distances are >= 0)
        return {"count": 0, "first_row": -1}
    return flagged_rows(~np.isfinite(sq_dist), row_offset)


def flagged_rows(flags: np.ndarray, row_offset: int) -> dict:
    count = int(np.count_nonzero(flags))
    return {"count": count, "first_row": row_offset + int(np.argmax(flags)) if count else -1}


def combine_non_finite(parts: list[dict]) -> dict:
    firsts = [p["first_row"] for p in parts if p["count"]]
    return {"count": sum(p["count"] for p in parts), "first_row": min(firsts) if firsts else -1}


def _without_non_finite_rows(X, weights, labels, sq_dist):
    """Copies in which non-finite rows weigh nothing and hold zeros (0 * NaN would still be NaN)."""
    bad = ~np.isfinite(sq_dist)
    X = np.where(bad[:, None], 0, X).astype(X.dtype, copy=False)
    weights = np.where(bad, 0.0, 1.0 if weights is None else weights)
    return X, weights, np.where(bad, 0, labels).astype(np.int32), np.where(bad, 0.0, sq_dist)


def combine_lloyd_partials(parts: list[dict], *, n_farthest: int = 0) -> dict:
    """Add up the partials of several chunks (associative; order of ``parts`` is kept)."""
    out = {
        "sums": np.sum([p["sums"] for p in parts], axis=0),
        "counts": np.sum([p["counts"] for p in parts], axis=0),
        "inertia": float(np.sum([p["inertia"] for p in parts])),
        "farthest": combine_farthest([p["farthest"] for p in parts], n_farthest),
        "non_finite": combine_non_finite([p["non_finite"] for p in parts]),
    }
    if "moments" in parts[0]:
        out["moments"] = combine_moments([p["moments"] for p in parts])
    return out


def farthest_points(
    X: np.ndarray,
    weights: np.ndarray | None,
    labels: np.ndarray,
    sq_dist: np.ndarray,
    row_offset: int,
    n_keep: int,
) -> dict:
    """The ``n_keep`` rows with positive weight farthest from their centre, farthest first.

    Ties are broken by the smaller global row index, so the choice does not depend on the chunking.
    """
    # Zero-weight rows cannot fill an empty cluster: they would leave it weightless.
    eligible = sq_dist if weights is None else np.where(weights > 0, sq_dist, -np.inf)
    candidates = np.flatnonzero(eligible >= _lower_bound_of_nth_largest(eligible, n_keep))
    candidates = candidates[eligible[candidates] > -np.inf]
    return _sorted_farthest(
        {
            "sq_dist": sq_dist[candidates],
            "index": candidates.astype(np.int64) + row_offset,
            "rows": X[candidates].astype(np.float64),
            "weights": np.ones(len(candidates)) if weights is None else weights[candidates].astype(float),
            "labels": labels[candidates],
        },
        n_keep,
    )


def _lower_bound_of_nth_largest(values: np.ndarray, n: int, group: int = 64) -> float:
    """A value that the ``n``-th largest of ``values`` is at least, and that few values reach.

    The ``n``-th largest maximum of groups of ``group`` rows: at least ``n`` rows reach it. Cheaper than a
    partition of all values (one short reduction per group), and ties at the cut stay in.
    """
    if n == 0:
        return np.inf
    if len(values) <= n:
        return -np.inf
    if len(values) >= 4 * n * group:
        usable = len(values) - len(values) % group
        values = values[:usable].reshape(-1, group).max(axis=1)
    cut = len(values) - n
    return np.partition(values, cut)[cut]


def combine_farthest(parts: list[dict], n_keep: int) -> dict:
    merged = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    return _sorted_farthest(merged, n_keep)


def _sorted_farthest(points: dict, n_keep: int) -> dict:
    order = np.lexsort((points["index"], -points["sq_dist"]))[:n_keep]
    return {key: value[order] for key, value in points.items()}


def feature_moments(X: np.ndarray) -> dict:
    """Row count, per-feature mean and centred sum of squares, in float64 (Chan et al. to combine)."""
    if X.shape[0] == 0:
        zeros = np.zeros(X.shape[1], dtype=np.float64)
        return {"n": 0, "mean": zeros, "m2": zeros}
    mean = X.mean(axis=0, dtype=np.float64)
    # Centred a sub-block at a time: a whole centred chunk would be a float64 copy of it (twice the size
    # of a float32 chunk) on top of the chunk, at the memory peak of the first pass.
    m2 = np.zeros(X.shape[1])
    for rows in _sub_blocks(X.shape[0], _SUB_BLOCK_ROWS):
        centred = X[rows] - mean
        m2 += np.einsum("ij,ij->j", centred, centred)
    return {"n": X.shape[0], "mean": mean, "m2": m2}


def combine_moments(parts: list[dict]) -> dict:
    n, mean, m2 = 0, None, None
    for p in parts:
        if p["n"] == 0:
            continue
        if n == 0:
            n, mean, m2 = p["n"], p["mean"], p["m2"]
            continue
        total = n + p["n"]
        delta = p["mean"] - mean
        mean = mean + delta * (p["n"] / total)
        m2 = m2 + p["m2"] + delta**2 * (n * p["n"] / total)
        n = total
    return {"n": n, "mean": mean, "m2": m2}


def update_centers(partials: dict, old_centers: np.ndarray) -> tuple[np.ndarray, int]:
    """New centres from reduced partials; empty clusters move to the farthest points.

    Mirrors scikit-learn's relocation: each empty cluster takes one of the points farthest from their
    centre, and that point's contribution is moved out of the cluster it was assigned to. A cluster that is
    still weightless keeps its old centre. Returns the new centres (float64) and the number relocated.
    """
    sums = partials["sums"].copy()
    counts = partials["counts"].copy()
    empty = np.flatnonzero(counts == 0)
    far = partials["farthest"]
    n_relocated = min(len(empty), len(far["sq_dist"]))
    for new_id, i in zip(empty[:n_relocated], range(n_relocated)):
        old_id = far["labels"][i]
        weighted_row = far["rows"][i] * far["weights"][i]
        sums[old_id] -= weighted_row
        counts[old_id] -= far["weights"][i]
        sums[new_id] = weighted_row
        counts[new_id] = far["weights"][i]
    centers = np.asarray(old_centers, dtype=np.float64).copy()
    filled = counts > 0
    centers[filled] = sums[filled] / counts[filled, None]
    return centers, n_relocated


# ----------------------------------------------------------------------------------------------------
# Final pass: labels and the exact inertia


@_quiet_non_finite
def label_partials(
    X: np.ndarray, weights: np.ndarray | None, centers: np.ndarray, row_offset: int = 0
) -> tuple[np.ndarray, float, dict]:
    """Labels of one chunk, its weighted inertia from exact distances, and its non-finite rows.

    Non-finite rows get the label -1 and add nothing to the inertia.
    """
    labels, _ = nearest_center(X, centers)
    sq_dist = exact_sq_distances(X, centers, labels)
    non_finite = non_finite_rows(sq_dist, row_offset)
    if non_finite["count"]:
        bad = ~np.isfinite(sq_dist)
        labels[bad] = -1
        sq_dist[bad] = 0.0
    inertia = float(sq_dist.sum() if weights is None else np.dot(weights, sq_dist))
    return labels, inertia, non_finite
