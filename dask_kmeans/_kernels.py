"""Per-chunk K-means math: one compiled assignment kernel and the numpy functions around it.

Everything here works on one in-memory block of rows and knows nothing about dask: the driver maps these
functions over chunks and adds their partial results up in a tree.

Every path that meets data (Lloyd passes, the final labels, ``predict``, ``transform``, ``score``, the
initializers' sampling distances, ``choose_k``, ``profile``, the writers) goes through two compiled
functions (numba, ``nogil`` so that dask's threads run them in parallel):

- :func:`assign`: the nearest centre of every row. Per block of a few hundred rows, one GEMM gives
  ``||c||^2 - 2 x.c`` (the argmin does not need ``||x||^2``), then one sweep takes each row's nearest and
  second-nearest centre, computes the distance to the nearest from differences (exact), and adds the
  weighted row to its cluster's float64 sums and count. When the gap between the two nearest is within
  the GEMM's rounding error bound, the row's distances are all recomputed from differences, so the labels
  are those of the exact distances (ties to the lowest index) whatever the data's offset from zero.
  The same kernel serves the bounded passes (``_bounds``): it also gives float32 upper and lower bounds
  on each row's distances, assigns only given rows, and adds each cluster's inertia.
- :func:`pairwise_sq_distances`: every row's squared distance to every centre, for ``transform`` and the
  k-means++ trials: a float64 GEMM on rows shifted to the centres' mean, with the entries whose rounding
  bound is not small against their value recomputed from differences.

A chunk's contribution to a centre update is a :class:`LloydPartials`; ``LloydPartials.combine`` and the
other ``combine_*`` functions add partials up and are associative, so any tree of combines gives the same
result for the same order of leaves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# numba's np.dot calls scipy's BLAS: load it now, so that threadpoolctl's limits around a fit cover it.
import scipy.linalg.cython_blas  # noqa: F401
import scipy.sparse
from numba import njit

# Rows per GEMM block, measured fastest for k from 16 to 1024 (d = 32 to 384): 256 when the block is
# (rows x centres), 512 when it is (centres x rows); fewer for larger k so that the block of distances
# stays within 2 MiB (in L2). The (centres x rows) block wins from 24 centres in float32 and from 32 in
# float64 (1M x 32 rows, one core: k=24 float32 58 -> 49 ms; k=16 float64 58 ms against 73).
_BLOCK_ROWS = 256
_BLOCK_ROWS_CENTRES_FIRST = 512
_CENTRES_FIRST = {4: 24, 8: 32}  # by the GEMM's itemsize
_BLOCK_BYTES = 2 << 20
# From this many centres, float64 rows are cast (and shifted) to float32 for the GEMM: half the GEMM's
# time outweighs the cast from about 32 centres on (1M x 32, k=64: 153 -> 111 ms a pass; k=16: none).
_FLOAT32_GEMM_FROM = 32
# Rows per sub-block of the numpy passes (moments).
_SUB_BLOCK_ROWS = 8192
# Entries of pairwise_sq_distances whose rounding bound exceeds this share of their value are recomputed.
_PAIRWISE_RTOL = 1e-9


def block_rows(n_centers: int, itemsize: int = 8) -> int:
    """Rows per GEMM block so that the block of distances stays in cache."""
    rows = _BLOCK_ROWS_CENTRES_FIRST if n_centers >= _CENTRES_FIRST[itemsize] else _BLOCK_ROWS
    return int(min(rows, max(32, _BLOCK_BYTES // max(1, n_centers * itemsize))))


# Rows of a cluster whose sums and counts are added up on their own before joining the chunk's: blocked
# summation keeps the rounding of a chunk's sums near that of a block's, not of the whole chunk's.
_SUM_BLOCK_ROWS = 1024


def bound_slack(n_features: int) -> float:
    """Relative rounding error of an exact distance of ``d`` features (and of an update of a bound):
    bounds are widened by this share each time they are set or moved, so that they hold for the
    distances as computed, not only for the true ones."""
    return (n_features + 8) * float(np.finfo(np.float64).eps)


def _largest_square(dtype) -> float:
    """A row whose squared distance exceeds this is left out like a NaN row: its square overflows the
    data's dtype (float32 values of 1e20, float64 of 1e160), so no distance in that dtype means anything."""
    return float(np.finfo(dtype).max)


def left_out_rows(sq_distances: np.ndarray, dtype) -> np.ndarray:
    """Rows that :func:`assign` leaves out (label -1), from their squared distances to every centre
    (float64, as :func:`pairwise_sq_distances` gives them): NaN, infinite or overflowing ``dtype``."""
    return ~(sq_distances.min(axis=1) <= _largest_square(dtype))


def usable_rows(X: np.ndarray) -> np.ndarray:
    """Rows that may serve as a centre: the squared norm, exact in float64, is within ``X``'s dtype
    (the rule :func:`assign` applies to distances, measured from the origin)."""
    with np.errstate(over="ignore", invalid="ignore"):
        sq_norms = np.einsum("ij,ij->i", X, X, dtype=np.float64)
    return sq_norms <= _largest_square(X.dtype)


def _rounding_factor(n_features: int, dtype) -> float:
    """A bound on the relative rounding error of ``||c||^2 - 2 x.c`` in ``dtype``, in units of
    ``||x||^2 + ||c||^2``: a dot product of ``d`` terms errs by at most about ``d`` ulps (Higham)."""
    return (n_features + 4) * float(np.finfo(dtype).eps)


# ----------------------------------------------------------------------------------------------------
# Compiled kernels


def compiled(**options):
    """``numba.njit`` without the GIL, cached on disk where numba finds a writable place.

    numba looks beside this file, then in ``NUMBA_CACHE_DIR`` or the user's cache folder, and refuses
    ``cache=True`` at import when none is writable (a read-only install without a home folder): then
    each process compiles for itself instead (a few seconds, once per process).
    """

    def decorate(function):
        try:
            return njit(nogil=True, cache=True, **options)(function)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return njit(nogil=True, cache=False, **options)(function)

    return decorate


