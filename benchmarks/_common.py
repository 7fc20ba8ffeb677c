"""Helpers shared by the benchmark scripts (run as ``python benchmarks/<script>.py``, so importable).

Statistics and formatting, the header's machine and version lines, the results table, Gaussian blobs and
their inertia, peak memory of processes, captured log records and progress lines on stderr.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import logging
import os
import platform
import statistics
import sys
import threading
import time
import warnings
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import psutil

_started = time.perf_counter()


def progress(message: str) -> None:
    """A line on stderr, after the seconds since the script started."""
    print(f"[{time.perf_counter() - _started:7.1f} s] {message}", file=sys.stderr, flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values)


def fmt(value, spec: str) -> str:
    """``format(value, spec)``, or "-" for a missing figure."""
    return "-" if value is None else format(value, spec)


def lloyd_passes() -> dict:
    """``KMeans`` keyword arguments for every iteration to be a full Lloyd pass (no bounds), so that an
    iteration's time means what it meant before ``algorithm`` existed; empty for versions without it."""
    from dask_kmeans import KMeans

    return {"algorithm": "lloyd"} if "algorithm" in KMeans().get_params() else {}


def import_dask_ml() -> tuple[object | None, str]:
    """dask-ml's KMeans class, or None and the reason it cannot be imported."""
    try:
        import dask_ml
        import dask_ml.cluster
    except Exception as exc:  # noqa: BLE001 - any failure means "not importable", with its reason
        return None, f"{type(exc).__name__}: {exc}".splitlines()[0]
    return dask_ml.cluster.KMeans, getattr(dask_ml, "__version__", "?")


@contextlib.contextmanager
def quiet_warnings() -> Iterator[None]:
    """Keep library deprecation chatter out of the output."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


# ----------------------------------------------------------------------------------------------------
# The header


def machine_info(packages: Iterable[str] = (), dask_ml: bool = True) -> list[str]:
    """The header's first lines: the machine, and the versions of python, numpy, dask, ``packages``
    (those that can be imported) and, with ``dask_ml``, dask-ml."""
    versions = [f"python {platform.python_version()}"]
    for name in ("numpy", "dask", *packages):
        with contextlib.suppress(ImportError):
            module = importlib.import_module(name)
            versions.append(f"{'scikit-learn' if name == 'sklearn' else name} {module.__version__}")
    if dask_ml:
        cls, version_or_reason = import_dask_ml()
        versions.append(f"dask-ml {version_or_reason}" if cls is not None else "dask-ml not importable")
    physical = psutil.cpu_count(logical=False)
    return [
        f"machine: {platform.machine()} {platform.system()}, {os.cpu_count()} logical cores"
        + (f" ({physical} physical)" if physical else "")
        + f", {psutil.virtual_memory().total / 2**30:.0f} GiB RAM",
        "versions: " + ", ".join(versions),
    ]


# ----------------------------------------------------------------------------------------------------
# The table


@dataclass
class Row:
    """One line of a results table. ``None`` is a quantity that does not apply or was not measured."""

    dataset: Hashable  # the data (or configuration) measured: a blank line separates data sets
    what: str  # the library or the measurement
    time_s: float | None = None  # of one iteration or pass: what ``ratios`` compare
    peaks_mib: list[float] | None = None  # peak memory, one figure per process
    inertia: float | None = None
    note: str = ""
    ratios: dict[str, float] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # the script's other figures and columns


Column = tuple[str, Callable[[Row], str]]


def peaks_text(peaks: list[float] | None) -> str:
    return "-" if not peaks else " / ".join(f"{p:.0f}" for p in peaks)


def format_table(rows: list[Row], columns: Iterable[Column], markdown: bool, text: Iterable[str]) -> str:
    """The rows as an aligned text table (or markdown); the ``text`` columns left-aligned, the rest right."""
    columns = list(columns)
    header = [name for name, _ in columns]
    cells = [[get(row) for _, get in columns] for row in rows]
    text = set(text)
    numeric = [name not in text for name in header]
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


# ----------------------------------------------------------------------------------------------------
# Data


def blob_parameters(rng: np.random.Generator, k: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """The true centres (uniform in [-10, 10]^d) and each blob's standard deviation (uniform in [1, 2])."""
    return rng.uniform(-10.0, 10.0, size=(k, d)), rng.uniform(1.0, 2.0, size=k)


