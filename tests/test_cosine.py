"""metric="cosine": spherical k-means against a plain numpy one from the same initial centres."""

import dask.array as da
import numpy as np
import pytest

from dask_kmeans import KMeans
from dask_kmeans._validation import NonFiniteDataError


def _embeddings(n=3000, d=24, topics=6, seed=0, dtype=np.float64):
    """Rows around a few planted directions, of all sorts of norms (scaling a row changes nothing)."""
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((topics, d))
    X = directions[rng.integers(topics, size=n)] + 0.6 * rng.standard_normal((n, d))
    return (X * rng.uniform(0.01, 100, (n, 1))).astype(dtype)


def numpy_spherical_kmeans(X, init, w, max_iter):
    """Textbook spherical k-means: unit rows, label by largest cosine, centre = unit weighted sum."""
    U = X.astype(np.float64) / np.linalg.norm(X.astype(np.float64), axis=1, keepdims=True)
    C = init / np.linalg.norm(init, axis=1, keepdims=True)
    for _ in range(max_iter):
        labels = (U @ C.T).argmax(1)
        sums = np.zeros_like(C)
        np.add.at(sums, labels, w[:, None] * U)
        new = sums / np.linalg.norm(sums, axis=1, keepdims=True)
        if np.array_equal(new, C):
            break
        C = new
    labels = (U @ C.T).argmax(1)
    return C, labels, float(w @ (1 - (U * C[labels]).sum(1)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("as_dask", [False, True])
def test_matches_numpy_spherical_kmeans(dtype, weighted, as_dask):
    X = _embeddings(dtype=dtype)
    w = np.random.default_rng(1).uniform(0.5, 2, len(X)) if weighted else np.ones(len(X))
    init = X[np.random.default_rng(2).choice(len(X), 6, replace=False)].astype(np.float64)
    C, labels, inertia = numpy_spherical_kmeans(X, init, w, 50)
    data = da.from_array(X, chunks=(700, X.shape[1])) if as_dask else X
    km = KMeans(6, init=init, max_iter=50, tol=0, metric="cosine")
    km.fit(data, sample_weight=w if weighted else None)
    np.testing.assert_array_equal(km.labels_, labels)
    np.testing.assert_allclose(np.linalg.norm(km.cluster_centers_, axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(km.cluster_centers_, C, rtol=1e-5 if dtype == np.float32 else 1e-9, atol=1e-7)
    assert km.inertia_ == pytest.approx(inertia, rel=1e-5 if dtype == np.float32 else 1e-9)
    # predict, transform and score speak cosine too
    np.testing.assert_array_equal(km.predict(X), labels)
    distances = km.transform(X)
    np.testing.assert_allclose(distances.argmin(1), labels)
    U = X / np.linalg.norm(X.astype(np.float64), axis=1, keepdims=True)
    np.testing.assert_allclose(distances, 1 - U @ km.cluster_centers_.astype(np.float64).T, atol=1e-5)
    assert -km.score(X, sample_weight=w) == pytest.approx(km.inertia_, rel=1e-6)


def test_scaling_rows_changes_nothing():
    X = _embeddings(seed=3)
    scale = np.random.default_rng(4).uniform(1e-3, 1e3, (len(X), 1))
    a = KMeans(5, metric="cosine", random_state=0).fit(X)
    b = KMeans(5, metric="cosine", random_state=0).fit(X * scale)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, rtol=1e-12, atol=1e-14)


def test_every_init_samples_by_cosine_and_finds_the_topics():
    X = _embeddings(n=6000, topics=5, seed=5)
    for init in ("k-means||", "k-means++", "random"):
        km = KMeans(5, init=init, metric="cosine", random_state=0, n_init=3).fit(
            da.from_array(X, chunks=(1500, X.shape[1])))
        assert sorted(np.bincount(km.labels_)) == sorted(np.bincount(km.predict(X)))
        np.testing.assert_allclose(np.linalg.norm(km.cluster_centers_, axis=1), 1, atol=1e-12)


def test_rows_of_zeros_are_refused_or_left_out():
    X = _embeddings(n=1000, seed=6)
    X[[17, 400]] = 0.0
    with pytest.raises(NonFiniteDataError, match=r"rows of zeros.* in 2 row\(s\); the first is row 17"):
        KMeans(4, metric="cosine", random_state=0).fit(X)
    km = KMeans(4, metric="cosine", random_state=0, nan_policy="omit").fit(X)
    assert km.n_omitted_ == 2 and (km.labels_[[17, 400]] == -1).all()
    assert np.isnan(km.transform(X[[17]])).all()


def test_model_file_round_trip(tmp_path):
    X = _embeddings(n=800, seed=7)
    km = KMeans(4, metric="cosine", random_state=0).fit(X)
    km.save(tmp_path / "model.json")
    loaded = KMeans.load(tmp_path / "model.json")
    assert loaded.metric == "cosine"
    np.testing.assert_array_equal(loaded.predict(X), km.labels_)
    np.testing.assert_allclose(loaded.transform(X), km.transform(X))


def test_cli_fit_and_predict_with_metric_cosine_on_an_embedding_lake(tmp_path):
    import subprocess
    import sys

    import pyarrow as pa
    import pyarrow.parquet as pq

    X = _embeddings(n=2000, d=16, topics=4, seed=8).astype(np.float32)
    column = pa.array(list(X), type=pa.list_(pa.float32(), 16))
    pq.write_table(pa.table({"item_id": np.arange(len(X)), "embedding": column}), tmp_path / "items.parquet")

    def run(*args):
        result = subprocess.run([sys.executable, "-m", "dask_kmeans", *map(str, args)], capture_output=True,
                                text=True, timeout=180)
        assert result.returncode == 0, result.stderr
        return result

    run("fit", tmp_path / "items.parquet", "-k", 4, "--metric", "cosine", "--columns", "embedding",
        "--id-column", "item_id", "--seed", 0, "--model-out", tmp_path / "model.json", "--quiet")
    # predict reads the model's features again: the list column its names emb[0] ... emb[15] came from
    run("predict", tmp_path / "model.json", tmp_path / "items.parquet", "--id-column", "item_id",
        "--labels-out", tmp_path / "labels.parquet", "--distances", "--quiet")
    model = KMeans.load(tmp_path / "model.json")
    assert model.metric == "cosine" and model.n_features_in_ == 16
    import pandas as pd

    written = pd.read_parquet(tmp_path / "labels.parquet").sort_values("item_id")
    np.testing.assert_array_equal(written["label"], model.predict(X))
    np.testing.assert_allclose(written["distance"], model.transform(X).min(axis=1), atol=1e-6)
    assert "metric='cosine'" in run("info", tmp_path / "model.json").stdout
