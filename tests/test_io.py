"""Readers and writers against real files in tmp_path: Zarr (format 2 and 3), Parquet, CSV, DataFrames."""

from __future__ import annotations

import os
import re
import threading
import time
import warnings

import dask
import dask.array as da
import dask.dataframe as dd
import fsspec
import numpy as np
import pandas as pd
import pytest
import zarr
from dask.callbacks import Callback

from dask_kmeans import KMeans
from dask_kmeans.io import OutputExistsError, Table, atomic_output, read, write_labels
from dask_kmeans.io.writers import _compute_every_write

# dask 2026.8's Parquet reader calls a pandas 3.1 API that warns; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.reset_index")

FLOATS = ["f0", "f1", "f2", "f3", "f4", "f5"]
FEATURES = [*FLOATS, "visits"]  # the default: every numeric column but the id
# Natural order (part.2 before part.10) differs from name order; sizes differ so misordering shows.
LAKE_FILES = {"part.1.parquet": 40, "part.2.parquet": 25, "part.10.parquet": 31, "part.11.parquet": 0}


class CountComputes(Callback):
    """Counts calls into the local scheduler (one per dask.compute)."""

    def __init__(self):
        super().__init__()
        self.n = 0

    def _start(self, dsk):
        self.n += 1


def customers(n_rows: int, first_id: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"customer_id": np.arange(first_id, first_id + n_rows, dtype=np.int64)})
    for j, name in enumerate(FLOATS):
        # three float32 and three float64 columns: together they read as float64
        frame[name] = rng.normal(j, 1.0, n_rows).astype(np.float32 if j < 3 else np.float64)
    frame["visits"] = rng.integers(0, 20, n_rows)
    frame["city"] = rng.choice(["Lyon", "Oslo", "Quito"], n_rows)
    return frame


@pytest.fixture
def lake(tmp_path):
    """A directory of Parquet files written by pandas, and the rows in the order a reader must give."""
    root = tmp_path / "lake"
    root.mkdir()
    (root / "_SUCCESS").write_text("")  # bookkeeping files are skipped
    frames, first_id = {}, 0
    for seed, (name, n_rows) in enumerate(LAKE_FILES.items()):
        frames[name] = customers(n_rows, first_id, seed)
        frames[name].to_parquet(root / name, index=False)
        first_id += n_rows
    expected = pd.concat([frames[name] for name in LAKE_FILES], ignore_index=True)
    return root, expected


def assert_table(table: Table, expected: pd.DataFrame, features: list[str], id_column: str | None = None):
    assert table.feature_names == tuple(features)
    assert not any(np.isnan(c) for c in table.X.chunks[0]), "row chunks must be known"
    assert table.X.numblocks[1] == 1
    X, ids = dask.compute(table.X, table.ids)
    np.testing.assert_array_equal(X, expected[features].to_numpy(dtype=table.X.dtype))
    if id_column is None:
        assert table.ids is None
    else:
        assert table.id_name == id_column
        assert table.ids.chunks == (table.X.chunks[0],)
        np.testing.assert_array_equal(ids, expected[id_column].to_numpy())


# ----------------------------------------------------------------------------------------------------
# Parquet


def test_parquet_directory_reads_footers_only(lake):
    root, expected = lake
    with CountComputes() as counter:
        table = read(root, id_column="customer_id")
    assert counter.n == 0, "building the Table must not compute anything"
    assert table.X.chunks[0] == (40, 25, 31)  # one chunk per non-empty file, in natural order
    assert table.X.dtype == np.float64
    assert_table(table, expected, FEATURES, "customer_id")


@pytest.mark.parametrize("pattern", ["lake/*.parquet", "lake/part.1*.parquet"])
def test_parquet_glob(lake, tmp_path, pattern):
    _, expected = lake
    table = read(str(tmp_path / pattern), id_column="customer_id")
    if pattern.endswith("1*.parquet"):  # part.1, part.10, part.11
        expected = expected[~expected.customer_id.between(40, 64)]
    assert_table(table, expected.reset_index(drop=True), FEATURES, "customer_id")


def test_parquet_single_file_and_columns(lake):
    root, _ = lake
    expected = pd.read_parquet(root / "part.10.parquet")
    table = read(root / "part.10.parquet", columns=["f1", "f0"])
    assert table.X.dtype == np.float32, "float32 features stay float32"
    assert_table(table, expected, ["f1", "f0"])