_FLOAT32_MAX = float(np.finfo(np.float32).max)
_FLOAT32_NORMAL = 1e-37  # above float32's smallest normal (1.2e-38): relative rounding holds from here


@compiled(inline="always")
def lower_bound32(value):
    """A lower bound on a distance, to be stored as float32 and still be one: shrunk by 2^-22 (float32
    rounds to nearest, by at most 2^-24 relative), 0 where it is tiny or NaN, float32's largest where
    only float64 holds it (infinity stays: no other centre)."""
    if not value > _FLOAT32_NORMAL:
        return 0.0
    if value > _FLOAT32_MAX:
        return value if value == np.inf else _FLOAT32_MAX
    return value * (1.0 - 2.0**-22)


@compiled(inline="always")
def upper_bound32(value):
    """An upper bound on a distance, to be stored as float32 and still be one (see
    :func:`lower_bound32`): grown by 2^-22, infinity beyond float32 (or NaN)."""
    if not value <= _FLOAT32_MAX:
        return np.inf
    if value < _FLOAT32_NORMAL:
        return 2.0 * _FLOAT32_NORMAL
    return value * (1.0 + 2.0**-22)


@compiled(inline="always")
def signed_upper_bound32(value):
    """:func:`upper_bound32` of a value of any sign (a bound less the moves of its centre so far):
    grown by 2^-22 of its size, infinity beyond float32 (or NaN)."""
    if not value <= _FLOAT32_MAX:
        return np.inf
    return max(value + max(abs(value) * 2.0**-22, 2.0 * _FLOAT32_NORMAL), -_FLOAT32_MAX)


@compiled(fastmath={"reassoc", "contract"})
def _exact_sq_distance(x, c):
    """``||x - c||^2`` from differences, in float64.

    ``reassoc`` lets the sum run in SIMD lanes (the order is fixed by this one compiled function, which
    every caller shares); NaN and infinity keep their meaning (no ``nnan``/``ninf``).
    """
    acc = 0.0
    for f in range(x.shape[0]):
        t = np.float64(x[f]) - c[f]
        acc += t * t
    return acc


@compiled(inline="always")
def _nearest_two_of_four(dist, r, center_sq, lo, hi):
    """:func:`_nearest_two` of rows ``r`` to ``r + 3`` of a (rows x centres) block, interleaved: four
    independent chains of compares keep the pipeline full where one row's chain would stall it."""
    c = center_sq[lo]
    n0 = dist[r, lo] + c
    n1 = dist[r + 1, lo] + c
    n2 = dist[r + 2, lo] + c
    n3 = dist[r + 3, lo] + c
    s0 = np.inf
    s1 = np.inf
    s2 = np.inf
    s3 = np.inf
    b0 = lo
    b1 = lo
    b2 = lo
    b3 = lo
    for j in range(lo + 1, hi):
        c = center_sq[j]
        u0 = dist[r, j] + c
        u1 = dist[r + 1, j] + c
        u2 = dist[r + 2, j] + c
        u3 = dist[r + 3, j] + c
        s0 = min(s0, max(u0, n0))
        s1 = min(s1, max(u1, n1))
        s2 = min(s2, max(u2, n2))
        s3 = min(s3, max(u3, n3))
        b0 = j if u0 < n0 else b0
        b1 = j if u1 < n1 else b1
        b2 = j if u2 < n2 else b2
        b3 = j if u3 < n3 else b3
        n0 = min(u0, n0)
        n1 = min(u1, n1)
        n2 = min(u2, n2)
        n3 = min(u3, n3)
    return b0, b1, b2, b3, n0, n1, n2, n3, s0, s1, s2, s3


@compiled(inline="always")
def _nearest_two(dist, r, center_sq, lo, hi):
    """Index of the smallest ``dist[r, j] + center_sq[j]`` for ``lo <= j < hi`` (ties to the lowest), its
    value and the second smallest value."""
    nearest = dist[r, lo] + center_sq[lo]
    second = np.inf
    best = lo
    for j in range(lo + 1, hi):
        u = dist[r, j] + center_sq[j]
        second = min(second, max(u, nearest))
        best = j if u < nearest else best
        nearest = min(u, nearest)
    return best, nearest, second


@compiled(inline="always")
def _sweep_centres_first(dist, nb, center_sq, lo, hi, nearest, second, best):
    """:func:`_nearest_two` of every row of a (centres x rows) block, a SIMD lane per row: the smallest
    ``dist[j, r] + center_sq[j]`` (``lo <= j < hi``) into ``nearest[r]``, its centre into ``best[r]``
    (ties to the lowest), the second smallest into ``second[r]``. Four centres per sweep of the rows: the
    running values are loaded and stored once per four centres, not once per centre."""
    for r in range(nb):
        nearest[r] = dist[lo, r] + center_sq[lo]
        second[r] = np.inf
        best[r] = lo
    j = lo + 1
    while j + 4 <= hi:
        c0, c1, c2, c3 = center_sq[j], center_sq[j + 1], center_sq[j + 2], center_sq[j + 3]
        j0, j1, j2, j3 = np.int32(j), np.int32(j + 1), np.int32(j + 2), np.int32(j + 3)
        for r in range(nb):
            v, s, b = _take(dist[j, r] + c0, j0, nearest[r], second[r], best[r])
            v, s, b = _take(dist[j + 1, r] + c1, j1, v, s, b)
            v, s, b = _take(dist[j + 2, r] + c2, j2, v, s, b)
            nearest[r], second[r], best[r] = _take(dist[j + 3, r] + c3, j3, v, s, b)
        j += 4
    while j < hi:
        c_sq = center_sq[j]
        j32 = np.int32(j)
        for r in range(nb):
            nearest[r], second[r], best[r] = _take(dist[j, r] + c_sq, j32, nearest[r], second[r], best[r])
        j += 1


@compiled(inline="always")
def _take(u, j, nearest, second, best):
    """A row's running nearest value, second nearest and nearest centre after centre ``j``'s value ``u``
    (ties keep the earlier centre)."""
    return min(u, nearest), min(second, max(u, nearest)), (j if u < nearest else best)


