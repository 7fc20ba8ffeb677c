"""Property-based tests (hypothesis): the per-chunk kernel, Lloyd's invariants and the readers, fuzzed.

Every test is derandomized and runs without an example database, so CI sees the same examples on every
run. Data that hypothesis does not draw element by element come from numpy generators seeded by a
drawn integer. Files go to a ``tempfile.TemporaryDirectory`` per example (pytest's ``tmp_path`` is not
reset between hypothesis examples).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from functools import partial

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
import zarr
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dask_kmeans import KMeans
from dask_kmeans._kernels import LloydPartials, lloyd_partials, nearest_center
from dask_kmeans._validation import ConvergenceWarning
from dask_kmeans.io import Table, read

# dask 2026.8's Parquet reader calls a pandas 3.1 API that warns; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.reset_index")


def fuzz(max_examples: int):
    """Reproducible hypothesis settings: fixed examples, no database, no per-example deadline."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# ----------------------------------------------------------------------------------------------------
# The per-chunk kernel

# How far a GEMM-expanded squared distance may sit from the exact one, relative to |x|^2 + max |c|^2:
# about (d + 3) * 2 * eps for d <= 6, with a wide margin (float32 data may also be shifted by the
# centres' mean first). The absolute part covers squares that underflow.
RTOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 3e-5}
ATOL = {np.dtype(np.float64): 1e-290, np.dtype(np.float32): 1e-33}


@st.composite
def chunks_and_centres(draw, max_rows: int = 200):
    """(X, C): a chunk of rows (float64 or float32) in [-1e3, 1e3] and float64 centres, no NaN."""
    dtype = np.dtype(draw(st.sampled_from([np.float64, np.float32])))
    n = draw(st.integers(1, max_rows))
    d = draw(st.integers(1, 6))
    k = draw(st.integers(1, 8))
    source = draw(st.sampled_from(["elements", "gaussian"]))
    if source == "elements":
        # Drawn element by element: repeated values, zeros, tiny and extreme magnitudes, exact ties.
        values = st.floats(-1e3, 1e3, allow_nan=False, width=dtype.itemsize * 8)
        X = draw(hnp.arrays(dtype, (n, d), elements=values))
    else:
        # Spread data, possibly far from zero relative to their spread (float32 cancellation).
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        offset = draw(st.sampled_from([0.0, 10.0, 900.0]))
        spread = draw(st.sampled_from([1e-2, 1.0, 50.0]))
        X = np.clip(offset + spread * rng.standard_normal((n, d)), -1e3, 1e3).astype(dtype)
    centres_from = draw(st.sampled_from(["elements", "rows", "near rows"]))
    if centres_from == "elements":
        C = draw(hnp.arrays(np.float64, (k, d), elements=st.floats(-1e3, 1e3, allow_nan=False)))
    else:
        rows = draw(st.lists(st.integers(0, n - 1), min_size=k, max_size=k))  # repeats make equal centres
        C = X[rows].astype(np.float64)
        if centres_from == "near rows":
            C = C + np.random.default_rng(draw(st.integers(0, 2**32 - 1))).uniform(-1, 1, C.shape)
    return X, C