def test_parquet_many_files_with_a_column_subset_keep_one_chunk_per_file(tmp_path):
    # dask's optimizer merges small Parquet partitions when few columns are read (dask/dask#12411)
    sizes = [3 + i % 4 for i in range(30)]
    frames = [customers(n, sum(sizes[:i]), i) for i, n in enumerate(sizes)]
    for i, frame in enumerate(frames):
        frame.to_parquet(tmp_path / f"part.{i}.parquet", index=False)
    table = read(str(tmp_path / "*.parquet"), columns=["f3", "f4"], id_column="customer_id")
    assert table.X.chunks[0] == tuple(sizes)
    assert_table(table, pd.concat(frames, ignore_index=True), ["f3", "f4"], "customer_id")


# ----------------------------------------------------------------------------------------------------
# Zarr


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_array_at_root(tmp_path, zarr_format):
    values = np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32)
    store = tmp_path / "x.zarr"
    z = zarr.create_array(
        store, shape=values.shape, chunks=(7, 4), dtype=values.dtype, zarr_format=zarr_format
    )
    z[:] = values
    table = read(store)
    assert table.feature_names is None
    assert table.X.dtype == np.float32
    assert all(size % 7 == 0 for size in table.X.chunks[0][:-1]), "whole store chunks per dask chunk"
    assert table.X.numblocks[1] == 1
    np.testing.assert_array_equal(table.X.compute(), values)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_array_in_group(tmp_path, zarr_format):
    values = np.random.default_rng(1).integers(0, 9, (30, 3)).astype(np.int16)
    store = tmp_path / "lake.zarr"
    group = zarr.open_group(store, mode="w", zarr_format=zarr_format)
    features = group.create_array(
        "customers/features", shape=values.shape, chunks=(10, 2), dtype=values.dtype
    )
    features[:] = values
    features.attrs["feature_names"] = ["books", "garden", "toys"]
    group.create_array("customers/ids", shape=(30,), chunks=(10,), dtype=np.int64)

    by_syntax = read(f"{store}::customers/features")
    by_option = read(store, array="customers/features")
    for table in (by_syntax, by_option):
        assert table.feature_names == ("books", "garden", "toys")
        assert table.X.dtype == np.float64, "integers become float64"
        np.testing.assert_array_equal(table.X.compute(), values)
    picked = read(store, array="customers/features", columns=["toys", "books"])
    assert picked.feature_names == ("toys", "books")
    np.testing.assert_array_equal(picked.X.compute(), values[:, [2, 0]])


def test_zarr_memory_url():
    values = np.arange(40.0).reshape(10, 4)
    url = "memory://test-io/features.zarr"
    try:
        zarr.create_array(url, shape=values.shape, chunks=(4, 4), dtype=values.dtype)[:] = values
        table = read(url)
        np.testing.assert_array_equal(table.X.compute(), values)
    finally:
        fsspec.filesystem("memory").rm("/test-io", recursive=True)


# ----------------------------------------------------------------------------------------------------
# CSV and DataFrames


def as_float64(frame: pd.DataFrame) -> pd.DataFrame:
    """Text keeps float64 exactly (pandas writes the shortest round-trip repr), float32 not."""
    return frame.astype({name: np.float64 for name in FLOATS})


def test_csv_costs_one_pass(tmp_path):
    expected = as_float64(customers(60, 0, seed=3))
    expected.to_csv(tmp_path / "customers.csv", index=False)
    with CountComputes() as counter:
        table = read(tmp_path / "customers.csv", id_column="customer_id")
    assert counter.n == 1, "CSV row counts cost exactly one pass"
    assert_table(table, expected, FEATURES, "customer_id")


def test_csv_glob(tmp_path):
    frames = [as_float64(customers(20, 0, seed=4)), as_float64(customers(15, 20, seed=5))]
    for i, frame in enumerate(frames):
        frame.to_csv(tmp_path / f"day{i}.csv", index=False)
    table = read(str(tmp_path / "day*.csv"), columns=["f0"], id_column="customer_id")
    assert_table(table, pd.concat(frames, ignore_index=True), ["f0"], "customer_id")


