"""Segment profiles: what the clusters of a fitted model look like, in the data's own units.

:func:`profile` reads the data once: each chunk is labelled by the model (its preprocessing included)
and adds up, per segment, the row count and the sum of every feature in the units of the input (dollars,
not the scaled space the centres live in), and keeps the rows of a uniform sample, drawn up front, for
the medians. :func:`describe_segment` turns each segment's ratio to the overall mean into a short label
that a marketing team can read ("high spenders on electronics", "low spenders").
"""

from __future__ import annotations

import numpy as np

from ._kernels import weighted_cluster_sums
from ._passes import ChunkedRows, map_reduce
from ._scheduler import blas_threads_for_dask
from ._validation import NotFittedError, check_array, split_feature_names, to_dask_array

HIGH_RATIO = 1.5
LOW_RATIO = 0.6


def describe_segment(
    ratios, feature_names, *, high: float = HIGH_RATIO, low: float = LOW_RATIO, noun: str = "spenders"
) -> str:
    """A short description of a segment from each feature's ratio to the overall mean.

    - every ratio below ``low``: "low spenders";
    - every ratio at least ``high``: "high spenders across all categories";
    - some ratios at least ``high``: "high spenders on A and B" (the two highest, highest first; "and 2
      more" when more qualify);
    - every ratio between ``low`` and ``high``: "moderate spenders across all categories";
    - otherwise (some low, none high): "moderate spenders, little on A and B" (the two lowest).

    Parameters
    ----------
    ratios : array-like of shape (n_features,)
        The segment's mean of each feature divided by the overall mean.
    feature_names : sequence of str
    high, low : float
        Thresholds of "high" and "low", as ratios to the overall mean.
    noun : str
        What the rows are: "spenders" for spending per category, "customers", "users", ...

    Examples
    --------
    >>> describe_segment([4.0, 0.9, 0.8], ["electronics", "clothing", "home"])
    'high spenders on electronics'
    >>> describe_segment([0.3, 0.2, 0.4], ["electronics", "clothing", "home"])
    'low spenders'
    """
    ratios = np.asarray(ratios, dtype=np.float64)
    names = [str(name) for name in feature_names]
    if np.all(ratios < low):
        return f"low {noun}"
    if np.all(ratios >= high):
        return f"high {noun} across all categories"
    order = np.argsort(-ratios, kind="stable")
    high_ones = [names[j] for j in order if ratios[j] >= high]
    if high_ones:
        named = " and ".join(high_ones[:2])
        more = f" and {len(high_ones) - 2} more" if len(high_ones) > 2 else ""
        return f"high {noun} on {named}{more}"
    if np.all(ratios >= low):
        return f"moderate {noun} across all categories"
    low_ones = [names[j] for j in order[::-1] if ratios[j] < low]
    return f"moderate {noun}, little on {' and '.join(low_ones[:2])}"


def _profile_chunk(X, w, model, sample_rows, n_segments, *, chunk):
    labels = np.asarray(model.predict(X))
    kept = labels >= 0  # -1: a row left out by nan_policy="omit"
    in_chunk = sample_rows[(sample_rows >= chunk.row_offset) & (sample_rows < chunk.row_offset + len(X))]
    local = in_chunk - chunk.row_offset
    # Boolean indexing copies the chunk: only when some rows are left out.
    X_kept, labels_kept = (X, labels) if kept.all() else (X[kept], labels[kept])
    return {
        "counts": np.bincount(labels_kept, minlength=n_segments).astype(np.int64),
        "sums": weighted_cluster_sums(X_kept, labels_kept, None, n_segments),
        "omitted": int(np.count_nonzero(~kept)),
        "sample": X[local].astype(np.float64),
        "sample_labels": labels[local],
    }


def _combine_profiles(parts: list[dict]) -> dict:
    return {
        "counts": np.sum([p["counts"] for p in parts], axis=0),
        "sums": np.sum([p["sums"] for p in parts], axis=0),
        "omitted": sum(p["omitted"] for p in parts),
        "sample": np.concatenate([p["sample"] for p in parts]),
        "sample_labels": np.concatenate([p["sample_labels"] for p in parts]),
    }


def _kmeans_of(model):
    """The KMeans at the end of ``model`` (itself, or the last step of a scikit-learn Pipeline)."""
    kmeans = model.steps[-1][1] if hasattr(model, "steps") else model
    if not hasattr(kmeans, "cluster_centers_"):
        raise NotFittedError("profile needs a fitted model: call fit first.")
    return kmeans