@compiled(inline="always")
def _exact_nearest(x, centers, dist, centres_first, r, center_sq, lo, hi, nearest, reach):
    """The centre nearest to ``x`` by exact distances (ties to the lowest index) and its squared distance.

    Every GEMM value errs by at most ``reach / 2``, so a centre whose value exceeds the smallest by more
    than ``reach`` is farther than the GEMM's nearest: only the others are computed (about two on
    embeddings, against all ``k``). NaN values and a NaN or infinite ``reach`` leave every centre in.
    """
    label = -1
    e = np.inf
    for j in range(lo, hi):
        u = dist[j, r] + center_sq[j] if centres_first else dist[r, j] + center_sq[j]
        if np.float64(u) - nearest > reach:
            continue
        e_j = _exact_sq_distance(x, centers[j])
        if label < 0 or e_j < e:
            label = j
            e = e_j
    return label, e


@compiled()
def _assign_kernel(X, gemm_rows, weights, centers, operand, center_sq, center_norm, origin, rounding,
                   too_large, rows_per_block, centres_first, group_starts, labels, sq_dist, sums, counts,
                   inertia, n_bad, first_bad, bound_columns, members, member_starts, column_starts,
                   lower, slack, selected, cluster_inertia, upper):
    """Labels and exact squared distances of every row of ``X`` for each group of centres; optionally
    weighted sums and counts.

    ``centers`` stacks the groups (centre sets): group ``g`` is rows ``group_starts[g]`` to
    ``group_starts[g + 1]``, and each row gets one label per group (``labels[g]``, counted from the
    group's first centre). One GEMM per block of rows serves every group. ``operand`` is
    ``-2 (centers - origin)`` (transposed unless ``centres_first``) and ``center_sq``
    ``||centers - origin||^2``, both in the GEMM's dtype. ``gemm_rows`` is ``X`` itself when the GEMM
    runs on the rows as they are; when it is empty, the rows are shifted by ``origin`` (and cast to the
    GEMM's dtype) a block at a time. A row whose distance is NaN, infinite or beyond ``too_large`` (its
    square overflows the data's dtype) gets label -1 and distance NaN and adds nothing. Per group, fills
    the weighted ``inertia``, the number ``n_bad`` of such rows and the index ``first_bad`` of the first.

    A cluster's sums and counts are added up ``_SUM_BLOCK_ROWS`` of its rows at a time, each block's from
    zero in row order, and the blocks in order. With ``cluster_inertia``, also each cluster's weighted sum of
    squared distances.

    With ``selected``, only those rows of ``X`` (row ``i`` of the outputs is ``X[selected[i]]``): the
    bounded passes' rows whose bounds failed, gathered a GEMM block at a time (no sums then).

    With ``lower`` (rows x columns), also lower bounds on each row's distances to the centres other than
    its own, for the bounded passes: centre ``j`` is in column ``bound_columns[j]``, column ``col``
    holds centres ``members[member_starts[col]:member_starts[col + 1]]`` (group ``g`` owns columns
    ``column_starts[g]`` to ``column_starts[g + 1]``), and ``lower[i, col]`` is at most the exact
    distance (not squared) from row ``i`` to every centre of that column but its own, shrunk by
    ``slack``, in float32 (:func:`lower_bound32`). One column is Hamerly's bound, from the two nearest;
    several are Yinyang's, from a sweep of the block per column. ``upper[g, i]`` is then the row's
    distance grown by ``slack``, in float32 (:func:`upper_bound32`).
    """
    d = X.shape[1]
    n = X.shape[0] if selected is None else selected.shape[0]
    k = centers.shape[0]
    n_groups = group_starts.shape[0] - 1
    gemm_dtype = operand.dtype
    # With many centres the block of distances is (centres x rows) and the sweep runs along contiguous
    # rows, a SIMD lane per row. With few, that GEMM shape is slow (1.8x for k=16): the block is
    # (rows x centres) and four rows are swept at a time.
    dist_flat = np.empty(rows_per_block * k, dtype=gemm_dtype)
    shift = gemm_rows.shape[0] != n
    shifted = np.empty((rows_per_block if shift else 0, d), dtype=gemm_dtype)
    nearest = np.empty(rows_per_block, dtype=gemm_dtype)
    second = np.empty(rows_per_block, dtype=gemm_dtype)
    best = np.empty(rows_per_block, dtype=np.int32)  # int32: the sweep's SIMD lanes as wide as float32's
    max_columns = 0
    for g in range(n_groups):
        max_columns = max(max_columns, column_starts[g + 1] - column_starts[g])
    swept = lower is not None and max_columns > 1
    group_min = np.empty((max_columns if swept else 0, rows_per_block), dtype=gemm_dtype)
    group_second = np.empty_like(group_min)
    group_best = np.empty((group_min.shape[0], rows_per_block), dtype=np.int64)
    center_sq64 = center_norm * center_norm
    with_sums = sums is not None
    block_sums = np.zeros((k if with_sums else 0, d))
    block_counts = np.zeros(k if with_sums else 0)
    # Rows in each cluster's block so far: a cluster's block joins its total once it holds
    # _SUM_BLOCK_ROWS rows, and at the end. (Flushing every cluster's block after each _SUM_BLOCK_ROWS
    # rows of the chunk read and wrote each sum row once more per row at large k: k=1024, d=384, one
    # core, the sums took 45 ms per 100k rows, 29 this way.)
    block_rows_of = np.zeros(k if with_sums else 0, dtype=np.int64)
    max_center_sq = np.zeros(n_groups)
    for g in range(n_groups):
        for j in range(group_starts[g], group_starts[g + 1]):
            max_center_sq[g] = max(max_center_sq[g], center_sq64[j])
    for g in range(n_groups):
        inertia[g] = 0.0
        n_bad[g] = 0
        first_bad[g] = -1
    for start in range(0, n, rows_per_block):
        stop = min(start + rows_per_block, n)
        nb = stop - start
        if not shift:
            rows = gemm_rows[start:stop]
        else:
            rows = shifted[:nb]
            for r in range(nb):
                source = X[start + r if selected is None else selected[start + r]]
                target = rows[r]
                for f in range(d):
                    target[f] = source[f] - origin[f]
        if centres_first:
            dist = dist_flat[: nb * k].reshape((k, nb))
            np.dot(operand, rows.T, dist)
        else:
            dist = dist_flat[: nb * k].reshape((nb, k))
            np.dot(rows, operand, dist)
        for g in range(n_groups):
            lo = group_starts[g]
            hi = group_starts[g + 1]
            if centres_first:
                _sweep_centres_first(dist, nb, center_sq, lo, hi, nearest, second, best)
            else:
                r = 0
                while r + 4 <= nb:
                    (best[r], best[r + 1], best[r + 2], best[r + 3], nearest[r], nearest[r + 1],
                     nearest[r + 2], nearest[r + 3], second[r], second[r + 1], second[r + 2],
                     second[r + 3]) = _nearest_two_of_four(dist, r, center_sq, lo, hi)
                    r += 4
                while r < nb:
                    best[r], nearest[r], second[r] = _nearest_two(dist, r, center_sq, lo, hi)
                    r += 1
            column_lo = column_starts[g]
            column_hi = column_starts[g + 1]
            if lower is not None and column_hi - column_lo > 1:
                _group_sweep(dist, centres_first, nb, center_sq, lo, hi, bound_columns, column_lo,
                             group_min[: column_hi - column_lo], group_second, group_best)
            for r in range(nb):
                i = start + r
                x_i = i if selected is None else selected[i]
                label = best[r]
                e = _exact_sq_distance(X[x_i], centers[label])
                # ||x - origin||^2 <= 2 ||x - c||^2 + 2 ||c - origin||^2 bounds the GEMM's rounding error.
                bound = rounding * (2.0 * e + 2.0 * center_sq64[label] + max_center_sq[g])
                decided_exactly = not (np.float64(second[r]) - np.float64(nearest[r]) > 2.0 * bound)
                if decided_exactly:
                    # The two nearest are within rounding of each other (or the row is not finite):
                    # decide from exact distances, ties to the lowest index.
                    label, e = _exact_nearest(X[x_i], centers, dist, centres_first, r, center_sq, lo, hi,
                                              np.float64(nearest[r]), 2.0 * bound)
                if lower is not None:
                    upper[g, i] = upper_bound32(np.sqrt(e) * (1.0 + slack))
                    if decided_exactly:
                        _exact_group_lower_bounds(X[x_i], lower[i], centers, label, members, member_starts,
                                                  column_lo, column_hi, slack)
                    elif column_hi - column_lo == 1:
                        # Hamerly's bound: the second nearest, within the GEMM's rounding.
                        gap = e + (np.float64(second[r]) - np.float64(nearest[r])) - 2.0 * bound
                        lower[i, column_lo] = lower_bound32(np.sqrt(max(gap, 0.0)) * (1.0 - slack))
                    else:
                        for col in range(column_hi - column_lo):
                            own = group_best[col, r] == label
                            smallest = group_second[col, r] if own else group_min[col, r]
                            gap = e + (np.float64(smallest) - np.float64(nearest[r])) - 2.0 * bound
                            lower[i, column_lo + col] = lower_bound32(np.sqrt(max(gap, 0.0)) * (1.0 - slack))
                if not (e <= too_large):
                    labels[g, i] = -1
                    sq_dist[g, i] = np.nan
                    n_bad[g] += 1
                    if first_bad[g] < 0:
                        first_bad[g] = x_i
                    continue
                labels[g, i] = label - lo
                sq_dist[g, i] = e
                w = 1.0 if weights is None else np.float64(weights[x_i])
                inertia[g] += w * e
                if cluster_inertia is not None:
                    cluster_inertia[label] += w * e
                if with_sums:
                    block_counts[label] += w
                    row_sums = block_sums[label]
                    x = X[x_i]
                    for f in range(d):
                        row_sums[f] += w * np.float64(x[f])
                    block_rows_of[label] += 1
                    if block_rows_of[label] == _SUM_BLOCK_ROWS:
                        _flush_block(block_sums, block_counts, sums, counts, label)
                        block_rows_of[label] = 0
    if with_sums:
        for j in range(k):
            if block_rows_of[j] > 0:
                _flush_block(block_sums, block_counts, sums, counts, j)


