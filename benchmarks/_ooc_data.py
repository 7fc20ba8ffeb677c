"""The out-of-core benchmark's data: Zarr arrays of Gaussian blobs, written chunk by chunk and reused."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import sys
import time
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np
from _cluster import N_WORKERS, Cluster
from _common import PeakRSS, blob_parameters, fill_blobs, fmt, pick_initial_centers, progress

N_FEATURES = 32
STORE_CHUNK_ROWS = 2**18  # 32 MiB of float32 x 32: the dask chunk dask_kmeans.io.read picks for these arrays
DISK_FACTOR = 2.5
MARKER = "bench_out_of_core"  # attribute that marks (and describes) a store this script wrote


@dataclass(frozen=True)
class Dataset:
    """One Zarr array of blobs: ``n`` rows, ``d`` float32 features, ``k`` true centres."""

    path: str
    n: int
    d: int
    k: int
    seed: int

    @property
    def nbytes(self) -> int:
        return self.n * self.d * 4

    @property
    def label(self) -> str:
        rows = f"{self.n / 1e6:.3g}M" if self.n >= 1_000_000 else f"{self.n / 1e3:.3g}k"
        return f"{rows}x{self.d} f32"

    @property
    def marker(self) -> dict:
        return {"n": self.n, "d": self.d, "k": self.k, "seed": self.seed, "chunk_rows": STORE_CHUNK_ROWS}

    def blob_parameters(self) -> tuple[np.ndarray, np.ndarray]:
        """The true centres and each blob's standard deviation."""
        return blob_parameters(np.random.default_rng(self.seed), self.k, self.d)


def read_array(ds: Dataset) -> da.Array:
    from dask_kmeans.io import read

    return read(ds.path).X


