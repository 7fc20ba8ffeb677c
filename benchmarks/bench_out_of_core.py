"""Out-of-core benchmark: fit ``dask_kmeans.KMeans`` on a Zarr array several times larger than its workers.

Run it from the repository root on a quiet machine, with at least 2.5x the data's size free on disk::

    python benchmarks/bench_out_of_core.py --small      # 8.4M and 2.1M rows x 32, 2 x 512 MiB: ~2 minutes
    python benchmarks/bench_out_of_core.py              # 67M and 16.8M rows x 32 (8 + 2 GiB), 2 x 1 GiB
    /tmp/daskml-venv/bin/python benchmarks/bench_out_of_core.py --small   # with dask-ml's rows too

``--small`` checks the script, not the out-of-core claim: its workers' limits add up to as much as its
larger array, because a worker process holds about 200 MiB before any data (Python, numpy, dask, zarr,
pandas and pyarrow imported), and 512 MiB is the least that leaves room for a task's chunk and temporaries
below distributed's spill and pause thresholds.

dask-ml is imported if it can be; otherwise its rows say why not. It may pin older packages, so keep it out
of the project's own virtualenv and run the script with the interpreter of a throwaway one that has both
installed (see ``benchmarks/bench_fit.py``).

Data: two Zarr arrays of float32 Gaussian blobs under ``--dir``, the larger of ``--rows`` rows (default
2**26 = 67,108,864 x 32 = 8 GiB = 8.6 GB) and one ``--scale-down`` times smaller (default 4: 16,777,216
rows, 2 GiB). ``k`` true centres uniform in [-10, 10]^32, each blob with its own standard deviation in
[1, 2], every row's blob drawn uniformly; the centres come from ``numpy.random.default_rng(--seed)`` and
the rows of store chunk ``i`` from ``default_rng([--seed, i])``, so the data do not depend on how they are
written, and the smaller array is the first rows of the larger one. Store chunks are 262,144 rows (32 MiB),
the chunk ``dask_kmeans.io.read`` picks for such arrays, so one dask chunk reads one store chunk. They are
written by ``dask.array.map_blocks(...).to_zarr`` on the local threaded scheduler (2 threads) before the
cluster starts, with zarr's default codecs (listed in the header); generation holds a few chunks at a time,
and the header gives its peak RSS. Existing stores written by this script with the same parameters are
reused (``--keep`` leaves them for the next run); they are deleted at the end otherwise. The fixed initial
centres ``C0`` are ``k`` distinct rows of the smaller array, drawn with ``--seed + 1``; every fit starts
from them.

Cluster: ``distributed.LocalCluster(n_workers=2, threads_per_worker=1, memory_limit=--worker-memory)``
(default 1 GiB each, so the two workers together hold at most a quarter of the larger array), with
distributed's default memory thresholds and worker environment (both printed in the header; the latter
includes ``MALLOC_TRIM_THRESHOLD_=65536``, which ``--glibc-malloc`` leaves out). Every dask computation
below runs on it; the data are never persisted except for the in-memory reference (dask_kmeans versions
whose ``fit`` takes ``persist=`` get ``persist=False``, since its default "auto" would persist an array
that takes at most half of the workers' memory).

What is measured, per array (the smaller one with ``--repeats-smaller`` repeats, the larger with
``--repeats``; medians shown). Each repeat reads the array once and then fits, back to back:

read pass (I/O floor)
    Wall time of ``dask_kmeans.io.read(path).X.sum(dtype="float64").compute()``: every chunk read from
    the store and decoded on the workers, nothing else. Whether it reads the disk or the page cache depends
    on the machine's free memory; the note gives the share of the store's bytes that were in the page
    cache before the first read (``mincore``), and the iterations see the same cache.
dask_kmeans iteration, streamed
    ``KMeans(k, init=C0, tol=0, max_iter=--max-iter, compute_labels=False, algorithm="lloyd").fit(
    read(path).X,
    persist=False)`` (no ``labels_``: the client holds nothing per row): the median of
    the differences between consecutive ``history_[i]["elapsed"]`` (the first iteration, which also
    measures the feature variances, is left out), then the median over repeats. Every iteration reads the
    whole array from the store. "x read" divides a row's time by the read pass, "x in-mem" by the
    in-memory iteration below.
dask_kmeans iteration, in memory
    The same fit on the first rows of the smaller array, persisted on the workers first: at most an
    eighth of the workers' total memory, at least two chunks per worker (``max_iter`` at least 5), then
    scaled by rows to each array. The time an iteration takes when nothing is read; measured once.
sklearn MiniBatchKMeans.partial_fit epoch
    ``MiniBatchKMeans(k, init=C0, n_init=1, random_state=0)``; one ``partial_fit`` per chunk of the dask
    array (the same row ranges), each chunk read with zarr in this process: wall time of one epoch over
    the array. The note splits it into reading and fitting and gives this process's peak extra RSS. The
    workers are idle meanwhile; scikit-learn uses its OpenMP threads (one per core).
dask-ml KMeans iteration, streamed
    ``dask_ml.cluster.KMeans(k, init=C0, tol=0, max_iter=m)`` on the same dask array, for m = 1 and
    ``--dask-ml-max-iter``: (wall time of the second fit minus the first's) / (its ``n_iter_`` - 1).
    A dask-ml fit reads the array ``m + 2`` times (a NaN/inf check, m iterations, the inertia). Guard: a
    ``max_iter=1`` fit on the first eighth of the workers' memory of the array (after a warm-up that
    compiles its numba kernel) is timed and scaled by rows to the two fits; when that estimate exceeds
    ``--dask-ml-budget`` seconds, the row says so and dask-ml is skipped for that array.
peak RSS/worker (MiB)
    The highest resident set size of each worker process while that measurement ran (median over
    repeats), one figure per worker: the kernel's high-water mark ``VmHWM`` from ``/proc/<pid>/status``,
    reset through ``/proc/<pid>/clear_refs`` just before the measurement (exact, catches peaks of any
    length), and at least the highest of psutil samples of the RSS taken every 0.1 s from this process
    (the workers run on this machine). The header says which was available. Freed memory is handed back
    to the OS on every worker (``malloc_trim``) before each measurement. The figures include each worker
    process's own baseline (Python, numpy, dask, zarr and the rest imported: about 200 MiB).
inertia
    Sum of squared distances of all rows to their nearest centre for each method's final centres, computed
    in float64 by one extra pass per array on the cluster, the same code for every method.

After the table: the targets of the out-of-core issue (peak worker RSS of the larger array's fit at most
1.2x the smaller one's; a streamed iteration at most 1.3x the read pass when the read pass is the larger
floor (I/O bound), or 1.3x the in-memory iteration when that is larger (compute bound)), and what happened
to the workers, checked after every measurement: worker processes killed and replaced (their pids are
compared), pauses for memory and other warnings in the workers', nannies' and scheduler's logs, and keys
spilled to disk. A row whose measurement saw any of these says so in its note ("WORKERS: ...").
"""