@compiled(inline="always")
def _flush_block(block_sums, block_counts, sums, counts, j):
    """Add cluster ``j``'s block sum and count to its totals, and zero them for its next block."""
    counts[j] += block_counts[j]
    block_counts[j] = 0.0
    for f in range(block_sums.shape[1]):
        sums[j, f] += block_sums[j, f]
        block_sums[j, f] = 0.0


@compiled(inline="always")
def _exact_group_lower_bounds(x, lower_row, centers, label, members, member_starts, column_lo, column_hi,
                              slack):
    """Per column (group) of centres, the exact distance from ``x`` to the nearest centre of the group
    but ``label``, shrunk by ``slack``: the group bounds of a row decided from exact distances. Column
    ``col``'s centres are ``members[member_starts[col]:member_starts[col + 1]]``."""
    for col in range(column_lo, column_hi):
        smallest = np.inf
        for q in range(member_starts[col], member_starts[col + 1]):
            j = members[q]
            if j != label:
                smallest = min(smallest, _exact_sq_distance(x, centers[j]))
        lower_row[col] = lower_bound32(np.sqrt(smallest) * (1.0 - slack))


@compiled(inline="always")
def _group_sweep(dist, centres_first, nb, center_sq, lo, hi, bound_columns, column_lo, group_min,
                 group_second, group_best):
    """Per row of the block and column (group) of centres ``lo`` to ``hi``: the smallest GEMM value,
    the second smallest and the centre of the smallest (ties to the lowest), as the kernel's sweep
    finds them over all centres; a row's bound for its own column is then the second if the smallest is
    its own centre. Centres outer, rows inner: contiguous rows of a (centres x rows) block."""
    for col in range(group_min.shape[0]):
        for r in range(nb):
            group_min[col, r] = np.inf
            group_second[col, r] = np.inf
            group_best[col, r] = -1
    for j in range(lo, hi):
        col = bound_columns[j] - column_lo
        c = center_sq[j]
        for r in range(nb):
            u = (dist[j, r] if centres_first else dist[r, j]) + c
            v = group_min[col, r]
            group_second[col, r] = min(group_second[col, r], max(u, v))
            group_best[col, r] = j if u < v else group_best[col, r]
            group_min[col, r] = min(u, v)