def _blob_block(centers: np.ndarray, stds: np.ndarray, seed: int, block_info=None) -> np.ndarray:
    """The rows of one store chunk, from a generator seeded by the seed and the chunk's index."""
    start, stop = block_info[None]["array-location"][0]
    block = np.empty((stop - start, centers.shape[1]), dtype=np.float32)
    fill_blobs(np.random.default_rng([seed, start // STORE_CHUNK_ROWS]), block, centers, stds)
    return block


def store_state(ds: Dataset) -> str:
    """"absent", "reusable" (written here with these parameters), "ours" (other ones) or "foreign"."""
    if not os.path.exists(ds.path):
        return "absent"
    import zarr

    try:
        marker = zarr.open_array(ds.path, mode="r").attrs.get(MARKER)
    except Exception:  # noqa: BLE001 - anything unreadable is not ours to delete
        return "foreign"
    if marker is None:
        return "foreign"
    return "reusable" if marker == ds.marker else "ours"


def write_store(ds: Dataset) -> tuple[float, float | None]:
    """Write the array chunk by chunk (to a ``.partial`` path, renamed when complete).

    Returns the wall time and this process's peak extra RSS (MiB) while writing.
    """
    import zarr

    partial = ds.path + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    centers, stds = ds.blob_parameters()
    rows = [STORE_CHUNK_ROWS] * (ds.n // STORE_CHUNK_ROWS)
    if ds.n % STORE_CHUNK_ROWS:
        rows.append(ds.n % STORE_CHUNK_ROWS)
    X = da.map_blocks(
        _blob_block,
        chunks=(tuple(rows), (ds.d,)),
        dtype=np.float32,
        meta=np.empty((0, 0), dtype=np.float32),
        centers=centers,
        stds=stds,
        seed=ds.seed,
    )
    with PeakRSS() as peak:
        start = time.perf_counter()
        dask.compute(X.to_zarr(partial, compute=False), scheduler="threads", num_workers=N_WORKERS)
        elapsed = time.perf_counter() - start
    zarr.open_array(partial, mode="r+").attrs[MARKER] = ds.marker
    os.rename(partial, ds.path)
    return elapsed, peak.extra_mib.get("this process")


def check_disk(directory: str, needed: int) -> None:
    existing = directory
    while not os.path.exists(existing):
        existing = os.path.dirname(existing) or "."
    free = shutil.disk_usage(existing).free
    if free < DISK_FACTOR * needed:
        sys.exit(
            f"Refusing to write {needed / 1e9:.2f} GB of Zarr stores under {directory}: {free / 1e9:.1f} GB "
            f"free there, and this benchmark wants {DISK_FACTOR}x the data's size free "
            f"({DISK_FACTOR * needed / 1e9:.1f} GB). Free space, or choose another --dir."
        )


def prepare_stores(datasets: list[Dataset], directory: str) -> tuple[list[str], list[Dataset]]:
    """Write (or reuse) the stores; returns lines for the header and the stores this run may delete."""
    states = {ds: store_state(ds) for ds in datasets}
    for ds, state in states.items():
        if state == "foreign":
            sys.exit(f"{ds.path} exists and was not written by this script: move it, or choose another --dir")
    to_write = [ds for ds in datasets if states[ds] != "reusable"]
    if to_write:
        check_disk(directory, sum(ds.nbytes for ds in to_write))
    os.makedirs(directory, exist_ok=True)
    lines = []
    for ds in datasets:
        if states[ds] == "reusable":
            lines.append(f"{ds.label}: reusing {ds.path}")
            continue
        if states[ds] == "ours":
            shutil.rmtree(ds.path)
        progress(f"writing {ds.label} ({ds.nbytes / 1e9:.2f} GB) to {ds.path}")
        elapsed, extra = write_store(ds)
        size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(ds.path) for f in fs)
        lines.append(
            f"{ds.label}: written in {elapsed:.1f} s ({ds.nbytes / 1e6 / elapsed:.0f} MB/s), "
            f"{size / 1e9:.2f} GB on disk; peak RSS of this process while writing: +{fmt(extra, '.0f')} MiB"
        )
    return lines, datasets


def zarr_codecs(path: str) -> str:
    import zarr

    arr = zarr.open_array(path, mode="r")
    names = ["?"]
    with contextlib.suppress(Exception):
        names = [type(c).__name__ for c in arr.compressors] or ["none"]
    return f"zarr format {arr.metadata.zarr_format}, compressors: {', '.join(names)}"


def initial_centers(ds: Dataset, seed: int) -> np.ndarray:
    """``k`` distinct rows of the array, drawn with ``seed``."""
    import zarr

    return pick_initial_centers(zarr.open_array(ds.path, mode="r"), ds.k, seed)


def cached_fraction(path: str) -> float | None:
    """The share of the store's bytes held in the page cache (Linux ``mincore``), or None if unknown."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                              ctypes.c_long]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        page = os.sysconf("SC_PAGE_SIZE")
        total = cached = 0
        for root, _, files in os.walk(path):
            for name in files:
                filename = os.path.join(root, name)
                size = os.path.getsize(filename)
                if size == 0:
                    continue
                fd = os.open(filename, os.O_RDONLY)
                try:
                    addr = libc.mmap(None, size, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
                    if addr in (None, ctypes.c_void_p(-1).value):
                        return None
                    pages = -(-size // page)
                    vec = (ctypes.c_ubyte * pages)()
                    ok = libc.mincore(addr, size, vec) == 0
                    libc.munmap(addr, size)
                finally:
                    os.close(fd)
                if not ok:
                    return None
                total += pages
                cached += int((np.frombuffer(vec, dtype=np.uint8) & 1).sum())
        return cached / total if total else None
    except (OSError, AttributeError, ValueError):
        return None


@contextlib.contextmanager
def stores_on_a_cluster(datasets: list[Dataset], directory: str, worker_memory: int, keep: bool):
    """Write (or reuse) the stores, say so, and start the cluster the measurements run on.

    At exit the cluster is closed and, unless ``keep``, the stores this run may delete are deleted (and
    their folder, if then empty), whether the measurements ended or failed.
    """
    cluster, stores = None, []
    try:
        lines, stores = prepare_stores(datasets, directory)
        print(f"{'store' if len(datasets) == 1 else 'stores'}: {zarr_codecs(datasets[-1].path)}; chunks of "
              f"{STORE_CHUNK_ROWS:,} rows")
        for line in lines:
            print(line)
        progress("starting the cluster")
        cluster = Cluster(worker_memory)
        yield cluster
    finally:
        if cluster is not None:
            cluster.close()
        if not keep:
            for store in stores:
                shutil.rmtree(store.path, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.rmdir(directory)  # only if empty


def print_report(table: str, lines: list[str], kept_in: str | None) -> None:
    """The results table, the lines under it, and where the stores were kept (if they were)."""
    print()
    print(table)
    print()
    for line in lines:
        print(line)
    if kept_in:
        print(f"stores kept under {kept_in}")
