"""Segment profiles: what the clusters of a fitted model look like, in the data's own units.

:func:`profile` reads the data once: each chunk is labelled by the model (its preprocessing included)
and adds up, per segment, the row count, the sum of every feature in the units of the input (dollars,
not the scaled space the centres live in) and the sum of its ``log1p``, and keeps the rows of a uniform
sample, drawn up front, for the medians. :func:`describe_segment` turns each segment's typical spend
relative to the typical customer's into a short label that a marketing team can read ("high spenders on
electronics", "low spenders").

Why typical spend and not the mean: spending is heavy-tailed, and a few very large spenders set both a
segment's mean and the overall mean. A segment's *typical* spend on a category is ``expm1`` of the mean
of ``log1p(spend)`` over its rows (a geometric mean, shifted by one so that zeros count); the baseline is
the same over all rows, the typical customer. One customer in n who spends 100 times the typical amount
raises the mean by about 100/n typical amounts, and a log-mean by only log(100)/n.
"""

from __future__ import annotations

import numpy as np

from ._kernels import weighted_cluster_sums
from ._passes import ChunkedRows, map_reduce
from ._scheduler import blas_threads_for_dask
from ._validation import NotFittedError, check_array, split_feature_names, to_dask_array
from .preprocessing import warn_if_heavy_tailed

# A segment spends "high" on a category at HIGH_RATIO times the typical customer's spend or more, "little"
# at LOW_RATIO times or less. Asymmetric on purpose: a "high spender" stands out (a specialist spends
# 5-10 times the typical customer), while half of what the typical customer spends is already little.
HIGH_RATIO = 3.0
LOW_RATIO = 0.5


