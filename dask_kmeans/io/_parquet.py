"""Parquet lakes as they are: footers read concurrently, chunks of whole row groups, embedding columns.

What :func:`dask_kmeans.io.read_parquet` builds on. Reading a lake costs one footer per file (read by a
pool of threads, since on object stores each is a round trip); nothing else is read until a pass. A chunk
is one or more consecutive row groups of one file, up to the rows that ``row_chunk_size`` (the one place
that decides chunk sizes) gives, so a file of any size streams through small workers. A column of
fixed-size lists of numbers (``fixed_size_list<float>[384]``, or ``list<float>`` whose lists all have one
length) is that many features. Hive partition directories (``region=EU/part-0.parquet``) give columns
that are never features unless named, and can serve as the id column.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

_FOOTER_THREADS = 16


@dataclass(frozen=True)
class ParquetFile:
    """One file of a lake, from its footer: rows per row group, schema, hive partition values."""

    path: str  # as fsspec opens it
    shown: str  # as messages name it
    row_groups: tuple[int, ...]
    schema: pa.Schema
    partition: dict


@dataclass(frozen=True)
class Piece:
    """One chunk: consecutive row groups of one file."""

    file: ParquetFile
    row_groups: tuple[int, ...]
    n_rows: int


def read_footers(fs: fsspec.AbstractFileSystem, names: list[str], paths: list[str], root: str) -> list:
    """The footer of every file, read concurrently (in the files' order)."""

    def footer(i: int) -> ParquetFile:
        try:
            with fs.open(names[i], "rb") as f:
                metadata = pq.ParquetFile(f).metadata
                schema = metadata.schema.to_arrow_schema()
        except Exception as exc:
            raise ValueError(f"Cannot read the Parquet footer of {names[i]!r}: {exc}") from exc
        rows = tuple(metadata.row_group(g).num_rows for g in range(metadata.num_row_groups))
        return ParquetFile(paths[i], names[i], rows, schema, _hive_partition(names[i], root))

    with ThreadPoolExecutor(min(_FOOTER_THREADS, max(1, len(names)))) as pool:
        return list(pool.map(footer, range(len(names))))


def _hive_partition(name: str, root: str) -> dict:
    """``key=value`` directories between the lake's root and the file."""
    relative = name[len(root.rstrip("/")) :] if name.startswith(root.rstrip("/")) else name
    parts = [p for p in relative.split("/")[:-1] if "=" in p]
    return dict(p.split("=", 1) for p in parts)


def list_width(field_type: pa.DataType) -> int | None:
    """The number of values of a list column type when fixed by the type; None otherwise."""
    return field_type.list_size if pa.types.is_fixed_size_list(field_type) else None


def is_list_of_numbers(field_type: pa.DataType) -> bool:
    if not (pa.types.is_fixed_size_list(field_type) or pa.types.is_list(field_type)
            or pa.types.is_large_list(field_type)):
        return False
    value = field_type.value_type
    return pa.types.is_integer(value) or pa.types.is_floating(value) or pa.types.is_boolean(value)


def check_schemas(files: list[ParquetFile], columns: list[str]) -> None:
    """Refuse, before any pass, a file that lacks a wanted column or holds it with another kind of type."""
    first = files[0]
    for file in files[1:]:
        for name in columns:
            if name in file.partition or name in first.partition:
                continue
            if file.schema.get_field_index(name) < 0:
                raise ValueError(
                    f"Column {name!r} is in {first.shown!r} but not in {file.shown!r}: the files of the lake "
                    "do not share one schema. Fix or leave out that file, or choose columns all files have."
                )
            expected, found = first.schema.field(name).type, file.schema.field(name).type
            if _kind(expected) != _kind(found):
                raise ValueError(
                    f"Column {name!r} is {expected} in {first.shown!r} but {found} in {file.shown!r}: the "
                    "files of the lake do not share one schema."
                )


def _kind(field_type: pa.DataType):
    if is_list_of_numbers(field_type):
        return ("list", list_width(field_type))
    if pa.types.is_integer(field_type) or pa.types.is_floating(field_type) or pa.types.is_boolean(field_type):
        return "number"
    return str(field_type)


def plan_pieces(files: list[ParquetFile], rows_per_chunk: int) -> list[Piece]:
    """Chunks of consecutive row groups of one file, each up to ``rows_per_chunk`` rows (a row group
    larger than that is a chunk of its own); files without rows give none."""
    pieces = []
    for file in files:
        groups, n = [], 0
        for g, rows in enumerate(file.row_groups):
            if groups and n + rows > rows_per_chunk:
                pieces.append(Piece(file, tuple(groups), n))
                groups, n = [], 0
            if rows:
                groups.append(g)
                n += rows
        if groups:
            pieces.append(Piece(file, tuple(groups), n))
    return pieces


def read_features(piece: Piece, features: list[tuple[str, int]], dtype, storage_options) -> np.ndarray:
    """The features of one chunk as an (n_rows, n_features) array; missing values are NaN.

    Read a row group at a time into the output: arrow holds about three times the bytes of what it
    decodes at its peak, so reading a chunk whole would take several chunks' worth of worker memory.
    """
    out = np.empty((piece.n_rows, sum(width for _, width in features)), dtype=dtype)
    columns = [name for name, _ in features if name not in piece.file.partition]
    for rows, table in _row_groups(piece, columns, storage_options):
        start = 0
        for name, width in features:
            if name in piece.file.partition:
                out[rows, start] = float(piece.file.partition[name])
            elif width == 1 and not is_list_of_numbers(table.schema.field(name).type):
                out[rows, start] = _numbers(table.column(name).combine_chunks(), dtype)
            else:
                out[rows, start : start + width] = _list_values(
                    table.column(name).combine_chunks(), width, dtype, name, piece.file.shown)
            start += width
    return out


def read_ids(piece: Piece, id_column: str, id_dtype, storage_options) -> np.ndarray:
    if id_column in piece.file.partition:
        return np.full(piece.n_rows, piece.file.partition[id_column]).astype(id_dtype)
    parts = [np.asarray(table.column(id_column).to_numpy(), dtype=id_dtype)
             for _, table in _row_groups(piece, [id_column], storage_options)]
    return np.concatenate(parts)


def _row_groups(piece: Piece, columns: list[str], storage_options):
    """Each row group of the piece as (the slice of the chunk's rows it fills, an arrow table)."""
    with contextlib.ExitStack() as stack:
        if "://" in piece.file.path:
            source = stack.enter_context(fsspec.open(piece.file.path, "rb", **(storage_options or {})))
        else:
            source = piece.file.path  # arrow reads local files itself, without Python file objects
        parquet = pq.ParquetFile(source)
        start = 0
        for g in piece.row_groups:
            # One thread: dask runs a task per core already, and arrow's threads would hold more buffers.
            table = parquet.read_row_group(g, columns=columns, use_threads=False)
            if table.num_rows != piece.file.row_groups[g]:
                # The chunk sizes were promised by the footer; a mismatch would misalign labels and ids.
                raise RuntimeError(f"Read {table.num_rows} rows from row group {g} of {piece.file.shown}, "
                                   f"whose footer promised {piece.file.row_groups[g]}.")
            yield slice(start, start + table.num_rows), table
            start += table.num_rows
            del table
            # arrow's allocator keeps the pages it freed: give them back before the next row group.
            pa.default_memory_pool().release_unused()


def _numbers(values: pa.Array, dtype) -> np.ndarray:
    target = pa.float32() if np.dtype(dtype) == np.float32 else pa.float64()
    return values.cast(target, safe=False).to_numpy(zero_copy_only=False)  # int64 beyond 2**53 rounds


def _list_values(values: pa.Array, width: int, dtype, name: str, shown: str) -> np.ndarray:
    """A list column as (n_rows, width) numbers: null lists and null values become NaN; ragged lists are
    refused, naming the column and the file."""
    out = np.full((len(values), width), np.nan, dtype=dtype)
    present = values.is_valid().to_numpy(zero_copy_only=False)
    lengths = pc.list_value_length(values).to_numpy(zero_copy_only=False)
    if not (lengths[present] == width).all():
        bad = int(np.flatnonzero(present & (lengths != width))[0])
        raise ValueError(
            f"Column {name!r} of {shown} holds lists of {int(lengths[bad])} values where {width} were "
            f"expected (first at row {bad} of the file's chunk): K-means needs the same number of features "
            "in every row. Pad or drop those rows."
        )
    flat = _numbers(pc.list_flatten(values), dtype)
    out[present] = flat.reshape(-1, width)
    return out


def first_list_width(file: ParquetFile, name: str, storage_options) -> int:
    """The length of the first non-null list of a ``list<...>`` column (its type does not fix it)."""
    for g, rows in enumerate(file.row_groups):
        if not rows:
            continue
        [(_, table)] = _row_groups(Piece(file, (g,), rows), [name], storage_options)
        column = table.column(name).combine_chunks()
        lengths = pc.list_value_length(column).drop_null()
        if len(lengths):
            return int(lengths[0].as_py())
    raise ValueError(f"Column {name!r} of {file.shown!r} holds no lists to tell their length from.")