def exact_sq_distances(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    """(n, k) squared distances from differences in float64: no cancellation."""
    diff = X.astype(np.float64)[:, None, :] - np.asarray(C, dtype=np.float64)[None, :, :]
    return np.einsum("ijk,ijk->ij", diff, diff)


def distance_slack(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Per row, how far the kernel's distances may be off through rounding alone."""
    X64 = X.astype(np.float64)
    scale = np.einsum("ij,ij->i", X64, X64) + np.einsum("ij,ij->i", C, C).max()
    return RTOL[X.dtype] * scale + ATOL[X.dtype]


def check_nearest(X, C, labels, sq_dist):
    assert labels.dtype == np.int32 and labels.shape == (len(X),)
    assert sq_dist.dtype == np.float64 and sq_dist.shape == (len(X),)
    assert ((labels >= 0) & (labels < len(C))).all()
    exact = exact_sq_distances(X, C)
    slack = distance_slack(X, C)
    chosen = exact[np.arange(len(X)), labels]
    worse_by = chosen - exact.min(axis=1)
    assert (worse_by <= slack).all(), f"rows {np.flatnonzero(worse_by > slack)} got a clearly worse centre"
    # The returned distance is the chosen centre's, up to the same rounding, and never negative.
    assert (sq_dist >= 0).all()
    assert (np.abs(sq_dist - chosen) <= slack).all()


@fuzz(300)
@given(chunks_and_centres())
def test_nearest_center_is_an_argmin_of_the_exact_distances(case):
    X, C = case
    check_nearest(X, C, *nearest_center(X, C))
    # Rows on their own (a chunk of one row, or the ragged end of a chunk) too.
    for i in range(0, len(X), max(1, len(X) // 8)):
        check_nearest(X[i : i + 1], C, *nearest_center(X[i : i + 1], C))


@st.composite
def copies_of_centres(draw):
    """Rows, and centres among which some are exact copies of others."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    n, d = draw(st.integers(1, 20)), draw(st.integers(1, 4))
    X = (rng.standard_normal((n, d)) * 10).astype(dtype)
    distinct = rng.standard_normal((draw(st.integers(1, 3)), d)) * 10
    which = draw(st.lists(st.integers(0, len(distinct) - 1), min_size=2, max_size=9))
    return X, distinct[which]


def lowest_copy(C: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """For each label, the lowest index of a centre equal to that label's centre."""
    return np.array([np.flatnonzero((C == C[j]).all(axis=1))[0] for j in labels], dtype=int)


@fuzz(60)
@given(copies_of_centres())
def test_ties_between_identical_centres_go_to_the_lowest_index(case):
    # A one-row block used to go through BLAS gemv, which rounds some columns differently from gemm, so
    # identical centres got distances a few ulps apart; the kernel now computes such a row as two.
    X, C = case
    labels, _ = nearest_center(X, C)
    np.testing.assert_array_equal(labels, lowest_copy(C, labels), err_msg="whole block")
    single = np.concatenate([nearest_center(X[i : i + 1], C)[0] for i in range(len(X))])
    np.testing.assert_array_equal(single, lowest_copy(C, single), err_msg="rows one at a time")
    # and so the partials of a chunk do not depend on how it is cut into pieces
    whole = lloyd_partials(X, None, C)
    rows = [lloyd_partials(X[i : i + 1], None, C, row_offset=i) for i in range(len(X))]
    pieces = LloydPartials.combine(rows)
    np.testing.assert_array_equal(pieces.counts, whole.counts)


@st.composite
def partials_cases(draw):
    X, C = draw(chunks_and_centres())
    n = len(X)
    weights = draw(
        st.one_of(
            st.none(),
            hnp.arrays(np.float64, n, elements=st.floats(0, 10)),  # zeros included
            st.integers(0, 2**32 - 1).map(lambda s: np.random.default_rng(s).uniform(0, 3, n)),
        )
    )
    # Any split into consecutive pieces, empty pieces included (repeated cuts).
    cuts = [0, *sorted(draw(st.lists(st.integers(0, n), max_size=8))), n]
    # A two-level tree over the pieces: consecutive groups of pieces, each combined first.
    n_pieces = len(cuts) - 1
    group_cuts = [0, *sorted(set(draw(st.lists(st.integers(1, max(1, n_pieces - 1)), max_size=4)))), n_pieces]
    group_cuts = sorted(set(group_cuts))
    n_farthest = draw(st.integers(0, 8))
    return X, C, weights, cuts, group_cuts, n_farthest


def near_ties(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Rows whose two nearest centres are closer to each other than rounding can tell apart."""
    if len(C) == 1:
        return np.zeros(len(X), dtype=bool)
    two = np.partition(exact_sq_distances(X, C), 1, axis=1)
    return two[:, 1] - two[:, 0] <= 2 * distance_slack(X, C)


def check_partials(got: LloydPartials, X, C, w, labels, sq_dist, n_farthest: int, name: str):
    """Partials against direct formulas for the given labels and (kernel) distances."""
    n, k = len(X), len(C)
    wv = np.ones(n) if w is None else w
    X64 = X.astype(np.float64)
    onehot = np.zeros((n, k))
    onehot[np.arange(n), labels] = 1.0
    sums_atol = 1e-10 * (onehot.T @ np.abs(wv[:, None] * X64)) + 1e-300
    assert got.sums.shape == (k, X.shape[1]) and got.counts.shape == (k,), name
    assert (np.abs(got.sums - onehot.T @ (wv[:, None] * X64)) <= sums_atol).all(), name
    if w is None:
        np.testing.assert_array_equal(got.counts, np.bincount(labels, minlength=k), err_msg=name)
    else:
        np.testing.assert_allclose(got.counts, onehot.T @ wv, rtol=1e-12, atol=1e-300, err_msg=name)
    # The inertia is sum(w * ||x - c_label||^2), up to the rounding of the GEMM-expanded distances.
    exact_inertia = float(wv @ exact_sq_distances(X, C)[np.arange(n), labels])
    inertia_slack = float(wv @ distance_slack(X, C)) + 1e-12 * exact_inertia
    assert abs(got.inertia - exact_inertia) <= inertia_slack, name
    np.testing.assert_allclose(got.inertia, float(wv @ sq_dist), rtol=1e-12, atol=1e-300, err_msg=name)
    # The n_farthest rows of positive weight farthest from their centre, ties to the lower row index.
    eligible = np.flatnonzero(wv > 0)
    index = eligible[np.lexsort((eligible, -sq_dist[eligible]))][:n_farthest]
    far = got.farthest
    np.testing.assert_array_equal(far["index"], index, err_msg=name)
    np.testing.assert_array_equal(far["labels"], labels[index], err_msg=name)
    np.testing.assert_array_equal(far["weights"], wv[index], err_msg=name)
    np.testing.assert_array_equal(far["sq_dist"], sq_dist[index], err_msg=name)


@fuzz(250)
@given(partials_cases())
def test_lloyd_partials_add_up_across_any_split(case):
    X, C, w, cuts, group_cuts, n_farthest = case
    combine = partial(LloydPartials.combine, n_farthest=n_farthest)
    whole = lloyd_partials(X, w, C, n_farthest=n_farthest)
    labels, sq_dist = nearest_center(X, C)
    check_partials(whole, X, C, w, labels, sq_dist, n_farthest, "whole chunk")

    pieces, piece_labels, piece_sq_dist = [], [], []
    for a, b in zip(cuts, cuts[1:]):
        pieces.append(
            lloyd_partials(X[a:b], None if w is None else w[a:b], C, row_offset=a, n_farthest=n_farthest)
        )
        labels_of_piece, sq_dist_of_piece = nearest_center(X[a:b], C)
        piece_labels.append(labels_of_piece)
        piece_sq_dist.append(sq_dist_of_piece)
    piece_labels, piece_sq_dist = np.concatenate(piece_labels), np.concatenate(piece_sq_dist)
    # The kernel works row by row: the pieces label every row as the whole chunk does, except where two
    # centres are tied up to rounding (the distances of a row may differ in the last bits with the
    # number of rows in its block; see test_ties_between_identical_centres_go_to_the_lowest_index).
    differ = piece_labels != labels
    assert not (differ & ~near_ties(X, C)).any(), f"rows {np.flatnonzero(differ)} changed label"
    np.testing.assert_allclose(piece_sq_dist, sq_dist, rtol=0, atol=distance_slack(X, C).max())

    flat = combine(pieces)
    tree = combine([combine(pieces[a:b]) for a, b in zip(group_cuts, group_cuts[1:])])
    for name, got in [("flat combine", flat), ("two-level tree", tree)]:
        check_partials(got, X, C, w, piece_labels, piece_sq_dist, n_farthest, name)
        # Same leaves in the same order: a flat combine and any tree agree up to the order of additions.
        np.testing.assert_allclose(got.sums, flat.sums, rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(got.counts, flat.counts, rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(got.inertia, flat.inertia, rtol=1e-12, atol=1e-300)
    if not differ.any():  # the usual case: the split partials are the whole chunk's
        for key in ("sums", "counts"):
            np.testing.assert_allclose(getattr(tree, key), getattr(whole, key), rtol=1e-9,
                                       atol=1e-9 * np.abs(getattr(whole, key)).max())
        # the rows' distances may differ in the last bits with the size of their block
        wv = np.ones(len(X)) if w is None else w
        assert abs(tree.inertia - whole.inertia) <= wv @ distance_slack(X, C) + 1e-12 * whole.inertia


# ----------------------------------------------------------------------------------------------------
# Lloyd, through the estimator


def fit(X, init, max_iter: int) -> KMeans:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # duplicate rows may leave clusters equal
        return KMeans(len(init), init=init, tol=0, max_iter=max_iter).fit(X)


@st.composite
def blob_data(draw, max_rows_per_blob: int = 40):
    """Gaussian blobs (hypothesis picks seed, sizes, spread, dimension and dtype); returns (X, blob ids)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_blobs = draw(st.integers(1, 6))
    d = draw(st.integers(1, 5))
    sizes = draw(st.lists(st.integers(1, max_rows_per_blob), min_size=n_blobs, max_size=n_blobs))
    std = draw(st.sampled_from([0.0, 0.3, 1.0, 3.0]))
    offset = draw(st.sampled_from([0.0, 100.0]))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    centres = offset + rng.uniform(-10, 10, (n_blobs, d))
    blob = np.repeat(np.arange(n_blobs), sizes)
    X = centres[blob] + std * rng.standard_normal((len(blob), d))
    order = rng.permutation(len(blob))
    return X[order].astype(dtype), blob[order]


@fuzz(100)
@given(blob_data(), st.data())
def test_lloyd_inertia_never_increases(blobs, data):
    X, _ = blobs
    n, d = X.shape
    k = data.draw(st.integers(1, min(8, n)), label="k")
    init_kind = data.draw(st.sampled_from(["rows", "box", "far"]), label="init")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="init seed"))
    X64 = X.astype(np.float64)
    if init_kind == "rows":
        init = X64[rng.choice(n, size=k, replace=False)]
    else:  # points of the bounding box, or far away: clusters empty at first, relocated to far points
        lo, hi = X64.min(axis=0), X64.max(axis=0)
        init = rng.uniform(lo, hi, (k, d))
        if init_kind == "far":
            init[: max(1, k // 2)] += 1e3
    max_iter = data.draw(st.integers(1, 20), label="max_iter")
    km = fit(X, init, max_iter)

    inertias = [h["inertia"] for h in km.history_]
    assert km.n_iter_ == len(inertias) and 1 <= km.n_iter_ <= max_iter
    assert km.converged_ or km.n_iter_ == max_iter
    # Rounding of the GEMM-expanded distances: eps * (|x|^2 + |c|^2) per row, and every centre stays
    # within reach of the data or of the initial centres.
    sq_norm = max(np.einsum("ij,ij->i", X64, X64).max(), np.einsum("ij,ij->i", init, init).max())
    slack = RTOL[X.dtype] * 2 * n * sq_norm + 1e-300
    increases = np.diff(inertias)
    assert (increases <= slack).all(), f"inertia went up: {inertias}"
    assert km.inertia_ <= inertias[-1] + slack, (km.inertia_, inertias)
    # The final inertia is the exact one of the final labels, which are nearest centres.
    centres = km.cluster_centers_
    exact = exact_sq_distances(X, centres)
    np.testing.assert_allclose(km.inertia_, exact[np.arange(n), km.labels_].sum(), rtol=1e-6, atol=1e-300)
    assert (exact[np.arange(n), km.labels_] - exact.min(axis=1) <= distance_slack(X, centres)).all()


def reference_lloyd(X: np.ndarray, init: np.ndarray, max_iter: int, margin: float):
    """Lloyd in plain float64 numpy; None where some row is nearly tied or a cluster empties.

    Rows that are not nearly tied between two centres get the same label whatever the rounding, so the
    estimator must follow exactly the same label sequence.
    """
    X = X.astype(np.float64)
    centres = init.astype(np.float64)
    k = len(centres)
    x_sq = np.einsum("ij,ij->i", X, X)
    n_iter = 0
    for _ in range(max_iter + 1):  # the extra round checks the final labels
        dist = exact_sq_distances(X, centres)
        labels = dist.argmin(axis=1)
        if k > 1:
            two = np.partition(dist, 1, axis=1)
            scale = x_sq + np.einsum("ij,ij->i", centres, centres).max()
            if ((two[:, 1] - two[:, 0]) <= margin * scale).any():
                return None
        if n_iter == max_iter:
            break
        counts = np.bincount(labels, minlength=k)
        if (counts == 0).any():
            return None
        new = np.stack([X[labels == j].mean(axis=0) for j in range(k)])
        n_iter += 1
        unchanged = np.array_equal(new, centres)
        centres = new
        if unchanged:
            break
    return centres, labels, n_iter


MARGIN = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-4}


@st.composite
def lloyd_cases(draw):
    """Blob data, initial centres and max_iter, such that no row is ever nearly tied (see reference)."""
    X, blob = draw(blob_data())
    n = len(X)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):  # one row of every blob: few iterations
        init = np.stack([X[rng.choice(np.flatnonzero(blob == b))] for b in np.unique(blob)])
    else:  # any distinct rows: centres compete inside blobs
        init = X[rng.choice(n, size=draw(st.integers(1, min(8, n))), replace=False)]
    init = init.astype(np.float64)
    max_iter = draw(st.integers(1, 10))
    reference = reference_lloyd(X, init, max_iter, MARGIN[X.dtype])
    assume(reference is not None)
    return X, init, max_iter, reference


@st.composite
def row_chunks(draw, n: int) -> tuple[int, ...]:
    """Chunk sizes that sum to n: random cuts, or every row its own chunk."""
    if draw(st.booleans()) and n <= 120:
        return (1,) * n
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, n - 1)), max_size=12)) if n > 1 else []))
    bounds = [0, *cuts, n]
    return tuple(b - a for a, b in zip(bounds, bounds[1:]))


