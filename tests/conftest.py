"""Shared test data (generated with fixed seeds, never downloaded) and real local clusters."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter

import dask
import numpy as np
import pytest


def make_blobs(n_samples=3000, n_features=5, n_centers=6, *, std=1.0, seed=0, dtype=np.float64):
    """Gaussian blobs around centres drawn uniformly in [-10, 10]^d; returns (X, true_labels)."""
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-10, 10, size=(n_centers, n_features))
    labels = rng.integers(n_centers, size=n_samples)
    X = centers[labels] + std * rng.standard_normal((n_samples, n_features))
    return X.astype(dtype), labels


def pick_rows(X, k, seed=0):
    """k distinct rows of X, as initial centres shared by us and the oracle."""
    rng = np.random.default_rng(seed)
    return X[rng.choice(len(X), size=k, replace=False)].copy()


class CountingArray:
    """A read-only array-like that counts how often each row chunk is read.

    Wrapped with ``dask.array.from_array`` it is a real data source (as a Zarr array would be), so a
    test can count passes over the data.
    """

    def __init__(self, data: np.ndarray):
        self.data = data
        self.shape = data.shape
        self.dtype = data.dtype
        self.ndim = data.ndim
        self.reads = Counter()
        self._lock = threading.Lock()

    def __getitem__(self, key):
        out = self.data[key]
        if out.size:
            rows = key[0] if isinstance(key, tuple) else key
            with self._lock:
                self.reads[rows.start if isinstance(rows, slice) else "other"] += 1
        return out


@pytest.fixture
def sync_scheduler():
    with dask.config.set(scheduler="sync"):
        yield


# ----------------------------------------------------------------------------------------------------
# Real clusters, and the leak checks around them (after distributed.utils_test's check_thread_leak,
# check_process_leak and check_instances, without their global resets)


class LeakError(AssertionError):
    """A cluster block left something behind: child processes, threads or a default Client."""


def _is_process_wide_helper(process) -> bool:
    """multiprocessing's resource tracker (and forkserver) live as long as the test process, by design."""
    cmdline = " ".join(process.cmdline())
    return "multiprocessing.resource_tracker" in cmdline or "multiprocessing.forkserver" in cmdline


def _live_descendants() -> dict:
    """This process's descendants that are still running (not zombies), keyed by (pid, start time)."""
    import psutil

    alive = {}
    for process in psutil.Process().children(recursive=True):
        try:
            if process.status() != psutil.STATUS_ZOMBIE and not _is_process_wide_helper(process):
                alive[(process.pid, process.create_time())] = process
        except psutil.Error:  # exited while we looked
            pass
    return alive


def _describe_process(process) -> str:
    import psutil

    try:
        return f"pid {process.pid}: {' '.join(process.cmdline())[:160]}"
    except psutil.Error:
        return f"pid {process.pid}"


def wait_for_processes_to_exit(processes, timeout: float) -> list:
    """Poll until every psutil.Process given has exited (zombies count as exited); return those that
    have not after ``timeout`` seconds."""
    import psutil

    def running(process):
        try:
            return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    deadline = time.monotonic() + timeout
    left = [p for p in processes if running(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if running(p)]
    return left


def kill_processes(processes) -> None:
    """SIGTERM, then SIGKILL after 3 s, each process given (which may have exited already)."""
    import psutil

    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=3)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=3)


def _process_wide_threads() -> set:
    """Threads that dask and distributed keep for the whole process: distributed's offload executor,
    dask's threaded-scheduler pools (cached per calling thread), and the "watch message queue" thread
    that distributed's own check_thread_leak ignores."""
    import dask.threaded
    import distributed.utils

    executors = [distributed.utils._offload_executor, dask.threaded.default_pool]
    executors += [pool for pools in list(dask.threaded.pools.values()) for pool in list(pools.values())]
    threads = {t for executor in executors for t in list(getattr(executor, "_threads", ()))}
    return threads | {t for t in threading.enumerate() if "watch message queue" in t.name}


def _new_threads(before: set) -> list:
    """Non-daemon threads alive now that were not before and that no process-wide pool owns."""
    ignored = _process_wide_threads()
    return [
        t for t in threading.enumerate()
        if t not in before and not t.daemon and t.is_alive() and t not in ignored
    ]


def _describe_thread(thread) -> str:
    """Its name, what it runs and where it is now."""
    target = getattr(thread, "_target", None)
    text = f"{thread.name!r}" + (f" running {getattr(target, '__qualname__', target)!s}" if target else "")
    frame = sys._current_frames().get(thread.ident)
    stack = traceback.extract_stack(frame) if frame is not None else []
    if stack:
        text += f" at {stack[-1].filename}:{stack[-1].lineno} in {stack[-1].name}"
    return text


def _current_client():
    from distributed import Client

    try:
        return Client.current(allow_global=True)
    except ValueError:
        return None


