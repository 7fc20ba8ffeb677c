"""Reading a Zarr array inside dask tasks, with errors that name the store chunks that failed.

Kept apart from ``io.readers`` so that worker processes, which unpickle this class with every read
task, import numpy and zarr only (not pandas and pyarrow: about 80 MiB of worker memory).
"""

from __future__ import annotations

import itertools

import zarr


class ChunkNamingReader:
    """A Zarr array whose failed reads name the store chunks they touched (a corrupt or unreadable one).

    zarr's own error ("Zstd decompression error: invalid input data") says what failed, not where.
    """

    def __init__(self, arr: zarr.Array, shown: str):
        self.arr, self.shown = arr, shown
        self.shape, self.dtype, self.ndim = arr.shape, arr.dtype, arr.ndim

    def __getitem__(self, key):
        try:
            return self.arr[key]
        except Exception as exc:  # noqa: BLE001 - re-raised with the failing chunks named
            rows = key[0] if isinstance(key, tuple) else key
            start, stop, _ = rows.indices(self.shape[0]) if isinstance(rows, slice) else (0, self.shape[0], 1)
            failing = self._failing_chunks(start, stop)
            raise OSError(
                f"Cannot read rows {start:,} to {stop - 1:,} of {self.shown}: store chunk(s) "
                f"{', '.join(failing[:5])}{' ...' if len(failing) > 5 else ''} failed ({type(exc).__name__}: "
                f"{exc}). The chunk may be corrupt: rewrite it, or restore it from a copy."
            ) from exc

    def _failing_chunks(self, start: int, stop: int) -> list[str]:
        """Read the store chunks of rows start:stop one at a time and return the keys of those that fail."""
        (row_step, col_step), failing, touched = self.arr.chunks, [], []
        column_chunks = range(-(-self.shape[1] // col_step))
        for i, j in itertools.product(range(start // row_step, -(-stop // row_step)), column_chunks):
            touched.append(self.arr.metadata.encode_chunk_key((i, j)))
            try:
                self.arr[i * row_step : (i + 1) * row_step, j * col_step : (j + 1) * col_step]
            except Exception:  # noqa: BLE001 - this is the one being looked for
                failing.append(touched[-1])
        return failing or touched
