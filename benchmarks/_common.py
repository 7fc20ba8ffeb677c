"""Helpers shared by the benchmark scripts (run as ``python benchmarks/<script>.py``, so importable)."""

from __future__ import annotations

import contextlib
import statistics
import warnings
from collections.abc import Iterator


def median(values: list[float]) -> float:
    return statistics.median(values)


def fmt(value, spec: str) -> str:
    """``format(value, spec)``, or "-" for a missing figure."""
    return "-" if value is None else format(value, spec)


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
