"""Writers: labels (and distances and ids) to Zarr or Parquet, out of core and atomically.

Each row chunk is written by its own task on the workers, so nothing is gathered on the client. The
output is built under a hidden temporary name next to the destination and moved into place only when
every chunk is written (see :func:`~dask_kmeans.io.atomic_output`).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import dask
import dask.array as da
import dask.threaded
import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zarr
from dask.system import CPU_COUNT

from .._atomic import atomic_output
from .._scheduler import blas_threads_for_dask, current_client, wait_for

ZARR_SUFFIXES = (".zarr",)
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")


def write_labels(
    path: str | os.PathLike,
    labels: da.Array,
    *,
    distances: da.Array | None = None,
    ids: da.Array | None = None,
    id_name: str = "id",
    overwrite: bool = False,
    storage_options: dict | None = None,
) -> str:
    """Write each row's label, and optionally its distance and id, to Zarr or Parquet.

    Parameters
    ----------
    path : str or os.PathLike
        Local path or fsspec URL. A name ending in ``.zarr`` gets a Zarr group (format 3) with the arrays
        ``labels`` (int32), ``distances`` and ``ids``; any other name (``.parquet``, or none) gets a
        directory of Parquet files with the columns ``id_name`` (if ids are given), ``label`` and
        ``distance`` (if given).
    labels : dask.array.Array of shape (n_samples,)
        Integer labels with known chunk sizes, e.g. ``model.predict(table.X)``.
    distances : dask.array.Array of shape (n_samples,), optional
        Each row's distance to its centre.
    ids : dask.array.Array of shape (n_samples,), optional
        Row ids (e.g. ``Table.ids``), written first so the output can be joined back to the input.
    id_name : str, default="id"
        The id column's name in Parquet (an attribute of the Zarr group).
    overwrite : bool, default=False
        Replace an existing output. Without it an existing output raises ``OutputExistsError``.
    storage_options : dict, optional
        Passed to fsspec for URLs.

    Returns
    -------
    str
        The path written.

    Notes
    -----
    Parquet gets one file per row chunk of ``labels`` (``part.00000.parquet``, ...), in row order. Zarr
    chunks must be equal in size: when the row chunks are not (one chunk per Parquet input file, say),
    the rows are rechunked to the largest chunk size first. ``distances`` and ``ids`` are rechunked like
    ``labels``. All columns of a chunk are computed and written by one task, in a single pass. If any task
    fails, the run raises only after every other write has stopped, and leaves no output and no temporary
    files behind.

    Examples
    --------
    >>> import os, tempfile
    >>> import dask.array as da
    >>> import pandas as pd
    >>> out = write_labels(
    ...     os.path.join(tempfile.mkdtemp(), "labels.parquet"),
    ...     da.from_array([0, 1, 1, 0], chunks=2),
    ...     ids=da.from_array([10, 11, 12, 13], chunks=2),
    ... )
    >>> pd.read_parquet(out)
       id  label
    0  10      0
    1  11      1
    2  12      1
    3  13      0
    """
    path = os.fspath(path)
    columns = _aligned_columns(labels, distances, ids, id_name)
    write = _writer_for(path)
    with atomic_output(path, overwrite=overwrite, storage_options=storage_options) as tmp:
        write(tmp, columns, id_name, storage_options)
    return path


def _writer_for(path: str):
    suffix = os.path.splitext(path.rstrip("/"))[1].lower()
    if suffix in ZARR_SUFFIXES:
        return _write_zarr
    if suffix in PARQUET_SUFFIXES or suffix == "":
        return _write_parquet
    raise ValueError(
        f"Cannot write labels to {path!r}: name a Zarr store ('*.zarr') or a Parquet directory "
        "('*.parquet', or a name without a suffix)."
    )


def _aligned_columns(labels, distances, ids, id_name: str) -> dict[str, da.Array]:
    """The output columns by Parquet name, checked to be 1-D, of one length, and chunked like ``labels``."""
    labels = _as_dask_1d(labels, "labels")
    if np.dtype(labels.dtype).kind not in "iub":
        raise ValueError(f"labels have dtype {labels.dtype}; expected integer cluster indices.")
    if any(np.isnan(c) for c in labels.chunks[0]):
        raise ValueError(
            "labels have unknown chunk sizes; call labels.compute_chunk_sizes() or read the data with "
            "dask_kmeans.io.read, whose chunks are known."
        )
    columns = {}
    if ids is not None:
        columns[id_name] = ids
    columns["label"] = labels.astype(np.int32)
    if distances is not None:
        columns["distance"] = distances
    if len(set(columns)) != len(columns) or id_name in ("label", "distance"):
        raise ValueError(f"id_name={id_name!r} clashes with the 'label' or 'distance' column; rename it.")
    for name, what in ((id_name, "ids"), ("distance", "distances")):
        if name in columns:
            column = _as_dask_1d(columns[name], what)
            if column.shape != labels.shape:
                raise ValueError(
                    f"{what} has {column.shape[0]} rows but labels have {labels.shape[0]}; they must align."
                )
            columns[name] = column.rechunk(labels.chunks)
    return columns


def _as_dask_1d(values, what: str) -> da.Array:
    values = values if isinstance(values, da.Array) else da.from_array(np.asarray(values))
    if values.ndim != 1:
        raise ValueError(f"{what} must be 1-D (one value per row); got shape {values.shape}.")
    return values


# ----------------------------------------------------------------------------------------------------
# Parquet


def _write_parquet(tmp: str, columns: dict[str, da.Array], id_name: str, storage_options: dict | None):
    fs, root = fsspec.core.url_to_fs(tmp, **(storage_options or {}))
    fs.makedirs(root, exist_ok=True)
    blocks = _blocks_by_chunk(columns)
    width = max(5, len(str(len(blocks) - 1)))  # zero-padded, so that name order is row order everywhere
    writes = [
        dask.delayed(_write_parquet_part, pure=False)(
            fs, f"{root}/part.{index:0{width}d}.parquet", list(columns), *chunk_blocks
        )
        for index, chunk_blocks in enumerate(blocks)
    ]
    _compute_every_write(writes)


def _write_parquet_part(fs: fsspec.AbstractFileSystem, name: str, names: list[str], *blocks) -> None:
    table = pa.table({column: _arrow_column(block) for column, block in zip(names, blocks)})
    with fs.open(name, "wb") as f:
        pq.write_table(table, f)


def _arrow_column(block: np.ndarray) -> pa.Array:
    block = np.asarray(block)
    return pa.array(block.tolist() if block.dtype.kind == "O" else block)


# ----------------------------------------------------------------------------------------------------
# Zarr

_ZARR_NAMES = {"label": "labels", "distance": "distances"}  # and the id column becomes "ids"


def _write_zarr(tmp: str, columns: dict[str, da.Array], id_name: str, storage_options: dict | None):
    columns = _regular_row_chunks(columns)
    chunk_rows = max(1, columns["label"].chunks[0][0])
    kwargs = {"storage_options": storage_options} if "://" in tmp and storage_options else {}
    group = zarr.open_group(tmp, mode="w-", zarr_format=3, **kwargs)
    group.attrs["id_name"] = id_name
    names = []
    for column, values in columns.items():
        name = _ZARR_NAMES.get(column, "ids")
        dtype, fill_value = _zarr_dtype(values.dtype)
        group.create_array(name, shape=values.shape, chunks=(chunk_rows,), dtype=dtype, fill_value=fill_value)
        names.append(name)
    writes = []
    start = 0
    for chunk_blocks, n_rows in zip(_blocks_by_chunk(columns), columns["label"].chunks[0]):
        region = slice(start, start + n_rows)
        writes.append(dask.delayed(_write_zarr_region, pure=False)(tmp, kwargs, names, region, *chunk_blocks))
        start += n_rows
    _compute_every_write(writes)


def _write_zarr_region(store: str, kwargs: dict, names: list[str], region: slice, *blocks) -> None:
    group = zarr.open_group(store, mode="r+", **kwargs)
    for name, block in zip(names, blocks):
        group[name][region] = block


def _zarr_dtype(dtype: np.dtype):
    dtype = np.dtype(dtype)
    if dtype.kind in "OUST":
        return str, ""
    return dtype, (np.nan if dtype.kind == "f" else -1 if dtype.kind == "i" else 0)


def _regular_row_chunks(columns: dict[str, da.Array]) -> dict[str, da.Array]:
    """Zarr chunks are all the same size (the last may be short): rechunk uneven rows to the largest chunk.

    Two tasks must never write to the same Zarr chunk, so the dask chunks have to match the Zarr ones.
    """
    sizes = columns["label"].chunks[0]
    if all(size == sizes[0] for size in sizes[:-1]) and sizes[-1] <= sizes[0]:
        return columns
    rows = max(sizes)
    return {name: values.rechunk(rows) for name, values in columns.items()}


# ----------------------------------------------------------------------------------------------------
# Running the writes


def _blocks_by_chunk(columns: dict[str, da.Array]) -> list[tuple]:
    """For every row chunk, the delayed block of each column; the columns are optimized together, so a
    source they share (the data read for labels and distances) is computed once per chunk."""
    optimized = dask.optimize(*columns.values())
    per_column = [values.to_delayed(optimize_graph=False).ravel() for values in optimized]
    return list(zip(*per_column))


def _compute_every_write(writes: list) -> None:
    """Compute the writes; if one fails, raise only after none is still running.

    Both dask schedulers raise at the first failure while other tasks are still running; a write that
    finishes after the temporary output was cleaned up would leave files behind.
    """
    client = current_client()
    with blas_threads_for_dask():
        if client is not None:
            futures = client.compute(writes)
            wait_for(futures)  # every write has finished or failed (failures of inputs fail their writes)
            client.gather(futures)  # raises the first error
            return
        scheduler = dask.base.get_scheduler()
        if scheduler is not None and scheduler is not dask.threaded.get:
            dask.compute(*writes)  # synchronous: nothing else runs; a process pool: not ours to wait on
            return
        pool = ThreadPoolExecutor(int(dask.config.get("num_workers", None) or CPU_COUNT))
        try:
            dask.compute(*writes, scheduler="threads", pool=pool)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
