"""Spherical k-means (``metric="cosine"``) per iteration, in memory: dask_kmeans, faiss, scikit-learn.

Issue #15's claim: on 1M x 384 float32 with k=1024, in memory, one iteration of
``KMeans(metric="cosine")`` takes at most 1.0x faiss's ``Kmeans(spherical=True)`` (CPU, same cores, no
subsampling). The full size costs about 8e11 flops per iteration and per library, long on a small machine,
so it is ``--full``; the default is 200k x 384, k=256, which runs in a few minutes on 2 cores::

    python benchmarks/bench_cosine.py --faiss-python /tmp/faiss-venv/bin/python          # 200k x 384, k=256
    python benchmarks/bench_cosine.py --faiss-python /tmp/faiss-venv/bin/python --full   # 1M x 384, k=1024

faiss is not a dependency of the project: keep it out of the project's virtualenv, install it in a
throwaway one with ``python3 -m venv /tmp/faiss-venv && /tmp/faiss-venv/bin/pip install faiss-cpu numpy
threadpoolctl psutil``, and name that interpreter with ``--faiss-python``. The script then runs its faiss
part (``--faiss-worker``, an internal mode) in a subprocess of that interpreter, which reads the data and
the initial centres from ``.npy`` files in a temporary directory and prints its figures as JSON. Without
``--faiss-python`` (or if faiss cannot be imported there) the faiss row says why, and the rest runs.

Data: float32 Gaussian blobs (``_common.fill_blobs``): ``k`` true centres uniform in [-10, 10]^d, each blob
with its own standard deviation in [1, 2], seed ``--seed``. ``X`` is that array; ``Xn`` is ``X`` with
unit rows (computed once, in float64, stored as float32). The initial centres ``C0`` are ``k`` distinct
rows of ``Xn`` (``_common.pick_initial_centers``). Every library starts from ``C0``, runs with ``--threads``
threads (default 2) and no subsampling:

dask_kmeans
    ``KMeans(k, init=C0, metric="cosine", max_iter=m, tol=0, compute_labels=False,
    algorithm="lloyd").fit(X_dask)``, where
    ``X_dask = da.from_array(X, chunks=(rows, d)).persist()`` (raw rows, about ``--chunk-mib`` MiB per
    chunk, at least two chunks per thread) on the local threaded scheduler with ``num_workers=--threads``
    (dask_kmeans then limits BLAS to 1 thread per task). ``fit`` normalises the rows chunk by chunk and,
    the data fitting in memory, keeps the normalised chunks for the fit (``persist="auto"``).
faiss
    ``faiss.Kmeans(d, k, niter=m, spherical=True, max_points_per_centroid=n, seed=--seed,
    verbose=False).train(Xn, init_centroids=C0)`` with ``faiss.omp_set_num_threads(--threads)`` and its BLAS
    limited to ``--threads`` threads (threadpoolctl). Spherical faiss assigns with an ``IndexFlatIP``
    (largest inner product) and renormalises the centroids after each update: the same algorithm.
scikit-learn
    ``KMeans(k, init=C0, n_init=1, max_iter=m, tol=0, algorithm="lloyd").fit(Xn)`` under
    ``threadpool_limits(--threads)``: Euclidean k-means on unit rows. Its centres are means, not unit
    vectors, and it assigns by Euclidean distance to them, so from the second iteration on it is not quite
    the same algorithm (the work per iteration is).
numpy GEMM pass
    ``Xn[block] @ C0.T`` over the whole array in 4096-row blocks with ``--threads`` BLAS threads: the floor
    of one pass (the GEMM alone, nothing reduced).

What is measured, in ``--repeats`` rounds (default 3; medians of the rounds shown). Each round runs every
library once, in an order rotated by one each round, so that contention from other processes on a shared
machine falls on all of them alike; each library does a warm-up fit of ``--min-iter`` iterations on the whole
data in every round (imports, JIT compilation, thread pools, and memory touched for the first time: on a
virtual machine whose host takes idle memory back, the first full-size fit of a round paid 1.8 s more
before its first iteration at 1M rows, which a warm-up on a few rows left in the difference of fits;
faiss runs in a new subprocess each round). Per round and library:

iter (ms)
    ``(wall time of the fit with m = --max-iter - wall time with m = --min-iter) /
    (iterations the first did - iterations the second did)`` (m defaults 10 and 2): the same definition
    for every library, so that setup, the final labelling pass and copies cancel. The iterations done are
    counted, since a fit can stop before ``m``: faiss (1.15) stops once its objective does not change.
    For the numpy GEMM pass, the median of 3 passes.
own (ms)
    The library's own per-iteration clock, for dask_kmeans the median difference of consecutive
    ``history_[i]["elapsed"]``, for faiss of consecutive ``iteration_stats[i]["time"]``, in the
    ``--max-iter`` fits (first iteration left out).
stall %
    The share of the round's wall time during which some task of the machine waited for a CPU
    (``/proc/pressure/cpu``, "some"): near 0 on a quiet machine; high means others competed for the cores.
x faiss, x sklearn
    ``iter`` over faiss's (scikit-learn's) ``iter``. The issue's target is ``x faiss <= 1.00``.
cpu (ms), cpu x faiss
    The same difference in the CPU time of the process (all its threads, ``time.process_time``), and its
    ratio to faiss's: less sensitive than wall time to other processes on a shared machine (not immune:
    they evict caches), but threads that spin while they wait (OpenMP, BLAS) count, and idle ones do not.
    On a quiet machine with every thread busy, cpu = threads x iter.
n_iter, inertia
    Iterations done in the ``--max-iter`` fit (with ``tol=0``, early only if nothing changes),
    and ``sum(1 - max_j cos(x, c_j))`` over the rows for its centres (normalised), in float64 by this script.
    Equal figures from the same start mean the same computation. The notes compare dask_kmeans'
    per-iteration inertia (``history_``) with faiss's (``n - obj`` of ``iteration_stats``, its
    own sum), and how many empty clusters each refilled per iteration: dask_kmeans moves an
    empty cluster to a far row, faiss splits a large cluster, so the runs part once one is refilled.

Out of core (``--out-of-core``; the issue's second claim, meant with ``--full``): ``X`` itself (raw rows,
not unit) is written to a Zarr store (chunks of 16,384 rows, zarr's default codecs) in a temporary folder
under ``--dir``, and a ``distributed.LocalCluster`` of 2 workers x 1 thread with ``--worker-memory`` each
(default 640 MiB: together less than the 1.5 GB store at ``--full``; the header says how much less) fits
it, streamed (``persist=False``: every iteration reads the store and normalises each chunk as it comes),
with the shared out-of-core measurements of ``benchmarks/_ooc_measure.py``, ``--ooc-repeats`` times:

read pass
    ``dask_kmeans.io.read(store).X.sum(dtype="float64").compute()``: every chunk read and decoded,
    nothing else (from the page cache or the disk: the note says how much was cached).
streamed iteration
    ``KMeans(k, init=C0, metric="cosine", tol=0, max_iter=--ooc-max-iter, compute_labels=False,
    algorithm="lloyd").fit(read(store).X, persist=False)``: the median difference of consecutive
    ``history_[i]["elapsed"]``, the first left out.
in-memory iteration
    The same fit on the store's first chunks (an eighth of the workers' memory, at least two chunks per
    worker) persisted on the same workers, scaled by rows to the whole store.

The target: a streamed iteration at most 1.3x (read pass + in-memory iteration).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
from _common import (
    Row,
    blob_parameters,
    fill_blobs,
    fmt,
    format_table,
    lloyd_passes,
    machine_info,
    median,
    peaks_text,
    pick_initial_centers,
    progress,
    release_freed_memory,
)

GEMM_BLOCK_ROWS = 4096
STORE_CHUNK_ROWS = 16_384  # 24 MiB of 384 float32 features: dask_kmeans.io.read makes one dask chunk of each
DEFAULT = (200_000, 384, 256)
FULL = (1_000_000, 384, 1024)


# ----------------------------------------------------------------------------------------------------
# Data and the shared measures


def make_data(n: int, d: int, k: int, seed: int, block_rows: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """The float32 blobs ``X`` and their unit rows ``Xn``."""
    rng = np.random.default_rng(seed)
    centers, stds = blob_parameters(rng, k, d)
    X = np.empty((n, d), dtype=np.float32)
    Xn = np.empty_like(X)
    for start in range(0, n, block_rows):
        block = X[start : start + block_rows]
        fill_blobs(rng, block, centers, stds)
        norms = np.sqrt(np.einsum("ij,ij->i", block, block, dtype=np.float64))
        Xn[start : start + block_rows] = block / norms[:, None]
    return X, Xn


def unit(C: np.ndarray) -> np.ndarray:
    return np.asarray(C, dtype=np.float64) / np.linalg.norm(C, axis=1, keepdims=True)


def median_or_none(values: list) -> float | None:
    return None if None in values else median(values)


def cpu_stall_s() -> float | None:
    """Seconds some task of this machine waited for a CPU since boot (Linux PSI), to see contention."""
    try:
        with open("/proc/pressure/cpu") as f:
            return int(f.readline().split("total=")[1]) / 1e6
    except (OSError, IndexError, ValueError):
        return None


def cosine_inertia(Xn: np.ndarray, centers: np.ndarray, block_rows: int = 16_384) -> float:
    """``sum(1 - max_j cos(x, c_j))`` in float64, ``Xn`` having unit rows."""
    C_T = unit(centers).T
    return float(sum((1.0 - (Xn[s : s + block_rows].astype(np.float64) @ C_T).max(axis=1)).sum()
                     for s in range(0, len(Xn), block_rows)))


def by_difference(fit, n_iter, max_iter: int, min_iter: int) -> tuple[float, float, object]:
    """(wall time of ``fit(max_iter)`` - that of ``fit(min_iter)``) / the difference of the iterations they
    did (``n_iter(result)``: a fit may stop early), the same for the process's CPU time (all its threads),
    and the ``max_iter`` result."""
    wall, cpu, result = {}, {}, {}
    for m in (max_iter, min_iter):
        release_freed_memory()
        start, start_cpu = time.perf_counter(), time.process_time()
        result[m] = fit(m)
        wall[m], cpu[m] = time.perf_counter() - start, time.process_time() - start_cpu
    iterations = n_iter(result[max_iter]) - n_iter(result[min_iter])
    return (wall[max_iter] - wall[min_iter]) / iterations, (cpu[max_iter] - cpu[min_iter]) / iterations, \
        result[max_iter]


# ----------------------------------------------------------------------------------------------------
# The libraries


def bench_dask_kmeans(X: np.ndarray, C0: np.ndarray, args) -> tuple[Row, list[float]]:
    import dask
    import dask.array as da

    from dask_kmeans import KMeans

    n, d = X.shape
    k = len(C0)
    rows = max(1, min(int(args.chunk_mib * 2**20) // (d * 4), -(-n // (2 * args.threads))))
    with dask.config.set(scheduler="threads", num_workers=args.threads):
        X_dask = da.from_array(X, chunks=(rows, d)).persist()

        def fit(m: int, data=X_dask):
            with warnings.catch_warnings():  # "distinct clusters" (empty ones): history_ counts them
                warnings.simplefilter("ignore")
                model = KMeans(k, init=C0, metric="cosine", max_iter=m, tol=0.0, compute_labels=False,
                               **lloyd_passes())
                return model.fit(data)

        fit(args.min_iter)  # warm-up at full size, as faiss's: see "What is measured"
        iter_s, cpu_s, model = by_difference(fit, lambda m: m.n_iter_, args.max_iter, args.min_iter)
    own = float(np.median(np.diff([h["elapsed"] for h in model.history_])))
    row = Row("in memory", "dask_kmeans", time_s=iter_s,
              extra={"own_s": own, "cpu_s": cpu_s, "n_iter": model.n_iter_},
              note=f"{X_dask.numblocks[0]} chunks of {rows} rows")
    row.extra["centers"] = model.cluster_centers_
    return row, [(h["inertia"], h["n_relocated"]) for h in model.history_]


def bench_sklearn(Xn: np.ndarray, C0: np.ndarray, args) -> Row:
    import sklearn
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    k = len(C0)
    with threadpool_limits(limits=args.threads), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "distinct clusters" (empty ones), deprecations
        def fit(m: int):
            return KMeans(k, init=C0, n_init=1, max_iter=m, tol=0.0, algorithm="lloyd").fit(Xn)

        fit(args.min_iter)  # warm-up at full size, as faiss's: see "What is measured"
        iter_s, cpu_s, model = by_difference(fit, lambda m: m.n_iter_, args.max_iter, args.min_iter)
    row = Row("in memory", "sklearn", time_s=iter_s, extra={"cpu_s": cpu_s, "n_iter": model.n_iter_},
              note=f"scikit-learn {sklearn.__version__}; Euclidean on unit rows, centres not unit")
    row.extra["centers"] = model.cluster_centers_
    return row


def bench_gemm(Xn: np.ndarray, C0: np.ndarray, args) -> Row:
    from threadpoolctl import threadpool_limits

    C_T = np.ascontiguousarray(C0.T)

    def one_pass() -> None:
        for start in range(0, len(Xn), GEMM_BLOCK_ROWS):
            Xn[start : start + GEMM_BLOCK_ROWS] @ C_T

    times, cpu = [], []
    with threadpool_limits(limits=args.threads, user_api="blas"):
        one_pass()  # warm-up
        for _ in range(3):
            start, start_cpu = time.perf_counter(), time.process_time()
            one_pass()
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    return Row("in memory", "numpy GEMM pass", time_s=median(times), extra={"cpu_s": median(cpu)},
               note="floor: X @ C.T only")


def faiss_worker(directory: str, max_iter: int, min_iter: int, threads: int, seed: int) -> None:
    """In the faiss interpreter: the faiss measurements, printed as one JSON line."""
    import faiss
    from threadpoolctl import threadpool_info, threadpool_limits

    Xn = np.load(os.path.join(directory, "Xn.npy"))
    C0 = np.load(os.path.join(directory, "C0.npy"))
    n, d = Xn.shape
    k = len(C0)
    faiss.omp_set_num_threads(threads)
    with threadpool_limits(limits=threads, user_api="blas"):
        def fit(m: int):
            km = faiss.Kmeans(d, k, niter=m, spherical=True, max_points_per_centroid=n,
                              min_points_per_centroid=1, seed=seed, verbose=False)
            km.train(Xn, init_centroids=C0)
            return km

        fit(min_iter)  # warm-up at full size: see "What is measured"
        iter_s, cpu_s, km = by_difference(fit, lambda r: len(r.iteration_stats), max_iter, min_iter)
        pools = [f"{p.get('internal_api')} {p.get('num_threads')} threads" for p in threadpool_info()]
    own = float(np.median(np.diff([s["time"] for s in km.iteration_stats])))
    np.save(os.path.join(directory, "faiss_centers.npy"), km.centroids)
    print(json.dumps({
        "iter_s": iter_s, "cpu_s": cpu_s, "own_s": own, "n_iter": len(km.iteration_stats), "pools": pools,
        "trace": [(n - s["obj"], s["nsplit"]) for s in km.iteration_stats], "version": faiss.__version__,
        "omp_threads": faiss.omp_get_max_threads(),
    }))


def bench_faiss(directory: str, args) -> tuple[Row, list[float] | None]:
    if not args.faiss_python:
        return Row("in memory", "faiss", note="not run: no --faiss-python"), None
    command = [args.faiss_python, os.path.abspath(__file__), "--faiss-worker", directory,
               "--max-iter", str(args.max_iter), "--min-iter", str(args.min_iter),
               "--threads", str(args.threads), "--seed", str(args.seed)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["?"])[-1]
        return Row("in memory", "faiss", note=f"failed: {reason}"), None
    out = json.loads(done.stdout.strip().splitlines()[-1])
    centers = np.load(os.path.join(directory, "faiss_centers.npy"))
    row = Row("in memory", "faiss", time_s=out["iter_s"],
              extra={"own_s": out["own_s"], "cpu_s": out["cpu_s"], "n_iter": out["n_iter"]},
              note=f"faiss-cpu {out['version']}, OpenMP {out['omp_threads']} threads, "
                   f"BLAS {'; '.join(out['pools'])}")
    row.extra["centers"] = centers
    return row, out["trace"]


def bench_out_of_core(X: np.ndarray, C0: np.ndarray, args) -> tuple[list[Row], list[str]]:
    """``X`` written to a Zarr store and fitted streamed on a cluster whose workers hold less than it."""
    # Imported here: the faiss part runs this file in an interpreter without dask.
    import dask.array as da
    from _cluster import N_WORKERS, Cluster, cluster_info, workers_note
    from _ooc_data import Dataset, read_array, zarr_codecs
    from _ooc_measure import Results, bench_in_memory, bench_streamed, median_peaks

    from dask_kmeans import KMeans

    n, d = X.shape
    lines = []
    os.makedirs(args.dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-cosine-ooc-", dir=args.dir) as directory:
        path = os.path.join(directory, f"blobs_{n}x{d}.zarr")
        progress(f"out of core: writing {n} x {d} to {path} ...")
        start = time.perf_counter()
        da.from_array(X, chunks=(STORE_CHUNK_ROWS, d)).to_zarr(path)
        size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)
        written_s = time.perf_counter() - start
        total = N_WORKERS * args.worker_memory
        lines.append(f"store: {zarr_codecs(path)}, chunks of {STORE_CHUNK_ROWS} rows, {size / 1e9:.2f} GB "
                     f"on disk, written in {written_s:.1f} s; the workers' memory limits add up to "
                     f"{total / 1e9:.2f} GB = {total / X.nbytes:.2f}x the data ({X.nbytes / 1e9:.2f} GB)")
        lines += cluster_info(args.worker_memory)
        ds = Dataset(path, n, d, len(C0), args.seed)
        res = Results(ds)
        cluster = Cluster(args.worker_memory)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "distinct clusters" (empty ones)
                progress("out of core: warm-up (imports and compiled code on the workers)")
                X0 = read_array(ds)[: 2 * N_WORKERS * STORE_CHUNK_ROWS]
                X0.sum().compute()
                KMeans(len(C0), init=C0, max_iter=2, metric="cosine").fit(X0, persist=False)
                cluster.check("the warm-up")
                bench_streamed(cluster, res, C0, args.ooc_max_iter, args.ooc_repeats, metric="cosine")
                reference = bench_in_memory(cluster, ds, C0, args.ooc_max_iter, args.ooc_repeats,
                                            args.worker_memory, metric="cosine")
            lines += cluster.health()
        finally:
            cluster.close()
    read_s, iter_s = median(res.read_s), median(res.iter_s)
    in_mem = reference.per_row_s * n
    cached = "unknown" if res.cached_before is None else f"{100 * res.cached_before:.0f}%"
    rows = [
        Row("out of core", "read pass", time_s=read_s, peaks_mib=median_peaks(res.read_peaks),
            note=f"median of {len(res.read_s)}; the page cache held {cached} of the store before the first "
                 "read" + workers_note(res.read_events)),
        Row("out of core", "dask_kmeans streamed", time_s=iter_s, peaks_mib=median_peaks(res.fit_peaks),
            note=f"median of {len(res.iter_s)} fits x {args.ooc_max_iter - 1} steps"
                 + workers_note(res.fit_events)),
        Row("out of core", "dask_kmeans in memory", time_s=in_mem, peaks_mib=reference.peaks,
            note=f"{reference.chunks} chunks ({reference.rows} rows) persisted, "
                 f"time x {n / reference.rows:.3g}"
                 + workers_note(reference.events)),
    ]
    floor = read_s + in_mem
    lines.append(f"out of core: a streamed iteration takes {iter_s:.3f} s = {iter_s / floor:.2f}x read pass "
                 f"+ in-memory iteration ({read_s:.3f} + {in_mem:.3f} s; target <= 1.3x: "
                 f"{'met' if iter_s <= 1.3 * floor else 'NOT met'}); {iter_s / read_s:.2f}x the read pass, "
                 f"{iter_s / in_mem:.2f}x the in-memory iteration")
    return rows, lines


# ----------------------------------------------------------------------------------------------------
# Driver


COLUMNS = (
    ("library", lambda r: r.what),
    ("iter (ms)", lambda r: fmt(None if r.time_s is None else r.time_s * 1e3, ".1f")),
    ("own (ms)", lambda r: fmt(r.extra.get("own_s") and r.extra["own_s"] * 1e3, ".1f")),
    ("x faiss", lambda r: fmt(r.ratios.get("faiss"), ".2f")),
    ("x sklearn", lambda r: fmt(r.ratios.get("sklearn"), ".2f")),
    ("cpu (ms)", lambda r: fmt(r.extra.get("cpu_s") and r.extra["cpu_s"] * 1e3, ".1f")),
    ("cpu x faiss", lambda r: fmt(r.ratios.get("cpu faiss"), ".2f")),
    ("n_iter", lambda r: fmt(r.extra.get("n_iter"), "d")),
    ("stall %", lambda r: fmt(r.extra.get("stall") and 100 * r.extra["stall"], ".0f")),
    ("inertia", lambda r: fmt(r.inertia, ".8g")),
    ("note", lambda r: r.note),
)


OOC_COLUMNS = (
    ("measurement", lambda r: r.what),
    ("time (s)", lambda r: fmt(r.time_s, ".3f")),
    ("peak RSS/worker (MiB)", lambda r: peaks_text(r.peaks_mib)),
    ("note", lambda r: r.note),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the issue's size: 1M x 384, k=1024")
    parser.add_argument("--n", type=int, help=f"rows (default {DEFAULT[0]}, {FULL[0]} with --full)")
    parser.add_argument("--d", type=int, help=f"features (default {DEFAULT[1]})")
    parser.add_argument("--k", type=int, help=f"clusters (default {DEFAULT[2]}, {FULL[2]} with --full)")
    parser.add_argument("--max-iter", type=int, default=10, help="iterations of the longer fits")
    parser.add_argument("--min-iter", type=int, default=2, help="iterations of the shorter fits")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of each fit (medians)")
    parser.add_argument("--threads", type=int, default=2, help="threads of every library")
    parser.add_argument("--chunk-mib", type=float, default=32.0, help="target MiB per dask chunk")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--faiss-python", help="interpreter of a virtualenv with faiss-cpu (see above)")
    parser.add_argument("--faiss-worker", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--markdown", action="store_true", help="print the table in markdown")
    parser.add_argument("--out-of-core", action="store_true",
                        help="also fit the data streamed from a Zarr store on a cluster that cannot hold it")
    parser.add_argument("--in-memory", action=argparse.BooleanOptionalAction, default=True,
                        help="the in-memory comparison (--no-in-memory: the out-of-core part only)")
    parser.add_argument("--worker-memory", default="640MiB", help="memory_limit of each of the 2 workers")
    parser.add_argument("--ooc-max-iter", type=int, default=4, help="max_iter of the streamed fits")
    parser.add_argument("--ooc-repeats", type=int, default=2, help="repeats of read pass + streamed fit")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the Zarr store goes (deleted)")
    args = parser.parse_args(argv)
    if not args.faiss_worker:
        from dask.utils import parse_bytes

        args.worker_memory = parse_bytes(args.worker_memory)
    size = FULL if args.full else DEFAULT
    args.n, args.d, args.k = args.n or size[0], args.d or size[1], args.k or size[2]
    if not 1 <= args.min_iter < args.max_iter:
        parser.error("need 1 <= --min-iter < --max-iter")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.faiss_worker:
        faiss_worker(args.faiss_worker, args.max_iter, args.min_iter, args.threads, args.seed)
        return 0
    for line in machine_info(["sklearn", "dask_kmeans", "distributed", "zarr"], dask_ml=False):
        print(line)
    print(f"data: {args.n} x {args.d} float32 blobs, k={args.k}, seed {args.seed}; threads={args.threads}; "
          f"iterations {args.min_iter} and {args.max_iter}; repeats={args.repeats} (medians)")
    print(flush=True)

    progress(f"making {args.n} x {args.d} blobs ...")
    X, Xn = make_data(args.n, args.d, args.k, args.seed)
    C0 = unit(pick_initial_centers(Xn, args.k, seed=args.seed + 1)).astype(np.float32)
    if args.in_memory:
        in_memory(X, Xn, C0, args)
    if args.out_of_core:
        del Xn  # the cluster's workers need the memory
        rows, lines = bench_out_of_core(X, C0, args)
        print()
        print(format_table(rows, OOC_COLUMNS, args.markdown, text=("measurement", "note")))
        print()
        for line in lines:
            print(line)
    return 0


def in_memory(X: np.ndarray, Xn: np.ndarray, C0: np.ndarray, args) -> None:
    """The in-memory comparison: the rounds, the table and the notes under it."""
    with tempfile.TemporaryDirectory(prefix="bench-cosine-") as directory:
        np.save(os.path.join(directory, "Xn.npy"), Xn)
        np.save(os.path.join(directory, "C0.npy"), C0)
        benches = {
            "dask_kmeans": lambda: bench_dask_kmeans(X, C0, args),
            "faiss": lambda: bench_faiss(directory, args),
            "sklearn": lambda: (bench_sklearn(Xn, C0, args), None),
            "numpy GEMM pass": lambda: (bench_gemm(Xn, C0, args), None),
        }
        names = list(benches)
        rounds: dict[str, list[Row]] = {name: [] for name in names}
        traces = {}
        for r in range(args.repeats):  # round-robin, the order rotated: contention falls on all alike
            for name in names[r % len(names):] + names[: r % len(names)]:
                progress(f"round {r + 1} of {args.repeats}: {name} ...")
                stall, start = cpu_stall_s(), time.perf_counter()
                row, traces[name] = benches[name]()
                if stall is not None:
                    row.extra["stall"] = (cpu_stall_s() - stall) / (time.perf_counter() - start)
                rounds[name].append(row)
    rows = [rounds[name][-1] for name in names]  # the last round's, with the medians of the rounds:
    for row, name in zip(rows, names):
        row.time_s = median_or_none([r.time_s for r in rounds[name]])
        for key in ("own_s", "cpu_s", "stall"):
            row.extra[key] = median_or_none([r.extra.get(key) for r in rounds[name]])
    ours_trace, faiss_trace = traces["dask_kmeans"], traces["faiss"]
    progress("inertia ...")
    for row in rows:
        if "centers" in row.extra:
            row.inertia = cosine_inertia(Xn, row.extra.pop("centers"))
    times = {r.what: r.time_s for r in rows if r.time_s}
    for row in rows:
        for reference in ("faiss", "sklearn"):
            if row.time_s and reference in times:
                row.ratios[reference] = row.time_s / times[reference]
    faiss_cpu = rows[names.index("faiss")].extra.get("cpu_s")
    for row in rows:
        if faiss_cpu and row.extra.get("cpu_s"):
            row.ratios["cpu faiss"] = row.extra["cpu_s"] / faiss_cpu

    print(format_table(rows, COLUMNS, args.markdown, text=("library", "note")))
    print()
    flops = 2.0 * args.n * args.d * args.k
    if "numpy GEMM pass" in times:
        rate = flops / times["numpy GEMM pass"] / 1e9
        print(f"one pass's GEMM: {flops:.3g} flops; the numpy GEMM pass runs at {rate:.1f} GFLOP/s")
    if faiss_trace is not None:
        n = min(len(ours_trace), len(faiss_trace))
        diff = [abs(a[0] - b[0]) / b[0] for a, b in zip(ours_trace[:n], faiss_trace[:n])]
        print(f"inertia at the start of each iteration (dask_kmeans' history_, faiss's n - obj); the "
              f"relative difference is {diff[0]:.1e} at the first, at most {max(diff):.1e} over {n}:")
        for name, trace in (("dask_kmeans", ours_trace), ("faiss", faiss_trace)):
            print(f"  {name + ':':12} " + ", ".join(f"{v:.7g}" for v, _ in trace[:n]))
        print("empty clusters moved (dask_kmeans: n_relocated, to far rows) / split (faiss: nsplit, a large "
              "cluster halved) per iteration:")
        for name, trace in (("dask_kmeans", ours_trace), ("faiss", faiss_trace)):
            print(f"  {name + ':':12} " + ", ".join(str(int(r)) for _, r in trace[:n]))
    print("inertia: sum over rows of 1 - largest cosine to the normalised centres, computed by this script")


if __name__ == "__main__":
    sys.exit(main())
