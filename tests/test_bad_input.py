"""Bad input never gets a wrong answer: non-finite rows, overflow, and the policies for them."""

import dask.array as da
import numpy as np
import pytest

from dask_kmeans import KMeans, NonFiniteDataError

from .conftest import CountingArray, make_blobs, pick_rows

N, D, K, CHUNK = 6000, 3, 4, 1000


@pytest.fixture
def blobs():
    return make_blobs(N, D, K, std=1.0, seed=91)[0]


def _with_bad_rows(X, rows=(1234, 1240, 5000), value=np.nan):
    X = X.copy()
    X[list(rows), 1] = value
    return X


@pytest.mark.parametrize("init", ["k-means||", "k-means++", "random", "array"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_raise_names_the_rows_at_the_first_pass(blobs, init, value):
    X = _with_bad_rows(blobs, value=value)
    source = CountingArray(X)
    start = pick_rows(blobs, K) if init == "array" else init
    with pytest.raises(NonFiniteDataError, match=r"in 3 row\(s\); the first is row 1,234, in chunk 1 of 6"):
        KMeans(K, init=start, random_state=0).fit(da.from_array(source, chunks=(CHUNK, D)))
    # Detected by the first pass over the data, not by an extra one.
    assert max(source.reads.values()) <= 2


def test_raise_on_numpy_input_with_in_memory_kmeans_plusplus(blobs):
    with pytest.raises(NonFiniteDataError, match=r"in 3 row\(s\); the first is row 1,234"):
        KMeans(K, init="k-means++", random_state=0).fit(_with_bad_rows(blobs))


@pytest.mark.parametrize("value", [np.nan, np.inf, 1e200])
def test_omit_equals_fitting_without_the_rows(blobs, value):
    bad = [1234, 1240, 5000]
    X = _with_bad_rows(blobs, bad, value)
    keep = np.setdiff1d(np.arange(N), bad)
    C0 = pick_rows(blobs[keep], K)
    omitted = KMeans(K, init=C0, tol=0, nan_policy="omit").fit(da.from_array(X, chunks=(CHUNK, D)))
    clean = KMeans(K, init=C0, tol=0).fit(blobs[keep])
    assert omitted.n_omitted_ == 3 and clean.n_omitted_ == 0
    np.testing.assert_allclose(omitted.cluster_centers_, clean.cluster_centers_, rtol=1e-12)
    np.testing.assert_allclose(omitted.inertia_, clean.inertia_, rtol=1e-12)
    np.testing.assert_array_equal(omitted.labels_[bad], -1)
    np.testing.assert_array_equal(omitted.labels_[keep], clean.labels_)
    # The model keeps the policy: predict labels the bad rows -1, transform gives them NaN distances.
    np.testing.assert_array_equal(omitted.predict(X), omitted.labels_)
    distances = omitted.transform(X)
    assert np.isnan(distances[bad]).all() and np.isfinite(distances[keep]).all()
    np.testing.assert_allclose(omitted.score(X), -omitted.inertia_, rtol=1e-12)


@pytest.mark.parametrize("init", ["k-means||", "k-means++", "random"])
def test_omit_never_starts_from_a_bad_row(blobs, init):
    X = blobs.copy()
    X[::2, 0] = np.nan  # half the rows
    km = KMeans(K, init=init, random_state=3, nan_policy="omit").fit(da.from_array(X, chunks=(CHUNK, D)))
    assert np.isfinite(km.cluster_centers_).all()
    assert km.n_omitted_ == N // 2
    assert (km.labels_[::2] == -1).all() and (km.labels_[1::2] >= 0).all()
    # The centres are those of the clean rows' clusters: close to a fit on the clean rows alone.
    clean = KMeans(K, random_state=3).fit(blobs[1::2])
    assert km.inertia_ <= 1.01 * clean.inertia_


def test_mostly_non_finite_data_gets_a_clear_error(blobs):
    X = np.full_like(blobs, np.nan)
    X[:2] = blobs[:2]
    with pytest.raises(NonFiniteDataError, match="mostly non-finite"):
        KMeans(K, random_state=0, nan_policy="omit").fit(da.from_array(X, chunks=(CHUNK, D)))


def test_float32_overflow_is_detected_not_turned_into_inf_centres(blobs):
    # 1e20 squared is 1e40, beyond float32's 3.4e38: the distances overflow even though the values fit.
    X = blobs.astype(np.float32)
    X[42, 0] = 1e20
    with pytest.raises(NonFiniteDataError, match="overflow"):
        KMeans(K, random_state=0).fit(X)
    km = KMeans(K, random_state=0, nan_policy="omit").fit(X)
    assert np.isfinite(km.cluster_centers_).all() and km.labels_[42] == -1


@pytest.mark.parametrize("value", [np.nan, np.inf, 1e20])
def test_predict_transform_and_distances_leave_out_the_same_rows(blobs, value):
    # float32 1e20 is finite but its square overflows: predict leaves it out, and so must transform.
    km = KMeans(K, random_state=0, nan_policy="omit").fit(blobs.astype(np.float32))
    X = blobs.astype(np.float32)
    X[[7, 300], 1] = value
    labels, distances = km.predict_with_distance(X)
    assert np.flatnonzero(km.predict(X) < 0).tolist() == np.flatnonzero(labels < 0).tolist() == [7, 300]
    assert np.isnan(distances[[7, 300]]).all()
    assert np.flatnonzero(np.isnan(km.transform(X)).all(axis=1)).tolist() == [7, 300]
    strict = KMeans(K, random_state=0).fit(blobs.astype(np.float32))
    for method in (strict.predict, strict.transform, strict.predict_with_distance):
        with pytest.raises(NonFiniteDataError, match=r"in 2 row\(s\)"):
            method(X)


def test_predict_refuses_non_finite_rows_under_raise(blobs):
    km = KMeans(K, random_state=0).fit(blobs)
    lazy = km.predict(da.from_array(_with_bad_rows(blobs), chunks=(CHUNK, D)))
    with pytest.raises(NonFiniteDataError, match=r"in 2 row\(s\)"):  # rows 1234 and 1240 share a chunk
        lazy.blocks[1].compute()


def test_unknown_nan_policy_lists_the_valid_ones(blobs):
    with pytest.raises(ValueError, match="'nan_policy' parameter must be one of 'raise', 'omit'"):
        KMeans(K, nan_policy="ignore").fit(blobs)


def test_more_clusters_than_distinct_points_warns_with_valid_centres():
    from dask_kmeans import ConvergenceWarning

    X = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0], [9.0, 0.0]]), 20, axis=0)
    with pytest.warns(ConvergenceWarning, match=r"clusters \(3\) found smaller than n_clusters \(5\)"):
        km = KMeans(5, random_state=0).fit(X)
    assert np.isfinite(km.cluster_centers_).all()
    assert km.inertia_ == 0.0


