"""Model files: exact round trips, plain JSON, clear refusals, atomic writes."""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import fsspec
import numpy as np
import pytest

import dask_kmeans
from dask_kmeans import KMeans, NotFittedError
from dask_kmeans.io import OutputExistsError
from dask_kmeans.io import model as model_io
from dask_kmeans.io.model import FORMAT_NAME, FORMAT_VERSION, load_model, save_model

from .conftest import make_blobs, pick_rows

DOCUMENTED_FIELDS = {
    "format",
    "format_version",
    "library_version",
    "created",
    "params",
    "dtype",
    "n_features_in",
    "feature_names_in",
    "cluster_centers",
    "inertia",
    "n_iter",
    "converged",
    "history",
    "preprocessing",
    "id_column",
    "algorithm",
}


def fitted_model(dtype=np.float64, **params):
    X, _ = make_blobs(n_samples=600, n_features=4, n_centers=5, seed=3, dtype=dtype)
    params.setdefault("init", pick_rows(X, 5, seed=1))
    return KMeans(n_clusters=5, **params).fit(X), X


def assert_same_params(loaded: KMeans, original: KMeans):
    for name, value in original.get_params().items():
        if isinstance(value, np.ndarray):
            assert isinstance(loaded.get_params()[name], np.ndarray), name
            np.testing.assert_array_equal(loaded.get_params()[name], value)
        else:
            assert loaded.get_params()[name] == value, name


def bits(array: np.ndarray) -> np.ndarray:
    """The raw bits, so that -0.0 differs from 0.0 and every NaN payload counts."""
    return array.view(np.uint32 if array.dtype == np.float32 else np.uint64)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_round_trip_is_exact(tmp_path, dtype):
    original, X = fitted_model(dtype, random_state=0, tol=1e-6, max_iter=50)
    path = save_model(original, tmp_path / "model.json")
    assert path == str(tmp_path / "model.json")

    loaded = load_model(path)

    assert loaded.cluster_centers_.dtype == dtype
    assert np.array_equal(bits(loaded.cluster_centers_), bits(original.cluster_centers_))
    assert_same_params(loaded, original)
    assert loaded.inertia_ == original.inertia_
    assert loaded.n_iter_ == original.n_iter_
    assert loaded.converged_ == original.converged_
    assert loaded.history_ == original.history_
    assert loaded.n_features_in_ == original.n_features_in_
    assert not hasattr(loaded, "labels_")  # per-row training data, not part of the model
    assert not hasattr(loaded, "feature_names_in_")
    np.testing.assert_array_equal(loaded.predict(X), original.predict(X))
    np.testing.assert_array_equal(loaded.transform(X), original.transform(X))
    assert loaded.score(X) == original.score(X)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_hard_floats_come_back_bit_identical(tmp_path, dtype):
    model, _ = fitted_model(dtype)
    info = np.finfo(dtype)
    hard = np.array(
        [0.1, 1 / 3, -0.0, info.smallest_subnormal, info.tiny, info.max, -info.max, np.nextafter(1.0, 2.0)]
    ).astype(dtype)
    model.cluster_centers_ = np.resize(hard, model.cluster_centers_.shape).astype(dtype)

    loaded = load_model(save_model(model, tmp_path / "hard.json"))

    assert loaded.cluster_centers_.dtype == dtype
    assert np.array_equal(bits(loaded.cluster_centers_), bits(model.cluster_centers_))


def test_string_init_and_generator_random_state(tmp_path):
    seeded, _ = fitted_model(init="k-means++", random_state=7, n_init=2)
    assert_same_params(load_model(save_model(seeded, tmp_path / "seeded.json")), seeded)

    with_generator, _ = fitted_model(random_state=np.random.default_rng(0))
    loaded = load_model(save_model(with_generator, tmp_path / "generator.json"))
    # A generator's state is not part of the format: documented as stored as null.
    assert loaded.random_state is None


def test_loaded_in_a_new_process_predicts_the_same(tmp_path):
    original, X = fitted_model(random_state=0)
    model_path = save_model(original, tmp_path / "model.json")
    data_path, labels_path = tmp_path / "X.npy", tmp_path / "labels.npy"
    np.save(data_path, X)
    child = textwrap.dedent(
        """
        import sys
        import numpy as np
        from dask_kmeans.io.model import load_model
        model_path, data_path, labels_path = sys.argv[1:]
        np.save(labels_path, load_model(model_path).predict(np.load(data_path)))
        """
    )
    subprocess.run(
        [sys.executable, "-c", child, model_path, str(data_path), str(labels_path)],
        check=True,
        cwd=tmp_path,
        timeout=120,
    )
    np.testing.assert_array_equal(np.load(labels_path), original.predict(X))


