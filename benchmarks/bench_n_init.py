"""What ``n_init`` costs an out-of-core fit: ``KMeans(n_init=R)`` against ``n_init=1``, streamed from Zarr.

Run it from the repository root on a quiet machine, with at least 2.5x the data's size free on disk::

    python benchmarks/bench_n_init.py --small   # 2.1M rows x 32 (0.25 GiB), 2 x 512 MiB: checks the script
    python benchmarks/bench_n_init.py           # 33.6M rows x 32 (4 GiB), 2 x 1 GiB: the issue's figures

The runs of one fit share its passes over the data (one read of the chunks holding every run's drawn rows
for ``init="random"``; the same ``init_rounds`` rounds and weighting pass for k-means||; one Lloyd pass
advancing every run; one final pass for every run's inertia). Targets (issue #11), on an array larger than
the workers' memory: ``n_init=10`` with ``init="random"`` at most 2x the time of ``n_init=1``, and
k-means|| with ``n_init=3`` at most 1.5x. ``--small`` checks the script, not the claim: its array is a
quarter of the workers' memory (a worker needs 512 MiB to run at all, see ``bench_out_of_core.py``).

Data: one Zarr array of float32 Gaussian blobs under ``--dir``, ``--rows`` rows x 32 (default 2**25 =
33,554,432 rows = 4 GiB, twice the workers' memory limits added up), written (or reused) by the shared
code of ``bench_out_of_core.py`` (``_ooc_data.py``: ``k`` true centres, store chunks of 262,144 rows =
32 MiB, one dask chunk per store chunk, the same file names and seeds, so that stores either script kept
with ``--keep`` serve the other with the same ``--dir``). Deleted at the end unless ``--keep``.

Cluster: ``LocalCluster(n_workers=2, threads_per_worker=1, memory_limit=--worker-memory)`` (the shared
``_cluster.Cluster``, default 1 GiB each), checked after every measurement for workers killed, paused,
spilling or warnings logged (a row's note says so).

What is measured. A warm-up (each init, ``n_init=2``, on the first two chunks) runs first. Then
``--repeats`` rounds (default 3); each round runs the read pass, then the four fits, in an order rotated by
one each round (round-robin, so drift and page-cache effects fall on every configuration alike):

read pass
    Wall time of ``dask_kmeans.io.read(path).X.sum(dtype="float64").compute()``: every chunk read from
    the store and decoded on the workers, nothing else. "x read" divides a fit's time by it.
fits
    ``KMeans(k, init=..., n_init=R, max_iter=M, tol=0, algorithm="lloyd", random_state=--random-state,
    compute_labels=False).fit(X, persist=False)`` on ``X = dask_kmeans.io.read(path).X`` (streamed,
    nothing persisted): (random, 1), (random, 10), (k-means||, 1), (k-means||, 3); ``k`` = ``--k``
    (default 16), ``M`` = ``--max-iter`` (default 10). Wall time of ``fit``; the table gives the median
    over rounds and "x n_init=1", the median of a configuration over the median of its ``n_init=1``.
reads/chunk
    Counted at the source: ``zarr.Array.__getitem__`` is wrapped on every worker (and in this process)
    to count the store chunks of rows each call reads; their sum over the measurement, divided by the
    number of chunks (dask chunk = store chunk here). The read pass must give 1.00. (Task keys cannot:
    dask fuses the reads of ``X.sum()`` into its ``sum`` tasks, and leaves read-layer keys that are
    aliases.) With ``tol=0`` a run stops before ``max_iter`` only when its centres stop changing
    exactly. "passes" splits the figure: ``Lloyd`` is the most
    iterations of any run of the fit (all runs share each pass; from dask_kmeans' INFO log "Run i of R:
    ... after n iterations", ``n_iter_`` for one run), ``final`` the pass for every run's inertia,
    ``init`` the rest: at most 1 for random (only the chunks that hold drawn rows are read),
    ``init_rounds + 1`` plus at most 1 (the chunks holding the first centres) for k-means||. It should
    be the same for n_init=1 and n_init=R, up to that partial read. A worker replaced during a
    measurement takes its count with it (its note says WORKERS).
n_iter_, inertia
    The fit's ``n_iter_`` (the best run's) in each round, and its ``inertia_`` (the same every round).
peak RSS/worker (MiB)
    Each worker's peak resident set size during the measurement, median over rounds (the shared
    ``PeakRSS``: the kernel's VmHWM reset before, and psutil samples), freed memory handed back to the
    OS before each. k-means|| keeps, per run, each row's distance to its nearest candidate and that
    candidate's index on the workers between its passes (12 bytes a row in this version, 9% of the
    float32 x 32 data): with n_init=3 that is 28% of the array, held on the workers through the rounds.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from dataclasses import dataclass, field

import numpy as np
from _cluster import N_WORKERS, Cluster, Events, cluster_info, workers_note
from _common import (
    Row,
    fmt,
    format_table,
    lloyd_passes,
    machine_info,
    median,
    peaks_text,
    progress,
    quiet_warnings,
)
from _ooc_data import (
    N_FEATURES,
    STORE_CHUNK_ROWS,
    Dataset,
    cached_fraction,
    print_report,
    read_array,
    stores_on_a_cluster,
)
from _ooc_measure import median_peaks, read_pass

DEFAULT_DIR = "/tmp/dask-kmeans-bench-out-of-core"  # bench_out_of_core.py's: either script reuses kept stores
FULL = {"rows": 2**25, "worker_memory": "1GiB", "repeats": 3}
SMALL = {"rows": 2**21, "worker_memory": "512MiB", "repeats": 2}


@dataclass(frozen=True)
class Config:
    init: str
    n_init: int

    @property
    def label(self) -> str:
        return f"{self.init}, n_init={self.n_init}"


CONFIGS = (Config("random", 1), Config("random", 10), Config("k-means||", 1), Config("k-means||", 3))
TARGETS = {Config("random", 10): 2.0, Config("k-means||", 3): 1.5}  # at most this x the n_init=1 median


@dataclass
class Measured:
    """One configuration (or the read pass) over the rounds."""

    times: list[float] = field(default_factory=list)
    reads: list[float] = field(default_factory=list)  # store chunks read / chunks
    lloyd: list[int] = field(default_factory=list)  # Lloyd passes: the most iterations of any run
    n_iter: list[int] = field(default_factory=list)
    inertia: list[float] = field(default_factory=list)
    peaks: list[list[float]] = field(default_factory=list)
    events: Events = field(default_factory=Events)
    notes: set[str] = field(default_factory=set)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from dask.utils import parse_bytes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--small", action="store_true",
        help=f"quick check: {SMALL['rows']:,} rows, workers of {SMALL['worker_memory']}, "
             f"{SMALL['repeats']} rounds")
    add("--rows", type=int, default=None,
        help=f"rows of the array (default {FULL['rows']:,} = 4 GiB; --small: {SMALL['rows']:,})")
    add("--k", type=int, default=16, help="clusters, and true centres of the blobs (default 16)")
    add("--max-iter", type=int, default=10, help="max_iter of the fits (default 10)")
    add("--repeats", type=int, default=None,
        help=f"rounds of read pass + the four fits (default {FULL['repeats']}; --small: {SMALL['repeats']})")
    add("--worker-memory", default=None,
        help=f"memory_limit of each of the {N_WORKERS} workers (default {FULL['worker_memory']}; "
             f"--small: {SMALL['worker_memory']})")
    add("--dir", default=None, help=f"where the Zarr store goes (default {DEFAULT_DIR})")
    add("--keep", action="store_true", help="keep the Zarr store (the next run reuses it)")
    add("--seed", type=int, default=2024, help="seed of the data (default 2024)")
    add("--random-state", type=int, default=0, help="random_state of the fits (default 0)")
    add("--markdown", action="store_true", help="print the table in markdown")
    args = parser.parse_args(argv)
    preset = SMALL if args.small else FULL
    args.rows = args.rows or preset["rows"]
    args.repeats = args.repeats or preset["repeats"]
    args.worker_memory = parse_bytes(args.worker_memory or preset["worker_memory"])
    args.dir = args.dir or DEFAULT_DIR
    if args.repeats < 1 or args.max_iter < 1:
        parser.error("--repeats and --max-iter must be at least 1")
    if args.rows < 2 * STORE_CHUNK_ROWS:
        parser.error(f"--rows must be at least {2 * STORE_CHUNK_ROWS:,} (two chunks)")
    return args


def main(argv: list[str] | None = None) -> int:
    from dask_kmeans import KMeans

    args = parse_args(argv)
    ds = Dataset(os.path.join(args.dir, f"blobs_{args.rows}x{N_FEATURES}_k{args.k}_s{args.seed}.zarr"),
                 args.rows, N_FEATURES, args.k, args.seed)
    for line in machine_info(["distributed", "zarr"], dask_ml=False) + cluster_info(args.worker_memory):
        print(line)
    workers = N_WORKERS * args.worker_memory
    print(f"data: {ds.label} ({ds.nbytes / 2**30:.2f} GiB), k={args.k}, seed {args.seed}; workers' memory "
          f"limits add up to {workers / 2**30:.2f} GiB = {workers / ds.nbytes:.2f}x the array"
          + ("" if workers < ds.nbytes else " (NOT smaller than the array: not an out-of-core test)"))
    init_rounds = KMeans().get_params()["init_rounds"]
    print(f"fits: KMeans({args.k}, init=..., n_init=R, max_iter={args.max_iter}, tol=0, random_state="
          f"{args.random_state}, compute_labels=False).fit(X, persist=False); k-means|| init_rounds="
          f"{init_rounds}; {args.repeats} round(s), medians")
    print(flush=True)

    with stores_on_a_cluster([ds], args.dir, args.worker_memory, args.keep) as cluster:
        cached = cached_fraction(ds.path)
        with quiet_warnings():
            results = measure(cluster, args, ds)
        rows, summary = report(args, ds, results, init_rounds, cached)
        health = cluster.health()
    table = format_table(rows, COLUMNS, args.markdown, text=("measurement", "passes", "n_iter_", "note"))
    print_report(table, summary + health, args.dir if args.keep else None)
    return 0


def measure(cluster: Cluster, args: argparse.Namespace, ds: Dataset) -> dict[Config | None, Measured]:
    from dask_kmeans import KMeans

    X = read_array(ds)
    results: dict[Config | None, Measured] = {None: Measured(), **{cfg: Measured() for cfg in CONFIGS}}
    progress("warm-up")
    head = X[: sum(X.chunks[0][:2])]
    for init in ("random", "k-means||"):
        KMeans(args.k, init=init, n_init=2, max_iter=2, random_state=0, compute_labels=False).fit(head)
    cluster.check("the warm-up")
    for r in range(args.repeats):
        progress(f"round {r + 1}/{args.repeats}: read pass")
        res = results[None]
        with counted_reads(cluster, X) as reads:
            elapsed, peaks = read_pass(cluster, X)
        res.times.append(elapsed)
        res.reads.append(reads.per_chunk)
        res.peaks.append(peaks)
        res.events = res.events + cluster.check(f"read pass {r + 1}")
        shift = r % len(CONFIGS)
        for cfg in CONFIGS[shift:] + CONFIGS[:shift]:
            progress(f"round {r + 1}/{args.repeats}: {cfg.label}")
            fit(cluster, X, cfg, args, results[cfg])
            results[cfg].events = results[cfg].events + cluster.check(f"{cfg.label}, round {r + 1}")
            progress(f"  {results[cfg].times[-1]:.2f} s, {results[cfg].reads[-1]:.2f} reads/chunk")
    return results


def fit(cluster: Cluster, X, cfg: Config, args: argparse.Namespace, res: Measured) -> None:
    from dask_kmeans import KMeans

    model = KMeans(args.k, init=cfg.init, n_init=cfg.n_init, max_iter=args.max_iter, tol=0.0,
                   random_state=args.random_state, compute_labels=False, **lloyd_passes())
    with RunLog() as log, counted_reads(cluster, X) as reads, cluster.peak() as peak:
        start = time.perf_counter()
        model.fit(X, persist=False)
        elapsed = time.perf_counter() - start
    res.times.append(elapsed)
    res.reads.append(reads.per_chunk)
    res.n_iter.append(int(model.n_iter_))
    res.inertia.append(float(model.inertia_))
    res.peaks.append(list(peak.peak_mib.values()))
    if cfg.n_init > 1 and len(log.iterations) != cfg.n_init:
        res.notes.add("Lloyd passes: the best run's n_iter_ (the runs' iterations were not logged)")
        res.lloyd.append(int(model.n_iter_))
    else:
        res.lloyd.append(max(log.iterations, default=int(model.n_iter_)))


def install_read_counter() -> None:
    """Make ``zarr.Array.__getitem__`` count the store chunks (of rows) each call reads, in this process.

    Run on every worker (and here) before each measurement; once is enough, later calls do nothing.
    """
    import zarr

    if hasattr(zarr.Array, "_bench_chunk_reads"):
        return
    original, counter = zarr.Array.__getitem__, [0]

    def __getitem__(self, key):  # noqa: N807 - replaces the method
        counter[0] += _chunks_touched(self, key)
        return original(self, key)

    zarr.Array.__getitem__ = __getitem__
    zarr.Array._bench_chunk_reads = counter


def _chunks_touched(arr, key) -> int:
    rows = key[0] if isinstance(key, tuple) else key
    step = arr.chunks[0]
    if isinstance(rows, slice):
        start, stop, _ = rows.indices(arr.shape[0])
        return max(0, -(-stop // step) - start // step)
    rows = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows)
    return len(np.unique(rows % arr.shape[0] // step)) if rows.ndim else 1


def chunk_reads() -> int:
    import zarr

    return getattr(zarr.Array, "_bench_chunk_reads", [0])[0]


class counted_reads:  # noqa: N801 - a context manager, named like distributed's get_task_stream
    """The store chunks of the array read (on the workers and here) while the block runs, per chunk."""

    def __init__(self, cluster: Cluster, X):
        self.client, self.n_chunks, self.per_chunk = cluster.client, X.numblocks[0], float("nan")

    def _total(self) -> int:
        return sum(self.client.run(chunk_reads).values()) + chunk_reads()

    def __enter__(self) -> counted_reads:
        install_read_counter()
        self.client.run(install_read_counter)  # does nothing where it is installed: for replaced workers
        self._before = self._total()
        return self

    def __exit__(self, *exc) -> None:
        self.per_chunk = (self._total() - self._before) / self.n_chunks


class RunLog(logging.Handler):
    """The iterations of every run of a fit of several runs, from dask_kmeans' INFO log while active."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.iterations: list[int] = []
        self._logger = logging.getLogger("dask_kmeans")

    def emit(self, record: logging.LogRecord) -> None:
        if match := re.match(r"Run \d+ of \d+: .* after (\d+) iterations", record.getMessage()):
            self.iterations.append(int(match.group(1)))

    def __enter__(self) -> RunLog:
        self._saved = self._logger.level
        self._logger.setLevel(logging.INFO)  # no handler above shows INFO records: the root has none here
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._saved)


