"""``bench_fit.py``'s measurements: one function per library, each returning one row of the table."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import dask.array as da
import numpy as np
from _common import (
    CapturedLogs,
    PeakRSS,
    Row,
    import_dask_ml,
    inertia_of,
    lloyd_passes,
    median,
    release_freed_memory,
)

GEMM_BLOCK_ROWS = 4096


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


@dataclass
class Data:
    """One configuration's data in the forms the libraries take, and the shared initial centres."""

    config: Config
    X: np.ndarray
    X_dask: da.Array
    C0: np.ndarray


@dataclass
class Convergence:
    """The fits to convergence with a library's defaults, over the repeats (and the init times)."""

    init_s: list[float] = field(default_factory=list)
    total_s: list[float] = field(default_factory=list)
    peak_mib: list[float] = field(default_factory=list)
    model: object = None  # the last one

    def fit(self, fn: Callable[[], object]) -> None:
        """Time ``fn()``, a fit to convergence, and measure the peak extra memory while it runs."""
        release_freed_memory()
        with PeakRSS(interval_s=0.01) as memory:
            start = time.perf_counter()
            self.model = fn()
            self.total_s.append(time.perf_counter() - start)
        self.peak_mib.append(memory.extra_mib["this process"])


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """Wall time of ``fn()`` and its result."""
    release_freed_memory()
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def join_notes(*notes: str) -> str:
    return "; ".join(note for note in notes if note)


def library_row(data: Data, library: str, iter_s: float | None, fixed, max_iter: int,
                runs: Convergence | None, *notes: str) -> Row:
    """The row of a library: ``fixed`` is its last fixed-start fit of ``max_iter`` iterations, ``runs``
    its fits to convergence (None with --iterations-only, which also leaves ``notes`` out)."""
    stopped = "" if fixed.n_iter_ == max_iter else f"fixed-start fit stopped after {fixed.n_iter_} iterations"
    if runs is None:
        return Row(data.config, library, time_s=iter_s, note=stopped)
    model = runs.model
    inertia = inertia_of(data.X, model.cluster_centers_)
    own = float(model.inertia_)
    own_note = "" if math.isclose(own, inertia, rel_tol=1e-4) else f"own inertia_ {own:.6g} differs"
    return Row(
        data.config, library, time_s=iter_s, peaks_mib=[median(runs.peak_mib)], inertia=inertia,
        note=join_notes(stopped, own_note, *notes),
        extra={"init_s": median(runs.init_s), "total_s": median(runs.total_s), "n_iter": model.n_iter_},
    )


def by_difference(fixed_start: Callable[[int], object], max_iter: int, repeats: int,
                  init_time: Callable[[float], float], converge: Callable[[], object],
                  iterations_only: bool) -> tuple[float | None, object, Convergence | None]:
    """For libraries that keep no per-iteration times: the time of one iteration, (wall time of a
    fixed-start fit of ``max_iter`` minus that of one of 1 iteration) / (its ``n_iter_`` - 1), medians of
    the repeats; that fit; and unless ``iterations_only``, the init and convergence runs.
    ``init_time(t_one)`` gets the time of this repeat's one-iteration fit."""
    t_many, t_one, runs = [], [], Convergence()
    for _ in range(repeats):
        t, many = timed(lambda: fixed_start(max_iter))
        t_many.append(t)
        t_one.append(timed(lambda: fixed_start(1))[0])
        if not iterations_only:
            runs.init_s.append(init_time(t_one[-1]))
            runs.fit(converge)
    n_iter = many.n_iter_
    iter_s = (median(t_many) - median(t_one)) / (n_iter - 1) if n_iter >= 2 else None
    return iter_s, many, None if iterations_only else runs


