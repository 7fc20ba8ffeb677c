"""Benchmark ``dask_kmeans.KMeans.fit`` against scikit-learn, dask-ml and a bare numpy GEMM pass.

Run it on a quiet machine (nothing else heavy running) from the repository root::

    python benchmarks/bench_fit.py --sizes full            # 1M x 32 (k=16) and 5M x 32 (k=64)
    python benchmarks/bench_fit.py --sizes small --repeats 1   # 200k and 500k rows: a quick check
    python benchmarks/bench_fit.py --only dask_kmeans,sklearn --markdown

Libraries (``--only``): ``dask_kmeans``, ``sklearn``, ``dask_ml``, ``gemm``. dask-ml is imported if it
can be; otherwise its rows say why not. It may pin older packages, so keep it out of the project's own
virtualenv and run the script with the interpreter of a throwaway one that has both installed, e.g.::

    python3 -m venv /tmp/daskml-venv
    /tmp/daskml-venv/bin/pip install dask-ml scikit-learn psutil
    /tmp/daskml-venv/bin/pip install -e .
    /tmp/daskml-venv/bin/python benchmarks/bench_fit.py --sizes full

Data: Gaussian blobs made with ``numpy.random.default_rng`` and a fixed seed per configuration: as many
true centres as clusters, centres uniform in [-10, 10]^d, each blob with its own standard deviation in
[1, 2]. Every configuration runs in float64 and in float32 (the float32 data is the float64 data cast).
The fixed initial centres ``C0`` are ``k`` distinct rows drawn with a fixed seed; every library starts
from the same ``C0`` in the per-iteration measurements.

What is measured, per configuration and library (each measurement ``--repeats`` times, medians shown):

init (s)
    dask_kmeans and dask-ml: wall time of ``fit(init="k-means||", max_iter=1)`` minus wall time of
    ``fit(init=C0, max_iter=1)``; both runs do one Lloyd iteration and the final labelling pass, so the
    difference is the k-means|| initialisation. scikit-learn: wall time of
    ``sklearn.cluster.kmeans_plusplus(X, k, random_state=0)``.
iter (ms)
    Median time of one Lloyd iteration, started from ``C0`` with ``tol=0`` and
    ``max_iter=--max-iter``. dask_kmeans: the median of the differences between consecutive
    ``history_[i]["elapsed"]`` of that fit (its first iteration is left out). scikit-learn
    (``algorithm="lloyd"``, ``n_init=1``) and dask-ml, which keep no per-iteration times: (wall time of
    that fit minus wall time of the same fit with ``max_iter=1``) / (``n_iter_`` - 1), with the actual
    ``n_iter_``, since a fit may converge exactly before ``--max-iter``. "numpy GEMM pass": the time of
    ``X_block @ C.T`` over the whole array in 4096-row blocks, the floor for one pass.
x sklearn, x dask-ml
    That row's iteration time divided by scikit-learn's (resp. dask-ml's) on the same data.
total (s), n_iter, inertia
    A separate fit to convergence with each library's defaults (``tol=1e-4``, ``max_iter=300``):
    dask_kmeans ``KMeans(k, random_state=0)`` (k-means||), scikit-learn
    ``KMeans(k, init="k-means++", n_init=1, random_state=0)``, dask-ml ``KMeans(k, random_state=0)``
    (k-means||; note that dask-ml's ``tol`` is an absolute bound on the centre shift, while dask_kmeans
    and scikit-learn scale it by the mean feature variance, so their ``n_iter`` differ by design).
peak (MiB)
    Peak RSS of this process during the fit to convergence, minus the RSS just before it, sampled every
    10 ms by a background thread with psutil. Where Linux lets the process reset its RSS high-water mark
    (``/proc/self/clear_refs``), the kernel's ``VmHWM`` is read after the fit too, which catches peaks
    shorter than 10 ms. Where psutil is missing, the peak of tracemalloc's traced memory during the fit
    instead (numpy's buffers are traced, BLAS's and OpenMP's are not). The header says which one was
    used. Memory the process already holds from earlier fits (freed but kept by the allocator) can be
    reused without raising the RSS, so this is the extra memory a fit needed here, not its footprint.
    scikit-learn copies ``X`` by default (``copy_x=True``), which shows here.

Both dask libraries get the same dask array: ``da.from_array(X, chunks=(rows, d)).persist()`` on the
local threaded scheduler, with about 32 MiB per chunk (``--chunk-mib``) but at least two chunks per core
so that every core has work on the small sizes. scikit-learn gets the numpy array. dask_kmeans limits the
BLAS threads itself (BLAS threads x dask threads <= cores); scikit-learn uses its OpenMP threads; dask-ml
runs as shipped. Each library does a small warm-up fit (imports, JIT compilation, thread pools) before
its first measurement.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import logging
import math
import os
import platform
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field

import dask
import dask.array as da
import numpy as np
from _common import fmt, high_water_mark, import_dask_ml, median, quiet_warnings, reset_high_water_mark

try:
    import psutil
except ImportError:  # fall back on tracemalloc for the peak memory
    psutil = None

LIBRARIES = ("dask_kmeans", "sklearn", "dask_ml", "gemm")
GEMM_BLOCK_ROWS = 4096


# ----------------------------------------------------------------------------------------------------
# Configurations and data


@dataclass(frozen=True)
class Config:
    """One benchmark data set: ``n`` rows, ``d`` features, ``k`` clusters (and true centres)."""

    n: int
    d: int
    k: int
    dtype: str
    seed: int

    @property
    def label(self) -> str:
        rows = f"{self.n // 1_000_000}M" if self.n % 1_000_000 == 0 else f"{self.n // 1000}k"
        return f"{rows}x{self.d} k={self.k} {'f64' if self.dtype == 'float64' else 'f32'}"


SIZES = {
    "small": [(200_000, 32, 16), (500_000, 32, 64)],
    "full": [(1_000_000, 32, 16), (5_000_000, 32, 64)],
}


def make_configs(sizes: str) -> list[Config]:
    return [
        Config(n, d, k, dtype, seed=1000 + i)
        for i, (n, d, k) in enumerate(SIZES[sizes])
        for dtype in ("float64", "float32")
    ]


def make_blobs(
    n: int, d: int, k: int, seed: int, block_rows: int = 1_000_000
) -> tuple[np.ndarray, np.ndarray]:
    """float64 Gaussian blobs around ``k`` centres uniform in [-10, 10]^d, std uniform in [1, 2].

    Returns the data and the true centres.
    """
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-10.0, 10.0, size=(k, d))
    stds = rng.uniform(1.0, 2.0, size=k)
    X = np.empty((n, d))
    for start in range(0, n, block_rows):  # in blocks, to keep the temporaries small
        stop = min(n, start + block_rows)
        labels = rng.integers(k, size=stop - start)
        block = X[start:stop]
        rng.standard_normal(out=block)
        block *= stds[labels, None]
        block += centers[labels]
    return X, centers


def inertia_of(X: np.ndarray, centers: np.ndarray, block_rows: int = 65_536) -> float:
    """Sum of squared distances of the rows to their nearest centre, in float64.

    Computed here for every library from its ``cluster_centers_``, so that the column does not depend on
    how (or whether correctly) a library reports its own inertia.
    """
    centers = np.asarray(centers, dtype=np.float64)
    center_sq = np.einsum("ij,ij->i", centers, centers)
    total = 0.0
    for start in range(0, len(X), block_rows):
        block = np.asarray(X[start : start + block_rows], dtype=np.float64)
        sq = block @ (-2.0 * centers.T)
        sq += center_sq
        total += float(np.maximum(sq.min(axis=1) + np.einsum("ij,ij->i", block, block), 0.0).sum())
    return total


def pick_initial_centers(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``k`` distinct rows of ``X``: the shared starting point of the per-iteration measurements."""
    rng = np.random.default_rng(seed)
    return X[np.sort(rng.choice(len(X), size=k, replace=False))].copy()


