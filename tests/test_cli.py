"""The dask-kmeans command line, run as a real process.

On the embedded default (a local cluster started by the command) and on a real ``dask scheduler`` with
two ``dask worker`` processes started here on 127.0.0.1; every error path with its exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import zarr

from dask_kmeans import KMeans
from dask_kmeans.cli import build_parser
from dask_kmeans.io import load_model, read, save_model
from dask_kmeans.preprocessing import StandardScaler

from .conftest import DaskProcesses, free_port, make_blobs

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
    assert "model:" in result.stdout and "seed 0" in result.stdout
    _, frame = lake
    model = load_model(out / "model.json")
    assert list(model.feature_names_in_) == FEATURES
    assert model.random_state == 0 and model.id_column_ == "customer_id"
    written = pd.read_parquet(out / "labels.parquet")
    assert list(written.columns) == ["customer_id", "label"]
    np.testing.assert_array_equal(written["customer_id"], frame["customer_id"])
    np.testing.assert_array_equal(written["label"], model.predict(frame[FEATURES]))
    # Segments numbered by size, 0 the largest, in the model and the labels alike.
    sizes = np.bincount(written["label"], minlength=3)
    assert list(sizes) == sorted(sizes, reverse=True)
    assert "segments by size: " + ", ".join(f"{j}: {n:,}" for j, n in enumerate(sizes)) in result.stdout


def test_fit_gives_the_same_segments_by_default(lake, fitted, tmp_path):
    """No --seed: the default seed (0), so the same command gives the same, size-ordered, segments; and
    every --algorithm the same centres (the fixture's fit ran the default, bounded passes)."""
    root, _ = lake
    _, out = fitted
    result = run_cli("fit", root, "-k", 3, "--model-out", tmp_path / "model.json", "--id-column",
                     "customer_id", "--algorithm", "lloyd", "--quiet")
    assert result.returncode == 0, result.stderr
    again, first = load_model(tmp_path / "model.json"), load_model(out / "model.json")
    assert (again.algorithm, again.algorithm_, first.algorithm) == ("lloyd", "lloyd", "auto")
    np.testing.assert_array_equal(again.cluster_centers_, first.cluster_centers_)
    # The estimator on the same chunks and seed finds the same centres, in its own order: the CLI orders
    # them by size.
    reference = KMeans(3, random_state=0).fit(read(root, id_column="customer_id"))
    by_size = np.argsort(-np.bincount(reference.labels_, minlength=3), kind="stable")
    np.testing.assert_allclose(again.cluster_centers_, reference.cluster_centers_[by_size], rtol=1e-9)


def test_an_id_like_feature_is_an_error_that_names_the_flag(lake, tmp_path):
    root, _ = lake
    for command in (["fit", root, "-k", 3, "--model-out", tmp_path / "model.json"],
                    ["choose-k", root, "--k-range", "2:3"]):
        result = run_cli(*command, "--quiet")
        _assert_error(result, 1, "pass --id-column customer_id")
        assert "customer_id" in result.stderr and "id_column=" not in result.stderr
    assert not (tmp_path / "model.json").exists()


def test_predict_and_info(lake, fitted, tmp_path):
    root, frame = lake
    _, out = fitted
    labels_out = tmp_path / "labels.zarr"
    model_path = out / "model.json"
    result = run_cli("predict", model_path, root, "--labels-out", labels_out, "--distances", "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "with their ids (customer_id)" in result.stdout  # the model's id column, without --id-column
    model = load_model(out / "model.json")
    group = zarr.open_group(labels_out, mode="r")
    np.testing.assert_array_equal(group["labels"][:], model.predict(frame[FEATURES]))
    expected = model.transform(frame[FEATURES]).min(axis=1)
    np.testing.assert_allclose(group["distances"][:], expected, rtol=1e-6)

    np.testing.assert_array_equal(group["ids"][:], frame["customer_id"])

    info = run_cli("info", out / "model.json")
    assert info.returncode == 0 and "3 clusters, 4 features" in info.stdout and "grocery" in info.stdout
    assert "id column: customer_id" in info.stdout and "scaled" not in info.stdout
    described = json.loads(run_cli("info", out / "model.json", "--json").stdout)
    assert described["n_clusters"] == 3 and described["feature_names"] == FEATURES
    assert described["id_column"] == "customer_id" and described["centers_scaled"] is False


def test_predict_without_the_models_id_column_warns_and_writes_labels(lake, fitted, tmp_path):
    _, frame = lake
    _, out = fitted
    frame[FEATURES].to_csv(tmp_path / "new.csv", index=False)
    result = run_cli("predict", out / "model.json", tmp_path / "new.csv", "--labels-out",
                     tmp_path / "l.parquet", "--quiet")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "the model's id column 'customer_id' is not in" in warnings[0]
    assert warnings[0].startswith("dask-kmeans: warning: ") and "UserWarning" not in result.stderr
    written = pd.read_parquet(tmp_path / "l.parquet")
    assert list(written.columns) == ["label"]
    # profile needs no ids: no warning. Its columns come largest first, and so in segment order.
    prof = run_cli("profile", out / "model.json", tmp_path / "new.csv", "--quiet")
    assert prof.returncode == 0 and prof.stderr == "", prof.stderr
    assert prof.stdout.splitlines()[0].split() == ["segment", "0", "1", "2"]


def test_info_shows_scaled_centres_in_the_datas_units_too(lake, tmp_path):
    _, frame = lake
    model = KMeans(3, random_state=0, preprocessing=StandardScaler()).fit(frame[FEATURES])
    save_model(model, tmp_path / "scaled.json")
    text = run_cli("info", tmp_path / "scaled.json")
    assert text.returncode == 0, text.stderr
    assert "centres in scaled units (StandardScaler()" in text.stdout
    assert "centres in the data's units:" in text.stdout
    described = json.loads(run_cli("info", tmp_path / "scaled.json", "--json").stdout)
    assert described["centers_scaled"] is True
    data_units = np.array(described["cluster_centers_data_units"])
    np.testing.assert_allclose(data_units, model.preprocessing_.inverse_transform(model.cluster_centers_))
    assert 40 < data_units.mean() < 60  # the lake's spending is around 50 a category
    # Printed as profile prints its means.
    assert f"{data_units[0, 0]:.3g}" in text.stdout


def test_choose_k_shows_progress_and_says_k_once(lake, tmp_path):
    root, _ = lake
    result = run_cli("choose-k", root, "--k-range", "2:4", "--id-column", "customer_id")
    assert result.returncode == 0, result.stderr
    assert "dask-kmeans: k=2: Iteration 1:" in result.stderr and "k=4: Iteration 1:" in result.stderr
    assert "Run 0:" not in result.stderr
    (suggested,) = [line for line in result.stdout.splitlines() if line.startswith("suggested")]
    k = re.search(r"k=(\d+)", suggested).group(1)  # the suggested k comes first, and only once
    assert suggested.count(f"k={k}") == 1 and not re.match(r"suggested k=\d+: k=", suggested), suggested
    assert "seed 0" in result.stdout


def test_piping_into_head_ends_quietly(fitted):
    _, out = fitted
    # The reader has gone before the command writes: what `| head -1` does to a longer output.
    process = subprocess.Popen([sys.executable, "-m", "dask_kmeans", "info", out / "model.json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 0 and stderr == "", stderr


@pytest.fixture(scope="module")
def scheduler_address(tmp_path_factory):
    """A real ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1, stopped afterwards."""
    cluster = DaskProcesses(n_workers=2, cwd=tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster.address
    finally:
        cluster.stop()


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
    assert "[Errno" not in result.stderr, result.stderr


def test_unreachable_scheduler_fails_fast(lake, tmp_path):
    root, _ = lake
    started = time.perf_counter()
    result = run_cli(
        "fit", root, "-k", 3, "--model-out", tmp_path / "m.json", "--id-column", "customer_id",
        "--scheduler", f"tcp://127.0.0.1:{free_port()}",
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
        (["info", "{tmp}/absent.json"], 1, "No model file at this path: "),
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
    assert list(pd.read_parquet(tmp_path / "l.parquet").columns) == ["customer_id", "label"]


def test_help_and_version():
    result = run_cli("--help")
    assert result.returncode == 0 and "fit" in result.stdout and "predict" in result.stdout
    for command in ("fit", "predict", "info"):
        assert run_cli(command, "--help").returncode == 0
    assert run_cli("--version").stdout.startswith("dask-kmeans ")
    fit_help = run_cli("fit", "--help").stdout
    for shown in ("(default: 300)", "(default: 0.0001)", "(default: k-means||)", "(default: 0)",
                  "(default: auto)", "(default: none)", "numbered by size"):
        assert shown in " ".join(fit_help.split()), shown


def test_every_option_with_a_default_shows_it():
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in commands.choices.items():
        text = " ".join(command.format_help().split())
        for action in command._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS:
                continue
            assert action.help, (name, action.option_strings)  # every option says what it does
            if action.default not in (None, False, argparse.SUPPRESS):
                assert "default" in action.help or f"(default: {action.default})" in text, (
                    name, action.option_strings,
                )


def test_segments_are_renumbered_by_size_with_their_labels():
    from types import SimpleNamespace

    from dask_kmeans.segments import number_segments_by_size

    centers = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    labels = np.array([0, 1, 1, 2, 2, 2, -1, 3, 3, 1, 2], dtype=np.int32)  # sizes 1, 3, 4, 2; one left out
    model = SimpleNamespace(cluster_centers_=centers.copy(), labels_=labels.copy())
    assert number_segments_by_size(model) is model
    np.testing.assert_array_equal(model.cluster_centers_, centers[[2, 1, 3, 0]])
    np.testing.assert_array_equal(model.labels_, [3, 1, 1, 0, 0, 0, -1, 2, 2, 1, 0])
    assert model.labels_.dtype == np.int32
    # Every row keeps its centre.
    kept = labels >= 0
    np.testing.assert_array_equal(model.cluster_centers_[model.labels_[kept]], centers[labels[kept]])
