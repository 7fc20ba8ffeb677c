"""Out-of-core feature scaling: optional ``log1p``, then standardisation, fitted in one pass.

Spending, counts and other heavy-tailed amounts cluster badly as they are: a few large values set the
distances. ``StandardScaler(log1p=True)`` compresses the tail, then centres and scales every feature so
that each weighs the same. It is fitted in one pass over the chunks (per-chunk means and centred sums of
squares in float64, combined pairwise as in Chan et al.), transforms lazily chunk by chunk, and inverts
exactly, so that centres can be reported in the data's own units. It is a scikit-learn transformer: use it
in a ``Pipeline`` or as ``KMeans(preprocessing=...)``, which stores it in the model file.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

from ._base import FittedInputMixin, ParamsMixin
from ._kernels import combine_moments, feature_moments
from ._passes import ChunkedRows, map_reduce
from ._scheduler import blas_threads_for_dask
from ._validation import (
    Boolean,
    NonFiniteDataError,
    NotFittedError,
    check_array,
    split_feature_names,
    to_dask_array,
    validate_params,
)


def _moments_chunk(X, w, with_log, *, chunk):
    """Moments of the (log1p of the) finite rows, and each column's minimum (log1p refuses values <= -1)."""
    finite = np.isfinite(X)
    ok_rows = finite.all(axis=1)
    rows = X if ok_rows.all() else X[ok_rows]
    if with_log:
        with np.errstate(invalid="ignore", divide="ignore"):  # values <= -1 are reported after the pass
            rows = np.log1p(rows)
    return {
        "moments": feature_moments(rows),
        "min": X.min(axis=0, where=finite, initial=np.inf).astype(np.float64),  # no masked copy
    }


def _combine(parts: list[dict]) -> dict:
    return {
        "moments": combine_moments([p["moments"] for p in parts]),
        "min": np.min([p["min"] for p in parts], axis=0),
    }


def _log1p_block(X, with_log, mean, scale):
    out = np.log1p(X) if with_log else X.copy()
    out -= mean
    out /= scale
    return out


def _inverse_block(X, with_log, mean, scale):
    out = X * scale + mean
    return np.expm1(out, out=out) if with_log else out


