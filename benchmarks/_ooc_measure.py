"""The out-of-core benchmark's measurements: read pass, streamed and in-memory fits, partial_fit, dask-ml."""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field

import dask.array as da
import numpy as np
from _cluster import N_WORKERS, Cluster, Events, workers_note
from _common import (
    PeakRSS,
    Row,
    import_dask_ml,
    inertia_of,
    lloyd_passes,
    median,
    peaks_text,
    progress,
    release_freed_memory,
)
from _ooc_data import Dataset, cached_fraction, read_array


@dataclass
class Results:
    """Everything measured for one array."""

    dataset: Dataset
    read_s: list[float] = field(default_factory=list)
    iter_s: list[float] = field(default_factory=list)
    fit_s: list[float] = field(default_factory=list)
    read_peaks: list[list[float]] = field(default_factory=list)
    fit_peaks: list[list[float]] = field(default_factory=list)
    fit_growth: list[list[float]] = field(default_factory=list)  # peak minus the RSS at the fit's start
    read_events: Events = field(default_factory=Events)
    fit_events: Events = field(default_factory=Events)
    cached_before: float | None = None
    centers: dict[str, np.ndarray] = field(default_factory=dict)
    inertias: dict[str, float] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)  # the other libraries' rows


@dataclass
class InMemory:
    """The in-memory reference: seconds per iteration per row, on how many rows and chunks, peaks."""

    per_row_s: float
    rows: int
    chunks: int
    peaks: list[float]
    source: str
    events: Events


def median_peaks(peaks: list[list[float]]) -> list[float]:
    """Each worker's median peak over repeats."""
    return [median(list(values)) for values in zip(*peaks)]


def no_persist() -> dict:
    """``fit`` keywords that keep dask_kmeans from persisting the data (versions with ``persist=``)."""
    from dask_kmeans import KMeans

    return {"persist": False} if "persist" in inspect.signature(KMeans.fit).parameters else {}


def no_labels() -> dict:
    """``KMeans`` keywords that keep no per-row labels on the client (versions with ``compute_labels``).

    With ``labels_`` (scikit-learn's default) the last pass brings 4 bytes per row to the client, and the
    workers hold their chunks' labels until the client has gathered them all: memory that grows with the
    data by design, which is what ``compute_labels=False`` is for.
    """
    from dask_kmeans import KMeans

    return {"compute_labels": False} if "compute_labels" in KMeans().get_params() else {}