def test_file_is_plain_json_with_the_documented_fields(tmp_path):
    model, _ = fitted_model(np.float32, random_state=0)
    with open(save_model(model, tmp_path / "model.json"), encoding="utf-8") as file:
        text = file.read()
    document = json.loads(text)

    assert set(document) == DOCUMENTED_FIELDS
    for field in document:
        assert f"``{field}``" in model_io.__doc__, f"{field} is not documented in the module docstring"
    assert document["format"] == FORMAT_NAME == "dask-kmeans-model"
    assert document["format_version"] == FORMAT_VERSION == 1
    assert document["library_version"] == dask_kmeans.__version__
    created = datetime.datetime.fromisoformat(document["created"])
    assert created.utcoffset() == datetime.timedelta(0)
    assert document["dtype"] == "float32"
    assert document["n_features_in"] == 4
    assert document["feature_names_in"] is None
    assert np.array(document["cluster_centers"]).shape == (5, 4)
    assert document["params"]["n_clusters"] == 5
    assert isinstance(document["params"]["init"], list)
    assert document["inertia"] == model.inertia_
    assert document["history"] == model.history_
    # Readable: one line per centre and per iteration.
    assert f"\n    {json.dumps(document['cluster_centers'][0])},\n" in text
    assert f"\n    {json.dumps(document['history'][0])}" in text


def test_feature_names_round_trip_as_an_object_array(tmp_path):
    pd = pytest.importorskip("pandas")
    X, _ = make_blobs(n_samples=300, n_features=4, n_centers=3, seed=5)
    frame = pd.DataFrame(X, columns=["food", "travel", "rent", "café"])
    model = KMeans(n_clusters=3, random_state=0).fit(frame)

    loaded = load_model(save_model(model, tmp_path / "named.json"))

    assert loaded.feature_names_in_.dtype == object
    np.testing.assert_array_equal(loaded.feature_names_in_, model.feature_names_in_)
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))
    with pytest.raises(ValueError):
        loaded.predict(frame[["travel", "food", "rent", "café"]])


def test_nan_in_history_is_stored_as_null(tmp_path):
    # A relative shift is infinite for data of zero variance; NaN and inf are not JSON numbers.
    model, _ = fitted_model(tol=0, max_iter=5)
    model.history_[0]["relative_shift"] = float("nan")
    model.history_[1]["relative_shift"] = float("inf")

    path = save_model(model, tmp_path / "model.json")

    with open(path, encoding="utf-8") as file:
        history = json.load(file)["history"]
    assert history[0]["relative_shift"] is None and history[1]["relative_shift"] is None
    loaded = load_model(path)
    assert len(loaded.history_) == len(model.history_)
    assert np.isnan(loaded.history_[0]["relative_shift"]) and np.isnan(loaded.history_[1]["relative_shift"])
    for loaded_record, record in zip(loaded.history_[2:], model.history_[2:]):
        assert loaded_record.keys() == record.keys()
        np.testing.assert_equal(loaded_record, record)


def test_save_and_load_through_an_fsspec_url():
    model, X = fitted_model(random_state=0)
    folder = f"memory://models/{uuid.uuid4().hex}"
    url = f"{folder}/model.json"
    try:
        assert save_model(model, url) == url
        loaded = load_model(url)
        with pytest.raises(OutputExistsError, match="already exists"):
            save_model(model, url)
    finally:
        with contextlib.suppress(FileNotFoundError):
            fsspec.filesystem("memory").rm(folder, recursive=True)
    assert np.array_equal(loaded.cluster_centers_, model.cluster_centers_)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


# ----------------------------------------------------------------------------------------------------
# Refusals


@pytest.mark.parametrize(
    "content",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00",
        b"label,distance\n0,1.5\n",
        b'{"format": "dask-kmeans-model", ',
        b"[1, 2]",
    ],
    ids=["binary", "csv", "truncated-json", "json-array"],
)
def test_load_refuses_a_file_that_is_not_json(tmp_path, content):
    path = tmp_path / "not-a-model.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="is not a dask-kmeans model file"):
        load_model(path)


@pytest.mark.parametrize(
    "document",
    [{"format": "something-else", "format_version": 1}, {"weights": [1, 2]}, {"format": FORMAT_NAME}],
    ids=["other-format", "no-format", "no-version"],
)
def test_load_refuses_json_of_another_format(tmp_path, document):
    path = tmp_path / "other.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="is not a dask-kmeans model file"):
        load_model(path)


def rewrite(path, change) -> None:
    with open(path, encoding="utf-8") as file:
        document = json.load(file)
    change(document)
    with open(path, "w", encoding="utf-8") as file:
        file.write(json.dumps(document))


def test_load_refuses_a_newer_format_version(tmp_path):
    path = save_model(fitted_model()[0], tmp_path / "future.json")
    rewrite(path, lambda document: document.update(format_version=FORMAT_VERSION + 1))
    message = (
        f"format version {FORMAT_VERSION + 1}.*reads format version {FORMAT_VERSION}.*Upgrade dask-kmeans"
    )
    with pytest.raises(ValueError, match=message):
        load_model(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda doc: doc.pop("cluster_centers"), r"it lacks the fields \['cluster_centers'\]"),
        (lambda doc: doc.update(cluster_centers=[[1.0, 2.0]]), r"has shape \(1, 2\), not \(n_clusters, 4\)"),
        (lambda doc: doc.update(cluster_centers=[[1.0, 2.0], [3.0]]), "is not a table of numbers"),
        (lambda doc: doc.update(cluster_centers=[["1", "2", "3", "4"]]), "is not a table of numbers"),
        (lambda doc: doc.update(dtype="float16"), "its \"dtype\" is 'float16'"),
        (lambda doc: doc.update(history={"iteration": 1}), "is not an array of objects"),
        (lambda doc: doc.update(format_version="1"), "its \"format_version\" is '1'"),
    ],
    ids=["missing-field", "wrong-shape", "ragged", "strings", "dtype", "history", "version-string"],
)
def test_load_refuses_a_damaged_model_file(tmp_path, change, message):
    path = save_model(fitted_model()[0], tmp_path / "damaged.json")
    rewrite(path, change)
    with pytest.raises(ValueError, match="is not a dask-kmeans model file: .*" + message):
        load_model(path)