def _in_words(names: list[str]) -> str:
    """Names in words: a; a and b; a, b and c."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def describe_segment(
    ratios, feature_names, *, high: float = HIGH_RATIO, low: float = LOW_RATIO, noun: str = "spenders"
) -> str:
    """A short description of a segment from its typical spend on each feature relative to everyone's.

    ``ratios[j]`` is the segment's typical value of feature ``j`` divided by the typical value over all
    rows (see :func:`profile`, column ``relative_<feature>``: a ratio of geometric means of ``1 + x``,
    which a few very large values do not dominate). NaN (nothing to compare with) counts as 1.

    - "low spenders": every ratio at most ``low``; or the segment is below the typical customer in every
      category (every ratio under 1) and at most ``low`` overall (the geometric mean of its ratios), as
      the segment lowest across the board is even when it is near typical in a few categories;
    - "high spenders across all categories": every ratio at least ``high``;
    - "high spenders on A, B and C": every category with a ratio at least ``high``, highest first;
    - "moderate spenders across all categories": every ratio between ``low`` and ``high``;
    - "moderate spenders, little on A and B": none high, these (every one at most ``low``, lowest first)
      low.

    Parameters
    ----------
    ratios : array-like of shape (n_features,)
        The segment's typical value of each feature over the typical value of all rows.
    feature_names : sequence of str
    high, low : float
        Thresholds of "high" and "low", as ratios to the typical value (default 3 and 0.5).
    noun : str
        What the rows are: "spenders" for spending per category, "customers", "users", ...

    Examples
    --------
    >>> describe_segment([8.0, 0.9, 0.8], ["electronics", "clothing", "home"])
    'high spenders on electronics'
    >>> describe_segment([5.0, 9.0, 4.0], ["books", "music", "games"])
    'high spenders across all categories'
    >>> describe_segment([5.0, 9.0, 4.0, 1.1], ["books", "music", "games", "garden"])
    'high spenders on music, books and games'
    >>> describe_segment([0.3, 0.2, 0.4], ["electronics", "clothing", "home"])
    'low spenders'
    """
    ratios = np.asarray(ratios, dtype=np.float64)
    ratios = np.where(np.isnan(ratios), 1.0, ratios)
    names = [str(name) for name in feature_names]
    with np.errstate(divide="ignore", invalid="ignore"):  # 0: spends nothing there; < 0: no log
        overall = float(np.exp(np.mean(np.log(ratios)))) if len(ratios) else 1.0
    if np.all(ratios <= low) or (np.all(ratios < 1) and overall <= low):
        return f"low {noun}"
    if np.all(ratios >= high):
        return f"high {noun} across all categories"
    order = np.argsort(-ratios, kind="stable")
    high_ones = [names[j] for j in order if ratios[j] >= high]
    if high_ones:
        return f"high {noun} on {_in_words(high_ones)}"
    if np.all(ratios > low):
        return f"moderate {noun} across all categories"
    low_ones = [names[j] for j in order[::-1] if ratios[j] <= low]
    return f"moderate {noun}, little on {_in_words(low_ones)}"


def _profile_chunk(X, w, model, sample_rows, n_segments, *, chunk):
    labels = np.asarray(model.predict(X))
    kept = labels >= 0  # -1: a row left out by nan_policy="omit"
    in_chunk = sample_rows[(sample_rows >= chunk.row_offset) & (sample_rows < chunk.row_offset + len(X))]
    local = in_chunk - chunk.row_offset
    # Boolean indexing copies the chunk: only when some rows are left out.
    X_kept, labels_kept = (X, labels) if kept.all() else (X[kept], labels[kept])
    with np.errstate(invalid="ignore", divide="ignore"):  # values <= -1: such a feature is not log-summed
        logs = np.log1p(X_kept)
    return {
        "counts": np.bincount(labels_kept, minlength=n_segments).astype(np.int64),
        "sums": weighted_cluster_sums(X_kept, labels_kept, None, n_segments),
        "log_sums": weighted_cluster_sums(logs, labels_kept, None, n_segments),
        "min": X_kept.min(axis=0, initial=np.inf).astype(np.float64),
        "omitted": int(np.count_nonzero(~kept)),
        "sample": X[local].astype(np.float64),
        "sample_labels": labels[local],
    }


def _combine_profiles(parts: list[dict]) -> dict:
    return {
        "counts": np.sum([p["counts"] for p in parts], axis=0),
        "sums": np.sum([p["sums"] for p in parts], axis=0),
        "log_sums": np.sum([p["log_sums"] for p in parts], axis=0),
        "min": np.min([p["min"] for p in parts], axis=0),
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


def _is_unscaled(model) -> bool:
    """A bare KMeans fitted without preprocessing (a Pipeline is taken to scale in its earlier steps)."""
    return not hasattr(model, "steps") and getattr(model, "preprocessing_", None) is None


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
    """One row per segment: size, share, mean, median and typical value of every feature, description.

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
        labelled rows), then for each feature:

        - ``mean_<feature>``: the segment's mean;
        - ``median_<feature>``: its median (on the sample);
        - ``typical_<feature>``: its typical value, ``expm1(mean(log1p(x)))`` over its rows (for a feature
          with a negative value anywhere: the mean);
        - ``ratio_<feature>``: the segment's mean over the mean of all labelled rows;
        - ``relative_<feature>``: the segment's typical value over the typical value of all labelled rows
          (for a feature with a negative value: the same as ``ratio``);

        and ``description`` (:func:`describe_segment` of the ``relative_`` columns). Rows left out by
        ``nan_policy="omit"`` are in no segment; ``DataFrame.attrs["n_omitted"]`` counts them,
        ``attrs["overall_mean"]`` and ``attrs["overall_typical"]`` hold the values over all rows.

    Warns
    -----
    HeavyTailWarning
        When ``model`` is a KMeans fitted without preprocessing and the sample shows non-negative,
        heavy-tailed data whose heavy-tailed columns hold most of the variance (see
        :func:`dask_kmeans.preprocessing.heavy_tail_message`): such segments follow a few columns and a
        few large values. Checked on the median sample, so never with ``median_sample_size=0``.

    Notes
    -----
    One pass over ``X``. The descriptions compare typical values, not means: a few very large values
    raise a mean (a segment's, and the overall one that every segment is compared with) but hardly move
    a mean of logs, so the segment that spends least across the board reads "low spenders" and an
    all-round segment "moderate spenders across all categories" however long the tail. ``ratio_``
    columns (means) are kept for totals: a segment's revenue is its size times its mean.
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
    if m and _is_unscaled(model):
        # The sample profile reads anyway: no extra pass. stacklevel: the caller of profile.
        warn_if_heavy_tailed(stats["sample"], names, stacklevel=2)

    counts, sums = stats["counts"], stats["sums"]
    n_labelled = counts.sum()
    overall = sums.sum(axis=0) / n_labelled
    logged = stats["min"] >= 0  # amounts: typical values on the log scale
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # an empty segment has no mean
        means = sums / counts[:, None]
        ratios = means / overall
        typical = np.where(logged, np.expm1(stats["log_sums"] / counts[:, None]), means)
        overall_typical = np.where(logged, np.expm1(stats["log_sums"].sum(axis=0) / n_labelled), overall)
        relative = typical / overall_typical
    columns = {"size": counts, "share": counts / n_labelled}
    for j, name in enumerate(names):
        columns[f"mean_{name}"] = means[:, j]
        if m:
            columns[f"median_{name}"] = [
                np.median(stats["sample"][stats["sample_labels"] == s, j])
                if np.any(stats["sample_labels"] == s) else np.nan
                for s in range(n_segments)
            ]
        columns[f"typical_{name}"] = typical[:, j]
        columns[f"ratio_{name}"] = ratios[:, j]
        columns[f"relative_{name}"] = relative[:, j]
    columns["description"] = [
        describe_segment(relative[s], names, high=high, low=low, noun=noun) if counts[s] else "empty"
        for s in range(n_segments)
    ]
    table = pd.DataFrame(columns, index=pd.RangeIndex(n_segments, name="segment"))
    table.attrs["n_omitted"] = int(stats["omitted"])
    table.attrs["overall_mean"] = dict(zip(names, overall.tolist()))
    table.attrs["overall_typical"] = dict(zip(names, overall_typical.tolist()))
    table.attrs["median_sample_size"] = m
    return table


def number_segments_by_size(model):
    """Renumber a fitted model's segments by size, 0 the largest (ties keep their order), in place.

    Reorders ``cluster_centers_`` and maps ``labels_`` (which it needs: the sizes come from them, with no
    pass over the data; -1, a row left out, stays -1). ``KMeans`` itself keeps scikit-learn's arbitrary
    order; ``dask-kmeans fit`` calls this before it saves the model and writes labels, so that segment
    ids are stable from run to run and read largest first. Returns ``model``.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> m = SimpleNamespace(cluster_centers_=np.array([[0.0], [5.0]]), labels_=np.array([0, 1, 1, -1]))
    >>> number_segments_by_size(m).cluster_centers_.ravel().tolist(), m.labels_.tolist()
    ([5.0, 0.0], [1, 0, 0, -1])
    """
    if not hasattr(model, "labels_"):
        raise NotFittedError("number_segments_by_size needs the fit's labels_ (compute_labels=True).")
    labels = np.asarray(model.labels_)
    k = len(model.cluster_centers_)
    sizes = np.bincount(labels[labels >= 0], minlength=k)
    order = np.argsort(-sizes, kind="stable")
    new_label = np.empty(k + 1, dtype=labels.dtype)
    new_label[order] = np.arange(k)
    new_label[k] = -1  # a row left out (nan_policy="omit") keeps -1: new_label[-1]
    model.cluster_centers_ = model.cluster_centers_[order]
    model.labels_ = new_label[labels]
    return model


def format_number(value) -> str:
    """A mean for a terminal: thousands separated and no decimals from 100 up, 3 significant digits below."""
    value = float(value)
    if not np.isfinite(value):
        return "-"
    return f"{value:,.0f}" if abs(value) >= 99.95 else f"{value:.3g}"


def format_profile(table, *, top: int | None = None) -> str:
    """The profile as a text table for a terminal, one column per segment (largest first).

    Rows: the segment's size, share and mean of each feature; then each segment's description. Each
    segment's column is as wide as its numbers, however long the feature names: those are written once,
    down the left.
    """
    names = [c[len("mean_"):] for c in table.columns if c.startswith("mean_")]
    ordered = table.sort_values("size", ascending=False, kind="stable").head(top)
    rows = {
        "size": [f"{int(size):,}" for size in ordered["size"]],
        "share": [f"{share:.1%}" for share in ordered["share"]],
    }
    means = {f"  {name}": [format_number(v) for v in ordered[f"mean_{name}"]] for name in names}
    headers = [str(segment) for segment in ordered.index]
    widths = [
        max(len(headers[i]), *(len(cells[i]) for cells in (*rows.values(), *means.values())))
        for i in range(len(headers))
    ]
    label_width = max(len("segment"), len("mean of"), *(len(label) for label in means))

    def line(label: str, cells: list[str]) -> str:
        return (f"{label:<{label_width}}" + "".join(f"  {c:>{w}}" for c, w in zip(cells, widths))).rstrip()

    lines = [line("segment", headers), *(line(label, cells) for label, cells in rows.items())]
    lines.append("mean of")
    lines.extend(line(label, cells) for label, cells in means.items())
    index_width = max(len(h) for h in headers) if headers else 0
    lines.append("description")
    lines.extend(
        f"  {segment:>{index_width}}  {description}"
        for segment, description in zip(headers, ordered["description"])
    )
    return "\n".join(lines)