from __future__ import annotations

import argparse
import os
import sys

import dask
import numpy as np
from _cluster import N_WORKERS, Cluster, cluster_info, workers_note
from _common import Row, fmt, format_table, machine_info, median, peaks_text, progress, quiet_warnings
from _ooc_data import (
    N_FEATURES,
    STORE_CHUNK_ROWS,
    Dataset,
    initial_centers,
    print_report,
    read_array,
    stores_on_a_cluster,
)
from _ooc_measure import (
    InMemory,
    Results,
    bench_dask_ml,
    bench_in_memory,
    bench_streamed,
    inertia_pass,
    median_peaks,
    no_labels,
    no_persist,
    partial_fit_row,
)

DEFAULT_DIR = "/tmp/dask-kmeans-bench-out-of-core"
FULL = {"rows": 2**26, "worker_memory": "1GiB"}
SMALL = {"rows": 2**23, "worker_memory": "512MiB"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from dask.utils import parse_bytes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--small", action="store_true",
        help=f"quick check: {SMALL['rows']:,} rows, workers of {SMALL['worker_memory']}")
    add("--rows", type=int, default=None,
        help=f"rows of the larger array (default {FULL['rows']:,} = 8 GiB; --small: {SMALL['rows']:,})")
    add("--scale-down", type=int, default=4, help="the smaller array has rows / this many (default 4)")
    add("--k", type=int, default=16, help="clusters, and true centres of the blobs (default 16)")
    add("--max-iter", type=int, default=5, help="Lloyd iterations of the streamed fits (>= 2, default 5)")
    add("--repeats", type=int, default=1, help="repeats of read pass + fit on the larger array (default 1)")
    add("--repeats-smaller", type=int, default=3,
        help="repeats of read pass + fit on the smaller array (default 3)")
    add("--worker-memory", default=None,
        help=f"memory_limit of each of the {N_WORKERS} workers (default {FULL['worker_memory']}; "
             f"--small: {SMALL['worker_memory']})")
    add("--dir", default=None, help=f"where the Zarr stores go (default {DEFAULT_DIR})")
    add("--keep", action="store_true", help="keep the Zarr stores (the next run reuses them)")
    add("--seed", type=int, default=2024, help="seed of the data (default 2024)")
    add("--dask-ml-max-iter", type=int, default=3, help="max_iter of dask-ml's timed fit (default 3)")
    add("--dask-ml-budget", type=float, default=900.0,
        help="skip dask-ml on an array when its two fits are estimated to take longer (s, default 900)")
    add("--glibc-malloc", action="store_true",
        help="start the workers without distributed's MALLOC_TRIM_THRESHOLD_=65536 (glibc's defaults)")
    add("--markdown", action="store_true", help="print the table in markdown")
    args = parser.parse_args(argv)
    preset = SMALL if args.small else FULL
    args.rows = args.rows or preset["rows"]
    args.worker_memory = parse_bytes(args.worker_memory or preset["worker_memory"])
    args.dir = args.dir or DEFAULT_DIR
    if args.max_iter < 2:
        parser.error("--max-iter must be at least 2 (the first iteration is left out of the median)")
    if args.dask_ml_max_iter < 2:
        parser.error("--dask-ml-max-iter must be at least 2")
    if min(args.repeats, args.repeats_smaller) < 1:
        parser.error("repeats must be at least 1")
    if args.scale_down < 1 or args.rows // args.scale_down < 2 * STORE_CHUNK_ROWS:
        parser.error(f"the smaller array needs at least {2 * STORE_CHUNK_ROWS:,} rows: --rows / --scale-down")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.glibc_malloc:  # read by the nannies when they start the workers
        dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None})
    n_small = args.rows // args.scale_down
    smaller, big = (
        Dataset(os.path.join(args.dir, f"blobs_{n}x{N_FEATURES}_k{args.k}_s{args.seed}.zarr"), n, N_FEATURES,
                args.k, args.seed)
        for n in (n_small, args.rows)
    )
    datasets = [smaller, big]

    for line in machine_info(["distributed", "zarr", "sklearn"]) + cluster_info(args.worker_memory):
        print(line)
    total_workers = N_WORKERS * args.worker_memory
    print(
        f"data: {big.label} ({big.nbytes / 1e9:.2f} GB) and {smaller.label} ({smaller.nbytes / 1e9:.2f} GB), "
        f"k={args.k}, seed {args.seed}; the workers' memory limits add up to {total_workers / 2**30:.2f} GiB "
        f"= {total_workers / big.nbytes:.2f}x the larger array"
        + ("" if total_workers <= big.nbytes / 4 else " (MORE than a quarter of it: not an out-of-core test)")
    )
    options = ", ".join(f"{k}={v}" for k, v in no_labels().items())
    fit_call = ".fit(X, persist=False)" if no_persist() else ".fit(X) (this dask_kmeans has no persist=)"
    streaming = f"KMeans(..., {options}){fit_call}"
    print(f"max_iter={args.max_iter}; dask_kmeans streamed fits call {streaming}; repeats: {args.repeats} on "
          f"{big.label}, {args.repeats_smaller} on {smaller.label} (medians)")
    print(flush=True)

    with stores_on_a_cluster(datasets, args.dir, args.worker_memory, args.keep) as cluster:
        C0 = initial_centers(smaller, args.seed + 1)
        with quiet_warnings():
            results, reference = measure(cluster, args, datasets, C0)
        rows, summary = report(args, results, reference)
        health = cluster.health()
    table = format_table(rows, COLUMNS, args.markdown, text=("data", "workers", "measurement", "note"))
    print_report(table, summary + health, args.dir if args.keep else None)
    return 0


