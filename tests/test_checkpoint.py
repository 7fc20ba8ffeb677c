"""Resumable fits: a client process killed mid-fit resumes from its checkpoint to the same centres."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from dask_kmeans import KMeans
from dask_kmeans._checkpoint import CheckpointMismatchError

# A data source that takes a while per chunk, like a slow store: the same rows in every process.
SLOW_DATA = textwrap.dedent(
    """
    import time
    import dask.array as da
    import numpy as np

    def slow_blobs(n_chunks=8, rows=4000, seed=5):
        def chunk(block_id=None):
            time.sleep(0.03)
            i = block_id[0]
            rng = np.random.default_rng([seed, i])
            centers = np.random.default_rng(seed).uniform(-10, 10, (6, 4))
            return centers[rng.integers(6, size=rows)] + 2.5 * rng.standard_normal((rows, 4))
        return da.map_blocks(chunk, chunks=((rows,) * n_chunks, (4,)), dtype=float)
    """
)
namespace: dict = {}
exec(SLOW_DATA, namespace)
slow_blobs = namespace["slow_blobs"]

PARAMS = {
    "k-means||": dict(n_clusters=6, init="k-means||", random_state=11, tol=0, max_iter=25),
    "random x4": dict(n_clusters=6, init="random", n_init=4, random_state=11, tol=0, max_iter=12),
}


def _child_script(checkpoint, params) -> str:
    return SLOW_DATA + textwrap.dedent(
        f"""
        from dask_kmeans import KMeans
        KMeans(**{params!r}).fit(slow_blobs(), persist=False, checkpoint={str(checkpoint)!r})
        """
    )


def _progress(checkpoint) -> int:
    """Iterations done (all runs move in the same passes) according to the checkpoint, if readable."""
    try:
        state = json.loads(checkpoint.read_text())
    except (OSError, ValueError):
        return 0
    return max(len(run["history"]) for run in state["runs"])


@pytest.mark.parametrize("case", PARAMS)
def test_killed_client_resumes_to_the_same_centres(tmp_path, case):
    params = PARAMS[case]
    checkpoint = tmp_path / "fit.checkpoint.json"
    child = subprocess.Popen([sys.executable, "-c", _child_script(checkpoint, params)])
    try:
        # Kill it (SIGKILL: no cleanup) in the middle, a few iterations in.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:
            if _progress(checkpoint) >= 4:
                break
            time.sleep(0.02)
        assert child.poll() is None, "the fit ended before it could be interrupted"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    interrupted_at = _progress(checkpoint)
    assert 0 < interrupted_at < params["max_iter"] and checkpoint.exists()

    resumed = KMeans(**params).fit(slow_blobs(), persist=False, checkpoint=checkpoint)
    uninterrupted = KMeans(**params).fit(slow_blobs(), persist=False)
    assert np.array_equal(resumed.cluster_centers_, uninterrupted.cluster_centers_)
    np.testing.assert_array_equal(resumed.labels_, uninterrupted.labels_)
    assert resumed.inertia_ == uninterrupted.inertia_ and resumed.n_iter_ == uninterrupted.n_iter_
    shifts = [h["center_shift"] for h in uninterrupted.history_]
    assert [h["center_shift"] for h in resumed.history_] == shifts
    # An iteration's inertia comes from every row's distance in a Lloyd pass and from per-cluster sums in
    # a bounded one (the first pass after resuming is a Lloyd pass): equal to rounding.
    np.testing.assert_allclose([h["inertia"] for h in resumed.history_],
                               [h["inertia"] for h in uninterrupted.history_], rtol=1e-12)
    assert not checkpoint.exists()  # removed once the fit completed


def test_checkpoint_of_other_data_or_parameters_is_refused(tmp_path):
    checkpoint = tmp_path / "fit.checkpoint.json"
    params = dict(n_clusters=3, init="random", n_init=2, random_state=0, tol=0, max_iter=4)
    X = np.random.default_rng(0).standard_normal((500, 3))
    km = KMeans(**params)
    # A fit removes its checkpoint when it completes: write the state of one that has not started a run.
    from dask_kmeans import _checkpoint
    from dask_kmeans._lloyd import CenterSet
    from dask_kmeans._passes import ChunkedRows
    from dask_kmeans._validation import to_dask_array

    data = ChunkedRows(to_dask_array(X))
    state = {
        "params": _checkpoint.params_fingerprint(km.get_params(deep=False)),
        "data": _checkpoint.data_fingerprint(data),
        "seeds": [1, 2], "runs": _checkpoint.sets_state([CenterSet(X[:3].copy()), CenterSet(X[3:6].copy())]),
        "mean_variance": None,
    }
    _checkpoint.save(str(checkpoint), state)
    with pytest.raises(CheckpointMismatchError, match="other data"):
        KMeans(**params).fit(X + 1, checkpoint=checkpoint)
    with pytest.raises(CheckpointMismatchError, match=r"other parameters: n_clusters \(3 there, 4 now\)"):
        KMeans(**{**params, "n_clusters": 4}).fit(X, checkpoint=checkpoint)
    KMeans(**{**params, "verbose": 1}).fit(X, checkpoint=checkpoint)  # verbose changes nothing: resumes
    assert not checkpoint.exists()
    checkpoint.write_text("not json")
    with pytest.raises(CheckpointMismatchError, match="not a dask-kmeans checkpoint"):
        KMeans(**params).fit(X, checkpoint=checkpoint)
