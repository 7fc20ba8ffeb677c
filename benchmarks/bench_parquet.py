"""Out of core from Parquet: a streamed ``KMeans`` iteration against the read pass, as for Zarr.

Run it from the repository root on a quiet machine::

    python benchmarks/bench_parquet.py                 # 16.8M rows x 32 float32 (2 GiB), 2 x 1 GiB workers
    python benchmarks/bench_parquet.py --rows 67108864 # the 8.6 GB of bench_out_of_core.py

Data: a Parquet lake of float32 Gaussian blobs as lakes hold it: a few big files (``--file-rows`` rows each,
default 2,097,152 = 256 MiB) of many row groups (``--group-rows``, default 65,536 rows = 8 MiB), uncompressed
by default (``--compression``), 32 columns ``f0`` ... ``f31``. The rows are those of ``bench_out_of_core.py``
(the same blob parameters and per-chunk generators: ``_common.fill_blobs`` seeded by ``[--seed, chunk]``
for chunks of 262,144 rows), written by pyarrow in this process one chunk at a time. ``dask_kmeans.io.read``
makes chunks of whole row groups of one file (about 32 MiB), so one task never holds a whole file.

Cluster: the shared ``_cluster.Cluster`` (2 workers x 1 thread, ``--worker-memory`` each, default 1 GiB,
so they hold at most a quarter of the default lake... together half of it). Per repeat (medians shown):

read pass
    ``read(lake).X.sum(dtype="float64").compute()``: every row group read and decoded, nothing else.
streamed iteration
    ``KMeans(k, init=C0, tol=0, max_iter=--max-iter, compute_labels=False,
    algorithm="lloyd").fit(X, persist=False)``: the
    median difference of consecutive ``history_`` times (the first iteration, which also measures the
    variances, left out). "x read" is its ratio to the read pass.
peak RSS per worker
    The kernel's VmHWM of each worker during the measurement (reset before it), as the Zarr benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

import numpy as np
from _cluster import Cluster, cluster_info, workers_note
from _common import (
    Row,
    blob_parameters,
    fill_blobs,
    fmt,
    format_table,
    machine_info,
    median,
    peaks_text,
    progress,
    quiet_warnings,
)
from _ooc_data import STORE_CHUNK_ROWS, cached_fraction
from _ooc_measure import read_pass, streamed_fit

N_FEATURES = 32
MARKER = "_bench_parquet.json"  # skipped by the reader (a name starting with "_")


def write_lake(path: str, args: argparse.Namespace) -> tuple[float, int]:
    """The lake, written chunk by chunk; reused when a previous run wrote it with the same parameters."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    marker = {"rows": args.rows, "k": args.k, "seed": args.seed, "file_rows": args.file_rows,
              "group_rows": args.group_rows, "compression": args.compression}
    marker_path = os.path.join(path, MARKER)
    if os.path.exists(marker_path) and json.load(open(marker_path)) == marker:
        return 0.0, 0
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    centers, stds = blob_parameters(np.random.default_rng(args.seed), args.k, N_FEATURES)
    schema = pa.schema([(f"f{j}", pa.float32()) for j in range(N_FEATURES)])
    start, writer, files = time.perf_counter(), None, 0
    block = np.empty((STORE_CHUNK_ROWS, N_FEATURES), dtype=np.float32)
    for chunk, first in enumerate(range(0, args.rows, STORE_CHUNK_ROWS)):
        if first % args.file_rows == 0:
            if writer is not None:
                writer.close()
            writer = pq.ParquetWriter(os.path.join(path, f"part.{files}.parquet"), schema,
                                      compression=args.compression)
            files += 1
        rows = block[: min(STORE_CHUNK_ROWS, args.rows - first)]
        fill_blobs(np.random.default_rng([args.seed, chunk]), rows, centers, stds)
        writer.write_table(pa.table(list(rows.T), schema=schema), row_group_size=args.group_rows)
    writer.close()
    json.dump(marker, open(marker_path, "w"))
    return time.perf_counter() - start, files


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--rows", type=int, default=2**24, help="rows of the lake (default 16,777,216 = 2 GiB)")
    add("--file-rows", type=int, default=2**21, help="rows per file (default 2,097,152)")
    add("--group-rows", type=int, default=2**16, help="rows per row group (default 65,536)")
    add("--compression", default="none", help="Parquet compression (default none)")
    add("--k", type=int, default=16)
    add("--max-iter", type=int, default=5)
    add("--repeats", type=int, default=2)
    add("--seed", type=int, default=2024)
    add("--worker-memory", default="1GiB")
    add("--dir", default="/tmp/dask-kmeans-bench-parquet")
    add("--keep", action="store_true", help="keep the lake for the next run")
    add("--markdown", action="store_true")
    args = parser.parse_args(argv)
    args.worker_memory = int(__import__("dask").utils.parse_bytes(args.worker_memory))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from dask_kmeans.io import read

    for line in machine_info(["distributed", "pyarrow"], dask_ml=False) + cluster_info(args.worker_memory):
        print(line)
    path = os.path.join(args.dir, f"blobs_{args.rows}x{N_FEATURES}_k{args.k}_s{args.seed}.parquet")
    progress(f"writing {args.rows:,} x {N_FEATURES} float32 ({args.rows * N_FEATURES * 4 / 2**30:.2f} GiB)")
    written_s, files = write_lake(path, args)
    table = read(path)
    X = table.X
    print(f"lake: {path}; {'reused' if not files else f'{files} files written in {written_s:.1f} s'}; "
          f"row groups of {args.group_rows:,} rows, compression {args.compression}; {X.numblocks[0]} chunks "
          f"of up to {max(X.chunks[0]):,} rows; page cache held {fmt(cached_fraction(path), '.0%')} before")
    C0 = np.asarray(X[:: args.rows // args.k][: args.k].compute(), dtype=np.float64)
    cluster = Cluster(args.worker_memory)
    reads, iterations, read_peaks, fit_peaks = [], [], [], []
    try:
        with quiet_warnings():
            for r in range(args.repeats):
                progress(f"read pass {r + 1}/{args.repeats}")
                t, peaks = read_pass(cluster, X)
                reads.append(t)
                read_peaks.append(peaks)
                progress(f"read {t:.2f} s; streamed fit {r + 1}/{args.repeats}")
                it, _, peak, _ = streamed_fit(cluster, X, C0, args.max_iter)
                iterations.append(it)
                fit_peaks.append(list(peak.peak_mib.values()))
        events = cluster.check("all measurements")
    finally:
        cluster.close()
        if not args.keep:
            shutil.rmtree(args.dir, ignore_errors=True)
    per_worker = [max(p[i] for p in fit_peaks) for i in range(len(fit_peaks[0]))]
    rows = [
        Row("parquet", "read pass", time_s=median(reads), peaks_mib=np.max(read_peaks, axis=0).tolist(),
            ratios={"read": 1.0}),
        Row("parquet", "streamed iteration", time_s=median(iterations), peaks_mib=per_worker,
            ratios={"read": median(iterations) / median(reads)}),
    ]
    columns = [("measurement", lambda r: r.what), ("time (s)", lambda r: fmt(r.time_s, ".2f")),
               ("x read", lambda r: fmt(r.ratios.get("read"), ".2f")),
               ("peak RSS/worker (MiB)", lambda r: peaks_text(r.peaks_mib))]
    print()
    print(format_table(rows, columns, args.markdown, text=("measurement", "peak RSS/worker (MiB)")))
    print(f"medians of {args.repeats}{workers_note(events) or '; workers: no pause, spill or restart'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