def bench_dask_kmeans(data: Data, repeats: int, max_iter: int, iterations_only: bool = False) -> Row:
    from dask_kmeans import KMeans

    k = data.config.k
    X = data.X_dask
    KMeans(k, init=data.C0, max_iter=2).fit(X[: 4 * k])  # warm-up

    iter_times, runs = [], Convergence()
    for _ in range(repeats):
        many = KMeans(k, init=data.C0, tol=0.0, max_iter=max_iter, **lloyd_passes()).fit(X)
        elapsed = [h["elapsed"] for h in many.history_]
        steps = np.diff(elapsed) if len(elapsed) > 1 else elapsed
        iter_times.append(float(np.median(steps)))
        if iterations_only:
            continue
        t_kmpp, _ = timed(lambda: KMeans(k, init="k-means||", max_iter=1, random_state=0).fit(X))
        t_c0, _ = timed(lambda: KMeans(k, init=data.C0, max_iter=1).fit(X))
        runs.init_s.append(t_kmpp - t_c0)
        runs.fit(lambda: KMeans(k, random_state=0).fit(X))
    return library_row(data, "dask_kmeans", median(iter_times), many, max_iter,
                       None if iterations_only else runs)


def bench_sklearn(data: Data, repeats: int, max_iter: int, iterations_only: bool = False) -> Row:
    from sklearn.cluster import KMeans, kmeans_plusplus

    k = data.config.k
    X = data.X
    KMeans(k, init=data.C0, n_init=1, max_iter=2).fit(X[: 4 * k])  # warm-up
    iter_s, many, runs = by_difference(
        lambda n_iter: KMeans(k, init=data.C0, n_init=1, tol=0.0, max_iter=n_iter, algorithm="lloyd").fit(X),
        max_iter, repeats,
        init_time=lambda _: timed(lambda: kmeans_plusplus(X, k, random_state=0))[0],
        converge=lambda: KMeans(k, init="k-means++", n_init=1, random_state=0, algorithm="lloyd").fit(X),
        iterations_only=iterations_only,
    )
    return library_row(data, "sklearn", iter_s, many, max_iter, runs)


def bench_dask_ml(data: Data, repeats: int, max_iter: int, iterations_only: bool = False) -> Row:
    KMeans, version_or_reason = import_dask_ml()
    if KMeans is None:
        return Row(data.config, "dask-ml", note=f"not importable ({version_or_reason})")

    k = data.config.k
    X = data.X_dask
    KMeans(k, init=data.C0, max_iter=2).fit(X[: 4 * k])  # warm-up (numba compiles its kernel)

    def init_time(t_one: float) -> float:
        # tol does not change the work of a one-iteration dask-ml fit: the fixed-start one is the baseline.
        return timed(lambda: KMeans(k, init="k-means||", max_iter=1, random_state=0).fit(X))[0] - t_one

    with CapturedLogs("dask_ml", silence=True) as logs:
        iter_s, many, runs = by_difference(
            lambda n_iter: KMeans(k, init=data.C0, tol=0.0, max_iter=n_iter).fit(X), max_iter, repeats,
            init_time=init_time, converge=lambda: KMeans(k, random_state=0).fit(X),
            iterations_only=iterations_only,
        )
    log_note = f"logged: {logs.messages[-1]}" if logs.messages else ""
    return library_row(data, "dask-ml", iter_s, many, max_iter, runs, log_note)


def bench_gemm(data: Data, repeats: int, max_iter: int, iterations_only: bool = False) -> Row:
    """The floor of one pass: the distance GEMM alone, nothing reduced."""
    X, C_T = data.X, np.ascontiguousarray(data.C0.T)

    def one_pass() -> None:
        for start in range(0, len(X), GEMM_BLOCK_ROWS):
            X[start : start + GEMM_BLOCK_ROWS] @ C_T

    one_pass()  # warm-up
    times = [timed(one_pass)[0] for _ in range(repeats)]
    return Row(data.config, "numpy GEMM pass", time_s=median(times))


BENCHMARKS: dict[str, Callable[[Data, int, int, bool], Row]] = {
    "dask_kmeans": bench_dask_kmeans,
    "sklearn": bench_sklearn,
    "dask_ml": bench_dask_ml,
    "gemm": bench_gemm,
}