def same_iterations(a: int, b: int) -> bool:
    """Runs through the same labels stop together, or one iteration apart: with tol=0 a run stops when
    the centres do not change at all, and whether a cluster's mean rounds back to exactly the previous
    centre (say, a cluster of identical rows) depends on the order of the additions."""
    return abs(a - b) <= 1


def centre_rtol(X):
    return 1e-10 if X.dtype == np.float64 else 1e-6


@fuzz(60)
@given(lloyd_cases(), st.data())
def test_lloyd_does_not_depend_on_the_row_chunking(case, data):
    X, init, max_iter, (ref_centres, ref_labels, ref_n_iter) = case
    chunks = data.draw(row_chunks(len(X)), label="chunks")
    in_memory = fit(X, init, max_iter)
    chunked = fit(da.from_array(X, chunks=(chunks, X.shape[1])), init, max_iter)
    # The oracle: the same labels, iterations and (up to rounding) centres as plain numpy Lloyd.
    np.testing.assert_array_equal(in_memory.labels_, ref_labels)
    assert same_iterations(in_memory.n_iter_, ref_n_iter)
    np.testing.assert_allclose(in_memory.cluster_centers_, ref_centres, rtol=centre_rtol(X), atol=1e-9)
    # Chunked as given: the same fit, up to the order of the additions.
    np.testing.assert_array_equal(chunked.labels_, in_memory.labels_)
    assert same_iterations(chunked.n_iter_, in_memory.n_iter_)
    np.testing.assert_allclose(
        chunked.cluster_centers_, in_memory.cluster_centers_, rtol=centre_rtol(X), atol=1e-12
    )
    np.testing.assert_allclose(chunked.inertia_, in_memory.inertia_, rtol=1e-9, atol=1e-12)


