"""A scheduler killed mid-fit: a clear error at once (no hang), and the checkpoint resumes on a new one."""

import json
import subprocess
import sys
import textwrap
import time

import dask
import numpy as np

from dask_kmeans import KMeans

from .conftest import DaskProcesses

# A data source that takes a while per chunk, like a slow store: the same rows in every process.
SLOW_DATA = textwrap.dedent(
    """
    import time
    import dask.array as da
    import numpy as np

    def slow(block_id=None):
        time.sleep(0.04)
        rng = np.random.default_rng([3, block_id[0]])
        return rng.standard_normal((3000, 4)) + 4 * rng.integers(0, 3, (3000, 1))

    X = da.map_blocks(slow, chunks=((3000,) * 8, (4,)), dtype=float)
    PARAMS = dict(n_clusters=4, random_state=0, tol=0, max_iter=30)
    """
)


def _iterations(checkpoint) -> int:
    try:
        return max(len(run["history"]) for run in json.loads(checkpoint.read_text())["runs"])
    except (OSError, ValueError, KeyError):
        return 0


def _kill_the_scheduler_mid_fit(child_command: list, cluster: DaskProcesses, checkpoint):
    """Run the child fit, SIGKILL the scheduler once the checkpoint holds three iterations, stop the
    cluster; the child's return code, its stderr and the seconds it took to fail after the kill."""
    child = subprocess.Popen(child_command, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while _iterations(checkpoint) < 3 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.05)
        assert child.poll() is None and _iterations(checkpoint) >= 3, "the fit ended before it was stopped"
        cluster.kill_scheduler()
        killed_at = time.monotonic()
        _, stderr = child.communicate(timeout=60)
        return child.returncode, stderr, time.monotonic() - killed_at
    finally:
        if child.poll() is None:
            child.kill()
        cluster.stop()


def test_killed_scheduler_gives_one_clear_error_and_the_checkpoint_resumes_on_a_new_one(tmp_path):
    checkpoint = tmp_path / "fit.checkpoint.json"
    first = DaskProcesses(n_workers=1, cwd=tmp_path)
    script = SLOW_DATA + textwrap.dedent(
        f"""
        from distributed import Client
        from dask_kmeans import KMeans
        with Client({first.address!r}, timeout=30):
            KMeans(**PARAMS).fit(X, persist=False, checkpoint={str(checkpoint)!r})
        """
    )
    child = [sys.executable, "-c", script]
    returncode, stderr, waited = _kill_the_scheduler_mid_fit(child, first, checkpoint)
    assert returncode != 0 and waited < 30  # distributed cancels a lost client's futures at once
    last_line = stderr.strip().splitlines()[-1]
    assert last_line.startswith("dask_kmeans._passes.SchedulerLostError: Lost the connection to the Dask "
                                f"scheduler at {first.address} during a pass"), stderr[-2000:]
    assert 3 <= _iterations(checkpoint) < 30

    namespace: dict = {}
    exec(SLOW_DATA, namespace)
    second = DaskProcesses(n_workers=1, cwd=tmp_path)  # a new scheduler, on another port
    try:
        from distributed import Client

        with Client(second.address, timeout=30):
            resumed = KMeans(**namespace["PARAMS"]).fit(namespace["X"], persist=False, checkpoint=checkpoint)
    finally:
        second.stop()
    with dask.config.set(scheduler="sync"):
        uninterrupted = KMeans(**namespace["PARAMS"]).fit(namespace["X"], persist=False)
    np.testing.assert_array_equal(resumed.cluster_centers_, uninterrupted.cluster_centers_)
    np.testing.assert_array_equal(resumed.labels_, uninterrupted.labels_)
    assert resumed.n_iter_ == uninterrupted.n_iter_ and not checkpoint.exists()


def test_the_cli_says_so_in_one_line_and_the_same_command_resumes_on_a_new_scheduler(tmp_path):
    import zarr

    rng = np.random.default_rng(4)
    X = (rng.standard_normal((1_600_000, 8)) + 3 * rng.integers(0, 4, (1_600_000, 1))).astype(np.float32)
    zarr.create_array(tmp_path / "lake.zarr", shape=X.shape, chunks=(100_000, 8), dtype="f4")[:] = X
    checkpoint = tmp_path / "fit.checkpoint.json"

    def command(address, model):
        return [sys.executable, "-m", "dask_kmeans", "fit", str(tmp_path / "lake.zarr"), "-k", "6",
                "--tol", "0", "--max-iter", "60", "--seed", "0", "--model-out", str(tmp_path / model),
                "--checkpoint", str(checkpoint), "--scheduler", address, "--quiet"]

    first = DaskProcesses(n_workers=1, cwd=tmp_path)
    child = command(first.address, "model.json")
    returncode, stderr, _ = _kill_the_scheduler_mid_fit(child, first, checkpoint)
    lines = stderr.strip().splitlines()
    assert returncode == 1 and len(lines) == 1, stderr[-2000:]
    expected = f"dask-kmeans: error: Lost the connection to the Dask scheduler at {first.address}"
    assert lines[0].startswith(expected), stderr[-2000:]

    second = DaskProcesses(n_workers=1, cwd=tmp_path)
    try:
        resumed = subprocess.run([*command(second.address, "model.json"), "--resume"], capture_output=True,
                                 text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr
        checkpoint_left = checkpoint.exists()
        fresh = subprocess.run(command(second.address, "fresh.json"), capture_output=True, text=True,
                               timeout=300)
        assert fresh.returncode == 0, fresh.stderr
    finally:
        second.stop()
    assert not checkpoint_left
    a, b = KMeans.load(tmp_path / "model.json"), KMeans.load(tmp_path / "fresh.json")
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    assert a.n_iter_ == b.n_iter_