@compiled()
def _pairwise_kernel(X, centers, operand, center_sq, origin, rounding, rtol, rows_per_block, out):
    """``out[i, j] = ||X[i] - centers[j]||^2`` (float64): GEMM on shifted rows, checked entry by entry."""
    n, d = X.shape
    k = centers.shape[0]
    out_flat = out.reshape(n * k)
    shifted = np.empty((rows_per_block, d))
    max_center_sq = center_sq.max()
    for start in range(0, n, rows_per_block):
        stop = min(start + rows_per_block, n)
        nb = stop - start
        for r in range(nb):
            for f in range(d):
                shifted[r, f] = np.float64(X[start + r, f]) - origin[f]
        block = out_flat[start * k : stop * k].reshape((nb, k))
        np.dot(shifted[:nb], operand, block)
        for r in range(nb):
            i = start + r
            x_sq = 0.0
            for f in range(d):
                x_sq += shifted[r, f] * shifted[r, f]
            nearest = np.inf
            second = np.inf
            for j in range(k):
                value = block[r, j] + center_sq[j] + x_sq
                if not (rounding * (x_sq + center_sq[j]) <= rtol * value):
                    value = _exact_sq_distance(X[i], centers[j])
                block[r, j] = value
                second = min(second, max(value, nearest))
                nearest = min(value, nearest)
            # Two nearest within rounding of each other: the whole row from differences, as assign
            # decides such rows, so that the argmin of a row is always assign's label.
            if not (second - nearest > 2.0 * rounding * (x_sq + max_center_sq)):
                for j in range(k):
                    block[r, j] = _exact_sq_distance(X[i], centers[j])
            for j in range(k):
                block[r, j] = max(block[r, j], 0.0)
    return out


@compiled()
def move_rows(X, weights, rows, old_labels, labels, origin, sums, counts, squares, members, drift):
    """Move the contributions of ``rows``, whose label changed from ``old_labels`` (-1: none) to their
    ``labels`` now, between their clusters' weighted sums, counts, sums of squared distances to
    ``origin`` and member counts: the bounded passes' sums, in time proportional to the rows that
    changed.

    Rows of zero weight are no members and move nothing. A cluster left without members gets exact
    zeros (its float sums would keep rounding residue). Each addition rounds by at most ``eps / 2`` of
    the cluster's total weight times the largest value added, so ``drift[a]`` adds up the cluster's
    total weight at every change: the sums err by at most ``eps * drift[a]`` times the largest ``|x|``
    (the caller recomputes them before that matters).
    """
    d = X.shape[1]
    for m in range(rows.shape[0]):
        i = rows[m]
        w = 1.0 if weights is None else weights[i]
        if w == 0.0:  # no member: Lloyd's count of a cluster of weightless rows is exactly zero
            continue
        q = _exact_sq_distance(X[i], origin)
        for a, sign in ((old_labels[m], -1.0), (labels[i], 1.0)):
            if a < 0:
                continue
            members[a] += np.int64(sign)
            if members[a] == 0:
                counts[a] = 0.0
                squares[a] = 0.0
                drift[a] = 0.0
                for f in range(d):
                    sums[a, f] = 0.0
                continue
            signed = sign * w
            counts[a] += signed
            squares[a] += signed * q
            row_sums = sums[a]
            for f in range(d):
                row_sums[f] += signed * np.float64(X[i, f])
            drift[a] += abs(counts[a]) + w


# ----------------------------------------------------------------------------------------------------
# numpy-facing wrappers


def _gemm_origin(centers: np.ndarray, dtype: np.dtype) -> np.ndarray | None:
    """Where to shift rows to before the GEMM: the centres' mean when they sit far from zero, else None.

    ``||c||^2 - 2 x.c`` cancels when the data sit far from zero against their spread (scikit-learn
    subtracts the mean from a copy of X for the same reason). A shift costs a copy of each block (10-20%
    of a pass), so float32 rows are shifted when the centres' mean is farther from zero than they spread,
    float64 rows only when it is a thousand times farther. Rows that the GEMM cannot tell apart are
    recomputed from differences either way: the shift only keeps that rare.
    """
    mean = centers.mean(axis=0)
    spread = ((centers - mean) ** 2).sum(axis=1).mean()
    far = 1.0 if dtype == np.float32 else 1e6
    return mean if mean @ mean > far * spread else None


@dataclass(frozen=True)
class AssignmentPlan:
    """The centres' side of :func:`assign_sets`, the same for every chunk of a pass: made once a pass by
    :func:`plan_assignment` and sent once to each worker (k=1024, d=384: 2.4 ms that every chunk's task
    paid, 2% of its time).

    ``centers`` stacks the sets (float64), set ``g`` being rows ``group_starts[g]`` to
    ``group_starts[g + 1]``; the rest is what the kernel takes for rows of ``dtype`` (see
    :func:`_assign_kernel`).
    """

    dtype: np.dtype
    centers: np.ndarray
    group_starts: np.ndarray
    origin: np.ndarray
    shift: bool
    operand: np.ndarray
    center_sq: np.ndarray
    center_norm: np.ndarray
    centres_first: bool

    @property
    def set_sizes(self) -> list[int]:
        return np.diff(self.group_starts).tolist()


