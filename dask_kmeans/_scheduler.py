"""What the current dask scheduler is, and keeping BLAS threads x dask threads within the cores.

numpy's BLAS starts one thread per core. When dask also runs one task per core in this process (the local
threaded scheduler, or a ``LocalCluster(processes=False)``), every GEMM then competes with the other tasks'
GEMMs: a prototype ran 10x slower with 2 BLAS threads inside 2 dask threads than with 1. Worker processes
of a ``LocalCluster`` or ``dask worker`` already pin BLAS to one thread, so only tasks that run in this
process need a limit. threadpoolctl limits are process-wide, so the limit is set once around a whole fit,
never per task.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import dask
import dask.array as da
import dask.local
import dask.threaded
from dask.system import CPU_COUNT
from threadpoolctl import threadpool_limits


def current_client():
    """The ``distributed.Client`` that runs dask computations now, or None for a local scheduler."""
    client = getattr(dask.base.get_scheduler(), "__self__", None)
    return client if client is not None and hasattr(client, "scheduler_info") else None


def dask_threads_in_this_process() -> int:
    """How many dask tasks may run at once inside this process with the current scheduler."""
    scheduler = dask.base.get_scheduler()
    if scheduler is None or scheduler is dask.threaded.get:
        return int(dask.config.get("num_workers", None) or CPU_COUNT)
    if scheduler is dask.local.get_sync:
        return 1
    client = current_client()
    if client is not None:
        workers = client.scheduler_info().get("workers", {})
        return sum(w["nthreads"] for addr, w in workers.items() if addr.startswith("inproc://"))
    return 0  # another process pool: tasks do not run here


def memory_for_data() -> int:
    """Bytes the current scheduler can hold: the workers' memory limits, or this machine's free memory."""
    import psutil  # a dependency of distributed

    client = current_client()
    if client is not None:
        limits = [w.get("memory_limit") or 0 for w in client.scheduler_info().get("workers", {}).values()]
        if limits and all(limits):
            return int(sum(limits))
    return int(psutil.virtual_memory().available)


@contextlib.contextmanager
def blas_threads_for_dask() -> Iterator[None]:
    """Limit BLAS threads so that BLAS threads x dask threads in this process <= cores."""
    n_dask = dask_threads_in_this_process()
    if n_dask <= 1:
        yield
        return
    with threadpool_limits(limits=max(1, CPU_COUNT // n_dask), user_api="blas"):
        yield


# ----------------------------------------------------------------------------------------------------
# Computing with an optional progress bar (the command line turns it on with dask-kmeans.progress)


def _progress_wanted() -> tuple[bool, float]:
    return bool(dask.config.get("dask-kmeans.progress", False)), float(
        dask.config.get("dask-kmeans.progress-after", 1.0)
    )


def wait_for(futures: list) -> None:
    """Wait for distributed futures; with progress on, draw a bar on stderr once they take a while."""
    from distributed import wait

    wanted, after_s = _progress_wanted()
    if not wanted:
        wait(futures)
        return
    try:
        wait(futures, timeout=after_s)
        return
    except TimeoutError:
        pass
    from distributed.diagnostics.progressbar import progress

    with contextlib.redirect_stdout(sys.stderr):  # the bar draws on stdout; results go there
        progress(futures, multi=False)
        print()


def compute(*collections, optimize_graph: bool = True) -> tuple:
    """``dask.compute`` on the current scheduler, with a progress bar for long passes when asked."""
    wanted, after_s = _progress_wanted()
    if not wanted:
        return dask.compute(*collections, optimize_graph=optimize_graph)
    client = current_client()
    if client is None:
        from dask.diagnostics import ProgressBar

        with ProgressBar(minimum=after_s, out=sys.stderr):
            return dask.compute(*collections, optimize_graph=optimize_graph)
    futures = client.compute(list(collections), optimize_graph=optimize_graph)
    wait_for(futures)
    return tuple(client.gather(futures))


def should_persist(X, persist) -> bool:
    """Whether to persist the data before a multi-pass computation (``persist="auto" | True | False``).

    "auto": when a dask array takes at most half of the memory the workers (or this machine) have.
    """
    if persist not in ("auto", True, False):
        raise ValueError(f"persist must be 'auto', True or False; got {persist!r}.")
    if not isinstance(X, da.Array):
        return current_client() is not None  # local schedulers read views of the array in place
    if persist == "auto":
        return X.nbytes <= 0.5 * memory_for_data()
    return persist