def measure(cluster: Cluster, args: argparse.Namespace, datasets: list[Dataset], C0: np.ndarray):
    from dask_kmeans import KMeans

    smaller, big = datasets
    results = {ds: Results(ds) for ds in datasets}
    progress("warm-up")
    X0 = read_array(smaller)
    KMeans(args.k, init=C0, max_iter=2).fit(X0[: sum(X0.chunks[0][:2])], **no_persist())
    cluster.check("the warm-up")

    # 1. dask_kmeans streamed from the stores, with the read pass beside every fit: our figures first, so
    #    that the other libraries' imports (numba, for dask-ml) do not raise the workers' baseline.
    for ds, repeats in ((smaller, args.repeats_smaller), (big, args.repeats)):
        bench_streamed(cluster, results[ds], C0, args.max_iter, repeats)

    # 2. The in-memory reference, once, on a persisted slice of the smaller array.
    reference = bench_in_memory(
        cluster, smaller, C0, args.max_iter, max(args.repeats, args.repeats_smaller), args.worker_memory
    )

    # 3. scikit-learn's partial_fit and dask-ml on the same arrays.
    for ds in datasets:
        res = results[ds]
        res.rows.append(partial_fit_row(res, C0))
        try:
            res.rows.append(bench_dask_ml(
                cluster, res, C0, args.dask_ml_max_iter, args.dask_ml_budget, args.worker_memory
            ))
        except Exception as exc:  # noqa: BLE001 - a failing comparison is reported, not fatal
            cluster.check(f"{ds.label} dask-ml")
            note = f"failed: {type(exc).__name__}: {exc}".splitlines()[0][:200]
            res.rows.append(Row(ds, "dask-ml KMeans iteration, streamed", note=note))

    # 4. One pass per array for the inertia of every method's centres, on fresh workers: dask-ml leaves them
    #    with numba loaded and their memory fragmented.
    if any("dask-ml" in res.centers for res in results.values()):
        cluster.restart("after dask-ml's fits, before the inertia passes")
    true_centers, _ = big.blob_parameters()
    for ds in datasets:
        res = results[ds]
        progress(f"{ds.label}: inertia pass")
        res.inertias = inertia_pass(read_array(ds), {"true centres": true_centers, "C0": C0, **res.centers})
        cluster.check(f"{ds.label} inertia pass")
    return results, reference