def plan_assignment(center_sets: list[np.ndarray], dtype, *,
                    float32_from: np.ndarray | None = None) -> AssignmentPlan:
    """The :class:`AssignmentPlan` of these centre sets for rows of ``dtype`` (``float32_from``: see
    :func:`assign`)."""
    dtype = np.dtype(dtype)
    centers = np.ascontiguousarray(np.concatenate(center_sets), dtype=np.float64)
    group_starts = np.concatenate([[0], np.cumsum([len(c) for c in center_sets])]).astype(np.int64)
    k, d = centers.shape
    if float32_from is not None:
        gemm_dtype, origin = np.dtype(np.float32), np.asarray(float32_from, dtype=np.float64)
    elif dtype == np.float64 and k >= _FLOAT32_GEMM_FROM:
        # The labels are those of exact distances whatever the GEMM's precision (rows it cannot decide
        # are recomputed), so float64 rows may go through a float32 GEMM where that pays.
        gemm_dtype, origin = np.dtype(np.float32), centers.mean(axis=0)
    else:
        gemm_dtype, origin = dtype, _gemm_origin(centers, dtype)
    shift = origin is not None or gemm_dtype != dtype  # rows shifted (and cast) a block at a time
    origin = np.zeros(d) if origin is None else origin
    moved = centers - origin
    centres_first = k >= _CENTRES_FIRST[gemm_dtype.itemsize]
    center_norm = np.sqrt(np.einsum("ij,ij->i", moved, moved))
    return AssignmentPlan(
        dtype=dtype, centers=centers, group_starts=group_starts, origin=origin, shift=shift,
        operand=np.ascontiguousarray(-2.0 * (moved if centres_first else moved.T), dtype=gemm_dtype),
        center_sq=(center_norm**2).astype(gemm_dtype), center_norm=center_norm, centres_first=centres_first,
    )


def assign(
    X: np.ndarray,
    centers: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    with_sums: bool = False,
    row_offset: int = 0,
    float32_from: np.ndarray | None = None,
) -> dict:
    """Nearest centre of every row of ``X``, with the exact distance to it; the one assignment path.

    Parameters
    ----------
    X : ndarray of shape (n, d), float32 or float64
    centers : ndarray of shape (k, d)
    weights : ndarray of shape (n,) or None
        Sample weights for the inertia (and the sums); None means all ones.
    with_sums : bool
        Also return each cluster's weighted sum of rows (float64) and weighted count.
    row_offset : int
        Global index of the first row, to say where the first non-finite row is.
    float32_from : ndarray of shape (d,) or None
        Run the GEMM in float32 on rows shifted by this point (one near the data): half the GEMM's time,
        for the initializers' sampling. Labels and distances are exact all the same (float64 rows go
        through a float32 GEMM anyway from 32 centres on, shifted by the centres' mean).

    Returns
    -------
    dict with ``labels`` (int32; -1 for rows with NaN, infinity or an overflowing square), ``sq_dist``
    (float64, exact; NaN for those rows), ``inertia`` (weighted, float), ``non_finite`` (``count`` and
    global ``first_row``) and, with ``with_sums``, ``sums`` (k, d) and ``counts`` (k,) in float64.
    """
    return assign_sets(X, [centers], weights, with_sums=with_sums, row_offset=row_offset,
                       float32_from=float32_from)[0]


@np.errstate(invalid="ignore", over="ignore")  # non-finite rows become label -1, not a warning
def assign_sets(
    X: np.ndarray,
    center_sets: list[np.ndarray] | AssignmentPlan,
    weights: np.ndarray | None = None,
    *,
    with_sums: bool = False,
    row_offset: int = 0,
    float32_from: np.ndarray | None = None,
    bound_groups: list[np.ndarray] | None = None,
    rows: np.ndarray | None = None,
    cluster_inertia: bool = False,
) -> list[dict]:
    """:func:`assign` for several centre sets at once: one GEMM per block of rows serves them all.

    The sets (restarts, values of k) are stacked into one GEMM, which is faster than one GEMM per set
    (ten sets of 16 centres: 2.7x); each set's labels, distances and sums are still those of its own
    exact distances, so each result equals ``assign(X, center_sets[i], ...)``. ``center_sets`` may be
    their :class:`AssignmentPlan` for ``X``'s dtype, made once for every chunk of a pass.

    With ``bound_groups`` (per set, each centre's group, 0 to t - 1), each result also holds, for the
    bounded passes, ``lower`` (n, t): per group, a lower bound on the row's distance to the group's
    centres other than its own (Hamerly's bound when t = 1, Yinyang's group bounds otherwise), and
    ``upper`` (n,): an upper bound on its distance to its own, both float32. With ``rows`` (indices
    into ``X``), only those rows are assigned, in that order. With ``cluster_inertia``, each result
    also holds ``cluster_inertia`` (k,), each cluster's weighted sum of squared distances.
    """
    X = np.ascontiguousarray(X)
    if isinstance(center_sets, AssignmentPlan):
        plan = center_sets
        if plan.dtype != X.dtype or float32_from is not None:  # float32_from belongs in the plan
            raise ValueError(f"a plan for {plan.dtype} rows cannot assign {X.dtype} rows")
    else:
        plan = plan_assignment(center_sets, X.dtype, float32_from=float32_from)
    centers, group_starts, gemm_dtype = plan.centers, plan.group_starts, plan.operand.dtype
    d = X.shape[1]
    n = X.shape[0] if rows is None else len(rows)
    k, n_sets = centers.shape[0], len(group_starts) - 1
    shift = plan.shift or rows is not None  # rows copied (shifted, cast or gathered) a block at a time
    labels = np.empty((n_sets, n), dtype=np.int32)
    sq_dist = np.empty((n_sets, n), dtype=np.float64)
    sums = np.zeros((k, d)) if with_sums else None
    counts = np.zeros(k) if with_sums else None
    inertia, n_bad, first_bad = np.zeros(n_sets), np.zeros(n_sets, np.int64), np.zeros(n_sets, np.int64)
    w = None if weights is None else np.ascontiguousarray(weights, dtype=np.float64)
    gemm_rows = np.empty((0, d), dtype=gemm_dtype) if shift else X
    lower, upper, column_starts = None, None, np.zeros(n_sets + 1, np.int64)
    columns, members, member_starts = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(1, np.int64)
    if bound_groups is not None:
        widths = [int(groups.max()) + 1 for groups in bound_groups]
        column_starts = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
        columns = np.concatenate(
            [np.asarray(groups, np.int64) + start for groups, start in zip(bound_groups, column_starts)])
        members = np.argsort(columns, kind="stable").astype(np.int64)  # each column's centres together
        member_starts = np.concatenate([[0], np.cumsum(np.bincount(columns, minlength=column_starts[-1]))])
        lower = np.empty((n, column_starts[-1]), dtype=np.float32)  # rounded down: see lower_bound32
        upper = np.empty((n_sets, n), dtype=np.float32)
    per_cluster = np.zeros(k) if cluster_inertia else None
    selected = None if rows is None else np.ascontiguousarray(rows, dtype=np.int64)
    _assign_kernel(
        X, gemm_rows, w, centers, plan.operand, plan.center_sq, plan.center_norm, plan.origin,
        _rounding_factor(d, gemm_dtype), _largest_square(X.dtype), block_rows(k, gemm_dtype.itemsize),
        plan.centres_first, group_starts, labels,
        sq_dist, sums, counts, inertia, n_bad, first_bad, columns, members,
        member_starts.astype(np.int64), column_starts, lower,
        bound_slack(d), selected, per_cluster, upper,
    )
    results = []
    for g in range(n_sets):
        out = {
            "labels": labels[g],
            "sq_dist": sq_dist[g],
            "inertia": float(inertia[g]),
            "non_finite": {"count": int(n_bad[g]),
                           "first_row": row_offset + int(first_bad[g]) if n_bad[g] else -1},
        }
        if with_sums:
            lo, hi = group_starts[g], group_starts[g + 1]
            out["sums"], out["counts"] = sums[lo:hi], counts[lo:hi]
        if lower is not None:
            out["lower"] = lower[:, column_starts[g] : column_starts[g + 1]]
            out["upper"] = upper[g]
        if per_cluster is not None:
            out["cluster_inertia"] = per_cluster[group_starts[g] : group_starts[g + 1]]
        results.append(out)
    return results


