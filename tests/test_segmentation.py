"""Customer segmentation end to end: scaling, choosing k, profiles, plots, the demo and its notebook.

The planted-segment data come from the demo's own generator (``examples/customer_segmentation.py``), so
the test checks what the README promises.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import pytest

from dask_kmeans import KMeans, NonFiniteDataError, StandardScaler, choose_k, describe_segment, profile
from dask_kmeans.choose_k import elbow, silhouette_scores
from dask_kmeans.io import read
from dask_kmeans.preprocessing import HeavyTailWarning

from .conftest import CountingArray, make_blobs

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _load_demo():
    path = EXAMPLES / "customer_segmentation.py"
    spec = importlib.util.spec_from_file_location("customer_segmentation", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo = _load_demo()


def _spend(n=20_000, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return np.exp(rng.normal(4.0, 1.2, size=(n, 5))).astype(dtype)


def _chunk_reads(counting: CountingArray) -> set[int]:
    return set(counting.reads.values())


# ----------------------------------------------------------------------------------------------------
# Preprocessing


@pytest.mark.parametrize("log1p", [False, True])
def test_scaler_statistics_equal_numpy(log1p):
    X = _spend()
    scaler = StandardScaler(log1p=log1p).fit(da.from_array(X, chunks=3000))
    Z = np.log1p(X) if log1p else X
    np.testing.assert_allclose(scaler.mean_, Z.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(scaler.var_, Z.var(axis=0), rtol=1e-10)
    np.testing.assert_allclose(scaler.scale_, Z.std(axis=0), rtol=1e-10)
    assert scaler.n_samples_seen_ == len(X)
    expected = (Z - Z.mean(axis=0)) / Z.std(axis=0)
    np.testing.assert_allclose(scaler.transform(X), expected, rtol=1e-9, atol=1e-12)


def test_scaler_equals_scikit_learn_and_works_in_a_pipeline():
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler as SkScaler

    X = _spend(5000)
    np.testing.assert_allclose(StandardScaler().fit_transform(X), SkScaler().fit_transform(X), rtol=1e-9)
    C0 = StandardScaler(log1p=True).fit_transform(X)[:4]
    pipe = make_pipeline(StandardScaler(log1p=True), KMeans(4, init=C0)).fit(X)
    direct = KMeans(4, init=C0).fit(StandardScaler(log1p=True).fit_transform(X))
    np.testing.assert_array_equal(pipe.predict(X), direct.labels_)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scaler_round_trip_keeps_dtype(dtype):
    X = _spend(8000, seed=1, dtype=dtype)
    scaler = StandardScaler(log1p=True).fit(X)
    Xd = da.from_array(X, chunks=2000)
    scaled = scaler.transform(Xd)
    assert scaled.dtype == dtype and isinstance(scaled, da.Array)
    back = scaler.inverse_transform(scaled).compute()
    assert back.dtype == dtype
    np.testing.assert_allclose(back, X, rtol=1e-12 if dtype == np.float64 else 2e-5)


def test_scaler_fits_in_one_pass():
    counting = CountingArray(_spend(12_000))
    StandardScaler(log1p=True).fit(da.from_array(counting, chunks=(2000, 5)))
    assert len(counting.reads) == 6 and _chunk_reads(counting) == {1}


def test_scaler_refuses_values_log1p_cannot_take_and_skips_nan_rows():
    X = pd.DataFrame(_spend(100), columns=list("abcde"))
    X.loc[7, "c"] = -3.0
    with pytest.raises(ValueError, match=r"log1p needs values greater than -1, but c \(min -3\)"):
        StandardScaler(log1p=True).fit(X)
    Y = _spend(100)
    Y[5, 1] = np.nan
    scaler = StandardScaler().fit(Y)
    np.testing.assert_allclose(scaler.mean_, np.delete(Y, 5, axis=0).mean(axis=0))
    assert np.isnan(scaler.transform(Y)[5]).any()
    with pytest.raises(NonFiniteDataError, match="nothing to scale"):
        StandardScaler().fit(np.full((3, 2), np.nan))


def test_kmeans_with_preprocessing_equals_kmeans_on_scaled_data(tmp_path):
    X = _spend(9000, seed=2)
    scaled = StandardScaler(log1p=True).fit_transform(X)
    C0 = scaled[:5]
    model = KMeans(5, init=C0, preprocessing=StandardScaler(log1p=True)).fit(da.from_array(X, chunks=2000))
    plain = KMeans(5, init=C0).fit(scaled)
    np.testing.assert_allclose(model.cluster_centers_, plain.cluster_centers_, rtol=1e-9)
    np.testing.assert_array_equal(model.labels_, plain.labels_)
    np.testing.assert_array_equal(model.predict(X), plain.labels_)
    np.testing.assert_allclose(model.score(X), plain.score(scaled), rtol=1e-9)
    loaded = KMeans.load(model.save(tmp_path / "model.json"))
    assert repr(loaded.preprocessing) == "StandardScaler(log1p=True)"
    np.testing.assert_array_equal(loaded.preprocessing_.mean_, model.preprocessing_.mean_)
    np.testing.assert_array_equal(loaded.predict(X), plain.labels_)


# ----------------------------------------------------------------------------------------------------
# Choosing k


def test_silhouette_equals_scikit_learn():
    from sklearn.metrics import silhouette_score

    X, _ = make_blobs(700, 3, 4, std=2.0, seed=3)
    rng = np.random.default_rng(0)
    labelings = [rng.integers(0, k, size=len(X)) for k in (2, 3, 5)]
    labelings.append(np.where(np.arange(len(X)) == 0, 2, rng.integers(0, 2, size=len(X))))  # a singleton
    ours = silhouette_scores(X, labelings, block_rows=128)
    for labels, score in zip(labelings, ours):
        assert score == pytest.approx(silhouette_score(X, labels), rel=1e-9, abs=1e-12)


def test_elbow_finds_the_bend():
    assert elbow([2, 3, 4, 5, 6, 7], [100, 60, 20, 18, 16, 15]) == 4


def test_choose_k_finds_the_planted_k_in_shared_passes():
    from sklearn.cluster import KMeans as SkKMeans

    X, _ = make_blobs(12_000, 4, 4, std=1.0, seed=5)
    counting = CountingArray(X)
    X_dask = da.from_array(counting, chunks=(2000, 4))
    selection = choose_k(X_dask, range(2, 8), random_state=0, persist=False)
    assert selection.suggested_k == 4
    assert selection.reason.startswith("k=4: the inertia curve bends most there and it has the highest")
    assert list(selection.table.index) == [2, 3, 4, 5, 6, 7]
    # Every pass reads every chunk once: the sample, one per iteration of the slowest k, the inertias.
    assert selection.n_passes == 1 + selection.table["n_iter"].max() + 1
    assert _chunk_reads(counting) == {selection.n_passes}
    assert selection.table["inertia"].is_monotonic_decreasing
    for k, centers in selection.centers.items():
        # Each k is scikit-learn's Lloyd from the same start: same centres, iterations and inertia.
        oracle = SkKMeans(k, init=selection.initial_centers[k], n_init=1, tol=1e-4).fit(X)
        np.testing.assert_allclose(centers, oracle.cluster_centers_, rtol=1e-7, atol=1e-9)
        assert selection.table.loc[k, "n_iter"] == oracle.n_iter_
        assert selection.table.loc[k, "inertia"] == pytest.approx(-oracle.score(X), rel=1e-9)
    model = selection.model(4).fit(X)
    assert model.n_iter_ <= 2


def test_choose_k_refuses_bad_ranges():
    X, _ = make_blobs(200, 2, 2)
    with pytest.raises(ValueError, match="at least 2"):
        choose_k(X, [1, 2])
    with pytest.raises(ValueError, match="n_samples=200 should be >= n_clusters=300"):
        choose_k(X, [2, 300])


# ----------------------------------------------------------------------------------------------------
# Profiles


def test_describe_segment():
    # Ratios of typical spend to the typical customer's: high from 3, low up to 0.5.
    names = ["electronics", "fashion", "home"]
    assert describe_segment([4.0, 0.9, 0.8], names) == "high spenders on electronics"
    assert describe_segment([3.0, 5.0, 0.8], names) == "high spenders on fashion and electronics"
    assert describe_segment([4.0, 5.0, 3.5], names) == "high spenders across all categories"
    assert describe_segment([0.3, 0.2, 0.5], names) == "low spenders"
    assert describe_segment([1.1, 0.9, 2.5], names) == "moderate spenders across all categories"
    assert describe_segment([1.0, 0.3, 1.1], names) == "moderate spenders, little on fashion"


@pytest.mark.parametrize("with_sample", [True, False])
def test_profile_equals_a_pandas_groupby(with_sample):
    X = _spend(10_000, seed=4)
    frame = pd.DataFrame(X, columns=[f"c{j}" for j in range(5)])
    model = KMeans(4, random_state=0, preprocessing=StandardScaler(log1p=True)).fit(frame)
    counting = CountingArray(X)
    table = read(pd.DataFrame(X, columns=frame.columns))  # names known
    table = type(table)(da.from_array(counting, chunks=(2500, 5)), table.feature_names)
    prof = profile(model, table, median_sample_size=len(X) if with_sample else 0)
    assert _chunk_reads(counting) == {1}  # one pass
    groups = frame.groupby(model.labels_)
    np.testing.assert_array_equal(prof["size"], groups.size())
    np.testing.assert_allclose(prof["share"], groups.size() / len(X))
    for name in frame.columns:
        np.testing.assert_allclose(prof[f"mean_{name}"], groups[name].mean(), rtol=1e-12)
        ratio = groups[name].mean() / frame[name].mean()
        np.testing.assert_allclose(prof[f"ratio_{name}"], ratio, rtol=1e-12)
        typical = np.expm1(np.log1p(frame[name]).groupby(model.labels_).mean())
        np.testing.assert_allclose(prof[f"typical_{name}"], typical, rtol=1e-12)
        overall_typical = np.expm1(np.log1p(frame[name]).mean())
        np.testing.assert_allclose(prof[f"relative_{name}"], typical / overall_typical, rtol=1e-12)
        if with_sample:
            np.testing.assert_allclose(prof[f"median_{name}"], groups[name].median(), rtol=1e-12)
        else:
            assert f"median_{name}" not in prof
    assert prof.index.name == "segment" and prof.attrs["n_omitted"] == 0


def test_profile_leaves_out_rows_with_nan_under_omit():
    X = _spend(3000, seed=6)
    X[[10, 20]] = np.nan
    model = KMeans(3, random_state=0, nan_policy="omit").fit(X)
    with pytest.warns(HeavyTailWarning, match="--scale log1p"):  # unscaled log-normal spend
        prof = profile(model, X)
    assert prof.attrs["n_omitted"] == 2 and prof["size"].sum() == 2998


# ----------------------------------------------------------------------------------------------------
# Planted segments, the demo, the command line, the notebook


@pytest.fixture(scope="module")
def small_lake(tmp_path_factory):
    n = 60_000
    root = str(tmp_path_factory.mktemp("lake") / "customers")
    path = demo.write_lake(root, n, seed=3, partition_rows=15_000)
    return path, demo.planted_segments(n, seed=3, partition_rows=15_000)


def _matched(planted: np.ndarray, labels: np.ndarray) -> dict[str, int]:
    """For each planted segment's name, the found segment holding most of its customers."""
    names = list(demo.SEGMENTS)
    return {names[s]: int(np.bincount(labels[planted == s]).argmax()) for s in range(len(names))}


