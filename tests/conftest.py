"""Shared test data: generated with fixed seeds, never downloaded."""

from __future__ import annotations

import threading
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