class StandardScaler(ParamsMixin, FittedInputMixin):
    """Optionally take ``log1p``, then centre and scale each feature to unit variance.

    Parameters
    ----------
    log1p : bool, default=False
        Apply ``log(1 + x)`` before standardising: for heavy-tailed non-negative amounts such as spending.
        Values must then be greater than -1.
    with_mean : bool, default=True
        Subtract each feature's mean (of ``log1p(x)`` with ``log1p=True``).
    with_std : bool, default=True
        Divide by each feature's standard deviation (population, ``ddof=0``, as in scikit-learn). A
        feature with zero variance is left unscaled.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,), float64
        Per-feature mean of the (log-transformed) data; zeros when ``with_mean=False``.
    var_ : ndarray of shape (n_features,), float64
        Per-feature population variance of the (log-transformed) data.
    scale_ : ndarray of shape (n_features,), float64
        What each feature is divided by: its standard deviation, 1 where that is 0 or ``with_std=False``.
    n_samples_seen_ : int
        Rows seen by ``fit``.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Column names, when ``fit`` was given a DataFrame or a :class:`dask_kmeans.io.Table`.

    Notes
    -----
    Rows holding NaN or infinity are left out of the statistics and stay NaN/infinite through
    ``transform``, so that ``KMeans`` reports (or, with ``nan_policy="omit"``, leaves out) those rows.

    Examples
    --------
    >>> import numpy as np
    >>> from dask_kmeans.preprocessing import StandardScaler
    >>> spend = np.array([[0.0, 10.0], [99.0, 1000.0], [9.0, 100.0]])
    >>> scaler = StandardScaler(log1p=True).fit(spend)
    >>> np.allclose(scaler.inverse_transform(scaler.transform(spend)), spend)
    True
    """

    _parameter_constraints = {"log1p": [Boolean()], "with_mean": [Boolean()], "with_std": [Boolean()]}

    def __init__(self, *, log1p: bool = False, with_mean: bool = True, with_std: bool = True):
        self.log1p = log1p
        self.with_mean = with_mean
        self.with_std = with_std

    def __sklearn_tags__(self):
        from sklearn.utils import InputTags, Tags, TargetTags, TransformerTags

        return Tags(
            estimator_type=None,
            target_tags=TargetTags(required=False),
            transformer_tags=TransformerTags(preserves_dtype=["float64", "float32"]),
            input_tags=InputTags(),
        )

    def fit(self, X, y=None) -> StandardScaler:
        """Measure each feature's mean and variance in one pass over ``X``.

        Parameters
        ----------
        X : array-like, dask array, DataFrame or ``dask_kmeans.io.Table`` of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self : StandardScaler
        """
        validate_params(self.get_params(deep=False), self._parameter_constraints)
        X, feature_names = split_feature_names(X)
        X = check_array(X)
        if X.shape[0] == 0:
            raise ValueError(f"Found array with 0 sample(s) (shape={X.shape}): nothing to scale.")
        data = ChunkedRows(to_dask_array(X))
        with blas_threads_for_dask():
            stats = map_reduce(data, _moments_chunk, _combine, args=(self.log1p,))
        if stats["moments"]["n"] == 0:
            raise NonFiniteDataError("Every row holds NaN or infinity: there is nothing to scale.")
        if self.log1p and (stats["min"] <= -1).any():
            names = feature_names or tuple(f"column {j}" for j in range(X.shape[1]))
            bad = [f"{names[j]} (min {stats['min'][j]:g})" for j in np.flatnonzero(stats["min"] <= -1)]
            raise ValueError(
                f"log1p needs values greater than -1, but {', '.join(bad)}. Use log1p=False, or shift or "
                "clip those features first."
            )
        moments = stats["moments"]
        var = moments["m2"] / moments["n"]
        self.mean_ = moments["mean"] if self.with_mean else np.zeros(X.shape[1])
        self.var_ = var
        std = np.sqrt(var)
        self.scale_ = np.where(std > 0, std, 1.0) if self.with_std else np.ones(X.shape[1])
        self.n_samples_seen_ = int(moments["n"])
        self.n_features_in_ = X.shape[1]
        self._set_feature_names(feature_names)
        return self

    def _check_input(self, X):
        return self._checked_new_input(X, "scale_")

    def _apply(self, X, block_fn):
        # The statistics go to the data's dtype: float32 data stays float32.
        mean, scale = self.mean_.astype(X.dtype), self.scale_.astype(X.dtype)
        if isinstance(X, da.Array):
            return X.map_blocks(block_fn, self.log1p, mean, scale, dtype=X.dtype)
        with np.errstate(invalid="ignore", divide="ignore"):
            return block_fn(X, self.log1p, mean, scale)

    def transform(self, X):
        """Scale ``X``: ``(log1p(X) - mean_) / scale_`` (without log1p unless asked).

        Lazy (a dask array, chunked like ``X``) when ``X`` is a dask array or a ``Table``; a numpy array
        otherwise. The dtype of ``X`` (float32 or float64) is kept.
        """
        return self._apply(self._check_input(X), _log1p_block)

    def inverse_transform(self, X):
        """Back to the data's units: ``expm1(X * scale_ + mean_)`` (without expm1 unless log1p)."""
        if not hasattr(self, "scale_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call 'fit' first.")
        X = check_array(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but the scaler was fitted on {self.n_features_in_}."
            )
        return self._apply(X, _inverse_block)

    def fit_transform(self, X, y=None):
        """``fit(X).transform(X)``: one pass to fit; the transform is lazy for dask input."""
        return self.fit(X).transform(X)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """The input's feature names (``x0``, ``x1``, ... when it had none): scaling keeps the columns."""
        names = getattr(self, "feature_names_in_", None)
        if names is None:
            names = input_features if input_features is not None else [
                f"x{j}" for j in range(self.n_features_in_)
            ]
        return np.asarray(names, dtype=object)

    # What a model file stores (see dask_kmeans.io.model).
    def _state(self) -> dict:
        return {
            "mean": self.mean_.tolist(),
            "var": self.var_.tolist(),
            "scale": self.scale_.tolist(),
            "n_samples_seen": self.n_samples_seen_,
            "n_features_in": self.n_features_in_,
        }

    def _set_state(self, state: dict) -> StandardScaler:
        self.mean_ = np.asarray(state["mean"], dtype=np.float64)
        self.var_ = np.asarray(state["var"], dtype=np.float64)
        self.scale_ = np.asarray(state["scale"], dtype=np.float64)
        self.n_samples_seen_ = int(state["n_samples_seen"])
        self.n_features_in_ = int(state["n_features_in"])
        if not (self.mean_.shape == self.var_.shape == self.scale_.shape == (self.n_features_in_,)):
            raise ValueError("the scaler's mean, var and scale do not match its n_features_in")
        return self