@fuzz(60)
@given(lloyd_cases(), st.data())
def test_permuting_rows_permutes_labels_and_keeps_centres(case, data):
    X, init, max_iter, _ = case
    perm = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="perm seed")).permutation(len(X))
    chunks = data.draw(st.one_of(st.none(), row_chunks(len(X))), label="chunks of the permuted rows")
    X_perm = X[perm] if chunks is None else da.from_array(X[perm], chunks=(chunks, X.shape[1]))
    original = fit(X, init, max_iter)
    permuted = fit(X_perm, init, max_iter)
    np.testing.assert_array_equal(permuted.labels_, original.labels_[perm])
    assert same_iterations(permuted.n_iter_, original.n_iter_)
    np.testing.assert_allclose(
        permuted.cluster_centers_, original.cluster_centers_, rtol=centre_rtol(X), atol=1e-12
    )
    np.testing.assert_allclose(permuted.inertia_, original.inertia_, rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------------------------------
# Readers, on real files

INT_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
NUMERIC_DTYPES = [*INT_DTYPES, "float32", "float64", "bool"]
# pandas' nullable extension dtypes (no missing values here), and the numpy dtype of their values
NULLABLE_DTYPES = {
    "Int8": "int8",
    "Int64": "int64",
    "UInt32": "uint32",
    "Float32": "float32",
    "boolean": "bool",
}
FLOAT32_DTYPES = ("float32", "Float32")


def column_values(rng: np.random.Generator, dtype: str, n: int) -> np.ndarray:
    """n values of dtype, with the dtype's edge values (extremes, zeros, subnormals) mixed in."""
    if dtype in NULLABLE_DTYPES:
        return pd.array(column_values(rng, NULLABLE_DTYPES[dtype], n), dtype=dtype)
    if dtype == "bool":
        return rng.integers(0, 2, n).astype(bool)
    if dtype in INT_DTYPES:
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, size=n, dtype=dtype, endpoint=True)
        edges = np.array([info.min, info.max, 0, 1, info.max // 3], dtype=dtype)
    else:
        info = np.finfo(dtype)
        values = (rng.standard_normal(n) * 10.0 ** rng.integers(-6, 7, n)).astype(dtype)
        edges = [0.0, -0.0, info.max, -info.max, info.tiny, info.smallest_subnormal, 0.1]
        edges = np.array(edges, dtype=dtype)
    replace = rng.random(n) < 0.3
    values[replace] = rng.choice(edges, size=int(replace.sum()))
    return values


@st.composite
def schemas(draw, dtypes=NUMERIC_DTYPES):
    """Feature columns and their dtypes, an id column kind, and whether a text column rides along."""
    n_features = draw(st.integers(1, 4))
    features = {f"x{j}": draw(st.sampled_from(dtypes)) for j in range(n_features)}
    id_kind = draw(st.sampled_from([None, "int", "str"]))
    with_text = draw(st.booleans())
    return features, id_kind, with_text


def make_frame(features: dict, id_kind, with_text: bool, n: int, first_row: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(index=range(n))
    if id_kind == "int":
        frame["row_id"] = np.arange(first_row, first_row + n, dtype=np.int64) * 7 - 3
    elif id_kind == "str":
        # typed even without rows: an empty list would make a float64 column, another schema
        frame["row_id"] = pd.array([f"r{i}" for i in range(first_row, first_row + n)], dtype="str")
    for name, dtype in features.items():
        frame[name] = column_values(rng, dtype, n)
    if with_text:
        frame["note"] = pd.array(rng.choice(["a", "bb", "ccc"], n), dtype="str")
    return frame


def expected_features(frame: pd.DataFrame, features: dict) -> tuple[np.ndarray, np.dtype]:
    """The feature columns as one float array: float32 if every one is float32, float64 otherwise."""
    dtype = np.dtype(np.float32 if all(t in FLOAT32_DTYPES for t in features.values()) else np.float64)
    if len(frame) == 0:
        return np.empty((0, len(features)), dtype), dtype
    values = {name: NULLABLE_DTYPES.get(t, t) for name, t in features.items()}  # numpy dtype of the values
    columns = [np.asarray(frame[name].astype(t), dtype=t).astype(dtype) for name, t in values.items()]
    return np.column_stack(columns), dtype


def write_parts(features: dict, id_kind, with_text: bool, sizes, seed: int, write) -> pd.DataFrame:
    """One generated frame per size, each passed to ``write(frame, i)``; returns them concatenated."""
    frames, first = [], 0
    for i, n in enumerate(sizes):
        frame = make_frame(features, id_kind, with_text, n, first, seed + i)
        write(frame, i)
        frames.append(frame)
        first += n
    return pd.concat(frames, ignore_index=True)


def check_table(table: Table, frame: pd.DataFrame, features: dict, id_kind):
    values, dtype = expected_features(frame, features)
    assert isinstance(table, Table)
    assert table.feature_names == tuple(features)
    assert table.X.dtype == dtype
    assert table.X.shape == values.shape
    row_chunks = table.X.chunks[0]
    assert not any(np.isnan(c) for c in row_chunks), "row chunks must be known"
    assert sum(row_chunks) == len(frame)
    assert table.X.numblocks[1] == 1, "all columns in one chunk"
    X, ids = dask.compute(table.X, table.ids)
    assert X.dtype == dtype and X.shape == values.shape
    np.testing.assert_array_equal(X, values)  # exact, zeros' signs aside
    if id_kind is None:
        assert table.ids is None and table.id_name is None
    else:
        assert table.id_name == "row_id"
        assert table.ids.chunks == (row_chunks,)
        assert list(ids) == list(frame["row_id"])


@fuzz(40)
@given(
    schema=schemas(dtypes=[*NUMERIC_DTYPES, *NULLABLE_DTYPES]),
    sizes=st.lists(st.integers(0, 12), min_size=1, max_size=12),
    seed=st.integers(0, 2**32 - 1),
)
@example(schema=({"x0": "float64", "x1": "bool"}, "int", True), sizes=[0, 1, 5, 1, 0], seed=0)
@example(schema=({"x0": "float32"}, None, False), sizes=[0, 3], seed=1)
@example(schema=({"x0": "int64"}, "str", False), sizes=[1] * 11, seed=2)
def test_parquet_directory_reads_exactly_the_data(schema, sizes, seed):
    features, id_kind, with_text = schema
    id_column = None if id_kind is None else "row_id"
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "lake")
        os.mkdir(root)
        # part.10 comes after part.9: the readers take files in natural order
        expected = write_parts(
            features, id_kind, with_text, sizes, seed,
            lambda frame, i: frame.to_parquet(os.path.join(root, f"part.{i}.parquet"), index=False),
        )
        if len(expected) == 0:
            with pytest.raises(ValueError, match="holds no rows"):
                read(root, id_column=id_column)
            return
        table = read(root, id_column=id_column)
        check_table(table, expected, features, id_kind)
        assert table.X.chunks[0] == tuple(n for n in sizes if n), "one chunk per non-empty file"


@fuzz(60)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 60),
    d=st.integers(1, 5),
    chunk_rows=st.integers(1, 60),
    chunk_cols=st.integers(1, 5),
    zarr_format=st.sampled_from([2, 3]),
    dtype=st.sampled_from(NUMERIC_DTYPES),
    pick=st.one_of(st.none(), st.permutations(range(5))),
)
@example(seed=0, n=13, d=3, chunk_rows=1, chunk_cols=1, zarr_format=3, dtype="float32", pick=None)
@example(seed=1, n=1, d=1, chunk_rows=1, chunk_cols=1, zarr_format=2, dtype="bool", pick=None)
def test_zarr_array_reads_exactly_the_data(seed, n, d, chunk_rows, chunk_cols, zarr_format, dtype, pick):
    values = np.column_stack([column_values(np.random.default_rng(seed + j), dtype, n) for j in range(d)])
    chunk_rows, chunk_cols = min(chunk_rows, n), min(chunk_cols, d)
    names = [f"f{j}" for j in range(d)]
    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "x.zarr")
        z = zarr.create_array(
            store,
            shape=values.shape,
            chunks=(chunk_rows, chunk_cols),
            dtype=values.dtype,
            zarr_format=zarr_format,
            # Every chunk stored, even those that hold only the fill value (zeros, False), which zarr
            # leaves out by default: see test_zarr_chunk_of_zeros_left_out_by_zarr_reads_as_zeros.
            config={"write_empty_chunks": True},
        )
        z[:] = values
        columns = None
        if pick is not None:
            z.attrs["feature_names"] = names
            columns = [names[j] for j in pick if j < d][: max(1, len(pick) // 2)]
        table = read(store, columns=columns)
        wanted = list(range(d)) if columns is None else [names.index(c) for c in columns]
        expected_dtype = np.dtype(dtype if dtype in ("float32", "float64") else "float64")
        expected = values[:, wanted].astype(expected_dtype)
        assert table.feature_names == (None if pick is None else tuple(columns))
        assert table.X.dtype == expected_dtype
        row_chunks = table.X.chunks[0]
        assert sum(row_chunks) == n and table.X.numblocks[1] == 1
        assert all(size % chunk_rows == 0 for size in row_chunks[:-1]), "whole store chunks per dask chunk"
        np.testing.assert_array_equal(table.X.compute(), expected)


@fuzz(30)
@given(
    # float32 text reads back as another float64
    schema=schemas(dtypes=[*INT_DTYPES, "float64", "bool"]),
    # Files of a glob after the first may hold a header alone (see test_csv_glob_whose_first_file_...).
    sizes=st.tuples(st.integers(1, 6), st.lists(st.integers(0, 6), max_size=3)).map(lambda t: [t[0], *t[1]]),
    seed=st.integers(0, 2**32 - 1),
)
@example(schema=({"x0": "uint32", "x1": "bool"}, "str", True), sizes=[2, 0, 1], seed=0)
def test_csv_reads_exactly_the_data(schema, sizes, seed):
    features, id_kind, with_text = schema
    id_column = None if id_kind is None else "row_id"
    with tempfile.TemporaryDirectory() as tmp:
        expected = write_parts(
            features, id_kind, with_text, sizes, seed,
            lambda frame, i: frame.to_csv(os.path.join(tmp, f"day{i}.csv"), index=False),
        )
        source = os.path.join(tmp, "day0.csv") if len(sizes) == 1 else os.path.join(tmp, "day*.csv")
        check_table(read(source, id_column=id_column), expected, features, id_kind)


@fuzz(50)
@given(
    schema=schemas(dtypes=[*NUMERIC_DTYPES, *NULLABLE_DTYPES]),
    n=st.integers(1, 40),
    seed=st.integers(0, 2**32 - 1),
    as_dask=st.sampled_from([None, "partitions", "filtered"]),
    npartitions=st.integers(1, 8),
)
@example(
    schema=({"x0": "Float32", "x1": "float32"}, "str", True), n=9, seed=0, as_dask="filtered", npartitions=5
)
def test_dataframes_read_exactly_the_data(schema, n, seed, as_dask, npartitions):
    features, id_kind, with_text = schema
    id_column = None if id_kind is None else "row_id"
    frame = make_frame(features, id_kind, with_text, n, 0, seed)
    source, expected = frame, frame
    if as_dask is not None:
        source = dd.from_pandas(frame, npartitions=npartitions, sort=False)
        if as_dask == "filtered":  # partitions of unknown length, some of them empty
            keep = np.random.default_rng(seed).random(n) < 0.4
            frame["keep"] = keep
            source = dd.from_pandas(frame, npartitions=npartitions, sort=False)
            source = source[source["keep"]].drop(columns="keep")
            expected = frame[keep].drop(columns="keep").reset_index(drop=True)
            if not keep.any():
                with pytest.raises(ValueError, match="holds no rows"):
                    read(source, id_column=id_column)
                return
    check_table(read(source, id_column=id_column), expected, features, id_kind)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_chunk_of_zeros_left_out_by_zarr_reads_as_zeros(zarr_format):
    # zarr does not store a chunk holding only the fill value: an absent chunk is data, not damage.
    values = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 2.0], [3.0, 4.0]])
    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "x.zarr")
        z = zarr.create_array(store, shape=values.shape, chunks=(2, 2), dtype="f8", zarr_format=zarr_format)
        z[:] = values  # zarr's defaults: the first chunk, all zeros, is not written
        assert z.nchunks_initialized == 1
        np.testing.assert_array_equal(read(store).X.compute(), values)