def fill_blobs(rng: np.random.Generator, out: np.ndarray, centers: np.ndarray, stds: np.ndarray) -> None:
    """Fill ``out`` (C-contiguous, rows x d) with blob rows in its dtype, each row's blob drawn uniformly."""
    labels = rng.integers(len(centers), size=len(out))
    rng.standard_normal(out=out, dtype=out.dtype)
    out *= stds.astype(out.dtype)[labels, None]
    out += centers.astype(out.dtype)[labels]


def pick_initial_centers(X, k: int, seed: int) -> np.ndarray:
    """``k`` distinct rows of ``X`` (numpy or zarr), drawn with ``seed``: the fits' shared starting point."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(X.shape[0], size=k, replace=False))
    return np.stack([X[int(i)] for i in rows])


def inertia_of(X: np.ndarray, centers: np.ndarray, block_rows: int = 65_536) -> float:
    """Sum of squared distances of the rows to their nearest centre, in float64.

    Computed by the scripts for every library from its ``cluster_centers_``, so that the figure does not
    depend on how (or whether correctly) a library reports its own inertia.
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


# ----------------------------------------------------------------------------------------------------
# Memory and logs


def release_freed_memory() -> None:
    """Collect garbage and hand freed heap back to the OS (glibc's ``malloc_trim``), so that RSS figures
    start from a clean slate. Also run on dask workers."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def reset_high_water_mark(pid: int | str = "self") -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of a process; False where Linux does not allow it."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def high_water_mark(pid: int | str = "self") -> int | None:
    """The kernel's peak RSS (VmHWM) of a process in bytes, if it is available."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


def _rss(pid: int) -> int | None:
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return None


class PeakRSS:
    """Context manager: the peak RSS of some processes (by pid; this one by default) while it is active.

    ``peak_mib[name]``: the kernel's VmHWM (reset on entry) where Linux allows, which catches peaks of
    any length, and at least the highest psutil sample, taken every ``interval_s`` by a background thread.
    ``extra_mib[name]``: that peak minus the RSS on entry.
    """

    def __init__(self, pids: dict[str, int] | None = None, interval_s: float = 0.1):
        self.pids = dict(pids) if pids is not None else {"this process": os.getpid()}
        self.interval_s = interval_s
        self.peak_mib: dict[str, float] = {}
        self.extra_mib: dict[str, float] = {}

    @staticmethod
    def method(interval_s: float = 0.1) -> str:
        """How the peaks are measured here, for the header."""
        pid = os.getpid()
        hwm = reset_high_water_mark(pid) and high_water_mark(pid) is not None
        by_hwm = "the kernel's VmHWM high-water mark (reset before each measurement) and " if hwm else ""
        return f"max of {by_hwm}psutil samples of the RSS every {interval_s:g} s"

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


class CapturedLogs(logging.Handler):
    """Context manager: what a logger (and those below it) emits at WARNING or worse, as "logger: message"
    in ``self.messages``. ``silence=True`` also keeps the logger's records from the loggers above it."""

    def __init__(self, name: str, silence: bool = False):
        super().__init__(logging.WARNING)
        self._logger = logging.getLogger(name)
        self._silence = silence
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()}")

    def __enter__(self) -> CapturedLogs:
        self._propagate = self._logger.propagate
        self._logger.addHandler(self)
        self._logger.propagate = self._propagate and not self._silence
        return self

    def __exit__(self, *exc) -> None:
        self._logger.removeHandler(self)
        self._logger.propagate = self._propagate