def report(args: argparse.Namespace, results: dict[Dataset, Results], reference: InMemory):
    """The table's rows, and the lines under it (the targets)."""
    rows: list[Row] = []
    summary: list[str] = []
    for ds, res in results.items():
        X = read_array(ds)
        read_s, iter_s = median(res.read_s), median(res.iter_s)
        in_mem = reference.per_row_s * ds.n
        extra = {
            "chunk_mb": f"{X.chunks[0][0] * ds.d * 4 / 1e6:.1f}",
            "chunks": str(X.numblocks[0]),
            "workers": f"{N_WORKERS} x {args.worker_memory / 2**20:.0f} MiB",
        }
        n_rep = len(res.read_s)
        cached = "unknown" if res.cached_before is None else f"{100 * res.cached_before:.0f}%"
        growth = peaks_text(median_peaks(res.fit_growth))
        ds_rows = [
            Row(ds, "read pass (I/O floor)", time_s=read_s, peaks_mib=median_peaks(res.read_peaks),
                note=f"median of {n_rep}; the page cache held {cached} of the store before the first read"
                     + workers_note(res.read_events)),
            Row(ds, "dask_kmeans iteration, streamed", time_s=iter_s, peaks_mib=median_peaks(res.fit_peaks),
                extra={"inertia_of": "dask_kmeans"},
                note=f"median of {n_rep} fit(s) x {args.max_iter - 1} steps; fit {median(res.fit_s):.1f} s "
                     f"for {args.max_iter + 1} passes; peak - RSS at start: {growth} MiB"
                     + workers_note(res.fit_events)),
            Row(ds, "dask_kmeans iteration, in memory", time_s=in_mem, peaks_mib=reference.peaks,
                note=f"{reference.chunks} chunks ({reference.rows:,} rows of {reference.source}) persisted, "
                     f"time x {ds.n / reference.rows:.3g}; peak includes the persisted rows"
                     + workers_note(reference.events)),
            *res.rows,
        ]
        for row in ds_rows:
            row.extra.update(extra)
            row.inertia = res.inertias.get(row.extra.get("inertia_of"))
            if row.time_s is not None:
                row.ratios["read"] = row.time_s / read_s
                row.ratios["in-mem"] = row.time_s / in_mem
        rows += ds_rows
        bound = "I/O" if read_s >= in_mem else "compute"
        floor = max(read_s, in_mem)
        summary.append(
            f"{ds.label}: {bound} bound (read pass {read_s:.3f} s, in-memory iteration {in_mem:.3f} s); a "
            f"streamed iteration takes {iter_s:.3f} s = {iter_s / floor:.2f}x the {bound} floor (target <= "
            f"1.3x: {verdict(iter_s <= 1.3 * floor)}), {iter_s / (read_s + in_mem):.2f}x read + in-memory "
            f"({read_s + in_mem:.3f} s)"
        )
        summary.append(
            f"{ds.label}: inertia at the true centres {res.inertias['true centres']:.6g}, at C0 "
            f"{res.inertias['C0']:.6g}"
        )
    smaller, big = results
    small_peak = max(median_peaks(results[smaller].fit_peaks))
    big_peak = max(median_peaks(results[big].fit_peaks))
    summary.insert(0, (
        f"peak worker RSS in the streamed fit (highest worker): {big.label} {big_peak:.0f} MiB, "
        f"{smaller.label} {small_peak:.0f} MiB: {big_peak / small_peak:.2f}x for {big.n / smaller.n:.3g}x "
        f"the data (target <= 1.2x: {verdict(big_peak <= 1.2 * small_peak)}); worker memory limit "
        f"{args.worker_memory / 2**20:.0f} MiB"
    ))
    return rows, summary


COLUMNS = (
    ("data", lambda r: r.dataset.label),
    ("GB", lambda r: f"{r.dataset.nbytes / 1e9:.2f}"),
    ("chunk MB", lambda r: r.extra["chunk_mb"]),
    ("chunks", lambda r: r.extra["chunks"]),
    ("workers", lambda r: r.extra["workers"]),
    ("measurement", lambda r: r.what),
    ("time (s)", lambda r: fmt(r.time_s, ".3f")),
    ("x read", lambda r: fmt(r.ratios.get("read"), ".2f")),
    ("x in-mem", lambda r: fmt(r.ratios.get("in-mem"), ".2f")),
    ("peak RSS/worker (MiB)", lambda r: peaks_text(r.peaks_mib)),
    ("inertia", lambda r: fmt(r.inertia, ".6g")),
    ("note", lambda r: r.note),
)


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


if __name__ == "__main__":
    sys.exit(main())