def test_load_refuses_the_non_standard_nan_token(tmp_path):
    path = save_model(fitted_model()[0], tmp_path / "nan.json")
    with open(path, encoding="utf-8") as file:
        text = file.read()
    first_centre = json.dumps(json.loads(text)["cluster_centers"][0])
    with open(path, "w", encoding="utf-8") as file:
        file.write(text.replace(first_centre, "[NaN, 1.0, 2.0, 3.0]"))
    with pytest.raises(ValueError, match="not a dask-kmeans model file: it is not valid JSON.*NaN"):
        load_model(path)


def test_load_names_a_missing_file(tmp_path):
    path = tmp_path / "nowhere" / "model.json"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))) as raised:
        load_model(path)
    assert raised.value.errno == errno.ENOENT


def test_save_refuses_an_unfitted_model(tmp_path):
    with pytest.raises(NotFittedError, match="not fitted yet"):
        save_model(KMeans(n_clusters=3), tmp_path / "model.json")
    assert os.listdir(tmp_path) == []


def test_save_keeps_an_existing_file_unless_overwrite(tmp_path):
    path = tmp_path / "model.json"
    path.write_text("precious")
    model, _ = fitted_model()

    with pytest.raises(OutputExistsError, match="already exists"):
        save_model(model, path)
    assert path.read_text() == "precious"

    save_model(model, path, overwrite=True)
    assert np.array_equal(load_model(path).cluster_centers_, model.cluster_centers_)
    assert os.listdir(tmp_path) == ["model.json"]


def test_save_refuses_non_finite_centres(tmp_path):
    model, _ = fitted_model()
    model.cluster_centers_[0, 0] = np.nan
    with pytest.raises(ValueError, match="not JSON compliant"):
        save_model(model, tmp_path / "model.json")
    assert os.listdir(tmp_path) == []


def test_failed_serialisation_leaves_no_file(tmp_path):
    model, _ = fitted_model()
    model.history_[0]["note"] = object()
    with pytest.raises(TypeError, match="cannot hold a object"):
        save_model(model, tmp_path / "model.json")
    assert os.listdir(tmp_path) == []

    (tmp_path / "model.json").write_text("previous")
    with pytest.raises(TypeError):
        save_model(model, tmp_path / "model.json", overwrite=True)
    assert os.listdir(tmp_path) == ["model.json"]
    assert (tmp_path / "model.json").read_text() == "previous"


def test_failed_write_removes_the_partial_temporary_file(tmp_path, monkeypatch):
    class DiskFillsUp:
        """A file that takes half of what it is given, then fails as a full disk does."""

        def __init__(self, file):
            self.file = file

        def write(self, data: bytes) -> int:
            self.file.write(data[: len(data) // 2])
            self.file.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

    @contextlib.contextmanager
    def open_on_a_full_disk(path, mode="rb", **storage_options):
        with open(path, mode) as file:
            yield DiskFillsUp(file)

    monkeypatch.setattr(fsspec, "open", open_on_a_full_disk)  # the model writer opens through fsspec
    with pytest.raises(OSError, match="No space left"):
        save_model(fitted_model()[0], tmp_path / "model.json")
    assert os.listdir(tmp_path) == []


def test_estimator_save_and_load_methods(tmp_path):
    model, X = fitted_model(random_state=0)
    path = model.save(tmp_path / "model.json")
    loaded = KMeans.load(path)
    assert np.array_equal(loaded.cluster_centers_, model.cluster_centers_)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_id_column_round_trips_and_older_files_without_it_still_load(tmp_path):
    model, X = fitted_model(random_state=0)
    document = json.loads(Path(save_model(model, tmp_path / "plain.json")).read_text())
    assert document["id_column"] is None
    assert not hasattr(load_model(tmp_path / "plain.json"), "id_column_")

    model.id_column_ = "customer_id"
    path = save_model(model, tmp_path / "with-id.json")
    assert json.loads(Path(path).read_text())["id_column"] == "customer_id"
    assert load_model(path).id_column_ == "customer_id"

    older = dict(document)
    del older["id_column"]  # a file written before the field existed
    (tmp_path / "older.json").write_text(json.dumps(older))
    loaded = load_model(tmp_path / "older.json")
    assert not hasattr(loaded, "id_column_")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))

    document["id_column"] = 7
    (tmp_path / "bad.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match='"id_column" is not a string'):
        load_model(tmp_path / "bad.json")
