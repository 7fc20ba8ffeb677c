"""The dask-kmeans command line, run as a real process.

On the embedded default (a local cluster started by the command) and on a real ``dask scheduler`` with
two ``dask worker`` processes started here on 127.0.0.1; every error path with its exit code.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import zarr

from dask_kmeans.io import load_model

from .conftest import LeakError, kill_processes, make_blobs, wait_for_processes_to_exit

FEATURES = ["electronics", "clothing", "home", "grocery"]


def run_cli(*args: str, timeout: float = 180, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "dask_kmeans", *map(str, args)]
    environment = None if env is None else {**os.environ, **env}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment)


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """A Parquet data lake of three files: customer_id and four spending columns."""
    X, _ = make_blobs(3000, len(FEATURES), 3, std=1.0, seed=81)
    frame = pd.DataFrame(X + 50, columns=FEATURES)
    frame.insert(0, "customer_id", np.arange(10_000, 10_000 + len(frame)))
    root = tmp_path_factory.mktemp("lake") / "customers"
    root.mkdir()
    for i, start in enumerate(range(0, len(frame), 1000)):
        frame.iloc[start : start + 1000].to_parquet(root / f"part-{i}.parquet", index=False)
    return root, frame


@pytest.fixture(scope="module")
def fitted(lake, tmp_path_factory):
    """One fit on the embedded default, shared by the tests that read its outputs."""
    root, _ = lake
    out = tmp_path_factory.mktemp("fit")
    result = run_cli(
        "fit", root, "-k", 3, "--model-out", out / "model.json", "--labels-out", out / "labels.parquet",
        "--id-column", "customer_id", "--seed", 0,
    )
    return result, out


def test_fit_on_the_embedded_default(lake, fitted):
    result, out = fitted
    assert result.returncode == 0, result.stderr
    assert "local cluster" in result.stderr and "Iteration 1:" in result.stderr
    assert "model:" in result.stdout
    _, frame = lake
    model = load_model(out / "model.json")
    assert list(model.feature_names_in_) == FEATURES
    written = pd.read_parquet(out / "labels.parquet")
    assert list(written.columns) == ["customer_id", "label"]
    np.testing.assert_array_equal(written["customer_id"], frame["customer_id"])
    np.testing.assert_array_equal(written["label"], model.predict(frame[FEATURES]))


def test_predict_and_info(lake, fitted, tmp_path):
    root, frame = lake
    _, out = fitted
    labels_out = tmp_path / "labels.zarr"
    model_path = out / "model.json"
    result = run_cli("predict", model_path, root, "--labels-out", labels_out, "--distances", "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    model = load_model(out / "model.json")
    group = zarr.open_group(labels_out, mode="r")
    np.testing.assert_array_equal(group["labels"][:], model.predict(frame[FEATURES]))
    expected = model.transform(frame[FEATURES]).min(axis=1)
    np.testing.assert_allclose(group["distances"][:], expected, rtol=1e-6)

    info = run_cli("info", out / "model.json")
    assert info.returncode == 0 and "3 clusters, 4 features" in info.stdout and "grocery" in info.stdout
    described = json.loads(run_cli("info", out / "model.json", "--json").stdout)
    assert described["n_clusters"] == 3 and described["feature_names"] == FEATURES


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def scheduler_address(tmp_path_factory):
    """A real ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1, stopped afterwards."""
    dask_cli = shutil.which("dask", path=os.path.dirname(sys.executable)) or shutil.which("dask")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    workdir = tmp_path_factory.mktemp("cluster")
    common = {"cwd": workdir, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler = [dask_cli, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"]
    processes = [subprocess.Popen(scheduler, **common)]
    tree = []
    try:
        for _ in range(2):
            processes.append(subprocess.Popen(
                [dask_cli, "worker", address, "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"],
                **common,
            ))
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        tree = _process_tree(processes)  # with the worker processes each ``dask worker``'s nanny started
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        # A worker left behind by its nanny is no longer our descendant: watch the pids seen running.
        left = wait_for_processes_to_exit(tree, timeout=15)
        if left:
            kill_processes(left)
            raise LeakError(f"still running after the cluster was stopped (killed now): {left}")


def _process_tree(popens: list[subprocess.Popen]) -> list:
    import psutil

    tree = []
    for popen in popens:
        try:
            root = psutil.Process(popen.pid)
            tree += [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    return tree


def test_fit_on_a_real_scheduler_matches_the_embedded_default(lake, fitted, scheduler_address, tmp_path):
    root, _ = lake
    _, out = fitted
    result = run_cli(
        "fit", root, "-k", 3, "--model-out", tmp_path / "model.json", "--id-column", "customer_id",
        "--seed", 0, "--scheduler", scheduler_address,
    )
    assert result.returncode == 0, result.stderr
    assert f"scheduler {scheduler_address}: 2 workers" in result.stderr
    remote, local = load_model(tmp_path / "model.json"), load_model(out / "model.json")
    assert np.array_equal(remote.cluster_centers_, local.cluster_centers_)  # same chunks and seed


# ----------------------------------------------------------------------------------------------------
# Error paths: exit code 1 for runtime errors, 2 for usage errors; one line on stderr, no traceback


def _assert_error(result: subprocess.CompletedProcess, code: int, message: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_scheduler_fails_fast(lake, tmp_path):
    root, _ = lake
    started = time.perf_counter()
    result = run_cli(
        "fit", root, "-k", 3, "--model-out", tmp_path / "m.json", "--id-column", "customer_id",
        "--scheduler", f"tcp://127.0.0.1:{_free_port()}",
    )
    _assert_error(result, 1, "cannot reach the Dask scheduler")
    assert time.perf_counter() - started < 30
    assert not (tmp_path / "m.json").exists()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["fit", "{root}", "-k", "0", "--model-out", "{tmp}/m.json"], 2, "must be a positive integer"),
        (["fit", "{root}", "--model-out", "{tmp}/m.json"], 2, "required: -k"),
        (["fit", "{root}", "-k", "2"], 2, "--model-out"),
        (["fit", "{root}", "-k", "2", "--model-out", "{tmp}/m.json", "--bogus"], 2, "unrecognized arguments"),
        (["predict", "{tmp}/m.json", "{root}"], 2, "--labels-out"),
        (["fit", "{tmp}/missing.parquet", "-k", "2", "--model-out", "{tmp}/m.json"], 1, "missing.parquet"),
        (["fit", "{root}", "-k", "2", "--model-out", "{tmp}/m.json", "--columns", "electronics,garden"],
         1, "garden"),
        (["fit", "{root}", "-k", "5000", "--model-out", "{tmp}/m.json", "--id-column", "customer_id"],
         1, "n_samples=3000 should be >= n_clusters=5000"),
        (["info", "{tmp}/not-a-model.json"], 1, "not a dask-kmeans model"),
        (["fit", "{root}", "-k", "2", "--model-out", "{tmp}/m.json", "--resume"],
         1, "--resume needs --checkpoint"),
        (["fit", "{root}", "-k", "2", "--model-out", "{tmp}/m.json", "--resume", "--checkpoint", "{tmp}/c"],
         1, "no checkpoint at"),
        (["predict", "{tmp}/absent.json", "{root}", "--labels-out", "{tmp}/l.parquet"], 1, "absent.json"),
    ],
)
def test_error_paths(lake, tmp_path, args, code, message):
    root, _ = lake
    (tmp_path / "not-a-model.json").write_text('{"hello": 1}')
    result = run_cli(*(a.format(root=root, tmp=tmp_path) for a in args))
    _assert_error(result, code, message)


def test_existing_outputs_are_kept_without_overwrite(lake, fitted, tmp_path):
    root, _ = lake
    _, out = fitted
    model_path = tmp_path / "model.json"
    model_path.write_text("precious")
    result = run_cli("fit", root, "-k", 3, "--model-out", model_path, "--id-column", "customer_id")
    _assert_error(result, 1, "already exists; pass --overwrite")
    assert model_path.read_text() == "precious"
    labels = tmp_path / "labels.parquet"
    labels.mkdir()
    result = run_cli("predict", out / "model.json", root, "--labels-out", labels)
    _assert_error(result, 1, "already exists")
    assert list(labels.iterdir()) == []


def test_non_finite_rows_are_refused_or_left_out(tmp_path):
    X, _ = make_blobs(300, 2, 2, std=0.5, seed=82)
    frame = pd.DataFrame(X, columns=["a", "b"])
    frame.loc[[7, 250], "b"] = np.nan
    frame.to_csv(tmp_path / "data.csv", index=False)
    args = ["fit", tmp_path / "data.csv", "-k", 2, "--model-out", tmp_path / "m.json", "--quiet"]
    _assert_error(run_cli(*args), 1, "contains NaN or infinity (or values so large that squared distances")
    result = run_cli(*args, "--nan-policy", "omit", "--labels-out", tmp_path / "l.zarr", "--distances")
    assert result.returncode == 0, result.stderr
    assert "2 rows with NaN or infinity left out" in result.stdout
    labels = zarr.open_group(tmp_path / "l.zarr", mode="r")["labels"][:]
    assert (labels[[7, 250]] == -1).all() and (np.delete(labels, [7, 250]) >= 0).all()


def test_debug_shows_the_traceback(tmp_path):
    result = run_cli("info", tmp_path / "absent.json", "--debug")
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_progress_bar_for_long_passes(lake, fitted, tmp_path):
    root, _ = lake
    _, out = fitted
    # Every pass counts as long here: the bar is drawn on stderr, and stdout keeps only the summary.
    result = run_cli(
        "predict", out / "model.json", root, "--labels-out", tmp_path / "l.parquet",
        env={"DASK_DASK_KMEANS__PROGRESS_AFTER": "0"},
    )
    assert result.returncode == 0, result.stderr
    assert "% Completed" in result.stderr and "% Completed" not in result.stdout
    assert result.stdout.splitlines()[0].startswith("labelled 3,000 rows")


def test_help_and_version():
    result = run_cli("--help")
    assert result.returncode == 0 and "fit" in result.stdout and "predict" in result.stdout
    for command in ("fit", "predict", "info"):
        assert run_cli(command, "--help").returncode == 0
    assert run_cli("--version").stdout.startswith("dask-kmeans ")


def test_warnings_are_one_line(lake, tmp_path):
    root, _ = lake
    result = run_cli("fit", root, "-k", 3, "--model-out", tmp_path / "model.json", "--seed", 0, "--quiet")
    assert result.returncode == 0, result.stderr
    assert "dask-kmeans: warning: Column(s) ['customer_id']" in result.stderr
    assert "UserWarning" not in result.stderr
