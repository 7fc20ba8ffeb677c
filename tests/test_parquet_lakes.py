"""Parquet lakes as lakes hold them: big files in row-group chunks, embedding columns, hive partitions."""

import dask
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dask_kmeans import KMeans
from dask_kmeans.io import read


def test_a_big_file_is_read_in_chunks_of_whole_row_groups(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.standard_normal((40_000, 4))
    table = pa.table({f"f{j}": values[:, j] for j in range(4)})
    pq.write_table(table, tmp_path / "big.parquet", row_group_size=1000)
    got = read(tmp_path / "big.parquet")
    # row_chunk_size gives 10,000 rows here (two chunks per core on 2 cores): ten row groups a chunk.
    assert len(got.X.chunks[0]) > 1 and all(n % 1000 == 0 for n in got.X.chunks[0])
    np.testing.assert_array_equal(got.X.compute(), values)
    assert got.feature_names == ("f0", "f1", "f2", "f3")


def _embedding_lake(path, n=600, d=16, seed=0, fixed=True):
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, d)).astype(np.float32)
    list_type = pa.list_(pa.float32(), d) if fixed else pa.list_(pa.float32())
    column = pa.array(list(vectors), type=list_type)
    pq.write_table(pa.table({"item_id": np.arange(n), "emb": column}), path, row_group_size=200)
    return vectors


@pytest.mark.parametrize("fixed", [True, False])
def test_an_embedding_column_is_that_many_float32_features(tmp_path, fixed):
    vectors = _embedding_lake(tmp_path / "emb.parquet", fixed=fixed)
    table = read(tmp_path / "emb.parquet", columns=["emb"], id_column="item_id")
    assert table.X.dtype == np.float32 and table.X.shape == vectors.shape
    assert table.feature_names[:2] == ("emb[0]", "emb[1]") and len(table.feature_names) == 16
    np.testing.assert_array_equal(table.X.compute(), vectors)
    np.testing.assert_array_equal(table.ids.compute(), np.arange(len(vectors)))
    km = KMeans(4, metric="cosine", random_state=0).fit(table)
    assert km.labels_.shape == (len(vectors),)


def test_ragged_lists_are_refused_naming_the_column_and_the_file(tmp_path):
    column = pa.array([[1.0, 2.0], [3.0, 4.0], [5.0]], type=pa.list_(pa.float64()))
    pq.write_table(pa.table({"emb": column}), tmp_path / "ragged.parquet")
    table = read(tmp_path / "ragged.parquet", columns=["emb"])
    with pytest.raises(ValueError, match=r"Column 'emb' of .*ragged.parquet holds lists of 1 values where 2"):
        table.X.compute()


def test_a_missing_list_is_a_row_of_nan(tmp_path):
    column = pa.array([[1.0, 2.0], None, [5.0, 6.0]], type=pa.list_(pa.float64(), 2))
    pq.write_table(pa.table({"emb": column}), tmp_path / "holes.parquet")
    X = read(tmp_path / "holes.parquet", columns=["emb"]).X.compute()
    np.testing.assert_array_equal(X[[0, 2]], [[1, 2], [5, 6]])
    assert np.isnan(X[1]).all()


def test_hive_partition_columns_are_features_only_when_named(tmp_path):
    rng = np.random.default_rng(1)
    for region, year in [("EU", 2024), ("US", 2024), ("EU", 2025)]:
        folder = tmp_path / "lake" / f"region={region}" / f"year={year}"
        folder.mkdir(parents=True)
        part = pa.table({"a": rng.standard_normal(5), "b": rng.standard_normal(5)})
        pq.write_table(part, folder / "part-0.parquet")
    table = read(tmp_path / "lake")
    assert table.feature_names == ("a", "b")
    with_year = read(tmp_path / "lake", columns=["a", "year"], id_column="region")
    assert with_year.feature_names == ("a", "year")
    np.testing.assert_array_equal(with_year.X.compute()[:, 1], [2024] * 5 + [2025] * 5 + [2024] * 5)
    assert with_year.ids.compute().tolist() == ["EU"] * 10 + ["US"] * 5


def test_files_that_disagree_on_a_column_are_refused_before_any_pass(tmp_path):
    pq.write_table(pa.table({"a": [1.0, 2.0], "b": [3.0, 4.0]}), tmp_path / "part.0.parquet")
    pq.write_table(pa.table({"a": [1.0, 2.0], "b": ["x", "y"]}), tmp_path / "part.1.parquet")
    pq.write_table(pa.table({"a": [1.0, 2.0]}), tmp_path / "part.2.parquet")
    with pytest.raises(ValueError, match=r"Column 'b' is double in .*part.0.parquet' but string in .*part.1"):
        read(tmp_path / "part.[01].parquet")
    with pytest.raises(ValueError, match=r"Column 'b' is in .*part.0.parquet' but not in .*part.2.parquet"):
        read(str(tmp_path / "part.[02].parquet"), columns=["a", "b"])


def test_two_id_columns_of_one_lake_are_two_arrays(tmp_path):
    pq.write_table(pa.table({"a": [1.0, 2.0, 3.0], "item": [7, 8, 9], "topic": [0, 1, 0]}),
                   tmp_path / "x.parquet")
    items = read(tmp_path / "x.parquet", columns=["a"], id_column="item").ids
    topics = read(tmp_path / "x.parquet", columns=["a"], id_column="topic").ids
    assert items.name != topics.name
    assert [list(v) for v in dask.compute(items, topics)] == [[7, 8, 9], [0, 1, 0]]


def test_source_columns_undo_the_expansion_of_list_columns():
    from dask_kmeans.io import source_columns

    names = ["a", "emb[0]", "emb[1]", "emb[2]", "b[1]", "x[0]", "c"]
    assert source_columns(names) == ["a", "emb", "b[1]", "x[0]", "c"]