def test_pandas_and_dask_frames():
    expected = customers(70, 0, seed=6)
    from_pandas = read(expected, id_column="customer_id")
    from_dask = read(dd.from_pandas(expected, npartitions=3), id_column="customer_id")
    assert from_dask.X.numblocks[0] == 3
    for table in (from_pandas, from_dask):
        assert_table(table, expected, FEATURES, "customer_id")
    assert read(expected[["f0", "f1"]]).X.dtype == np.float32
    assert read(expected[["f0", "f5"]]).X.dtype == np.float64, "mixed float32/float64 reads as float64"
    flags = read(pd.DataFrame({"a": [True, False], "b": [1, 2]}))
    assert flags.X.dtype == np.float64


# ----------------------------------------------------------------------------------------------------
# Errors name what is wrong


def test_non_numeric_column_is_named(lake):
    root, _ = lake
    with pytest.raises(ValueError, match=r"Column 'city' .* has dtype .*columns=\[\.\.\.\], or encode it"):
        read(root, columns=["f0", "city"])


def test_missing_column_lists_the_available_ones(lake):
    root, _ = lake
    with pytest.raises(ValueError, match=r"\['spend'\] not found.*'customer_id', 'f0'"):
        read(root, columns=["f0", "spend"])
    with pytest.raises(ValueError, match=r"id column 'client' is not in .*'customer_id'"):
        read(root, id_column="client")


@pytest.mark.parametrize("name", ["nowhere.parquet", "nowhere.zarr", "nowhere.csv", "nowhere"])
def test_missing_path_is_named(tmp_path, name):
    with pytest.raises(FileNotFoundError, match=name):
        read(tmp_path / name)


def test_directory_of_neither_format(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="neither a Zarr store nor a directory of Parquet files"):
        read(tmp_path)