def test_planted_segments_are_found_and_described(small_lake):
    from sklearn.metrics import adjusted_rand_score

    path, planted = small_lake
    table = read(path, id_column="customer_id")
    assert table.X.numblocks[0] == 4 and table.feature_names == tuple(demo.CATEGORIES)
    selection = choose_k(table, range(2, 9), preprocessing=StandardScaler(log1p=True), random_state=0)
    assert selection.suggested_k == len(demo.SEGMENTS), selection.table
    model = selection.model(random_state=0).fit(table)
    assert adjusted_rand_score(planted, model.labels_) >= 0.95
    prof = profile(model, table)
    matched = _matched(planted, model.labels_)
    described = {name: prof.loc[segment, "description"] for name, segment in matched.items()}
    assert described["electronics enthusiasts"].startswith("high spenders on electronics"), described
    assert described["low spenders"] == "low spenders", described
    assert described["all-round moderate spenders"] == "moderate spenders across all categories", described
    fashion = described["fashion and beauty fans"]
    assert "fashion" in fashion and "beauty" in fashion, described
    assert described["home makers"] == "high spenders on home and grocery", described


def _assert_png(path) -> None:
    import matplotlib.image

    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", path
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 0.01  # not a blank canvas


def test_demo_runs_end_to_end(tmp_path):
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "customer_segmentation.py"), "--customers", "40000", "--out",
         str(tmp_path), "--k-range", "2:7"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Suggested k=5" in out and "high spenders on electronics" in out and "low spenders" in out
    labels = pd.read_parquet(tmp_path / "segments.parquet")
    assert list(labels.columns) == ["customer_id", "label"] and len(labels) == 40_000
    lake = pd.read_parquet(tmp_path / "customers")
    np.testing.assert_array_equal(np.sort(labels["customer_id"]), np.sort(lake["customer_id"]))
    model = KMeans.load(tmp_path / "model.json")
    assert repr(model.preprocessing_) == "StandardScaler(log1p=True)"
    pngs = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert pngs == ["elbow.png", "profile_heatmap.png", "segment_sizes.png", "silhouette.png"]
    for name in pngs:
        _assert_png(tmp_path / "plots" / name)