def chunk_rows(n: int, d: int, itemsize: int, target_mib: float, cores: int) -> int:
    """Rows per dask chunk: about ``target_mib`` MiB, but at least two chunks per core."""
    rows = max(1, int(target_mib * 2**20) // (d * itemsize))
    return max(1, min(rows, n, math.ceil(n / (2 * cores))))


@dataclass
class Data:
    """One configuration's data in the forms the libraries take, and the shared initial centres."""

    config: Config
    X: np.ndarray
    X_dask: da.Array
    C0: np.ndarray

    def inertia_and_note(self, model) -> tuple[float, str]:
        """Inertia of a fitted model's centres on this data, and a note if its own ``inertia_`` differs."""
        inertia = inertia_of(self.X, model.cluster_centers_)
        own = float(model.inertia_)
        if not math.isclose(own, inertia, rel_tol=1e-4):
            return inertia, f"own inertia_ {own:.6g} differs"
        return inertia, ""


# ----------------------------------------------------------------------------------------------------
# Measuring


@dataclass
class Row:
    """One line of the table. ``None`` is a quantity that does not apply or was not measured."""

    config: Config
    library: str
    init_s: float | None = None
    iter_s: float | None = None
    total_s: float | None = None
    n_iter: int | None = None
    inertia: float | None = None
    peak_mib: float | None = None
    note: str = ""
    ratios: dict[str, float] = field(default_factory=dict)


def _release_freed_memory() -> None:
    """Collect garbage and hand freed heap back to the OS, so RSS deltas start from a clean slate."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """Wall time of ``fn()`` and its result."""
    _release_freed_memory()
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def timed_with_peak_memory(fn: Callable[[], object]) -> tuple[float, object, float]:
    """Wall time of ``fn()``, its result, and the peak extra memory (MiB) while it ran."""
    _release_freed_memory()
    with PeakMemory() as memory:
        start = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - start
    return elapsed, result, memory.peak_mib


class PeakMemory:
    """Context manager: peak extra memory of this process while it is active, in ``self.peak_mib``.

    With psutil: the peak RSS minus the RSS on entry. A background thread samples the RSS every 10 ms;
    where Linux lets the process reset its RSS high-water mark (VmHWM), that mark is read on exit as well,
    so that allocations living less than 10 ms are not missed. Without psutil: tracemalloc's peak.
    """

    def __init__(self, interval_s: float = 0.01):
        self.interval_s = interval_s
        self.peak_mib = 0.0

    @staticmethod
    def method() -> str:
        if psutil is None:
            return "peak tracemalloc delta (psutil missing; BLAS/OpenMP buffers not traced)"
        if reset_high_water_mark() and high_water_mark() is not None:
            return "peak RSS delta (psutil, sampled every 10 ms, and the kernel's VmHWM high-water mark)"
        return "peak RSS delta (psutil, sampled every 10 ms)"

    def __enter__(self) -> PeakMemory:
        if psutil is None:
            tracemalloc.start()
            return self
        self._process = psutil.Process()
        self._use_hwm = reset_high_water_mark()
        self._baseline = self._peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self._process.memory_info().rss)
            self._stop.wait(self.interval_s)

    def __exit__(self, *exc) -> None:
        if psutil is None:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            self.peak_mib = peak / 2**20
            return
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._process.memory_info().rss)
        if self._use_hwm:
            self._peak = max(self._peak, high_water_mark() or 0)
        self.peak_mib = (self._peak - self._baseline) / 2**20


def per_iteration_by_difference(t_many: float, t_one: float, n_iter_many: int) -> float | None:
    """Time of one iteration from fits with ``n_iter_many`` and 1 iterations (None if n_iter_many < 2)."""
    if n_iter_many < 2:
        return None
    return (t_many - t_one) / (n_iter_many - 1)


# ----------------------------------------------------------------------------------------------------
# One function per library


def stopped_early_note(n_iter: int, max_iter: int) -> str:
    return "" if n_iter == max_iter else f"fixed-start fit stopped after {n_iter} iterations"


def join_notes(*notes: str) -> str:
    return "; ".join(note for note in notes if note)


def bench_dask_kmeans(data: Data, repeats: int, max_iter: int, iterations_only: bool = False) -> Row:
    from dask_kmeans import KMeans

    k = data.config.k
    X = data.X_dask
    KMeans(k, init=data.C0, max_iter=2).fit(X[: 4 * k])  # warm-up

    iter_times, init_times, totals, peaks = [], [], [], []
    for _ in range(repeats):
        many = KMeans(k, init=data.C0, tol=0.0, max_iter=max_iter).fit(X)
        elapsed = [h["elapsed"] for h in many.history_]
        steps = np.diff(elapsed) if len(elapsed) > 1 else elapsed
        iter_times.append(float(np.median(steps)))
        if iterations_only:
            continue

        t_kmpp, _ = timed(lambda: KMeans(k, init="k-means||", max_iter=1, random_state=0).fit(X))
        t_c0, _ = timed(lambda: KMeans(k, init=data.C0, max_iter=1).fit(X))
        init_times.append(t_kmpp - t_c0)

        total, model, peak = timed_with_peak_memory(lambda: KMeans(k, random_state=0).fit(X))
        totals.append(total)
        peaks.append(peak)

    if iterations_only:
        return Row(
            data.config,
            "dask_kmeans",
            iter_s=median(iter_times),
            note=stopped_early_note(many.n_iter_, max_iter),
        )
    inertia, inertia_note = data.inertia_and_note(model)
    return Row(
        data.config,
        "dask_kmeans",
        init_s=median(init_times),
        iter_s=median(iter_times),
        total_s=median(totals),
        n_iter=model.n_iter_,
        inertia=inertia,
        peak_mib=median(peaks),
        note=join_notes(stopped_early_note(many.n_iter_, max_iter), inertia_note),
    )


def bench_sklearn(data: Data, repeats: int, max_iter: int, iterations_only: bool = False) -> Row:
    from sklearn.cluster import KMeans, kmeans_plusplus

    k = data.config.k
    X = data.X

    def fixed_start(n_iter: int):
        return KMeans(k, init=data.C0, n_init=1, tol=0.0, max_iter=n_iter, algorithm="lloyd").fit(X)

    KMeans(k, init=data.C0, n_init=1, max_iter=2).fit(X[: 4 * k])  # warm-up

    t_many, t_one, init_times, totals, peaks = [], [], [], [], []
    for _ in range(repeats):
        t, many = timed(lambda: fixed_start(max_iter))
        t_many.append(t)
        t_one.append(timed(lambda: fixed_start(1))[0])
        if iterations_only:
            continue
        init_times.append(timed(lambda: kmeans_plusplus(X, k, random_state=0))[0])
        total, model, peak = timed_with_peak_memory(
            lambda: KMeans(k, init="k-means++", n_init=1, random_state=0, algorithm="lloyd").fit(X)
        )
        totals.append(total)
        peaks.append(peak)

    iter_s = per_iteration_by_difference(median(t_many), median(t_one), many.n_iter_)
    if iterations_only:
        return Row(data.config, "sklearn", iter_s=iter_s, note=stopped_early_note(many.n_iter_, max_iter))
    inertia, inertia_note = data.inertia_and_note(model)
    return Row(
        data.config,
        "sklearn",
        init_s=median(init_times),
        iter_s=iter_s,
        total_s=median(totals),
        n_iter=model.n_iter_,
        inertia=inertia,
        peak_mib=median(peaks),
        note=join_notes(stopped_early_note(many.n_iter_, max_iter), inertia_note),
    )


class CapturedLogs(logging.Handler):
    """Context manager: the messages a logger emits at WARNING or above, in ``self.messages``."""

    def __init__(self, name: str):
        super().__init__(logging.WARNING)
        self._logger = logging.getLogger(name)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def __enter__(self) -> CapturedLogs:
        self._propagate = self._logger.propagate
        self._logger.addHandler(self)
        self._logger.propagate = False
        return self

    def __exit__(self, *exc) -> None:
        self._logger.removeHandler(self)
        self._logger.propagate = self._propagate


def bench_dask_ml(data: Data, repeats: int, max_iter: int, iterations_only: bool = False) -> Row:
    KMeans, version_or_reason = import_dask_ml()
    if KMeans is None:
        return Row(data.config, "dask-ml", note=f"not importable ({version_or_reason})")

    k = data.config.k
    X = data.X_dask

    def fixed_start(n_iter: int):
        return KMeans(k, init=data.C0, tol=0.0, max_iter=n_iter).fit(X)

    KMeans(k, init=data.C0, max_iter=2).fit(X[: 4 * k])  # warm-up (numba compiles its kernel)

    t_many, t_one, init_times, totals, peaks = [], [], [], [], []
    with CapturedLogs("dask_ml") as logs:
        for _ in range(repeats):
            t, many = timed(lambda: fixed_start(max_iter))
            t_many.append(t)
            t_one.append(timed(lambda: fixed_start(1))[0])
            if iterations_only:
                continue
            # tol does not change the work of a one-iteration dask-ml fit: fixed_start(1) is the baseline.
            t_kmpp, _ = timed(lambda: KMeans(k, init="k-means||", max_iter=1, random_state=0).fit(X))
            init_times.append(t_kmpp - t_one[-1])
            total, model, peak = timed_with_peak_memory(lambda: KMeans(k, random_state=0).fit(X))
            totals.append(total)
            peaks.append(peak)

    iter_s = per_iteration_by_difference(median(t_many), median(t_one), many.n_iter_)
    if iterations_only:
        return Row(data.config, "dask-ml", iter_s=iter_s, note=stopped_early_note(many.n_iter_, max_iter))
    inertia, inertia_note = data.inertia_and_note(model)
    log_note = f"logged: {logs.messages[-1]}" if logs.messages else ""
    return Row(
        data.config,
        "dask-ml",
        init_s=median(init_times),
        iter_s=iter_s,
        total_s=median(totals),
        n_iter=model.n_iter_,
        inertia=inertia,
        peak_mib=median(peaks),
        note=join_notes(stopped_early_note(many.n_iter_, max_iter), inertia_note, log_note),
    )


def bench_gemm(data: Data, repeats: int, max_iter: int, iterations_only: bool = False) -> Row:
    """The floor of one pass: the distance GEMM alone, nothing reduced."""
    X, C_T = data.X, np.ascontiguousarray(data.C0.T)

    def one_pass() -> None:
        for start in range(0, len(X), GEMM_BLOCK_ROWS):
            X[start : start + GEMM_BLOCK_ROWS] @ C_T

    one_pass()  # warm-up
    times = [timed(one_pass)[0] for _ in range(repeats)]
    return Row(data.config, "numpy GEMM pass", iter_s=median(times))


BENCHMARKS: dict[str, Callable[[Data, int, int, bool], Row]] = {
    "dask_kmeans": bench_dask_kmeans,
    "sklearn": bench_sklearn,
    "dask_ml": bench_dask_ml,
    "gemm": bench_gemm,
}


# ----------------------------------------------------------------------------------------------------
# Reporting


def machine_info(libraries: list[str]) -> list[str]:
    from threadpoolctl import threadpool_info

    import dask_kmeans  # noqa: F401, I001 - loaded so that threadpool_info sees every BLAS in use

    versions = [f"python {platform.python_version()}", f"numpy {np.__version__}", f"dask {dask.__version__}"]
    if "sklearn" in libraries:
        import sklearn

        versions.append(f"scikit-learn {sklearn.__version__}")
    if "dask_ml" in libraries:
        cls, version_or_reason = import_dask_ml()
        versions.append(f"dask-ml {version_or_reason}" if cls is not None else "dask-ml not importable")

    cores = os.cpu_count()
    physical = psutil.cpu_count(logical=False) if psutil is not None else None
    lines = [
        f"machine: {platform.machine()} {platform.system()}, {cores} logical cores"
        + (f" ({physical} physical)" if physical else "")
        + (f", {psutil.virtual_memory().total / 2**30:.0f} GiB RAM" if psutil is not None else ""),
        "versions: " + ", ".join(versions),
    ]
    for pool in threadpool_info():
        lines.append(
            f"threadpool: {pool.get('user_api')} {pool.get('internal_api')} {pool.get('version') or ''}"
            f" ({pool.get('architecture', '-')}, {pool.get('num_threads')} threads)"
            f" {os.path.basename(pool.get('filepath', ''))}"
        )
    lines.append(f"memory: {PeakMemory.method()}")
    return lines


def add_ratios(rows: list[Row]) -> None:
    """Each row's iteration time over scikit-learn's and dask-ml's on the same configuration."""
    for reference in ("sklearn", "dask-ml"):
        by_config = {r.config: r.iter_s for r in rows if r.library == reference and r.iter_s}
        for row in rows:
            if row.iter_s is not None and row.config in by_config:
                row.ratios[reference] = row.iter_s / by_config[row.config]


COLUMNS = (
    ("config", lambda r: r.config.label),
    ("library", lambda r: r.library),
    ("init (s)", lambda r: fmt(r.init_s, ".3f")),
    ("iter (ms)", lambda r: fmt(None if r.iter_s is None else r.iter_s * 1e3, ".1f")),
    ("x sklearn", lambda r: fmt(r.ratios.get("sklearn"), ".2f")),
    ("x dask-ml", lambda r: fmt(r.ratios.get("dask-ml"), ".2f")),
    ("total (s)", lambda r: fmt(r.total_s, ".2f")),
    ("n_iter", lambda r: fmt(r.n_iter, "d")),
    ("inertia", lambda r: fmt(r.inertia, ".6g")),
    ("peak (MiB)", lambda r: fmt(r.peak_mib, ".0f")),
    ("note", lambda r: r.note),
)


def format_table(rows: list[Row], markdown: bool) -> str:
    header = [name for name, _ in COLUMNS]
    cells = [[get(row) for _, get in COLUMNS] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |"]
        lines.append(
            "|"
            + "|".join("---" if i < 2 or i == len(header) - 1 else "---:" for i in range(len(header)))
            + "|"
        )
        lines += ["| " + " | ".join(line) + " |" for line in cells]
        return "\n".join(lines)
    widths = [max(len(str(c)) for c in column) for column in zip(header, *cells, strict=True)]
    numeric = [1 < i < len(header) - 1 for i in range(len(header))]

    def render(line: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if num else c.ljust(w) for c, w, num in zip(line, widths, numeric, strict=True)
        )

    separator = "  ".join("-" * w for w in widths)
    out = [render(header).rstrip(), separator]
    previous = None
    for row, line in zip(rows, cells, strict=True):
        if previous is not None and row.config != previous:
            out.append("")
        out.append(render(line).rstrip())
        previous = row.config
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------------
# Driver


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        choices=sorted(SIZES),
        default="full",
        help="full: 1M x 32 (k=16) and 5M x 32 (k=64); small: 200k and 500k rows",
    )
    parser.add_argument("--repeats", type=int, default=3, help="repeats of each measurement (medians)")
    parser.add_argument(
        "--max-iter",
        type=int,
        default=20,
        help="iterations of the fixed-start fits that time one iteration (>= 2)",
    )
    parser.add_argument(
        "--only", default=",".join(LIBRARIES), help=f"comma-separated subset of {','.join(LIBRARIES)}"
    )
    parser.add_argument("--chunk-mib", type=float, default=32.0, help="target MiB per dask chunk")
    parser.add_argument("--markdown", action="store_true", help="print the table in markdown")
    parser.add_argument(
        "--iterations-only",
        action="store_true",
        help="measure the time per iteration only (no init, convergence or memory runs)",
    )
    args = parser.parse_args(argv)
    args.only = [name.strip().replace("-", "_") for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(args.only) - set(LIBRARIES))
    if unknown:
        parser.error(f"unknown libraries {unknown}; choose from {', '.join(LIBRARIES)}")
    if args.max_iter < 2:
        parser.error("--max-iter must be at least 2")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    libraries = [name for name in LIBRARIES if name in args.only]
    cores = os.cpu_count() or 1
    for line in machine_info(libraries):
        print(line)
    print(f"sizes={args.sizes} repeats={args.repeats} max_iter={args.max_iter} (medians of repeats)")
    print(flush=True)

    rows: list[Row] = []
    notes: list[str] = []
    blobs: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # seed -> float64 data, true centres
    for config in make_configs(args.sizes):
        if config.seed not in blobs:
            blobs.clear()  # one size's data in memory at a time
            _release_freed_memory()
            blobs[config.seed] = make_blobs(config.n, config.d, config.k, config.seed)
        X64, true_centers = blobs[config.seed]
        X = X64.astype(config.dtype, copy=False)
        C0 = pick_initial_centers(X, config.k, seed=config.seed + 1)
        rows_per_chunk = chunk_rows(config.n, config.d, X.itemsize, args.chunk_mib, cores)
        X_dask = da.from_array(X, chunks=(rows_per_chunk, config.d)).persist()
        data = Data(config, X, X_dask, C0)
        notes.append(
            f"{config.label}: dask array in {X_dask.numblocks[0]} chunks of {rows_per_chunk} rows "
            f"({rows_per_chunk * config.d * X.itemsize / 2**20:.1f} MiB); "
            f"inertia at the true centres {inertia_of(X, true_centers):.6g}"
        )
        for library in libraries:
            print(f"  {config.label}: {library} ...", file=sys.stderr, flush=True)
            with quiet_warnings():
                rows.append(BENCHMARKS[library](data, args.repeats, args.max_iter, args.iterations_only))
        del data, X_dask, X

    add_ratios(rows)
    print(format_table(rows, args.markdown))
    print()
    for note in notes:
        print(note)
    print("inertia: sum of squared distances to the fitted centres, computed by this script (float64)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