def test_ragged_csv_names_file_and_line(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("a,b\n1,2\n3,4\n5,6,7\n")
    with pytest.raises(ValueError, match=r"ragged\.csv.*line 4"):
        read(path)


def test_zarr_array_that_is_not_2d(tmp_path):
    zarr.create_array(tmp_path / "flat.zarr", shape=(10,), dtype=np.float64)
    with pytest.raises(ValueError, match=r"shape \(10,\) \(1-D\)"):
        read(tmp_path / "flat.zarr")


def test_zarr_group_with_several_arrays_lists_them(tmp_path):
    group = zarr.open_group(tmp_path / "g.zarr", mode="w")
    group.create_array("a", shape=(4, 2), dtype=np.float64)
    group.create_array("b", shape=(4, 3), dtype=np.float64)
    with pytest.raises(ValueError, match=r"several arrays: 'a' \(4, 2\), 'b' \(4, 3\)"):
        read(tmp_path / "g.zarr")
    with pytest.raises(ValueError, match="no array 'c'"):
        read(f"{tmp_path / 'g.zarr'}::c")


# ----------------------------------------------------------------------------------------------------
# Writing labels


@pytest.fixture
def fitted(lake):
    root, expected = lake
    table = read(root, id_column="customer_id")
    model = KMeans(n_clusters=3, random_state=0).fit(table.X)
    return table, model, expected


def test_labels_to_parquet_one_file_per_chunk(fitted, tmp_path):
    table, model, expected = fitted
    labels = model.predict(table.X)
    distances = model.transform(table.X).min(axis=1)
    out = write_labels(
        tmp_path / "labels.parquet", labels, distances=distances, ids=table.ids, id_name="customer_id"
    )
    assert out == str(tmp_path / "labels.parquet")
    assert sorted(os.listdir(out)) == [f"part.{i:05d}.parquet" for i in range(table.X.numblocks[0])]
    written = pd.read_parquet(out)
    assert list(written.columns) == ["customer_id", "label", "distance"]
    np.testing.assert_array_equal(written["customer_id"], expected["customer_id"])
    np.testing.assert_array_equal(written["label"], labels.compute())
    np.testing.assert_array_equal(written["label"], model.labels_)
    np.testing.assert_allclose(written["distance"], distances.compute())


def test_labels_to_zarr(fitted, tmp_path):
    table, model, expected = fitted
    labels = model.predict(table.X)
    out = write_labels(tmp_path / "labels.zarr", labels, ids=table.ids, id_name="customer_id")
    group = zarr.open_group(out, mode="r")
    assert group.metadata.zarr_format == 3
    assert group.attrs["id_name"] == "customer_id"
    assert group["labels"].dtype == np.int32
    # the lake's files give uneven chunks (40, 25, 31); Zarr chunks are even: rechunked to the largest
    assert group["labels"].chunks == (40,)
    np.testing.assert_array_equal(group["labels"][:], labels.compute())
    np.testing.assert_array_equal(group["ids"][:], expected["customer_id"])


def test_even_chunks_give_one_zarr_chunk_per_input_chunk(tmp_path):
    labels = da.from_array(np.arange(25) % 4, chunks=10)
    out = write_labels(tmp_path / "even.zarr", labels, distances=labels.astype(np.float32) / 2)
    group = zarr.open_group(out, mode="r")
    assert group["labels"].chunks == (10,)
    assert sorted(group.array_keys()) == ["distances", "labels"]
    np.testing.assert_array_equal(group["distances"][:], (np.arange(25) % 4) / 2)


def test_labels_to_memory_url():
    url = "memory://test-io-out/labels.parquet"
    try:
        write_labels(url, da.from_array(np.arange(9) % 2, chunks=4))
        assert len(fsspec.filesystem("memory").ls("/test-io-out/labels.parquet")) == 3
        with fsspec.open(url + "/part.00001.parquet") as f:
            assert pd.read_parquet(f)["label"].tolist() == [0, 1, 0, 1]
    finally:
        fsspec.filesystem("memory").rm("/test-io-out", recursive=True)


def _fail_on_third_block(block, block_info=None):
    if block_info[0]["chunk-location"][0] == 2:
        raise RuntimeError("disk on fire")
    time.sleep(0.02)  # other blocks are still being written when the third fails
    return block


@pytest.mark.parametrize("name", ["labels.parquet", "labels.zarr"])
def test_interrupted_write_leaves_nothing(tmp_path, name):
    labels = da.from_array(np.arange(60) % 3, chunks=5).map_blocks(_fail_on_third_block, dtype=np.int64)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_labels(out_dir / name, labels)
    assert os.listdir(out_dir) == [], "no output and no temporary files"


# Shared by the tasks below: graphs are pickled even for an in-process cluster, locks cannot be.
_WRITE_STARTED = threading.Event()
_WRITES_FINISHED: list[str] = []


def _slow_write(name: str) -> None:
    _WRITE_STARTED.set()
    time.sleep(0.3)
    _WRITES_FINISHED.append(name)


def _failed_write() -> None:
    _WRITE_STARTED.wait(timeout=10)
    raise RuntimeError("disk on fire")


@pytest.mark.parametrize("scheduler", ["threads", "distributed"])
def test_a_failed_write_raises_only_when_no_write_is_running(scheduler, request):
    # Otherwise a write still running would recreate files after the temporary output was removed.
    if scheduler == "distributed":
        request.getfixturevalue("thread_client")  # 1 in-process worker, 2 threads; the default client
    _WRITE_STARTED.clear()
    writes = [dask.delayed(_slow_write)(scheduler), dask.delayed(_failed_write)()]
    with dask.config.set(num_workers=2):
        with pytest.raises(RuntimeError, match="disk on fire"):
            _compute_every_write(writes)
        assert scheduler in _WRITES_FINISHED  # checked before closing the cluster, which waits too


@pytest.mark.parametrize("name", ["labels.parquet", "labels.zarr"])
def test_existing_output_is_kept_unless_overwrite(tmp_path, name):
    path = tmp_path / name
    write_labels(path, da.from_array(np.zeros(6, dtype=int), chunks=3))
    before = sorted(str(p.relative_to(path)) for p in path.rglob("*"))
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        write_labels(path, da.from_array(np.ones(6, dtype=int), chunks=3))
    assert sorted(str(p.relative_to(path)) for p in path.rglob("*")) == before
    assert read_back_labels(path).tolist() == [0] * 6

    write_labels(path, da.from_array(np.ones(4, dtype=int), chunks=4), overwrite=True)
    assert read_back_labels(path).tolist() == [1] * 4
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []


def read_back_labels(path) -> np.ndarray:
    if str(path).endswith(".zarr"):
        return zarr.open_group(path, mode="r")["labels"][:]
    return pd.read_parquet(path)["label"].to_numpy()


def test_misaligned_columns_are_refused(tmp_path):
    labels = da.from_array(np.zeros(6, dtype=int), chunks=3)
    with pytest.raises(ValueError, match="ids has 5 rows but labels have 6"):
        write_labels(tmp_path / "x.parquet", labels, ids=da.arange(5, chunks=5))
    with pytest.raises(ValueError, match="Cannot write labels to .*x.csv"):
        write_labels(tmp_path / "x.csv", labels)
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------------------------------
# atomic_output on its own (also used for model files)


def test_atomic_output_replaces_a_file_and_cleans_up_on_error(tmp_path):
    target = tmp_path / "model.json"
    with atomic_output(target) as tmp:
        assert os.path.basename(tmp).startswith(".model.json.tmp-")
        with open(tmp, "w") as f:
            f.write("first")
    with pytest.raises(OutputExistsError):
        with atomic_output(target):
            pass
    with pytest.raises(KeyError):
        with atomic_output(target, overwrite=True) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise KeyError("interrupted")
    assert target.read_text() == "first"
    with atomic_output(f"file://{target}", overwrite=True) as tmp:
        with open(tmp, "w") as f:
            f.write("second")
    assert target.read_text() == "second"
    assert os.listdir(tmp_path) == ["model.json"]


def test_atomic_output_on_a_memory_url():
    url = "memory://test-io-atomic/model.json"
    fs = fsspec.filesystem("memory")
    try:
        for text in ("first", "second"):
            with atomic_output(url, overwrite=True) as tmp:
                assert tmp.startswith("memory://")
                with fsspec.open(tmp, "w") as f:
                    f.write(text)
        assert fs.cat(url) == b"second"
        assert fs.ls("/test-io-atomic", detail=False) == ["/test-io-atomic/model.json"]
    finally:
        fs.rm("/test-io-atomic", recursive=True)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_corrupt_zarr_chunks_are_named(tmp_path, zarr_format):
    values = np.arange(300.0).reshape(100, 3)
    path = tmp_path / "features.zarr"
    z = zarr.create_array(path, shape=values.shape, chunks=(10, 3), dtype="f8", zarr_format=zarr_format)
    z[:] = values
    key_of = z.metadata.encode_chunk_key
    (path / key_of((5, 0))).write_bytes(b"not a compressed chunk")
    table = read(str(path))
    corrupt = re.escape(key_of((5, 0)))
    with pytest.raises(OSError, match=rf"rows 0 to 99 .* chunk\(s\) {corrupt} failed .* corrupt"):
        table.X.compute()


def test_an_id_like_column_read_as_a_feature_is_warned_about(tmp_path):
    frame = pd.DataFrame({"customer_id": np.arange(100, 130), "spend": np.linspace(0, 1, 30), "n_id": 1.5})
    path = tmp_path / "customers.parquet"
    frame.to_parquet(path, index=False)
    expected = r"\['customer_id'\] .* look like identifiers .* id_column='customer_id'"
    with pytest.warns(UserWarning, match=expected):
        table = read(str(path))
    assert table.feature_names == ("customer_id", "spend", "n_id")  # still read as asked: a warning only
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert read(str(path), id_column="customer_id").feature_names == ("spend", "n_id")
        assert read(str(path), columns=["customer_id", "spend"]).feature_names == ("customer_id", "spend")
        read(frame.rename(columns={"customer_id": "userIdx"}))  # not an id by its name
    with pytest.warns(UserWarning, match="userId"):
        read(frame.rename(columns={"customer_id": "userId"}))


def test_a_zarr_array_in_one_big_shard_is_read_in_chunks_of_its_inner_chunks(tmp_path):
    X = np.random.default_rng(5).standard_normal((200_000, 8))
    z = zarr.create_array(tmp_path / "sharded.zarr", shape=X.shape, chunks=(5_000, 8), shards=(200_000, 8),
                          dtype="f8")
    z[:] = X
    table = read(tmp_path / "sharded.zarr")
    # The whole array is one shard; dask chunks follow row_chunk_size (50,000 rows here), in inner chunks.
    assert table.X.chunks[0] == (50_000,) * 4
    np.testing.assert_array_equal(table.X.compute(), X)
