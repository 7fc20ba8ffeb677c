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
    ``KMeans(k, init=C0, tol=0, max_iter=--max-iter, compute_labels=False).fit(read(path).X,
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
import contextlib
import ctypes
import gc
import inspect
import logging
import os
import platform
import re
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field

import dask
import dask.array as da
import numpy as np
from _common import fmt, high_water_mark, import_dask_ml, median, quiet_warnings, reset_high_water_mark

try:
    import psutil
except ImportError:  # the peak RSS then comes from VmHWM alone
    psutil = None

N_WORKERS = 2
N_FEATURES = 32
STORE_CHUNK_ROWS = 2**18  # 32 MiB of float32 x 32: the dask chunk dask_kmeans.io.read picks for these arrays
DISK_FACTOR = 2.5
MARKER = "bench_out_of_core"  # attribute that marks (and describes) a store this script wrote
DEFAULT_DIR = "/tmp/dask-kmeans-bench-out-of-core"

FULL = {"rows": 2**26, "worker_memory": "1GiB"}
SMALL = {"rows": 2**23, "worker_memory": "512MiB"}

_started = time.perf_counter()


def progress(message: str) -> None:
    print(f"[{time.perf_counter() - _started:7.1f} s] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------------
# Data sets


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


def blob_parameters(k: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The true centres (uniform in [-10, 10]^d) and each blob's standard deviation (uniform in [1, 2])."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-10.0, 10.0, size=(k, d)), rng.uniform(1.0, 2.0, size=k)


def _blob_block(centers: np.ndarray, stds: np.ndarray, seed: int, block_info=None) -> np.ndarray:
    """The rows of one store chunk, from a generator seeded by the seed and the chunk's index."""
    start, stop = block_info[None]["array-location"][0]
    rng = np.random.default_rng([seed, start // STORE_CHUNK_ROWS])
    labels = rng.integers(len(centers), size=stop - start)
    block = rng.standard_normal((stop - start, centers.shape[1]), dtype=np.float32)
    block *= stds.astype(np.float32)[labels, None]
    block += centers.astype(np.float32)[labels]
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
    centers, stds = blob_parameters(ds.k, ds.d, ds.seed)
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
    with PeakRSS({"this process": os.getpid()}) as peak:
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


def zarr_codecs(path: str) -> str:
    import zarr

    arr = zarr.open_array(path, mode="r")
    names = ["?"]
    with contextlib.suppress(Exception):
        names = [type(c).__name__ for c in arr.compressors] or ["none"]
    return f"zarr format {arr.metadata.zarr_format}, compressors: {', '.join(names)}"


def pick_initial_centers(path: str, k: int, seed: int) -> np.ndarray:
    """``k`` distinct rows of the array at ``path``, drawn with ``seed``."""
    import zarr

    arr = zarr.open_array(path, mode="r")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(arr.shape[0], size=k, replace=False))
    return np.stack([arr[int(i)] for i in rows]).astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# Page cache


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


# ----------------------------------------------------------------------------------------------------
# Peak memory of processes


def _rss(pid: int) -> int | None:
    if psutil is None:
        return None
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return None


class PeakRSS:
    """Context manager: the peak RSS of some processes (by pid) while it is active.

    ``peak_mib[name]``: the kernel's VmHWM (reset on entry) where Linux allows, and at least the highest
    psutil sample, every ``interval_s``. ``extra_mib[name]``: that peak minus the RSS on entry.
    """

    def __init__(self, pids: dict[str, int], interval_s: float = 0.1):
        self.pids = dict(pids)
        self.interval_s = interval_s
        self.peak_mib: dict[str, float] = {}
        self.extra_mib: dict[str, float] = {}

    @staticmethod
    def method() -> str:
        pid = os.getpid()
        hwm = reset_high_water_mark(pid) and high_water_mark(pid) is not None
        sampled = "psutil samples of the RSS every 0.1 s" if psutil is not None else None
        parts = (["the kernel's VmHWM high-water mark (reset before each measurement)"] if hwm else []) + (
            [sampled] if sampled else []
        )
        return "max of " + " and ".join(parts) if parts else "unavailable (no psutil, no /proc VmHWM)"

    def __enter__(self) -> PeakRSS:
        self._hwm = {name: reset_high_water_mark(pid) for name, pid in self.pids.items()}
        self._baseline = {name: _rss(pid) or high_water_mark(pid) or 0 for name, pid in self.pids.items()}
        self._peak = dict(self._baseline)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample_once(self) -> None:
        for name, pid in self.pids.items():
            self._peak[name] = max(self._peak[name], _rss(pid) or 0)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._sample_once()
            self._stop.wait(self.interval_s)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample_once()
        for name, pid in self.pids.items():
            peak = self._peak[name]
            if self._hwm[name]:
                peak = max(peak, high_water_mark(pid) or 0)
            self.peak_mib[name] = peak / 2**20
            self.extra_mib[name] = (peak - self._baseline[name]) / 2**20


def _trim_memory() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


# ----------------------------------------------------------------------------------------------------
# The cluster and its health


class CapturedLogs(logging.Handler):
    """WARNING-or-worse records of the "distributed" loggers in this process (nannies, scheduler)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()}")


@dataclass
class Events:
    """What happened to the workers during one measurement (or several, added up)."""

    restarts: int = 0
    pauses: int = 0
    spilled_keys: float = 0.0
    spilled_bytes: float = 0.0
    warnings: dict[str, int] = field(default_factory=dict)  # other warnings, by kind

    def __add__(self, other: Events) -> Events:
        warnings_ = dict(self.warnings)
        for kind, n in other.warnings.items():
            warnings_[kind] = warnings_.get(kind, 0) + n
        return Events(
            self.restarts + other.restarts,
            self.pauses + other.pauses,
            self.spilled_keys + other.spilled_keys,
            self.spilled_bytes + other.spilled_bytes,
            warnings_,
        )

    def __bool__(self) -> bool:
        return bool(self.restarts or self.pauses or self.spilled_keys or self.warnings)

    def text(self) -> str:
        parts = []
        if self.restarts:
            parts.append(f"{self.restarts} worker process(es) killed and replaced")
        if self.pauses:
            parts.append(f"{self.pauses} worker pauses (memory)")
        if self.spilled_keys:
            mib = self.spilled_bytes / 2**20
            parts.append(f"{self.spilled_keys:.0f} keys ({mib:.0f} MiB) spilled to disk")
        parts += [f"{n} x {kind!r}" for kind, n in sorted(self.warnings.items())]
        return "; ".join(parts) or "nothing"

    def short(self) -> str:
        parts = [f"{self.restarts} killed+restarted"] if self.restarts else []
        parts += [f"{self.pauses} pauses"] if self.pauses else []
        parts += [f"{self.spilled_bytes / 2**20:.0f} MiB spilled"] if self.spilled_keys else []
        n_warnings = sum(self.warnings.values())
        parts += [f"{n_warnings} other warnings"] if n_warnings else []
        return ", ".join(parts) + " (see below)"


class Cluster:
    """A LocalCluster with a client, and what happened to its workers during each measurement.

    ``check(during)`` after every measurement compares the worker processes' pids with the last check's
    (a replaced pid is a worker killed, for memory or otherwise, and restarted by its nanny), and counts the
    pauses and other warnings the workers logged since then, the warnings of the nannies and the scheduler
    (which run in this process) and the bytes the workers spilled to disk.
    """

    def __init__(self, worker_memory: int):
        from distributed import Client, LocalCluster

        self.logs = CapturedLogs()
        logging.getLogger("distributed").addHandler(self.logs)
        self.cluster = LocalCluster(
            n_workers=N_WORKERS,
            threads_per_worker=1,
            memory_limit=worker_memory,
            processes=True,
            dashboard_address=None,
        )
        self.client = Client(self.cluster)
        self.client.wait_for_workers(N_WORKERS)
        self.pids = self._current_pids()
        self.phases: list[tuple[str, Events]] = []
        self.restarted_on_purpose: list[str] = []
        self._since = time.strftime("%Y-%m-%d %H:%M:%S,000")
        self._main_seen = len(self.logs.messages)
        self._spill_seen = self.client.run(_spilled)

    def _current_pids(self) -> dict[str, int]:
        return dict(sorted(self.client.run(os.getpid).items()))

    def check(self, during: str) -> Events:
        """What happened to the workers since the last check; logged under ``during``."""
        self.client.wait_for_workers(N_WORKERS, timeout=120)
        now = self._current_pids()
        events = Events(restarts=len(set(self.pids.values()) - set(now.values())))
        self.pids = now
        since, self._since = self._since, time.strftime("%Y-%m-%d %H:%M:%S,000")
        for records in self.client.get_worker_logs().values():
            for level, message in records:
                # Records start with their time, "2026-01-31 12:00:00,123", which sorts as text.
                if level not in ("WARNING", "ERROR", "CRITICAL") or message[:23] < since:
                    continue
                if "Pausing worker" in message:
                    events.pauses += 1
                elif "Resuming worker" not in message:
                    kind = _log_kind(message)
                    events.warnings[kind] = events.warnings.get(kind, 0) + 1
        for message in self.logs.messages[self._main_seen :]:
            kind = _log_kind(message)
            events.warnings[kind] = events.warnings.get(kind, 0) + 1
        self._main_seen = len(self.logs.messages)
        spilled = self.client.run(_spilled)
        for address, (keys, nbytes) in spilled.items():
            seen_keys, seen_bytes = self._spill_seen.get(address, (0.0, 0.0))
            events.spilled_keys += keys - seen_keys
            events.spilled_bytes += nbytes - seen_bytes
        self._spill_seen = spilled
        self.phases.append((during, events))
        if events:
            progress(f"WARNING: during {during}: {events.text()}")
        return events

    def restart(self, why: str) -> None:
        """Restart the workers on purpose (not counted as a failure), then start counting afresh."""
        progress(f"restarting the workers: {why}")
        # distributed 2026.8's Scheduler.restart asserts that no task is left; after dask-ml's fits some
        # can stay (seen twice, also 5 s later). The restart only freshens the workers for the inertia
        # passes, which time nothing: go on without it rather than lose the run.
        for attempt in range(2):
            try:
                self.client.restart(wait_for_workers=True)
                break
            except AssertionError:
                if attempt == 0:
                    progress("restart refused (tasks still held); retrying in 5 s")
                    time.sleep(5)
        else:
            progress("restart refused again: going on with the same workers")
            return
        self.client.wait_for_workers(N_WORKERS, timeout=120)
        self.pids = self._current_pids()
        self._since = time.strftime("%Y-%m-%d %H:%M:%S,000")
        self._main_seen = len(self.logs.messages)
        self._spill_seen = self.client.run(_spilled)
        self.restarted_on_purpose.append(why)

    def worker_names(self) -> dict[str, int]:
        return {f"w{i}": pid for i, pid in enumerate(self.pids.values())}

    def trim(self) -> None:
        self.client.run(_trim_memory)

    def peak(self) -> PeakRSS:
        self.trim()
        return PeakRSS(self.worker_names())

    def health(self) -> list[str]:
        troubled = [(during, events) for during, events in self.phases if events]
        clean = [during for during, events in self.phases if not events]
        on_purpose = "".join(f"; restarted on purpose {why}" for why in self.restarted_on_purpose)
        if not troubled:
            return [
                f"workers: none killed or restarted by the nanny (the same pids throughout{on_purpose}), "
                f"none paused, nothing spilled to disk, no warnings logged: {len(self.phases)} checks, one "
                "after every measurement"
            ]
        total = Events()
        for _, events in self.phases:
            total = total + events
        lines = [f"workers, all measurements: {total.text()}{on_purpose}"]
        lines += [f"  during {during}: {events.text()}" for during, events in troubled]
        lines.append(f"  nothing of the kind during: {', '.join(clean)}")
        return lines

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        with contextlib.suppress(Exception):
            self.cluster.close()
        logging.getLogger("distributed").removeHandler(self.logs)


def _log_kind(message: str) -> str:
    """A log message without its time, numbers and addresses, to count messages of one kind together."""
    message = re.sub(r"^\d{4}-\d\d-\d\d [\d:,]+ - ", "", message)
    message = message.split(" -- ")[0].split(". This may")[0].splitlines()[0]
    message = re.sub(r"(tcp|inproc)://[\w.:/-]+", "<addr>", message)
    message = re.sub(r"\d+(\.\d+)?", "N", message)
    return message[:90]


def _spilled(dask_worker=None) -> tuple[float, float]:
    metrics = getattr(getattr(dask_worker, "data", None), "cumulative_metrics", {})
    return metrics.get(("disk-write", "count"), 0.0), metrics.get(("disk-write", "bytes"), 0.0)


def worker_environment() -> str:
    """What the nannies set in the workers' environment (a variable set here wins, as in distributed)."""
    env = dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {}
    env = {k: os.environ.get(k, v) for k, v in env.items() if v is not None}
    return ", ".join(f"{k}={v}" for k, v in sorted(env.items())) or "none"


def memory_thresholds() -> str:
    cfg = dask.config.get("distributed.worker.memory")
    return ", ".join(f"{name} {cfg.get(name)}" for name in ("target", "spill", "pause", "terminate"))


# ----------------------------------------------------------------------------------------------------
# Measurements


@dataclass
class Row:
    """One line of the table. ``None`` is a quantity that does not apply or was not measured."""

    dataset: Dataset
    what: str
    time_s: float | None = None
    peaks_mib: list[float] | None = None  # one per worker
    inertia_of: str | None = None  # key into the centres evaluated by the inertia pass
    note: str = ""
    ratios: dict[str, float] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # chunk size, chunks, workers, inertia: filled for the table


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


def read_array(ds: Dataset) -> da.Array:
    from dask_kmeans.io import read

    return read(ds.path).X


def read_pass(cluster: Cluster, X: da.Array) -> tuple[float, list[float]]:
    with cluster.peak() as peak:
        start = time.perf_counter()
        X.sum(dtype="float64").compute()
        elapsed = time.perf_counter() - start
    return elapsed, list(peak.peak_mib.values())


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


def streamed_fit(cluster: Cluster, X: da.Array, C0: np.ndarray, max_iter: int):
    from dask_kmeans import KMeans

    with cluster.peak() as peak:
        start = time.perf_counter()
        model = KMeans(len(C0), init=C0, tol=0.0, max_iter=max_iter, **no_labels()).fit(X, **no_persist())
        elapsed = time.perf_counter() - start
    steps = np.diff([h["elapsed"] for h in model.history_])
    return float(np.median(steps)), elapsed, peak, model.cluster_centers_


def bench_streamed(cluster: Cluster, res: Results, C0: np.ndarray, max_iter: int, repeats: int) -> None:
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
        it, wall, peak, centers = streamed_fit(cluster, X, C0, max_iter)
        peaks = list(peak.peak_mib.values())
        res.iter_s.append(it)
        res.fit_s.append(wall)
        res.fit_peaks.append(peaks)
        res.fit_growth.append(list(peak.extra_mib.values()))
        res.fit_events = res.fit_events + cluster.check(f"{ds.label} streamed fit {r + 1}")
        progress(f"{ds.label}: {it:.2f} s per iteration, fit {wall:.1f} s, peaks {peaks_text(peaks)} MiB")
    res.centers["dask_kmeans"] = centers


def bench_in_memory(cluster: Cluster, ds: Dataset, C0: np.ndarray, max_iter: int, repeats: int,
                    worker_memory: int):
    """Time per iteration of fits on a persisted slice of the array."""
    X = read_array(ds)
    chunk_bytes = X.chunks[0][0] * ds.d * 4
    n_chunks = max(2 * N_WORKERS, N_WORKERS * worker_memory // 8 // chunk_bytes)
    n_chunks = min(n_chunks, X.numblocks[0])
    rows = int(sum(X.chunks[0][:n_chunks]))
    progress(f"in memory: persisting {n_chunks} chunks ({rows} rows) of {ds.label}")
    Xm = X[:rows].persist()
    from distributed import wait

    wait(Xm)
    times, peaks = [], []
    for _ in range(repeats):
        it, _, peak, _ = streamed_fit(cluster, Xm, C0, max(5, max_iter))
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
    _trim_memory()
    with PeakRSS({"this process": os.getpid()}) as peak:
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


def bench_dask_ml(cluster: Cluster, res: Results, C0: np.ndarray, max_iter: int, budget_s: float,
                  worker_memory: int) -> Row:
    ds = res.dataset
    what = "dask-ml KMeans iteration, streamed"
    KMeans, version_or_reason = import_dask_ml()
    if KMeans is None:
        return Row(ds, what, note=f"not importable here ({version_or_reason}); run with a venv that has it")
    X = read_array(ds)
    chunk_bytes = X.chunks[0][0] * ds.d * 4
    n_chunks = min(X.numblocks[0], max(2 * N_WORKERS, N_WORKERS * worker_memory // 8 // chunk_bytes))
    rows = int(sum(X.chunks[0][:n_chunks]))

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
        ds, what, time_s=per_iter, peaks_mib=list(peak.peak_mib.values()), inertia_of="dask-ml",
        note=f"dask-ml {version_or_reason}; fits of max_iter=1 and {max_iter}: {t_one:.1f} s and "
             f"{t_many:.1f} s (n_iter_ {n_iter}); estimate was {estimate:.0f} s"
             + workers_note(events),
    )


def _inertias_block(X: np.ndarray, center_sets: np.ndarray, sub_rows: int = 65_536) -> np.ndarray:
    """Per chunk: the inertia (float64) of each centre set in ``center_sets`` (S, k, d)."""
    out = np.zeros((1, len(center_sets)))
    sq_centers = np.einsum("skd,skd->sk", center_sets, center_sets)
    for start in range(0, len(X), sub_rows):
        block = X[start : start + sub_rows].astype(np.float64)
        sq_rows = np.einsum("ij,ij->i", block, block)
        for s, centers in enumerate(center_sets):
            dist = block @ (-2.0 * centers.T)
            dist += sq_centers[s]
            out[0, s] += float(np.maximum(dist.min(axis=1) + sq_rows, 0.0).sum())
    return out


def inertia_pass(X: da.Array, centers: dict[str, np.ndarray]) -> dict[str, float]:
    """Inertia of every centre set, in one pass over ``X`` on the cluster."""
    names = list(centers)
    stack = np.stack([np.asarray(centers[name], dtype=np.float64) for name in names])
    parts = X.map_blocks(
        _inertias_block, stack, chunks=((1,) * X.numblocks[0], (len(names),)), dtype=np.float64
    )
    totals = parts.sum(axis=0).compute()
    return dict(zip(names, (float(t) for t in totals)))


# ----------------------------------------------------------------------------------------------------
# Reporting


def peaks_text(peaks: list[float] | None) -> str:
    return "-" if not peaks else " / ".join(f"{p:.0f}" for p in peaks)


def machine_info(worker_memory: int) -> list[str]:
    import distributed
    import zarr

    versions = [
        f"python {platform.python_version()}", f"numpy {np.__version__}", f"dask {dask.__version__}",
        f"distributed {distributed.__version__}", f"zarr {zarr.__version__}",
    ]
    with contextlib.suppress(ImportError):
        import sklearn

        versions.append(f"scikit-learn {sklearn.__version__}")
    cls, version_or_reason = import_dask_ml()
    versions.append(f"dask-ml {version_or_reason}" if cls is not None else "dask-ml not importable")
    cores = os.cpu_count()
    ram = f", {psutil.virtual_memory().total / 2**30:.0f} GiB RAM" if psutil is not None else ""
    return [
        f"machine: {platform.machine()} {platform.system()}, {cores} logical cores{ram}",
        "versions: " + ", ".join(versions),
        f"cluster: LocalCluster(n_workers={N_WORKERS}, threads_per_worker=1, memory_limit="
        f"{worker_memory / 2**20:.0f} MiB); worker memory thresholds: {memory_thresholds()}",
        f"worker environment (distributed.nanny.pre-spawn-environ): {worker_environment()}",
        f"peak RSS per worker: {PeakRSS.method()}",
    ]


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
    ("inertia", lambda r: fmt(r.extra.get("inertia"), ".6g")),
    ("note", lambda r: r.note),
)


def format_table(rows: list[Row], markdown: bool) -> str:
    header = [name for name, _ in COLUMNS]
    cells = [[get(row) for _, get in COLUMNS] for row in rows]
    numeric = [name not in ("data", "workers", "measurement", "note") for name, _ in COLUMNS]
    if markdown:
        rule = "|" + "|".join("---:" if n else "---" for n in numeric) + "|"
        lines = ["| " + " | ".join(header) + " |", rule]
        return "\n".join(lines + ["| " + " | ".join(line) + " |" for line in cells])
    widths = [max(len(str(c)) for c in column) for column in zip(header, *cells)]

    def render(line: list[str]) -> str:
        cells = (c.rjust(w) if num else c.ljust(w) for c, w, num in zip(line, widths, numeric))
        return "  ".join(cells).rstrip()

    out = [render(header), "  ".join("-" * w for w in widths)]
    previous = None
    for row, line in zip(rows, cells):
        if previous is not None and row.dataset != previous:
            out.append("")
        out.append(render(line))
        previous = row.dataset
    return "\n".join(out)


def workers_note(events: Events) -> str:
    return f"; WORKERS: {events.short()}" if events else ""


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


# ----------------------------------------------------------------------------------------------------
# Driver


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

    for line in machine_info(args.worker_memory):
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

    cluster = None
    stores: list[Dataset] = []
    try:
        gen_lines, stores = prepare_stores(datasets, args.dir)
        print(f"stores: {zarr_codecs(big.path)}; chunks of {STORE_CHUNK_ROWS:,} rows")
        for line in gen_lines:
            print(line)
        C0 = pick_initial_centers(smaller.path, args.k, args.seed + 1)
        progress("starting the cluster")
        cluster = Cluster(args.worker_memory)
        with quiet_warnings():
            results, reference = measure(cluster, args, datasets, C0)
        rows, summary = report(args, results, reference)
        health = cluster.health()
    finally:
        if cluster is not None:
            cluster.close()
        if not args.keep:
            for ds in stores:
                shutil.rmtree(ds.path, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.rmdir(args.dir)  # only if empty
    print()
    print(format_table(rows, args.markdown))
    print()
    for line in summary + health:
        print(line)
    if args.keep:
        print(f"stores kept under {args.dir}")
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
        progress(f"{ds.label}: MiniBatchKMeans.partial_fit epoch")
        what = "sklearn MiniBatchKMeans.partial_fit epoch"
        try:
            total, t_read, t_fit, extra, model = bench_partial_fit(ds, read_array(ds), C0)
        except ImportError as exc:
            res.rows.append(Row(ds, what, note=f"skipped: {exc}"))
        else:
            res.centers["sklearn"] = model.cluster_centers_
            res.rows.append(Row(
                ds, what, time_s=total, inertia_of="sklearn",
                note=f"read {t_read:.2f} s + partial_fit {t_fit:.2f} s in this process (+{extra:.0f} MiB "
                     "RSS); workers idle",
            ))
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
    true_centers, _ = blob_parameters(args.k, N_FEATURES, args.seed)
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
                inertia_of="dask_kmeans",
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
            if row.inertia_of in res.inertias:
                row.extra["inertia"] = res.inertias[row.inertia_of]
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


if __name__ == "__main__":
    sys.exit(main())