@pytest.mark.parametrize(
    ("X", "error", "message"),
    [
        (np.zeros((2, 3, 4)), ValueError, "Expected a 2-D X of shape \\(n_samples, n_features\\), got 3-D"),
        (np.zeros(5), ValueError, "X.reshape\\(-1, 1\\)"),
        (np.zeros((0, 3)), ValueError, "0 sample\\(s\\)"),
        (np.array([["a", "b"], ["c", "d"]]), ValueError, "K-means needs real numbers"),
    ],
)
def test_shapes_and_dtypes_refused(X, error, message):
    with pytest.raises(error, match=message):
        KMeans(1).fit(X)


def test_boolean_input_becomes_float64():
    X = np.array([[True, False], [True, False], [False, True], [False, True]])
    km = KMeans(2, init=np.array([[1.0, 0.0], [0.0, 1.0]])).fit(X)
    assert km.cluster_centers_.dtype == np.float64 and km.inertia_ == 0.0


def test_dask_array_with_unknown_chunks_says_what_to_do(blobs):
    X = da.from_array(blobs, chunks=(CHUNK, D))
    filtered = X[X[:, 0] > -100]  # a boolean mask leaves the chunk sizes unknown
    with pytest.raises(ValueError, match="unknown chunk sizes.*compute_chunk_sizes"):
        KMeans(K).fit(filtered)


@pytest.mark.parametrize("as_dask", [False, True])
@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (lambda n: -np.ones(n), "negative values"),
        (lambda n: np.zeros(n), "sums to zero"),
        (lambda n: np.where(np.arange(n) == 7, np.nan, 1.0), "NaN or infinity"),
        (lambda n: np.ones(n + 1), "expected \\(6000,\\)"),
    ],
)
def test_bad_sample_weights(blobs, as_dask, weights, message):
    w = weights(N)
    w = da.from_array(w, chunks=700) if as_dask else w
    with pytest.raises(ValueError, match=message):
        KMeans(K, random_state=0).fit(blobs, sample_weight=w)


def test_init_array_with_nan_is_refused(blobs):
    init = pick_rows(blobs, K)
    init[1, 1] = np.nan
    with pytest.raises(ValueError, match="init array contains NaN or infinity"):
        KMeans(K, init=init).fit(blobs)