def test_csv_glob_whose_first_file_holds_only_a_header():
    # dask infers the columns from the first file alone; a header-only first file made every column text.
    frame = make_frame({"x0": "float64", "x1": "int64"}, "int", False, 5, 0, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        frame[:0].to_csv(os.path.join(tmp, "day0.csv"), index=False)  # a day without rows
        frame.to_csv(os.path.join(tmp, "day1.csv"), index=False)
        table = read(os.path.join(tmp, "day*.csv"), id_column="row_id")
        check_table(table, frame, {"x0": "float64", "x1": "int64"}, "int")


@pytest.mark.parametrize(
    ("first", "later"),
    [
        (np.array([1], dtype=np.uint64), np.array([2**64 - 1, 2**63], dtype=np.uint64)),
        (np.array([1, 2]), np.array([1.5])),
    ],
    ids=["uint64-wraps", "int-then-float"],
)
def test_csv_glob_whose_later_files_hold_other_numbers(first, later):
    # dask parses every file with the dtypes of the first: uint64 from 2**63 on wrapped to negative
    # numbers, and decimals after whole numbers raised. The reader now reads features as float64.
    with tempfile.TemporaryDirectory() as tmp:
        pd.DataFrame({"x0": first}).to_csv(os.path.join(tmp, "day0.csv"), index=False)
        pd.DataFrame({"x0": later}).to_csv(os.path.join(tmp, "day1.csv"), index=False)
        X = read(os.path.join(tmp, "day*.csv")).X.compute()
        np.testing.assert_array_equal(X[:, 0], np.concatenate([first, later]).astype(np.float64))
