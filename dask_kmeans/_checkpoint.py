"""Checkpoints of a fit in progress: written after the initialisation and every iteration, read to resume.

A checkpoint is one JSON file holding what the client needs to go on exactly where it stopped: the seeds
of the initialisations, and once they are done, every run's state (its centres, history, whether it
converged) with the data's mean variance. All runs of a fit move in the same passes, so one state after
each pass covers them all.
Floats are written with Python's round-tripping ``repr``, so a resumed fit ends with the same centres as
an uninterrupted one. Each write replaces the file atomically: a process killed mid-write leaves the
previous checkpoint intact.

A checkpoint remembers the parameters and a fingerprint of the data (shape, dtype, chunking and three
rows); resuming with other data or parameters is refused.
"""

from __future__ import annotations

import hashlib
import json

import fsspec
import numpy as np

from ._atomic import atomic_output
from ._lloyd import CenterSet
from ._passes import ChunkedRows
from ._scheduler import compute

FORMAT_NAME = "dask-kmeans-checkpoint"
FORMAT_VERSION = 2  # 1: runs one after another (finished runs, the current one)


class CheckpointMismatchError(ValueError):
    """The checkpoint was written by a fit of other data or with other parameters."""


def data_fingerprint(data: ChunkedRows) -> str:
    """A hash of the data's shape, dtype, chunking, and its first, middle and last rows (and weights)."""
    n = data.n_samples
    rows = sorted({0, n // 2, n - 1})
    digest = hashlib.sha256()
    digest.update(repr((data.X.shape, str(data.dtype), data.X.chunks[0])).encode())
    digest.update(np.ascontiguousarray(data.rows(rows)).tobytes())
    if data.weights is not None:
        weights = compute(data.weights[rows], optimize_graph=False)[0]  # as ChunkedRows.rows reads rows
        digest.update(np.ascontiguousarray(weights).tobytes())
    return digest.hexdigest()


def params_fingerprint(params: dict) -> dict:
    """The parameters that decide the result, as JSON values (verbose does not)."""
    out = {}
    for name, value in sorted(params.items()):
        if name == "verbose":
            continue
        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, (np.random.RandomState, np.random.Generator)):
            value = f"<{type(value).__name__}>"  # the drawn seeds are in the checkpoint itself
        elif hasattr(value, "get_params"):  # the preprocessing estimator
            value = {"type": type(value).__name__, "params": params_fingerprint(value.get_params(deep=False))}
        elif isinstance(value, np.generic):
            value = value.item()
        out[name] = value
    return out


def load(path: str, expected: dict) -> dict | None:
    """The checkpoint's state, or None if there is none; refuse one from another data set or parameters."""
    fs, target = fsspec.core.url_to_fs(str(path))
    if not fs.exists(target):
        return None
    with fs.open(target, "r", encoding="utf-8") as f:
        try:
            state = json.load(f)
        except json.JSONDecodeError as exc:
            raise CheckpointMismatchError(f"{path} is not a dask-kmeans checkpoint ({exc}).") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_NAME:
        raise CheckpointMismatchError(f"{path} is not a dask-kmeans checkpoint.")
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointMismatchError(
            f"The checkpoint {path} was written by another version of dask-kmeans (format "
            f"{state.get('format_version')}, this one reads {FORMAT_VERSION}). Delete it to start afresh."
        )
    for what in ("data", "params"):
        if state.get(what) != expected[what]:
            detail = "other data" if what == "data" else _params_difference(state.get(what), expected[what])
            raise CheckpointMismatchError(
                f"The checkpoint {path} was written by a fit of {detail}; resuming it would mix two fits. "
                "Give the same data and parameters to resume, or delete the checkpoint (or choose another "
                "path) to start afresh."
            )
    return state


def _params_difference(saved: dict | None, given: dict) -> str:
    saved = saved or {}
    changed = [f"{name} ({saved.get(name)!r} there, {given[name]!r} now)"
               for name in given if saved.get(name) != given[name]]
    return "other parameters: " + ", ".join(changed[:4])


def save(path: str, state: dict) -> None:
    """Replace the checkpoint atomically: a reader sees the previous state or the new one, never half."""
    payload = json.dumps({"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **state}, allow_nan=True)
    with atomic_output(str(path), overwrite=True) as tmp, fsspec.open(tmp, "w", encoding="utf-8") as f:
        f.write(payload)


def remove(path: str) -> None:
    fs, target = fsspec.core.url_to_fs(str(path))
    if fs.exists(target):
        fs.rm(target)


def sets_state(sets: list[CenterSet]) -> list[dict]:
    """Every run's centres, history and convergence, as JSON values."""
    return [{"centers": s.centers.tolist(), "history": s.history, "converged": s.converged} for s in sets]


def restore_sets(saved: list[dict]) -> list[CenterSet]:
    return [CenterSet(np.array(s["centers"], dtype=np.float64), s["history"], s["converged"]) for s in saved]