# ----------------------------------------------------------------------------------------------------
# Does unscaled data need log1p?

# A non-negative column is heavy-tailed when its skewness is at least this (an exponential has 2, a
# log-normal of log-spread 0.45 about 1.5, of log-spread 1 about 6; a gamma of shape 20 0.45).
HEAVY_TAIL_SKEW = 2.0


class HeavyTailWarning(UserWarning):
    """Unscaled, heavy-tailed, non-negative data: a few columns and their largest values set the distances."""


def _in_words(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def heavy_tail_message(sample, feature_names=None) -> str | None:
    """What to say when ``sample`` (rows of the data, in memory) should be log1p-scaled before clustering.

    ``None`` unless every column is non-negative (amounts: spend, counts) and the heavy-tailed columns
    (skewness at least :data:`HEAVY_TAIL_SKEW`) hold at least half of the total variance: then Euclidean
    distances on the raw values are decided by a few columns and, within them, by a few large values.
    Otherwise one line: the columns that hold 80% of the variance, and the fix (``--scale log1p`` on the
    command line, ``preprocessing=StandardScaler(log1p=True)`` in Python). Rows with NaN or infinity are
    left out; a sample of a few thousand rows is plenty.
    """
    X = np.asarray(sample, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] == 0:
        return None
    X = X[np.isfinite(X).all(axis=1)]
    if len(X) < 2 or (X < 0).any():
        return None
    names = [str(n) for n in feature_names] if feature_names is not None else [
        f"x{j}" for j in range(X.shape[1])
    ]
    mean = X.mean(axis=0)
    var = X.var(axis=0)
    total = var.sum()
    if not total > 0:
        return None
    with np.errstate(invalid="ignore", divide="ignore"):
        skew = np.where(var > 0, ((X - mean) ** 3).mean(axis=0) / var**1.5, 0.0)
    heavy = skew >= HEAVY_TAIL_SKEW
    if var[heavy].sum() < 0.5 * total:
        return None
    order = np.argsort(-var, kind="stable")
    n_top = int(np.searchsorted(np.cumsum(var[order]) / total, 0.8) + 1)
    top = order[:n_top]
    held = var[top].sum() / total
    verb = "holds" if n_top == 1 else "hold"
    return (
        f"the data are unscaled, non-negative and heavy-tailed: {_in_words([names[j] for j in top])} {verb} "
        f"{held:.0%} of the variance, so a few columns and their largest values decide the clusters. Scale "
        "first: --scale log1p on the command line, preprocessing=StandardScaler(log1p=True) in Python."
    )


def warn_if_heavy_tailed(sample, feature_names=None, *, stacklevel: int = 2) -> bool:
    """Warn (:class:`HeavyTailWarning`, one line) when :func:`heavy_tail_message` has something to say."""
    import warnings

    message = heavy_tail_message(sample, feature_names)
    if message is not None:
        warnings.warn(message, HeavyTailWarning, stacklevel=stacklevel + 1)
    return message is not None
