"""Readers: turn a Zarr store, Parquet files, CSV files or a DataFrame into a :class:`Table`.

Every reader returns a 2-D float dask array whose row chunks are known (the kernel and the estimator need
them) and whose columns sit in one chunk, with the feature names and an optional id column chunked like
the rows. Each format's reader only opens its source; :func:`read` picks one from a plain table of file
suffixes.

What building a Table costs before any fit:

- Zarr: nothing beyond the array's metadata; rows are chunked in multiples of the store's chunks.
- Parquet: one footer read per file, concurrently (row counts come from the Parquet metadata); a chunk is
  one or more row groups of one file.
- CSV and dask DataFrames: one full pass over the data, because their row counts are unknown until read.
- pandas DataFrames: one copy of the numeric columns into a numpy array.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import dask
import dask.array as da
import dask.dataframe as dd
import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import zarr
from dask.highlevelgraph import HighLevelGraph
from dask.utils import natural_sort_key
from fsspec.implementations.local import LocalFileSystem

from .._atomic import is_url
from .._validation import row_chunk_size
from .._zarr_reads import ChunkNamingReader
from ._parquet import (
    check_schemas,
    first_list_width,
    is_list_of_numbers,
    list_width,
    plan_pieces,
    read_features,
    read_footers,
    read_ids,
)

logger = logging.getLogger("dask_kmeans")

PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
CSV_SUFFIXES = (".csv",)
ZARR_SUFFIXES = (".zarr",)
# What Zarr puts at the root of a store (format 3, then format 2).
_ZARR_MARKERS = ("zarr.json", ".zgroup", ".zarray")
# pandas writes a non-default index as a column of this name; it is bookkeeping, not a feature.
_PANDAS_INDEX_PREFIX = "__index_level_"


class IdLikeColumnWarning(UserWarning):
    """An integer column named like an id (``customer_id``) is about to be clustered as a feature; its
    ``columns`` attribute names them."""

    columns: list = []


@dataclass(frozen=True)
class Table:
    """What a reader found: the features as a dask array, their names, and an id column aligned with them.

    Attributes
    ----------
    X : dask.array.Array of shape (n_samples, n_features)
        float32 or float64, known row chunks, all columns in one chunk.
    feature_names : tuple of str or None
        The column names, or None where the source has none (a Zarr array without a ``feature_names``
        attribute).
    ids : dask.array.Array of shape (n_samples,) or None
        The id column (not clustered), with the same row chunks as ``X``.
    id_name : str or None
        The id column's name.
    source : str
        Where the data came from, for messages.
    """

    X: da.Array
    feature_names: tuple[str, ...] | None
    ids: da.Array | None = None
    id_name: str | None = None
    source: str = ""


def read(
    source,
    *,
    columns: Sequence[str] | None = None,
    id_column: str | None = None,
    array: str | None = None,
    storage_options: dict | None = None,
) -> Table:
    """Read features (and optionally an id column) from a data lake or a DataFrame.

    Parameters
    ----------
    source : str, os.PathLike, pandas.DataFrame or dask.dataframe.DataFrame
        A local path or fsspec URL (``file://``, ``memory://``, ``s3://`` ...) of:

        - a Zarr store (``*.zarr``, or any directory with Zarr metadata); ``store.zarr::group/array``
          names an array inside a group;
        - a Parquet file (``*.parquet``, ``*.pq``, ``*.parq``), a directory of Parquet files (searched
          recursively; names starting with ``.`` or ``_`` are skipped), or a glob such as
          ``lake/*.parquet``;
        - a CSV file or a glob of CSV files (``*.csv``).
    columns : sequence of str, optional
        The feature columns of a table. By default every numeric (or boolean) column except
        ``id_column``; other columns are skipped.
    id_column : str, optional
        A column carried along as ``Table.ids`` (e.g. ``"customer_id"``) and not clustered.
    array : str, optional
        The array inside a Zarr group, e.g. ``"features"`` or ``"group/features"``.
    storage_options : dict, optional
        Passed to fsspec for URLs (credentials, endpoints).

    Returns
    -------
    Table
        ``X`` as float32 when every feature is float32, float64 otherwise (integers and booleans too).

    Raises
    ------
    FileNotFoundError
        The path does not exist (the message names it).
    ValueError
        A named column is missing or not numeric, the Zarr array is not 2-D or not numeric, a group holds
        several arrays and none was named, or the path is of no supported format.

    Examples
    --------
    >>> import pandas as pd
    >>> table = read(pd.DataFrame({"id": [7, 8], "a": [1.0, 2.0], "b": [3, 4]}), id_column="id")
    >>> table.feature_names, table.X.dtype, table.X.chunks
    (('a', 'b'), dtype('float64'), ((2,), (2,)))
    >>> table.ids.compute()
    array([7, 8])
    """
    if isinstance(source, (pd.DataFrame, dd.DataFrame)):
        return read_frame(source, columns=columns, id_column=id_column)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"Cannot read data from a {type(source).__name__}. Give a path or URL (Zarr, Parquet or CSV), "
            "a pandas DataFrame or a dask DataFrame; pass arrays to KMeans directly."
        )
    path = os.fspath(source)
    suffix = _format_of(path, array, storage_options)
    if suffix in ZARR_SUFFIXES:
        if id_column is not None:
            raise ValueError(
                f"id_column= names a column of a table; {path!r} is a Zarr array, whose columns are all "
                "features."
            )
        return read_zarr(path, array=array, columns=columns, storage_options=storage_options)
    return _TABLE_READERS[suffix](path, columns=columns, id_column=id_column, storage_options=storage_options)


# ----------------------------------------------------------------------------------------------------
# Zarr


def read_zarr(
    path: str,
    *,
    array: str | None = None,
    columns: Sequence[str] | None = None,
    storage_options: dict | None = None,
) -> Table:
    """Read a 2-D Zarr array (format 2 or 3) at ``path``, or the array ``array`` inside the group there.

    ``path`` may also be written ``store.zarr::group/array``. Rows are chunked in whole multiples of the
    store's chunks (about 32 MiB per chunk, at least two chunks per core); columns go into one chunk.
    Feature names come from the array's ``feature_names`` attribute, if it has one; only then can
    ``columns`` pick (and order) features by name. A chunk absent from the store reads as the array's
    fill value, as zarr intends (it does not store chunks that hold only the fill value), so a deleted
    chunk cannot be told from a chunk of zeros; a chunk that cannot be decoded is named in the error.

    The parameters are those of :func:`read`; returns a :class:`Table`.
    """
    store, inner = _split_zarr_path(path, array)
    node = _open_zarr(store, storage_options)
    arr = _pick_array(node, inner, store)
    shown = f"Zarr array {store}::{arr.path}" if arr.path else f"Zarr array {store}"
    if arr.ndim != 2:
        raise ValueError(
            f"{shown} has shape {arr.shape} ({arr.ndim}-D); K-means needs a 2-D array of shape "
            "(n_samples, n_features). Name another array, or reshape this one when writing it."
        )
    dtype = np.dtype(arr.dtype)
    if dtype.kind not in "fiub":
        raise ValueError(
            f"{shown} has dtype {dtype}; K-means needs real numbers. Store the features as float32 or "
            "float64."
        )
    feature_names = _zarr_feature_names(arr, shown)
    float_dtype = dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)
    n_samples, n_features = arr.shape
    # Read whole store chunks per task, grouped into dask chunks of about row_chunk_size's bytes. In a
    # sharded array the unit is the inner chunk (zarr reads inner chunks of a shard on their own): a shard
    # may be far larger than a worker's memory.
    store_rows = arr.chunks[0]
    rows = row_chunk_size(n_samples, n_features, float_dtype.itemsize, store_rows)
    reader = ChunkNamingReader(arr, shown)
    name = "read-zarr-" + dask.base.tokenize(store, arr.path, arr.shape, arr.chunks, str(arr.metadata))
    X = da.from_array(reader, chunks=(rows, max(1, n_features)), name=name, asarray=True)
    X = X.astype(float_dtype, copy=False)
    if columns is not None:
        X, feature_names = _zarr_columns(X, feature_names, columns, shown)
    return Table(X=X, feature_names=feature_names, source=shown)


def _split_zarr_path(path: str, array: str | None) -> tuple[str, str | None]:
    store, sep, inner = path.partition("::")
    inner = inner.strip("/") if sep else None
    if array is not None:
        if inner and inner != array.strip("/"):
            raise ValueError(f"{path!r} names the array {inner!r}, but array={array!r}; give one of them.")
        inner = array.strip("/")
    return store.rstrip("/"), inner or None


def _open_zarr(store: str, storage_options: dict | None):
    fs, root = fsspec.core.url_to_fs(store, **(storage_options or {}))
    if not fs.exists(root):
        raise FileNotFoundError(f"No Zarr store at {store!r}: the path does not exist.")
    kwargs = {"storage_options": storage_options} if is_url(store) and storage_options else {}
    try:
        return zarr.open(store, mode="r", **kwargs)
    except FileNotFoundError:
        # zarr raises its own FileNotFoundError subclasses when the metadata are missing.
        raise FileNotFoundError(
            f"{store!r} exists but holds no Zarr metadata (zarr.json, .zgroup or .zarray); it is not a "
            "Zarr store."
        ) from None


def _pick_array(node, inner: str | None, store: str) -> zarr.Array:
    if inner is not None:
        if isinstance(node, zarr.Array):
            raise ValueError(f"{store!r} is a Zarr array, not a group; it has no array {inner!r} inside.")
        found = node.get(inner)
        if not isinstance(found, zarr.Array):
            raise ValueError(
                f"Zarr group {store!r} has no array {inner!r}; its arrays: {_array_listing(node)}."
            )
        return found
    if isinstance(node, zarr.Array):
        return node
    arrays = [a for _, a in node.members(max_depth=None) if isinstance(a, zarr.Array)]
    if len(arrays) == 1:
        return arrays[0]
    if not arrays:
        raise ValueError(f"Zarr group {store!r} holds no arrays.")
    raise ValueError(
        f"Zarr group {store!r} holds several arrays: {_array_listing(node)}. Name the one to cluster with "
        f"array='...' or '{store}::name'."
    )


def _array_listing(group: zarr.Group) -> str:
    """The group's arrays with their shapes, sorted by name (zarr lists members in no fixed order)."""
    arrays = sorted(
        (name, member.shape)
        for name, member in group.members(max_depth=None)
        if isinstance(member, zarr.Array)
    )
    return ", ".join(f"{name!r} {shape}" for name, shape in arrays)


def _zarr_columns(X: da.Array, feature_names, columns, shown: str) -> tuple[da.Array, tuple[str, ...]]:
    wanted = [columns] if isinstance(columns, str) else [str(c) for c in columns]
    if feature_names is None:
        raise ValueError(
            f"columns= picks features by name, but {shown} has no 'feature_names' attribute; its "
            f"{X.shape[1]} columns are all features."
        )
    missing = [c for c in wanted if c not in feature_names]
    if missing:
        raise ValueError(f"Column(s) {missing} not found in {shown}; its columns: {list(feature_names)}.")
    if tuple(wanted) == feature_names:
        return X, feature_names
    return X[:, [feature_names.index(c) for c in wanted]], tuple(wanted)


def _zarr_feature_names(arr: zarr.Array, shown: str) -> tuple[str, ...] | None:
    names = arr.attrs.get("feature_names")
    if names is None:
        return None
    if isinstance(names, str) or len(names) != arr.shape[1]:
        raise ValueError(
            f"{shown} has a 'feature_names' attribute of {names!r}; it must list one name per column "
            f"({arr.shape[1]})."
        )
    return tuple(str(name) for name in names)


# ----------------------------------------------------------------------------------------------------
# Parquet


def read_parquet(
    path: str,
    *,
    columns: Sequence[str] | None = None,
    id_column: str | None = None,
    storage_options: dict | None = None,
) -> Table:
    """Read a Parquet file, a directory of Parquet files or a glob of them, in chunks of whole row groups.

    The footers of all files are read (concurrently) and nothing else: row counts come from them, so the
    Table's chunks are known without reading any data. A chunk is one or more consecutive row groups of
    one file (about 32 MiB of features, decided by ``row_chunk_size``). Files are taken in natural order
    (``part.2`` before ``part.10``), the order dask uses. A column of fixed-size lists of numbers (an
    embedding) is that many features, named ``column[i]``. In a hive-partitioned lake
    (``region=EU/part-0.parquet``) the partition columns are features only when named in ``columns=``,
    and may be the ``id_column``. Files whose schemas disagree on a wanted column are refused here.

    The parameters are those of :func:`read`; returns a :class:`Table`.
    """
    fs, files = _parquet_files(path, storage_options)
    _, root = fsspec.core.url_to_fs(path, **(storage_options or {}))
    root = root.split("*")[0].rsplit("/", 1)[0] if _has_glob(root) else root
    footers = read_footers(fs, files, [_full_path(fs, name) for name in files], root)
    source = f"Parquet data {path!r}"
    dtypes = _parquet_dtypes(footers, columns, id_column)
    features, dtype = _select_features(dtypes, columns, id_column, source)
    check_schemas(footers, _wanted(features, id_column))
    widths = [_feature_width(footers[0], name, storage_options) for name in features]
    n_features = sum(widths)
    n_rows = sum(sum(footer.row_groups) for footer in footers)
    pieces = plan_pieces(footers, row_chunk_size(n_rows, n_features, dtype.itemsize))
    if not pieces:
        raise ValueError(f"{source} holds no rows.")
    spec = list(zip(features, widths))
    token = dask.base.tokenize([(f.path, f.row_groups) for f in footers], spec, str(dtype), storage_options)
    rows = (tuple(piece.n_rows for piece in pieces),)
    name = f"read-parquet-{token}"
    layer = {(name, i, 0): (read_features, piece, spec, dtype, storage_options)
             for i, piece in enumerate(pieces)}
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[])
    X = da.Array(graph, name, rows + ((n_features,),), dtype=dtype)
    ids = None
    if id_column is not None:
        id_dtype = _id_dtype(dtypes, id_column)
        id_name = f"read-parquet-ids-{dask.base.tokenize(token, id_column, str(id_dtype))}"
        id_layer = {(id_name, i): (read_ids, piece, id_column, id_dtype, storage_options)
                    for i, piece in enumerate(pieces)}
        ids = da.Array(HighLevelGraph.from_collections(id_name, id_layer, dependencies=[]), id_name, rows,
                       dtype=id_dtype)
    return Table(X, _names(expand_list_columns(spec)), ids, id_column, source)


def expand_list_columns(spec: list[tuple[str, int]]) -> list[str]:
    """Feature names of columns and their widths: a list column ``emb`` of 16 values is ``emb[0]`` to
    ``emb[15]``. :func:`source_columns` is the inverse."""
    return [n for f, width in spec for n in ([f] if width == 1 else [f"{f}[{i}]" for i in range(width)])]


def source_columns(feature_names) -> list[str]:
    """The columns to read for these feature names: ``emb[0]`` ... ``emb[15]`` is the list column ``emb``
    (so that a model fitted on an embedding column reads it again by the names it keeps)."""
    columns, i, names = [], 0, [str(n) for n in feature_names]
    while i < len(names):
        base, _, rest = names[i].rpartition("[")
        width = 0
        while base and i + width < len(names) and names[i + width] == f"{base}[{width}]":
            width += 1
        if base and rest == "0]" and width > 1:
            columns.append(base)
            i += width
        else:
            columns.append(names[i])
            i += 1
    return columns


def _parquet_dtypes(footers: list, columns, id_column) -> pd.Series:
    """The columns of the first file as pandas dtypes (a list of numbers as its values' dtype), and the
    hive partition columns that are named (as ``columns=`` or the id)."""
    schema = footers[0].schema
    lists = {f.name: f.type.value_type for f in schema if is_list_of_numbers(f.type)}
    scalar = pa.schema([f for f in schema if f.name not in lists])
    dtypes = scalar.empty_table().to_pandas().dtypes
    for name, value_type in lists.items():
        dtypes[name] = np.dtype(value_type.to_pandas_dtype())
    named = set([columns] if isinstance(columns, str) else (columns or [])) | {id_column}
    for name in footers[0].partition:
        if name in named and name not in dtypes:
            values = [footer.partition.get(name, "") for footer in footers]
            dtypes[name] = _partition_dtype(values)
    return dtypes


def _partition_dtype(values: list[str]) -> np.dtype:
    for dtype in (np.int64, np.float64):
        try:
            np.array(values).astype(dtype)
            return np.dtype(dtype)
        except ValueError:
            continue
    return np.dtype(object)


def _feature_width(footer, name: str, storage_options) -> int:
    if name in footer.partition:
        return 1
    field_type = footer.schema.field(name).type
    if not is_list_of_numbers(field_type):
        return 1
    return list_width(field_type) or first_list_width(footer, name, storage_options)


def _parquet_files(path: str, storage_options: dict | None) -> tuple[fsspec.AbstractFileSystem, list[str]]:
    fs, root = fsspec.core.url_to_fs(path, **(storage_options or {}))
    if _has_glob(root):
        found = []
        for match in fs.glob(root):
            found.extend(_parquet_files_under(fs, match) if fs.isdir(match) else [match])
    elif fs.isdir(root):
        found = _parquet_files_under(fs, root)
    elif fs.exists(root):
        found = [root]
    else:
        raise FileNotFoundError(f"No Parquet data at {path!r}: the path does not exist.")
    if not found:
        raise FileNotFoundError(
            f"No Parquet files at {path!r} (looked for names ending in {', '.join(PARQUET_SUFFIXES)})."
        )
    return fs, sorted(found, key=natural_sort_key)


def _parquet_files_under(fs: fsspec.AbstractFileSystem, directory: str) -> list[str]:
    """Data files below ``directory``, skipping hidden and bookkeeping names (``.tmp``, ``_SUCCESS``)."""
    directory = directory.rstrip("/")
    return [
        name
        for name in fs.find(directory)
        if name.endswith(PARQUET_SUFFIXES)
        and not any(part.startswith((".", "_")) for part in name[len(directory) :].split("/") if part)
    ]


# ----------------------------------------------------------------------------------------------------
# CSV


def read_csv(
    path: str,
    *,
    columns: Sequence[str] | None = None,
    id_column: str | None = None,
    storage_options: dict | None = None,
) -> Table:
    """Read a CSV file or a glob of CSV files.

    CSV files do not record how many rows they hold, so building the Table reads the data once to count
    the rows of each chunk; every pass of a fit then parses the text again. For repeated fits, convert
    the data to Parquet or Zarr, or persist ``Table.X``.

    The parameters are those of :func:`read`; returns a :class:`Table`.
    """
    fs, root = fsspec.core.url_to_fs(path, **(storage_options or {}))
    files = sorted(
        fs.glob(root) if _has_glob(root) else [root] if fs.isfile(root) else [], key=natural_sort_key
    )
    if not files:
        raise FileNotFoundError(f"No CSV data at {path!r}: no such file.")
    source = f"CSV data {path!r}"
    paths = [_full_path(fs, name) for name in files]
    # dask would take every file's column types from a sample of the first file: a header-only first
    # file makes every column text, and integers there with decimals (or values past int64) later break
    # or wrap. Learn the columns from the first file that holds rows, then read the features as float64,
    # which they become anyway.
    sample_file = next((name for name in files if _csv_has_rows(fs, name)), files[0])
    try:
        with fs.open(sample_file, "rb") as f:
            sample = pd.read_csv(f, nrows=1000)
    except pd.errors.ParserError as exc:
        raise _csv_parse_error(sample_file, exc) from None
    features, dtype = _select_features(sample.dtypes, columns, id_column, source)
    column_types = {name: "float64" for name in features}
    if id_column is not None:
        column_types[id_column] = sample.dtypes[id_column]
    frame = dd.read_csv(paths, dtype=column_types, storage_options=storage_options)
    parts = _partitions(frame, features, id_column)
    try:
        row_counts = _count_rows(parts)
    except pd.errors.ParserError as exc:
        split = len(parts) > len(files)  # large files are read in blocks
        raise _csv_parse_error(path if len(files) > 1 else files[0], exc, split) from None
    id_dtype = _id_dtype(frame.dtypes, id_column)
    where = [source] * len(parts)
    return _table_from_partitions(parts, features, dtype, id_column, id_dtype, row_counts, where, source)


def _csv_has_rows(fs: fsspec.AbstractFileSystem, name: str) -> bool:
    """Whether a CSV file holds a data row after its header."""
    with fs.open(name, "rb") as f:
        f.readline()
        return bool(f.readline().strip())


def _csv_parse_error(where: str, exc: Exception, split: bool = False) -> ValueError:
    message = str(exc).strip().splitlines()[-1].removeprefix("Original Message: ").rstrip(".")
    note = " (line numbers count from the start of the block dask was reading)" if split else ""
    return ValueError(
        f"Cannot parse the CSV data in {where!r}: {message}{note}. Every row needs as many fields as the "
        "header."
    )


# ----------------------------------------------------------------------------------------------------
# DataFrames


def read_frame(frame, *, columns: Sequence[str] | None = None, id_column: str | None = None) -> Table:
    """Take the features (and ids) of a pandas or dask DataFrame.

    A pandas DataFrame is copied into a numpy array cut into chunks of about 32 MiB. A dask DataFrame
    stays lazy, but its partitions' lengths are unknown: building the Table computes them, which is one
    pass over the frame (persist it first if it is expensive to compute).

    The parameters are those of :func:`read`; returns a :class:`Table`.
    """
    kind = "pandas DataFrame" if isinstance(frame, pd.DataFrame) else "dask DataFrame"
    features, dtype = _select_features(frame.dtypes, columns, id_column, kind)
    if isinstance(frame, dd.DataFrame):
        parts = _partitions(frame, features, id_column)
        id_dtype = _id_dtype(frame.dtypes, id_column)
        where = [kind] * len(parts)
        return _table_from_partitions(
            parts, features, dtype, id_column, id_dtype, _count_rows(parts), where, kind
        )
    values = frame[features].to_numpy(dtype=dtype, na_value=np.nan)
    rows = row_chunk_size(values.shape[0], values.shape[1], dtype.itemsize)
    X = da.from_array(values, chunks=(max(1, rows), values.shape[1]))
    ids = None if id_column is None else da.from_array(frame[id_column].to_numpy(), chunks=(X.chunks[0],))
    return Table(X, _names(features), ids, id_column, kind)


# ----------------------------------------------------------------------------------------------------
# Shared by the table readers


def _partitions(frame: dd.DataFrame, features: list, id_column: str | None) -> list:
    """The frame's partitions (only the wanted columns) as delayed pandas DataFrames.

    Not ``to_dask_array(lengths=True)``: on a column subset of a Parquet frame dask's optimizer merges
    small partitions when it builds the array, which then has fewer blocks than lengths (dask/dask#12411).
    The lengths are counted on these very partitions, so they match whatever the optimizer did.
    """
    return frame[_wanted(features, id_column)].to_delayed()


def _table_from_partitions(
    parts: list,
    features: list,
    dtype: np.dtype,
    id_column: str | None,
    id_dtype: np.dtype | None,
    row_counts: Sequence[int],
    where: Sequence[str],
    source: str,
) -> Table:
    """One row chunk per partition, of the given lengths (partitions without rows are left out)."""
    if len(parts) != len(row_counts):
        raise RuntimeError(
            f"dask split {source} into {len(parts)} partitions where {len(row_counts)} were expected; "
            "cannot align the row counts with the partitions."
        )
    x_blocks, id_blocks = [], []
    for part, n_rows, name in zip(parts, row_counts, where):
        if n_rows == 0:
            continue  # an empty file adds nothing, and an empty chunk only costs a task per pass
        block = dask.delayed(_feature_block, pure=True)(part, features, dtype, n_rows, name)
        x_blocks.append(
            da.from_delayed(block, (n_rows, len(features)), dtype=dtype, meta=np.empty((0, 0), dtype))
        )
        if id_column is not None:
            ids = dask.delayed(_id_block, pure=True)(part, id_column, id_dtype)
            id_blocks.append(da.from_delayed(ids, (n_rows,), dtype=id_dtype, meta=np.empty((0,), id_dtype)))
    if not x_blocks:
        raise ValueError(f"{source} holds no rows.")
    X = da.concatenate(x_blocks, axis=0)
    ids = da.concatenate(id_blocks, axis=0) if id_blocks else None
    return Table(X, _names(features), ids, id_column, source)


def _feature_block(
    part: pd.DataFrame, features: list, dtype: np.dtype, n_rows: int, where: str
) -> np.ndarray:
    if len(part) != n_rows:
        # The chunk sizes were promised from metadata; a mismatch would silently misalign labels and ids.
        raise RuntimeError(f"Read {len(part)} rows from {where}, whose metadata promised {n_rows}.")
    return part[features].to_numpy(dtype=dtype, na_value=np.nan)


def _id_block(part: pd.DataFrame, id_column: str, id_dtype: np.dtype) -> np.ndarray:
    return part[id_column].to_numpy(dtype=id_dtype)


def _select_features(dtypes: pd.Series, columns, id_column, source: str) -> tuple[list, np.dtype]:
    """The feature columns and the float dtype they are read as; errors name the column at fault."""
    available = list(dtypes.index)
    if id_column is not None and id_column not in available:
        raise ValueError(f"The id column {id_column!r} is not in {source}; its columns: {available}.")
    if columns is None:
        features = [
            c for c in available if c != id_column and _is_number(dtypes[c]) and not _is_index_column(c)
        ]
        skipped = [c for c in available if c != id_column and c not in features]
        if skipped:
            logger.info("Reading %s: skipping columns that are not numbers: %s", source, skipped)
        id_like = [c for c in features if _looks_like_an_id(c, dtypes[c])]
        if id_like:
            # An id clustered as a feature dominates the distances and silently ruins the clusters.
            warning = IdLikeColumnWarning(
                f"Column(s) {id_like} of {source} look like identifiers but will be clustered as features. "
                f"Pass id_column={id_like[0]!r} to carry it to the outputs instead, or columns=[...] to "
                "choose the features."
            )
            warning.columns = id_like
            warnings.warn(warning, stacklevel=4)
        if not features:
            raise ValueError(
                f"{source} has no numeric columns to cluster (columns and dtypes: "
                f"{dict(dtypes.astype(str))}). Encode the features as numbers first."
            )
    else:
        features = [columns] if isinstance(columns, str) else list(columns)
        missing = [c for c in features if c not in available]
        if missing:
            raise ValueError(f"Column(s) {missing} not found in {source}; its columns: {available}.")
        if id_column in features:
            raise ValueError(f"The id column {id_column!r} is also listed in columns=; it cannot be both.")
        for column in features:
            if not _is_number(dtypes[column]):
                raise ValueError(
                    f"Column {column!r} of {source} has dtype {dtypes[column]}; K-means needs numbers. Leave "
                    "it out with columns=[...], or encode it as numbers (e.g. one-hot) before clustering."
                )
        if not features:
            raise ValueError("columns= is empty; name at least one feature column.")
    all_float32 = all(_numpy_dtype(dtypes[c]) == np.float32 for c in features)
    return features, np.dtype(np.float32 if all_float32 else np.float64)


def _looks_like_an_id(name, dtype) -> bool:
    """An integer column named ``id``, ``..._id``, ``... id`` or ``...Id`` (``customer_id``, ``userId``)."""
    text = str(name)
    named_like_an_id = text.lower() == "id" or text.lower().endswith(("_id", " id", "-id")) or (
        text.endswith("Id") and len(text) > 2 and text[-3].islower()
    )
    return named_like_an_id and pd.api.types.is_integer_dtype(dtype)


def _is_number(dtype) -> bool:
    types = pd.api.types
    return types.is_bool_dtype(dtype) or (types.is_numeric_dtype(dtype) and not types.is_complex_dtype(dtype))


def _numpy_dtype(dtype) -> np.dtype:
    return np.dtype(getattr(dtype, "numpy_dtype", dtype))


def _count_rows(parts: list) -> list[int]:
    """The length of every partition: one pass over the data."""
    return list(dask.compute([dask.delayed(len)(part) for part in parts])[0])


def _id_dtype(dtypes: pd.Series, id_column: str | None) -> np.dtype | None:
    if id_column is None:
        return None
    dtype = dtypes[id_column]
    numpy_dtype = _numpy_dtype(dtype) if _is_number(dtype) else np.dtype(object)
    # Nullable integers with missing values cannot be numpy ints; strings stay Python objects.
    return numpy_dtype if numpy_dtype.kind in "fiub" else np.dtype(object)


def _is_index_column(name) -> bool:
    return isinstance(name, str) and name.startswith(_PANDAS_INDEX_PREFIX)


def _wanted(features: list, id_column: str | None) -> list:
    return features if id_column is None else [*features, id_column]


def _names(features: list) -> tuple[str, ...]:
    return tuple(str(c) for c in features)


# ----------------------------------------------------------------------------------------------------
# Which reader


_TABLE_READERS = {
    **{suffix: read_parquet for suffix in PARQUET_SUFFIXES},
    **{suffix: read_csv for suffix in CSV_SUFFIXES},
}


def _format_of(path: str, array: str | None, storage_options: dict | None) -> str:
    """The suffix of the reader for ``path``; a directory without one is looked into."""
    if array is not None or "::" in path:
        return ".zarr"
    suffix = os.path.splitext(path.rstrip("/"))[1].lower()
    if suffix in ZARR_SUFFIXES or suffix in _TABLE_READERS:
        return suffix
    fs, root = fsspec.core.url_to_fs(path, **(storage_options or {}))
    if _has_glob(root):
        suffixes = {os.path.splitext(name)[1].lower() for name in fs.glob(root)}
        if not suffixes:
            raise FileNotFoundError(f"No files match {path!r}.")
        if len(suffixes) == 1 and next(iter(suffixes)) in _TABLE_READERS:
            return suffixes.pop()
        return ".parquet"  # directories of a partitioned lake: read_parquet looks inside them
    if not fs.exists(root):
        raise FileNotFoundError(f"No such file or directory: {path!r}.")
    if fs.isdir(root):
        if any(fs.exists(f"{root.rstrip('/')}/{marker}") for marker in _ZARR_MARKERS):
            return ".zarr"
        if _parquet_files_under(fs, root):
            return ".parquet"
        raise ValueError(
            f"The directory {path!r} is neither a Zarr store nor a directory of Parquet files "
            f"({', '.join(PARQUET_SUFFIXES)}). Point to the store or the files, e.g. '{path}/*.csv'."
        )
    known = ", ".join((*ZARR_SUFFIXES, *PARQUET_SUFFIXES, *CSV_SUFFIXES))
    raise ValueError(f"Cannot tell the format of {path!r} from its name; supported: {known}.")


def _has_glob(path: str) -> bool:
    return any(char in path for char in "*?[")


def _full_path(fs: fsspec.AbstractFileSystem, name: str) -> str:
    """A path dask can open with the same filesystem: local paths as they are, others with their protocol."""
    return name if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(name)