def profile(
    model,
    X,
    *,
    median_sample_size: int = 100_000,
    random_state=0,
    noun: str = "spenders",
    high: float = HIGH_RATIO,
    low: float = LOW_RATIO,
):
    """One row per segment: size, share, mean and median of every feature, ratio to overall, description.

    Parameters
    ----------
    model : fitted KMeans, or a fitted scikit-learn Pipeline ending in one
        Labels the rows, with its preprocessing (``KMeans(preprocessing=...)`` or the Pipeline's steps).
    X : array-like, dask array, DataFrame or ``dask_kmeans.io.Table`` of shape (n_samples, n_features)
        The data in its own units (before any scaling), as given to the model's ``fit``.
    median_sample_size : int, default=100_000
        The medians come from a uniform sample of this many rows (drawn without replacement before the
        pass; exact when the data has no more rows than this). 0 leaves the medians out.
    random_state : int, default=0
        Seeds the sample.
    noun, high, low
        Passed to :func:`describe_segment`.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``segment`` (the label), sorted by label, with columns ``size``, ``share`` (of the
        labelled rows), then ``mean_<feature>``, ``median_<feature>`` and ``ratio_<feature>`` (the
        segment's mean over the mean of all labelled rows) for each feature, and ``description``. Rows
        left out by ``nan_policy="omit"`` are in no segment; ``DataFrame.attrs["n_omitted"]`` counts them
        and ``attrs["overall_mean"]`` holds the overall means.

    Notes
    -----
    One pass over ``X``. The ratios use means, so a segment with a few very large values can look higher
    than its median suggests: the medians are there to check.
    """
    import pandas as pd

    kmeans = _kmeans_of(model)
    X, names = split_feature_names(X)
    X = check_array(X)
    n_samples, n_features = X.shape
    if names is None:
        known = getattr(kmeans, "feature_names_in_", None)
        names = tuple(known) if known is not None else tuple(f"x{j}" for j in range(n_features))
    n_segments = len(kmeans.cluster_centers_)
    rng = np.random.default_rng(random_state)
    m = min(int(median_sample_size), n_samples)
    sample_rows = np.sort(rng.choice(n_samples, size=m, replace=False)) if m else np.zeros(0, np.int64)
    data = ChunkedRows(to_dask_array(X))
    with blas_threads_for_dask():
        stats = map_reduce(data, _profile_chunk, _combine_profiles, args=(model, sample_rows, n_segments))

    counts, sums = stats["counts"], stats["sums"]
    n_labelled = counts.sum()
    overall = sums.sum(axis=0) / n_labelled
    with np.errstate(invalid="ignore", divide="ignore"):  # an empty segment has no mean
        means = sums / counts[:, None]
        ratios = means / overall
    columns = {"size": counts, "share": counts / n_labelled}
    for j, name in enumerate(names):
        columns[f"mean_{name}"] = means[:, j]
        if m:
            columns[f"median_{name}"] = [
                np.median(stats["sample"][stats["sample_labels"] == s, j])
                if np.any(stats["sample_labels"] == s) else np.nan
                for s in range(n_segments)
            ]
        columns[f"ratio_{name}"] = ratios[:, j]
    columns["description"] = [
        describe_segment(ratios[s], names, high=high, low=low, noun=noun) if counts[s] else "empty"
        for s in range(n_segments)
    ]
    table = pd.DataFrame(columns, index=pd.RangeIndex(n_segments, name="segment"))
    table.attrs["n_omitted"] = int(stats["omitted"])
    table.attrs["overall_mean"] = dict(zip(names, overall.tolist()))
    table.attrs["median_sample_size"] = m
    return table


def format_profile(table, *, top: int | None = None) -> str:
    """The profile as a text table for a terminal: segments by size, mean of each feature, description."""
    names = [c[len("mean_"):] for c in table.columns if c.startswith("mean_")]
    width = max(9, *(len(n) for n in names))
    lines = [
        f"{'segment':>7} {'size':>11} {'share':>6}  " + " ".join(f"{n:>{width}}" for n in names)
        + "  description"
    ]
    ordered = table.sort_values("size", ascending=False)
    for segment, row in ordered.head(top).iterrows():
        cells = " ".join(f"{row[f'mean_{n}']:>{width},.0f}" for n in names)
        size = f"{int(row['size']):>11,} {row['share']:>6.1%}"
        lines.append(f"{segment:>7} {size}  {cells}  {row['description']}")
    return "\n".join(lines)