def normalize_rows(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit Euclidean norm (same dtype), for ``metric="cosine"``; rows of zeros become NaN.

    On unit rows and unit centres ``||x - c||^2 = 2 (1 - cos(x, c))``: the Euclidean kernel then assigns by
    largest cosine, and half its distances are cosine distances. A row of zeros has no direction: as NaN
    it is refused or left out like any non-finite row.
    """
    X = np.asarray(X)
    norms = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = X / norms[:, None].astype(X.dtype) if X.dtype == np.float32 else X / norms[:, None]
    scaled[norms == 0] = np.nan
    return scaled


def nearest_center(
    X: np.ndarray, centers: np.ndarray, *, float32_from: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``labels`` (int32, -1 for non-finite rows) and exact ``sq_dist`` (float64, NaN there).

    See :func:`assign`.
    """
    result = assign(X, centers, float32_from=float32_from)
    return result["labels"], result["sq_dist"]


@np.errstate(invalid="ignore", over="ignore")
def pairwise_sq_distances(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance of every row of ``X`` to every centre, shape (n, k), float64.

    Exact to a relative error of about 1e-9 or better wherever the data sit: a float64 GEMM on rows
    shifted to the centres' mean, and the entries whose rounding bound is not small against their value
    (near-zero distances) recomputed from differences. NaN or infinite rows give NaN or inf.
    """
    X = np.ascontiguousarray(X)
    centers = np.ascontiguousarray(centers, dtype=np.float64)
    n, d = X.shape
    k = centers.shape[0]
    origin = centers.mean(axis=0) if k else np.zeros(d)
    moved = centers - origin
    operand = np.ascontiguousarray(-2.0 * moved.T)
    center_sq = np.einsum("ij,ij->i", moved, moved)
    out = np.empty((n, k))
    if n and k:
        _pairwise_kernel(X, centers, operand, center_sq, origin, _rounding_factor(d, np.float64),
                         _PAIRWISE_RTOL, block_rows(k), out)
    return out


def weighted_cluster_sums(
    X: np.ndarray, labels: np.ndarray, weights: np.ndarray | None, n_clusters: int
) -> np.ndarray:
    """``sums[j] = sum of weights[i] * X[i] over rows i labelled j``, in float64 (labels already known).

    A sparse (k x n) matrix with one entry per column times X: one sequential pass over the rows in C.
    """
    n = X.shape[0]
    values = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    onehot = scipy.sparse.csc_array((values, labels, np.arange(n + 1)), shape=(n_clusters, n))
    return onehot @ X.astype(np.float64, copy=False)


# ----------------------------------------------------------------------------------------------------
# Lloyd partials: one chunk -> sums, counts, inertia, farthest points (and the data's moments on pass 1)


@dataclass
class LloydPartials:
    """What rows contribute to a centre update: one chunk's, or several chunks' added up.

    ``sums`` (k, d) and ``counts`` (k,) are weighted and float64; ``inertia`` is from exact distances;
    ``farthest`` names the rows farthest from their centre (see :func:`farthest_points`), for
    empty-cluster relocation; ``non_finite`` counts the rows left out; ``moments`` (the data's row count,
    feature means and centred sums of squares) only when asked for.
    """

    sums: np.ndarray
    counts: np.ndarray
    inertia: float
    farthest: dict
    non_finite: dict
    moments: dict | None = None
    n_computed: int = 0  # rows whose distances were computed (the bounded passes skip many)

    @classmethod
    def combine(cls, parts: list[LloydPartials], n_farthest: int = 0) -> LloydPartials:
        """Add up the partials of several chunks (associative; the order of ``parts`` is kept)."""
        return cls(
            sums=np.sum([p.sums for p in parts], axis=0),
            counts=np.sum([p.counts for p in parts], axis=0),
            inertia=float(np.sum([p.inertia for p in parts])),
            farthest=combine_farthest([p.farthest for p in parts], n_farthest),
            non_finite=combine_non_finite([p.non_finite for p in parts]),
            moments=None if parts[0].moments is None else combine_moments([p.moments for p in parts]),
            n_computed=sum(p.n_computed for p in parts),
        )


def lloyd_partials(
    X: np.ndarray,
    weights: np.ndarray | None,
    centers: np.ndarray,
    *,
    row_offset: int = 0,
    n_farthest: int = 0,
    with_moments: bool = False,
) -> LloydPartials:
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
    LloydPartials
        Rows with NaN, infinity or overflowing squares add to none of its sums; they are counted in
        ``non_finite``.
    """
    return lloyd_partials_sets(X, weights, [centers], row_offset=row_offset, n_farthest=[n_farthest],
                               with_moments=with_moments)[0]


def lloyd_partials_sets(
    X: np.ndarray,
    weights: np.ndarray | None,
    center_sets: list[np.ndarray] | AssignmentPlan,
    *,
    row_offset: int = 0,
    n_farthest: list[int],
    with_moments: bool = False,
) -> list[LloydPartials]:
    """:func:`lloyd_partials` for several centre sets from one read of the chunk and one GEMM per block
    (see :func:`assign_sets`); the data's moments, if asked, ride on the first set's partials."""
    partials = []
    for i, result in enumerate(assign_sets(X, center_sets, weights, with_sums=True, row_offset=row_offset)):
        labels, sq_dist = result["labels"], result["sq_dist"]
        any_left_out = result["non_finite"]["count"] > 0
        moments = None
        if with_moments and i == 0:
            moments = feature_moments(X if not any_left_out else X[labels >= 0])
        partials.append(LloydPartials(
            sums=result["sums"],
            counts=result["counts"],
            inertia=result["inertia"],
            farthest=farthest_points(weights, labels, sq_dist, row_offset, n_farthest[i], any_left_out),
            non_finite=result["non_finite"],
            moments=moments,
            n_computed=len(X) - result["non_finite"]["count"],
        ))
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


def farthest_points(
    weights: np.ndarray | None,
    labels: np.ndarray,
    sq_dist: np.ndarray,
    row_offset: int,
    n_keep: int,
    any_left_out: bool = True,
) -> dict:
    """The ``n_keep`` rows with positive weight farthest from their centre, farthest first: their global
    ``index``, ``sq_dist``, ``weights`` and ``labels``, not the rows themselves (a pass would carry
    ``n_keep x d`` floats a chunk through its tree, as many as the sums at large k, for the rare
    iteration that leaves a cluster empty: :func:`update_centers` reads the few it needs).

    Ties are broken by the smaller global row index, so the choice does not depend on the chunking.
    """
    # Zero-weight rows cannot fill an empty cluster: they would leave it weightless; rows left out
    # (label -1, distance NaN) cannot either.
    if weights is None and not any_left_out:
        eligible = sq_dist
    else:
        usable = labels >= 0 if weights is None else (labels >= 0) & (weights > 0)
        eligible = np.where(usable, sq_dist, -np.inf)
    candidates = np.flatnonzero(eligible >= _lower_bound_of_nth_largest(eligible, n_keep))
    candidates = candidates[eligible[candidates] > -np.inf]
    return _sorted_farthest(
        {
            "sq_dist": sq_dist[candidates],
            "index": candidates.astype(np.int64) + row_offset,
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
    for start in range(0, X.shape[0], _SUB_BLOCK_ROWS):
        centred = X[start : start + _SUB_BLOCK_ROWS] - mean
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


def update_centers(partials: LloydPartials, old_centers: np.ndarray,
                   rows_at: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, int]:
    """New centres from reduced partials; empty clusters move to the farthest points.

    Mirrors scikit-learn's relocation: each empty cluster takes one of the points farthest from their
    centre, and that point's contribution is moved out of the cluster it was assigned to. A cluster that is
    still weightless keeps its old centre. ``rows_at(index)`` gives the rows at those global indices
    (called only when a cluster is empty). Returns the new centres (float64) and the number relocated.
    """
    sums = partials.sums.copy()
    counts = partials.counts.copy()
    empty = np.flatnonzero(counts == 0)
    far = partials.farthest
    n_relocated = min(len(empty), len(far["sq_dist"]))
    rows = np.asarray(rows_at(far["index"][:n_relocated]), dtype=np.float64) if n_relocated else None
    for new_id, i in zip(empty[:n_relocated], range(n_relocated)):
        old_id = far["labels"][i]
        weighted_row = rows[i] * far["weights"][i]
        sums[old_id] -= weighted_row
        counts[old_id] -= far["weights"][i]
        sums[new_id] = weighted_row
        counts[new_id] = far["weights"][i]
    centers = np.asarray(old_centers, dtype=np.float64).copy()
    filled = counts > 0
    centers[filled] = sums[filled] / counts[filled, None]
    return centers, n_relocated


def squares_about(squares: np.ndarray, sums: np.ndarray, counts: np.ndarray, old: np.ndarray,
                  new: np.ndarray) -> np.ndarray:
    """Each cluster's weighted sum of squared distances to ``new`` from that to ``old`` (one point, or
    one per cluster), its weighted sum of rows ``S`` and weight ``W``:
    ``sum w ||x - new||^2 = Q + 2 (old - new).(S - W old) + W ||old - new||^2``."""
    step = np.broadcast_to(old - new, sums.shape)
    from_old = sums - counts[:, None] * old
    return squares + 2.0 * np.einsum("ij,ij->i", step, from_old) + counts * np.einsum("ij,ij->i", step, step)


def inertia_from_squares(sums: np.ndarray, counts: np.ndarray, squares: np.ndarray, centers: np.ndarray,
                         origin: np.ndarray) -> float:
    """The weighted inertia of rows for ``centers`` from each cluster's sums and its sum of squared
    distances to ``origin`` (:func:`squares_about`; relative error about ``eps * spread / cluster
    width``: the origin is near the rows)."""
    return float(np.maximum(squares_about(squares, sums, counts, origin, centers), 0.0).sum())