def first_chunks(X: da.Array, worker_memory: int) -> tuple[int, int]:
    """How many leading chunks (and rows) take an eighth of the workers' memory: at least two per worker."""
    chunk_bytes = X.chunks[0][0] * X.shape[1] * X.dtype.itemsize
    n_chunks = min(X.numblocks[0], max(2 * N_WORKERS, N_WORKERS * worker_memory // 8 // chunk_bytes))
    return n_chunks, int(sum(X.chunks[0][:n_chunks]))


def read_pass(cluster: Cluster, X: da.Array) -> tuple[float, list[float]]:
    with cluster.peak() as peak:
        start = time.perf_counter()
        X.sum(dtype="float64").compute()
        elapsed = time.perf_counter() - start
    return elapsed, list(peak.peak_mib.values())


def streamed_fit(cluster: Cluster, X: da.Array, C0: np.ndarray, max_iter: int, metric: str = "euclidean"):
    from dask_kmeans import KMeans

    with cluster.peak() as peak:
        start = time.perf_counter()
        model = KMeans(len(C0), init=C0, tol=0.0, max_iter=max_iter, metric=metric, **no_labels(),
                       **lloyd_passes()).fit(X, **no_persist())
        elapsed = time.perf_counter() - start
    steps = np.diff([h["elapsed"] for h in model.history_])
    return float(np.median(steps)), elapsed, peak, model.cluster_centers_


def bench_streamed(cluster: Cluster, res: Results, C0: np.ndarray, max_iter: int, repeats: int,
                   metric: str = "euclidean") -> None:
    ds = res.dataset
    X = read_array(ds)
    res.cached_before = cached_fraction(ds.path)
    for r in range(repeats):
        progress(f"{ds.label}: read pass {r + 1}/{repeats}")
        t, peaks = read_pass(cluster, X)
        res.read_s.append(t)
        res.read_peaks.append(peaks)
        res.read_events = res.read_events + cluster.check(f"{ds.label} read pass {r + 1}")
        progress(f"{ds.label}: read {t:.2f} s; streamed fit {r + 1}/{repeats} (max_iter={max_iter})")
        it, wall, peak, centers = streamed_fit(cluster, X, C0, max_iter, metric)
        peaks = list(peak.peak_mib.values())
        res.iter_s.append(it)
        res.fit_s.append(wall)
        res.fit_peaks.append(peaks)
        res.fit_growth.append(list(peak.extra_mib.values()))
        res.fit_events = res.fit_events + cluster.check(f"{ds.label} streamed fit {r + 1}")
        progress(f"{ds.label}: {it:.2f} s per iteration, fit {wall:.1f} s, peaks {peaks_text(peaks)} MiB")
    res.centers["dask_kmeans"] = centers


def bench_in_memory(cluster: Cluster, ds: Dataset, C0: np.ndarray, max_iter: int, repeats: int,
                    worker_memory: int, metric: str = "euclidean") -> InMemory:
    """Time per iteration of fits on a persisted slice of the array."""
    from distributed import wait

    X = read_array(ds)
    n_chunks, rows = first_chunks(X, worker_memory)
    progress(f"in memory: persisting {n_chunks} chunks ({rows} rows) of {ds.label}")
    Xm = X[:rows].persist()
    wait(Xm)
    times, peaks = [], []
    for _ in range(repeats):
        it, _, peak, _ = streamed_fit(cluster, Xm, C0, max(5, max_iter), metric)
        times.append(it)
        peaks.append(list(peak.peak_mib.values()))
    del Xm
    time.sleep(1.0)  # let the workers drop the persisted chunks
    events = cluster.check("the in-memory fits")
    progress(f"in memory: {median(times):.3f} s per iteration on {rows} rows")
    return InMemory(median(times) / rows, rows, n_chunks, median_peaks(peaks), ds.label, events)


def bench_partial_fit(ds: Dataset, X: da.Array, C0: np.ndarray):
    """One epoch of MiniBatchKMeans.partial_fit over the chunks.

    Returns the total, reading and fitting seconds, this process's peak extra RSS (MiB) and the model.
    """
    import zarr
    from sklearn.cluster import MiniBatchKMeans

    arr = zarr.open_array(ds.path, mode="r")
    MiniBatchKMeans(len(C0), init=C0, n_init=1, random_state=0).partial_fit(arr[: 4 * len(C0)])  # warm-up
    model = MiniBatchKMeans(len(C0), init=C0, n_init=1, random_state=0)
    t_read = t_fit = 0.0
    release_freed_memory()
    with PeakRSS() as peak:
        start = 0
        for rows in X.chunks[0]:
            t0 = time.perf_counter()
            block = arr[start : start + rows]
            t1 = time.perf_counter()
            model.partial_fit(block)
            t_fit += time.perf_counter() - t1
            t_read += t1 - t0
            start += rows
            del block
    return t_read + t_fit, t_read, t_fit, peak.extra_mib["this process"], model


def partial_fit_row(res: Results, C0: np.ndarray) -> Row:
    ds = res.dataset
    what = "sklearn MiniBatchKMeans.partial_fit epoch"
    progress(f"{ds.label}: MiniBatchKMeans.partial_fit epoch")
    try:
        total, t_read, t_fit, extra, model = bench_partial_fit(ds, read_array(ds), C0)
    except ImportError as exc:
        return Row(ds, what, note=f"skipped: {exc}")
    res.centers["sklearn"] = model.cluster_centers_
    return Row(
        ds, what, time_s=total, extra={"inertia_of": "sklearn"},
        note=f"read {t_read:.2f} s + partial_fit {t_fit:.2f} s in this process (+{extra:.0f} MiB "
             "RSS); workers idle",
    )


def bench_dask_ml(cluster: Cluster, res: Results, C0: np.ndarray, max_iter: int, budget_s: float,
                  worker_memory: int) -> Row:
    ds = res.dataset
    what = "dask-ml KMeans iteration, streamed"
    KMeans, version_or_reason = import_dask_ml()
    if KMeans is None:
        return Row(ds, what, note=f"not importable here ({version_or_reason}); run with a venv that has it")
    X = read_array(ds)
    _, rows = first_chunks(X, worker_memory)

    def fit(data, n_iter: int):
        start = time.perf_counter()
        model = KMeans(len(C0), init=C0, tol=0.0, max_iter=n_iter).fit(data)
        return time.perf_counter() - start, model

    progress(f"{ds.label}: dask-ml warm-up and estimate on {rows} rows")
    fit(X[: sum(X.chunks[0][:2])], 1)  # warm-up: numba compiles its kernel on every worker
    t_slice, _ = fit(X[:rows], 1)
    events = cluster.check(f"{ds.label} dask-ml estimate")
    one = t_slice * ds.n / rows
    estimate = one + one * (max_iter + 2) / 3  # a max_iter=1 fit reads the array 3 times, max_iter=m m + 2
    if estimate > budget_s:
        return Row(
            ds, what,
            note=f"skipped: a max_iter=1 fit on {rows} rows took {t_slice:.1f} s, so the two fits would take "
                 f"about {estimate:.0f} s > --dask-ml-budget {budget_s:.0f} s",
        )
    progress(f"{ds.label}: dask-ml fits (estimated {estimate:.0f} s)")
    t_one, _ = fit(X, 1)
    events = events + cluster.check(f"{ds.label} dask-ml max_iter=1 fit")
    with cluster.peak() as peak:
        t_many, model = fit(X, max_iter)
    events = events + cluster.check(f"{ds.label} dask-ml max_iter={max_iter} fit")
    res.centers["dask-ml"] = np.asarray(model.cluster_centers_)
    n_iter = int(model.n_iter_)
    per_iter = (t_many - t_one) / (n_iter - 1) if n_iter > 1 else None
    return Row(
        ds, what, time_s=per_iter, peaks_mib=list(peak.peak_mib.values()), extra={"inertia_of": "dask-ml"},
        note=f"dask-ml {version_or_reason}; fits of max_iter=1 and {max_iter}: {t_one:.1f} s and "
             f"{t_many:.1f} s (n_iter_ {n_iter}); estimate was {estimate:.0f} s"
             + workers_note(events),
    )


def _inertias_block(X: np.ndarray, center_sets: np.ndarray) -> np.ndarray:
    """Per chunk: the inertia (float64) of each centre set in ``center_sets`` (S, k, d)."""
    return np.array([[inertia_of(X, centers) for centers in center_sets]])


def inertia_pass(X: da.Array, centers: dict[str, np.ndarray]) -> dict[str, float]:
    """Inertia of every centre set, in one pass over ``X`` on the cluster."""
    names = list(centers)
    stack = np.stack([np.asarray(centers[name], dtype=np.float64) for name in names])
    parts = X.map_blocks(
        _inertias_block, stack, chunks=((1,) * X.numblocks[0], (len(names),)), dtype=np.float64
    )
    totals = parts.sum(axis=0).compute()
    return dict(zip(names, (float(t) for t in totals)))