def report(args: argparse.Namespace, ds: Dataset, results: dict[Config | None, Measured], init_rounds: int,
           cached: float | None) -> tuple[list[Row], list[str]]:
    """The table's rows, and the lines under it (the targets)."""
    n_chunks = read_array(ds).numblocks[0]
    read = results.pop(None)
    read_s, cached_text = median(read.times), "unknown" if cached is None else f"{100 * cached:.0f}%"
    rows = [Row(
        "read", "read pass", time_s=read_s, peaks_mib=median_peaks(read.peaks),
        ratios={"read": 1.0}, extra={"reads": read.reads},
        note=f"{n_chunks} chunks; the page cache held {cached_text} of the store before the first read"
             + ("" if set(read.reads) == {1.0} else "; READS != 1.00 PER CHUNK: the counter is wrong")
             + workers_note(read.events),
    )]
    summary = []
    for cfg, res in results.items():
        t = median(res.times)
        base = median(results[Config(cfg.init, 1)].times)
        init_part = [r - lloyd - 1 for r, lloyd in zip(res.reads, res.lloyd)]
        low, high = (0.0, 1.0) if cfg.init == "random" else (init_rounds + 1.0, init_rounds + 2.0)
        notes = sorted(res.notes)
        if not all(low - 1e-9 <= p <= high + 1e-9 for p in init_part):
            notes.append(f"UNEXPECTED: init reads/chunk {', '.join(f'{p:.2f}' for p in init_part)}, "
                         f"expected {low:g} to {high:g}")
        rows.append(Row(
            cfg.init, cfg.label, time_s=t, peaks_mib=median_peaks(res.peaks), inertia=median(res.inertia),
            ratios={"read": t / read_s, "base": t / base},
            extra={"reads": res.reads, "n_iter": res.n_iter,
                   "passes": f"init {median(init_part):.2f} + Lloyd {median(res.lloyd):g} + final 1",
                   "target": f"<= {TARGETS[cfg]:g}" if cfg in TARGETS else ""},
            note=("; ".join(notes) + workers_note(res.events)).removeprefix("; "),
        ))
        if cfg in TARGETS:
            ratio = t / base
            base_reads = median(results[Config(cfg.init, 1)].reads)
            summary.append(
                f"{cfg.init}: n_init={cfg.n_init} median {t:.2f} s = {ratio:.2f}x n_init=1's {base:.2f} s "
                f"(target <= {TARGETS[cfg]:g}x: {'met' if ratio <= TARGETS[cfg] else 'NOT met'}); "
                f"{median(res.reads):.2f} reads per chunk against {base_reads:.2f}; {t / read_s:.1f} read "
                f"passes of time against {base / read_s:.1f}"
            )
    summary.append(f"n_iter_: with tol=0 a run stops before max_iter={args.max_iter} only when its centres "
                   "stop changing exactly; a fit's Lloyd passes are the most iterations of any of its runs")
    return rows, summary


def _reads_text(reads: list[float]) -> str:  # the median, and the range where the rounds differ
    low, high = min(reads), max(reads)
    return f"{median(reads):.2f}" + ("" if high - low < 0.005 else f" ({low:.2f}-{high:.2f})")


COLUMNS = (
    ("measurement", lambda r: r.what),
    ("time (s)", lambda r: fmt(r.time_s, ".2f")),
    ("x read", lambda r: fmt(r.ratios.get("read"), ".2f")),
    ("x n_init=1", lambda r: fmt(r.ratios.get("base"), ".2f")),
    ("target", lambda r: r.extra.get("target", "")),
    ("reads/chunk", lambda r: _reads_text(r.extra["reads"])),
    ("passes", lambda r: r.extra.get("passes", "1")),
    ("n_iter_", lambda r: "/".join(str(n) for n in r.extra.get("n_iter", [])) or "-"),
    ("inertia", lambda r: fmt(r.inertia, ".6g")),
    ("peak RSS/worker (MiB)", lambda r: peaks_text(r.peaks_mib)),
    ("note", lambda r: r.note),
)


if __name__ == "__main__":
    sys.exit(main())
