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
    Median time of one Lloyd iteration (``algorithm="lloyd"``: every row's distances, no bounds),
    started from ``C0`` with ``tol=0`` and
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
    shorter than 10 ms; the header says whether it was. Freed memory is handed back to the OS
    (``malloc_trim``) before each fit, but memory the process already holds from earlier fits can be
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
import math
import os
import sys

import dask.array as da
import numpy as np
from _common import (
    PeakRSS,
    Row,
    blob_parameters,
    fill_blobs,
    fmt,
    format_table,
    inertia_of,
    machine_info,
    peaks_text,
    pick_initial_centers,
    progress,
    quiet_warnings,
    release_freed_memory,
)
from _fit_measure import BENCHMARKS, Config, Data

LIBRARIES = tuple(BENCHMARKS)


# ----------------------------------------------------------------------------------------------------
# Configurations and data


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
    centers, stds = blob_parameters(rng, k, d)
    X = np.empty((n, d))
    for start in range(0, n, block_rows):  # in blocks, to keep the temporaries small
        fill_blobs(rng, X[start : start + block_rows], centers, stds)
    return X, centers


def chunk_rows(n: int, d: int, itemsize: int, target_mib: float, cores: int) -> int:
    """Rows per dask chunk: about ``target_mib`` MiB, but at least two chunks per core."""
    rows = max(1, int(target_mib * 2**20) // (d * itemsize))
    return max(1, min(rows, n, math.ceil(n / (2 * cores))))




# ----------------------------------------------------------------------------------------------------
# Reporting


def header(libraries: list[str]) -> list[str]:
    from threadpoolctl import threadpool_info

    import dask_kmeans  # noqa: F401, I001 - loaded so that threadpool_info sees every BLAS in use

    packages = ["sklearn"] if "sklearn" in libraries else []
    lines = machine_info(packages, dask_ml="dask_ml" in libraries)
    for pool in threadpool_info():
        lines.append(
            f"threadpool: {pool.get('user_api')} {pool.get('internal_api')} {pool.get('version') or ''}"
            f" ({pool.get('architecture', '-')}, {pool.get('num_threads')} threads)"
            f" {os.path.basename(pool.get('filepath', ''))}"
        )
    lines.append(f"memory: peak RSS minus the RSS at the start, {PeakRSS.method(interval_s=0.01)}")
    return lines


def add_ratios(rows: list[Row]) -> None:
    """Each row's iteration time over scikit-learn's and dask-ml's on the same configuration."""
    for reference in ("sklearn", "dask-ml"):
        by_config = {r.dataset: r.time_s for r in rows if r.what == reference and r.time_s}
        for row in rows:
            if row.time_s is not None and row.dataset in by_config:
                row.ratios[reference] = row.time_s / by_config[row.dataset]


COLUMNS = (
    ("config", lambda r: r.dataset.label),
    ("library", lambda r: r.what),
    ("init (s)", lambda r: fmt(r.extra.get("init_s"), ".3f")),
    ("iter (ms)", lambda r: fmt(None if r.time_s is None else r.time_s * 1e3, ".1f")),
    ("x sklearn", lambda r: fmt(r.ratios.get("sklearn"), ".2f")),
    ("x dask-ml", lambda r: fmt(r.ratios.get("dask-ml"), ".2f")),
    ("total (s)", lambda r: fmt(r.extra.get("total_s"), ".2f")),
    ("n_iter", lambda r: fmt(r.extra.get("n_iter"), "d")),
    ("inertia", lambda r: fmt(r.inertia, ".6g")),
    ("peak (MiB)", lambda r: peaks_text(r.peaks_mib)),
    ("note", lambda r: r.note),
)


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
    for line in header(libraries):
        print(line)
    print(f"sizes={args.sizes} repeats={args.repeats} max_iter={args.max_iter} (medians of repeats)")
    print(flush=True)

    rows: list[Row] = []
    notes: list[str] = []
    blobs: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # seed -> float64 data, true centres
    for config in make_configs(args.sizes):
        if config.seed not in blobs:
            blobs.clear()  # one size's data in memory at a time
            release_freed_memory()
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
            progress(f"{config.label}: {library} ...")
            with quiet_warnings():
                rows.append(BENCHMARKS[library](data, args.repeats, args.max_iter, args.iterations_only))
        del data, X_dask, X

    add_ratios(rows)
    print(format_table(rows, COLUMNS, args.markdown, text=("config", "library", "note")))
    print()
    for note in notes:
        print(note)
    print("inertia: sum of squared distances to the fitted centres, computed by this script (float64)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