@contextlib.contextmanager
def check_leaks(process_timeout: float = 15.0, thread_timeout: float = 5.0):
    """Fail (LeakError) if the block leaves behind new child processes, new non-daemon threads, a
    default Client or a changed dask ``scheduler`` setting.

    Processes get ``process_timeout`` seconds to exit (worker processes take a moment) and are killed
    once reported; threads get ``thread_timeout`` seconds. Only what is new since the block began
    counts, so processes a module fixture started before are not reported. Nothing is checked when
    the block raises: its own error is the one to see.
    """
    processes_before = set(_live_descendants())
    threads_before = set(threading.enumerate())
    client_before = _current_client()
    scheduler_before = dask.config.get("scheduler", None)

    yield

    leaks = []
    started = {key: p for key, p in _live_descendants().items() if key not in processes_before}
    left = wait_for_processes_to_exit(list(started.values()), process_timeout)
    if left:
        leaks.append(
            f"{len(left)} child process(es) still running {process_timeout:g} s after the block "
            "(killed now): " + "; ".join(_describe_process(p) for p in left)
        )
        kill_processes(left)

    deadline = time.monotonic() + thread_timeout
    threads = _new_threads(threads_before)
    while threads and time.monotonic() < deadline:
        time.sleep(0.05)
        threads = _new_threads(threads_before)
    if threads:
        leaks.append(
            f"{len(threads)} non-daemon thread(s) still running {thread_timeout:g} s after the block: "
            + "; ".join(_describe_thread(t) for t in threads)
        )

    client = _current_client()
    if client is not None and client is not client_before:
        leaks.append(f"a default Client is still registered: {client!r} (status {client.status!r})")
    scheduler = dask.config.get("scheduler", None)
    if scheduler != scheduler_before:
        leaks.append(f"dask.config 'scheduler' is {scheduler!r}, was {scheduler_before!r}")

    if leaks:
        raise LeakError("Leaked by the block:\n  " + "\n  ".join(leaks))


@contextlib.contextmanager
def local_cluster(
    n_workers: int = 2,
    threads_per_worker: int = 1,
    processes: bool = True,
    *,
    process_leak_timeout: float = 15.0,
    thread_leak_timeout: float = 5.0,
    **kwargs,
):
    """A ``distributed.LocalCluster`` and a ``Client`` on it, the default while the block runs; both
    closed at exit, then checked for leaks (see ``check_leaks``).

    ``kwargs`` go to ``LocalCluster`` (``memory_limit="384MiB"``, ...).
    """
    from distributed import Client, LocalCluster

    # ":0", not None: the scheduler serves HTTP (health, metrics) even without a dashboard, on 8787
    # by default, and warns when another process on the machine holds that port.
    kwargs.setdefault("dashboard_address", ":0")
    with check_leaks(process_leak_timeout, thread_leak_timeout):
        with LocalCluster(
            n_workers=n_workers, threads_per_worker=threads_per_worker, processes=processes, **kwargs
        ) as cluster, Client(cluster) as client:
            yield client


@pytest.fixture
def process_client():
    """A Client on a LocalCluster of 2 worker processes with 1 thread each, checked for leaks."""
    with local_cluster(n_workers=2, threads_per_worker=1, processes=True) as client:
        yield client


@pytest.fixture
def thread_client():
    """A Client on an in-process LocalCluster of 1 worker with 2 threads, checked for leaks."""
    with local_cluster(n_workers=1, threads_per_worker=2, processes=False) as client:
        yield client


# ----------------------------------------------------------------------------------------------------
# Real ``dask scheduler`` / ``dask worker`` processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaskProcesses:
    """A real ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1 (``address``), which a test may
    kill (``kill_scheduler``). ``stop`` ends them and fails (LeakError) if any process of the cluster,
    the workers each ``dask worker``'s nanny started included, is still running after it."""

    def __init__(self, n_workers: int = 1, port: int | None = None, cwd=None):
        dask_cli = shutil.which("dask", path=os.path.dirname(sys.executable)) or shutil.which("dask")
        self.port = port or free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        common = {"cwd": cwd, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        scheduler = [dask_cli, "scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"]
        self.popens = [subprocess.Popen(scheduler, **common)]
        self.tree = []
        try:
            worker = [dask_cli, "worker", self.address, "--nthreads", "1", "--no-dashboard",
                      "--host", "127.0.0.1"]
            self.popens += [subprocess.Popen(worker, **common) for _ in range(n_workers)]
            from distributed import Client

            with Client(self.address, timeout=30) as client:
                client.wait_for_workers(n_workers, timeout=60)
        except BaseException:
            self.stop()
            raise
        self.tree = self._process_tree()

    def _process_tree(self) -> list:
        """The cluster's processes: a worker left behind by its nanny is no longer our descendant, so the
        pids seen running are what ``stop`` watches."""
        import psutil

        tree = []
        for popen in self.popens:
            with contextlib.suppress(psutil.NoSuchProcess):
                root = psutil.Process(popen.pid)
                tree += [root, *root.children(recursive=True)]
        return tree

    def kill_scheduler(self) -> None:
        self.popens[0].kill()
        self.popens[0].wait(timeout=10)

    def stop(self) -> None:
        for popen in reversed(self.popens):
            popen.terminate()
        for popen in self.popens:
            try:
                popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                popen.kill()
        left = wait_for_processes_to_exit(self.tree, timeout=15)
        if left:
            kill_processes(left)
            raise LeakError(f"still running after the cluster was stopped (killed now): {left}")
