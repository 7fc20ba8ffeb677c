"""The compiled assignment kernel against a small, obviously correct numpy reference (hypothesis-driven).

The reference computes every distance from differences in float64 and takes the first argmin. The kernel
must give the same labels wherever the two nearest centres are not tied to within float64 rounding (and
one of the tied ones where they are), the same exact distances, and the sums, counts and inertia of
those labels.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dask_kmeans import KMeans
from dask_kmeans._kernels import assign, pairwise_sq_distances


def reference(X, C, w):
    """Labels (-1 for rows with NaN, infinity or a square beyond the dtype), exact d^2, sums, counts."""
    X64 = X.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = X64[:, None, :] - np.asarray(C, dtype=np.float64)[None, :, :]
        d2 = (diff**2).sum(axis=2)
    labels = d2.argmin(axis=1) if len(X) else np.zeros(0, dtype=int)
    nearest = d2[np.arange(len(X)), labels]
    bad = ~np.isfinite(X64).all(axis=1) | ~(nearest <= np.finfo(X.dtype).max)
    labels = np.where(bad, -1, labels)
    wv = np.ones(len(X)) if w is None else w
    kept = ~bad
    sums = np.zeros(C.shape)
    np.add.at(sums, labels[kept], wv[kept, None] * X64[kept])
    counts = np.bincount(labels[kept], weights=wv[kept], minlength=len(C))
    inertia = float(wv[kept] @ nearest[kept])
    return labels, d2, nearest, bad, sums, counts, inertia


@st.composite
def cases(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = np.dtype(draw(st.sampled_from([np.float64, np.float32])))
    n = draw(st.sampled_from([1, 2, 3, 17, 300, 1100]))  # one row, a few, several GEMM blocks
    d = draw(st.sampled_from([1, 2, 5, 33]))
    k = draw(st.sampled_from([1, 2, 7, 40]))
    offset = draw(st.sampled_from([0.0, 1e3, 2e4]))  # far from zero: the GEMM expansion cancels
    spread = draw(st.sampled_from([1e-3, 1.0, 3.0]))
    X = (offset + spread * rng.standard_normal((n, d))).astype(dtype)
    C = X[rng.integers(0, n, k)].astype(np.float64)
    if draw(st.booleans()):
        C = C + spread * rng.standard_normal(C.shape)
    if k > 1 and draw(st.booleans()):
        C[rng.integers(1, k)] = C[0]  # duplicate centres: ties go to the lowest index
    weights = draw(st.sampled_from(["none", "positive", "with zeros"]))
    w = None if weights == "none" else rng.uniform(0, 3, n)
    if weights == "with zeros":
        w[rng.random(n) < 0.3] = 0.0
    if draw(st.booleans()):  # NaN, infinity and (float32) overflowing rows
        bad_rows = rng.choice(n, size=max(1, n // 10), replace=False)
        X[bad_rows, rng.integers(0, d, len(bad_rows))] = rng.choice([np.nan, np.inf, -np.inf, 1e30],
                                                                    len(bad_rows))
    return X, C, w


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cases())
def test_kernel_equals_the_reference(case):
    X, C, w = case
    labels, d2, nearest, bad, sums, counts, inertia = reference(X, C, w)
    got = assign(X, C, w, with_sums=True, row_offset=5)
    np.testing.assert_array_equal(got["labels"] < 0, bad)
    assert got["non_finite"]["count"] == bad.sum()
    assert got["non_finite"]["first_row"] == (5 + int(np.argmax(bad)) if bad.any() else -1)
    # Labels: the reference's wherever its nearest is clear by more than float64 rounding; else one of
    # the (nearly) tied centres, the lowest index among exact copies.
    ok = ~bad
    gap_tol = 1e-12 * (nearest + 1e-300)
    tied = d2[ok] <= (nearest[ok] + gap_tol[ok])[:, None]
    assert tied[np.arange(ok.sum()), got["labels"][ok]].all()
    clear = tied.sum(axis=1) == 1
    np.testing.assert_array_equal(got["labels"][ok][clear], labels[ok][clear])
    copies = (C[None, :, :] == C[got["labels"][ok]][:, None, :]).all(axis=2)
    assert (copies.argmax(axis=1) == got["labels"][ok]).all(), "a later copy of a centre won a tie"
    # Distances are exact (from differences), NaN for rows left out.
    np.testing.assert_allclose(got["sq_dist"][ok], nearest[ok], rtol=1e-12, atol=1e-300)
    assert np.isnan(got["sq_dist"][bad]).all()
    # Sums, counts and inertia of those labels (the reference's where they agree).
    if (got["labels"] == labels).all():
        np.testing.assert_allclose(got["sums"], sums, rtol=1e-10, atol=1e-9 * (np.abs(sums).max() + 1))
        np.testing.assert_allclose(got["counts"], counts, rtol=1e-12)
        np.testing.assert_allclose(got["inertia"], inertia, rtol=1e-10, atol=1e-300)
    # The same labels through the float32 sampling path, shifted to a row of the data.
    if ok.any():
        sampled = assign(X, C, float32_from=X[np.argmax(ok)].astype(np.float64))
        np.testing.assert_array_equal(sampled["labels"][ok][clear], labels[ok][clear])


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cases())
def test_pairwise_distances_equal_the_reference(case):
    X, C, _ = case
    _, d2, *_ = reference(X, C, None)
    got = pairwise_sq_distances(X, C)
    # Its argmin is assign's label on every row, near ties included (float64: no rounding of the output).
    labels = assign(X, C)["labels"]
    kept = labels >= 0
    np.testing.assert_array_equal(got[kept].argmin(axis=1), labels[kept])
    finite = np.isfinite(X.astype(np.float64)).all(axis=1) & np.isfinite(d2).all(axis=1)
    np.testing.assert_allclose(got[finite], d2[finite], rtol=1e-9, atol=1e-300)
    assert (~np.isfinite(got[~np.isfinite(X.astype(np.float64)).all(axis=1)])).all(axis=1).all()


def far_from_zero_float32(n=20_000, seed=0):
    # Values about 20,000 with a spread of 3: ||x||^2 - 2 x.c + ||c||^2 cancels in float32 without care.
    rng = np.random.default_rng(seed)
    centres = 20_000 + 3 * rng.standard_normal((6, 4))
    return (centres[rng.integers(0, 6, n)] + rng.standard_normal((n, 4))).astype(np.float32)


@pytest.mark.parametrize("as_dask", [False, True])
def test_transform_predict_score_and_inertia_are_exact_far_from_zero(as_dask):
    X = far_from_zero_float32()
    km = KMeans(6, random_state=0).fit(da.from_array(X, chunks=5000) if as_dask else X)
    data = da.from_array(X, chunks=3000) if as_dask else X
    distances = np.asarray(km.transform(data))
    labels = np.asarray(km.predict(data))
    centres = km.cluster_centers_.astype(np.float64)
    exact = np.sqrt(((X.astype(np.float64)[:, None] - centres[None]) ** 2).sum(-1))
    assert distances.dtype == np.float32
    np.testing.assert_allclose(distances, exact, rtol=1e-5)
    np.testing.assert_array_equal(labels, exact.argmin(axis=1))
    # The argmin of transform is predict's label, but where two distances round to the same float32
    # (argmin then takes the lower index): the label's float32 distance is the row's smallest.
    np.testing.assert_array_equal(distances[np.arange(len(X)), labels], distances.min(axis=1))
    untied = (distances == distances.min(axis=1, keepdims=True)).sum(axis=1) == 1
    assert untied.mean() > 0.99
    np.testing.assert_array_equal(distances.argmin(axis=1)[untied], labels[untied])
    np.testing.assert_array_equal(km.labels_, labels)
    exact_inertia = float((exact[np.arange(len(X)), labels] ** 2).sum())
    np.testing.assert_allclose(km.inertia_, exact_inertia, rtol=1e-9)
    np.testing.assert_allclose(-km.score(data), exact_inertia, rtol=1e-9)
    got_labels, got_distances = km.predict_with_distance(data)
    np.testing.assert_array_equal(np.asarray(got_labels), labels)
    np.testing.assert_allclose(np.asarray(got_distances), exact[np.arange(len(X)), labels], rtol=1e-9)


def test_kernel_compiles_without_a_writable_cache(tmp_path):
    # A read-only install without a home folder: numba finds no place for its cache and refuses
    # cache=True at import. The package must still import and fit (compiling in the process).
    import os
    import shutil
    import subprocess
    import sys

    import dask_kmeans

    copy = tmp_path / "site"
    shutil.copytree(os.path.dirname(dask_kmeans.__file__), copy / "dask_kmeans",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "dask_kmeans" / "__pycache__").write_text("not a folder")  # numba's place beside the code
    probe_code = "from numba import njit\n@njit(cache=True)\ndef f(x):\n    return x\n"
    (copy / "dask_kmeans" / "_cache_probe.py").write_text(probe_code)
    nowhere = os.devnull + "/numba"  # below a device file: no folder can be made there, even by root
    env = {**os.environ, "PYTHONPATH": str(copy), "NUMBA_CACHE_DIR": nowhere, "HOME": os.devnull}
    # The setting is what it should be: a plain cached function cannot be defined there.
    probe = subprocess.run([sys.executable, "-c", "import dask_kmeans._cache_probe"], env=env,
                           capture_output=True, text=True, cwd=tmp_path)
    assert probe.returncode != 0 and "no locator available" in probe.stderr
    script = ("import numpy as np, dask_kmeans\n"
              "X = np.random.default_rng(0).standard_normal((500, 4))\n"
              "print(dask_kmeans.__file__, dask_kmeans.KMeans(3, random_state=0).fit(X).inertia_)\n")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(str(copy))
    assert float(out.stdout.split()[-1]) > 0


@pytest.mark.parametrize("float32_gemm_from", [10**9, 1])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [3, 40])
def test_every_gemm_layout_and_precision_equals_the_reference(monkeypatch, float32_gemm_from, dtype, k):
    # The defaults reach only some combinations (float64 rows take the float32 GEMM from 32 centres):
    # move the thresholds so that each (layout, precision) of the one kernel runs against the reference.
    import dask_kmeans._kernels as kernels

    monkeypatch.setattr(kernels, "_FLOAT32_GEMM_FROM", float32_gemm_from)
    rng = np.random.default_rng(k)
    X = (50 + 3 * rng.standard_normal((1500, 9))).astype(dtype)
    C = X[rng.choice(len(X), k, replace=False)].astype(np.float64)
    C[-1] = C[0]  # a duplicate centre: ties to the lowest index
    w = rng.uniform(0, 2, len(X))
    labels, d2, nearest, _, sums, counts, inertia = reference(X, C, w)
    got = assign(X, C, w, with_sums=True)
    np.testing.assert_array_equal(got["labels"], labels)
    np.testing.assert_allclose(got["sq_dist"], nearest, rtol=1e-12)
    np.testing.assert_allclose(got["sums"], sums, rtol=1e-10)
    np.testing.assert_allclose(got["counts"], counts, rtol=1e-12)
    np.testing.assert_allclose(got["inertia"], inertia, rtol=1e-10)