def run_cli(*args) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "dask_kmeans", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_cli_choose_k_fit_and_profile(small_lake, tmp_path):
    path, _ = small_lake
    chose = run_cli("choose-k", path, "--k-range", "3:6", "--scale", "log1p", "--id-column", "customer_id",
                    "--seed", 0, "--json", "--plots", tmp_path / "plots", "--quiet")
    assert chose.returncode == 0, chose.stderr
    report = json.loads(chose.stdout)
    assert report["suggested_k"] == 5 and [row["k"] for row in report["table"]] == [3, 4, 5, 6]
    # The scaler, the sample, one pass per iteration of the slowest k, the inertias.
    assert report["n_passes"] == 1 + 1 + max(row["n_iter"] for row in report["table"]) + 1
    fit = run_cli("fit", path, "-k", report["suggested_k"], "--scale", "log1p", "--id-column", "customer_id",
                  "--model-out", tmp_path / "model.json", "--seed", 0, "--quiet")
    assert fit.returncode == 0, fit.stderr
    prof = run_cli("profile", tmp_path / "model.json", path, "--id-column", "customer_id", "--output",
                   tmp_path / "profile.csv", "--plots", tmp_path / "plots", "--quiet")
    assert prof.returncode == 0, prof.stderr
    assert "high spenders on electronics" in prof.stdout and "low spenders" in prof.stdout
    written = pd.read_csv(tmp_path / "profile.csv", index_col="segment")
    model = KMeans.load(tmp_path / "model.json")
    expected = profile(model, read(path, id_column="customer_id"))
    pd.testing.assert_frame_equal(written, expected, check_dtype=False, rtol=1e-9)
    for name in ("elbow.png", "silhouette.png", "profile_heatmap.png", "segment_sizes.png"):
        _assert_png(tmp_path / "plots" / name)
    predicted = run_cli("predict", tmp_path / "model.json", path, "--id-column", "customer_id", "--distances",
                        "--labels-out", tmp_path / "labels.parquet", "--quiet")
    assert predicted.returncode == 0, predicted.stderr
    written_labels = pd.read_parquet(tmp_path / "labels.parquet")
    table = read(path, id_column="customer_id")
    np.testing.assert_array_equal(written_labels["label"], model.predict(table).compute())
    # Distances in the scaled space the model clusters in, as transform gives them.
    np.testing.assert_allclose(written_labels["distance"], model.transform(table).min(axis=1).compute(),
                               rtol=1e-6, atol=1e-9)
    again = run_cli("profile", tmp_path / "model.json", path, "--output", tmp_path / "profile.csv", "--quiet")
    assert again.returncode == 1 and "already exists" in again.stderr


