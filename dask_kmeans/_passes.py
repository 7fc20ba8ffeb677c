"""Passes over chunked rows: map a numpy function over the row chunks, add the partials up in a tree.

A pass builds one small graph: one task per row chunk plus a tree of combine tasks whose depth is
log base ``split_every`` of the number of chunks (never a Python ``sum`` over delayed objects, which makes
a chain as long as the number of chunks). The tree's shape depends only on the chunking, so the result
does not depend on the scheduler or on the number of workers.

Some passes keep per-chunk state for the next pass (k-means|| keeps each row's distance to the nearest
candidate); that state is persisted where the chunks live and never gathered on the client.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import dask
import dask.array as da
import numpy as np
from dask.delayed import Delayed, delayed

from ._scheduler import compute, compute_each

SPLIT_EVERY = 8


@dataclass(frozen=True)
class Chunk:
    """Where a chunk sits: its position among the row chunks and the global index of its first row."""

    index: int
    row_offset: int


@dataclass(frozen=True)
class ChunkedRows:
    """Validated data for a fit: a 2-D float dask array with one column chunk, and weights chunked alike."""

    X: da.Array
    weights: da.Array | None = None

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    @property
    def dtype(self) -> np.dtype:
        return self.X.dtype

    @cached_property
    def chunks(self) -> list[Chunk]:
        offsets = np.concatenate([[0], np.cumsum(self.X.chunks[0])[:-1]]).astype(int)
        return [Chunk(i, int(offset)) for i, offset in enumerate(offsets)]

    @cached_property
    def blocks(self) -> list[tuple[Delayed, Delayed | None, Chunk]]:
        x_blocks = self.X.to_delayed().ravel()
        w_blocks = [None] * len(x_blocks) if self.weights is None else self.weights.to_delayed().ravel()
        return list(zip(x_blocks, w_blocks, self.chunks))

    def rows(self, indices: Sequence[int]) -> np.ndarray:
        """The rows at these global indices, in that order, reading only the chunks that hold them."""
        indices = np.asarray(indices, dtype=np.int64)
        order = np.argsort(indices, kind="stable")
        picked = np.empty((len(indices), self.n_features), dtype=self.dtype)
        picked[order] = self.X[indices[order]].compute()
        return picked


def tree_reduce(parts: list, combine: Callable[[list], object], split_every: int = SPLIT_EVERY):
    """Combine delayed partials ``split_every`` at a time until one is left; leaf order is kept."""
    if not parts:
        raise ValueError("cannot reduce an empty list of partials")
    while len(parts) > 1:
        parts = [
            delayed(combine)(parts[i : i + split_every]) for i in range(0, len(parts), split_every)
        ]
    return parts[0]


def map_reduce(
    data: ChunkedRows,
    chunk_fn: Callable,
    combine: Callable[[list], object],
    *,
    args: tuple = (),
    state: list | None = None,
    keep_state: bool = False,
    split_every: int = SPLIT_EVERY,
):
    """One pass: ``chunk_fn(x, w, *args, chunk=Chunk[, state=s])`` on every chunk, then a tree of combines.

    Numpy arguments in ``args`` (the centres) are sent once as their own task, not copied into every
    chunk task. With ``keep_state``, ``chunk_fn`` returns ``(new_state, partial)`` and the new per-chunk
    states are persisted and returned beside the result, for the next pass.
    """
    shared_args = [delayed(a) if isinstance(a, np.ndarray) else a for a in args]
    nout = 2 if keep_state else None
    outputs = []
    for i, (x, w, chunk) in enumerate(data.blocks):
        kwargs = {"chunk": chunk}
        if state is not None:
            kwargs["state"] = state[i]
        outputs.append(delayed(chunk_fn, nout=nout)(x, w, *shared_args, **kwargs))
    if not keep_state:
        return compute(tree_reduce(outputs, combine, split_every))[0]
    new_state = [out[0] for out in outputs]
    root = tree_reduce([out[1] for out in outputs], combine, split_every)
    *new_state, root = dask.persist(*new_state, root)
    return root.compute(), new_state


def map_chunks(data: ChunkedRows, chunk_fn: Callable, *, args: tuple = ()) -> list:
    """One pass that brings every chunk's result back to the client, in chunk order (each as it is ready)."""
    shared_args = [delayed(a) if isinstance(a, np.ndarray) else a for a in args]
    tasks = [delayed(chunk_fn)(x, w, *shared_args, chunk=chunk) for x, w, chunk in data.blocks]
    return compute_each(tasks)