def test_a_model_file_with_a_broken_scaler_is_refused(tmp_path):
    X = _spend(2000, seed=7)
    model = KMeans(3, random_state=0, preprocessing=StandardScaler(log1p=True)).fit(X)
    path = model.save(tmp_path / "m.json")
    document = json.loads(Path(path).read_text())
    document["preprocessing"]["mean"] = document["preprocessing"]["mean"][:-1]
    Path(path).write_text(json.dumps(document))
    with pytest.raises(ValueError, match="preprocessing"):
        KMeans.load(path)


def test_figures_show_inline_as_png():
    from dask_kmeans.plots import plot_elbow, plot_segment_sizes

    X, _ = make_blobs(3000, 3, 3, seed=8)
    selection = choose_k(X, range(2, 5), random_state=0)
    model = selection.model(random_state=0).fit(X)
    for figure in (plot_elbow(selection), plot_segment_sizes(profile(model, X))):
        assert figure._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"


def test_profile_of_a_pipeline_equals_profile_of_kmeans_with_preprocessing():
    from sklearn.pipeline import make_pipeline

    X = _spend(4000, seed=9)
    C0 = StandardScaler(log1p=True).fit_transform(X)[:3]
    pipe = make_pipeline(StandardScaler(log1p=True), KMeans(3, init=C0)).fit(X)
    model = KMeans(3, init=C0, preprocessing=StandardScaler(log1p=True)).fit(X)
    pd.testing.assert_frame_equal(profile(pipe, X), profile(model, X))
