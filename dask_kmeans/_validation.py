"""Input checks and coercion, done once at the boundary.

Turns what users pass (numpy arrays, array-likes, dask arrays) into a 2-D float dask array whose columns
sit in one chunk, and checks parameters against a declarative table. Errors say what is wrong and what to
do about it.
"""

from __future__ import annotations

import contextlib
import functools
import numbers
import sys
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np
import scipy.sparse
from dask.system import CPU_COUNT

# Rows of an in-memory array go into chunks of about this many bytes (a few per core on large data).
_TARGET_CHUNK_BYTES = 32 * 2**20
_MIN_CHUNK_ROWS = 4096


class NotFittedError(ValueError, AttributeError):
    """Raised when a method that needs a fitted model is called before ``fit``.

    A ValueError and an AttributeError, as scikit-learn's ``NotFittedError``. scikit-learn is no
    dependency, yet ``except sklearn.exceptions.NotFittedError`` (in a Pipeline, a search, scikit-learn's
    ``check_estimator``, or user code) must catch this error too. So, when ``sklearn.exceptions`` is
    loaded (as it must be for such an ``except`` clause to name its class), ``NotFittedError(...)``
    makes an instance of a subclass deriving from both classes (see ``_with_sklearn_base``). Deciding at
    construction, not at import, spares every import of this package the cost of importing
    scikit-learn (about a second).
    """

    def __new__(cls, *args, **kwargs):
        if cls is NotFittedError:
            sklearn_exceptions = sys.modules.get("sklearn.exceptions")
            sklearn_error = getattr(sklearn_exceptions, "NotFittedError", None)
            if isinstance(sklearn_error, type) and issubclass(sklearn_error, BaseException):
                with contextlib.suppress(TypeError):  # bases that cannot be combined: ours alone
                    cls = _with_sklearn_base(sklearn_error)
        return super().__new__(cls, *args, **kwargs)

    def __reduce__(self):
        # Rebuilt through NotFittedError, which picks the class again where it is unpickled (the subclass
        # is not importable by name).
        return NotFittedError, self.args, self.__dict__ or None


@functools.cache
def _with_sklearn_base(sklearn_error: type) -> type:
    """Our NotFittedError, also derived from scikit-learn's (named alike, for tracebacks)."""
    return type(
        "NotFittedError",
        (NotFittedError, sklearn_error),
        {"__module__": __name__, "__qualname__": "NotFittedError", "__doc__": NotFittedError.__doc__},
    )


class ConvergenceWarning(UserWarning):
    """The fit found fewer distinct clusters than asked for, or did not converge."""


class NonFiniteDataError(ValueError):
    """The data (or the squared distances computed from them) hold NaN or infinity."""


def check_finite_total(value: float, what: str) -> None:
    """Raise if a total computed from the data is not finite: NaN and inf propagate into every total."""
    if not np.isfinite(value):
        raise NonFiniteDataError(
            f"The {what} computed from the data is {value}: the data contain NaN or infinity, or values "
            "so large that squared distances overflow. Remove or impute non-finite rows, or rescale "
            "the features, before fitting."
        )


NAN_POLICIES = ("raise", "omit")


def check_non_finite(non_finite: dict, row_chunks: tuple | None, nan_policy: str, what: str = "X") -> None:
    """Under ``nan_policy="raise"``, refuse data with non-finite rows, saying how many and where."""
    count, first = non_finite["count"], non_finite["first_row"]
    if not count or nan_policy == "omit":
        return
    where = ""
    if first >= 0:
        where = f"; the first is row {first:,}"
        if row_chunks:
            chunk = int(np.searchsorted(np.cumsum(row_chunks), first, side="right"))
            where += f", in chunk {chunk} of {len(row_chunks)} (counting from 0)"
    raise NonFiniteDataError(
        f"{what} contains NaN or infinity (or values so large that squared distances overflow, or, with "
        f"metric='cosine', rows of zeros, which have no direction) in "
        f"{count:,} row(s){where}. Remove or impute them, rescale the features, or pass "
        "nan_policy='omit' to leave such rows out (they get the label -1)."
    )


# ----------------------------------------------------------------------------------------------------
# Parameters


class Interval:
    """A numeric range for a parameter; ``closed`` says which ends are included."""

    def __init__(self, kind: type, left, right, closed: str = "both"):
        self.kind, self.left, self.right, self.closed = kind, left, right, closed

    def accepts(self, value) -> bool:
        if isinstance(value, bool):
            return False
        if self.kind is numbers.Integral and not isinstance(value, numbers.Integral):
            return False
        if not isinstance(value, numbers.Real):
            return False
        if self.left is not None:
            if value < self.left or (value == self.left and self.closed in ("right", "neither")):
                return False
        if self.right is not None:
            if value > self.right or (value == self.right and self.closed in ("left", "neither")):
                return False
        return True

    def __str__(self) -> str:
        kind = "an int" if self.kind is numbers.Integral else "a float"
        lo = "-inf" if self.left is None else self.left
        hi = "inf" if self.right is None else self.right
        left_bracket = "[" if self.closed in ("left", "both") else "("
        right_bracket = "]" if self.closed in ("right", "both") else ")"
        return f"{kind} in the range {left_bracket}{lo}, {hi}{right_bracket}"


class Options:
    """One of a fixed set of values."""

    def __init__(self, *values):
        self.values = values

    def accepts(self, value) -> bool:
        return isinstance(value, str) and value in self.values

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


class Boolean:
    def accepts(self, value) -> bool:
        return isinstance(value, (bool, np.bool_))

    def __str__(self) -> str:
        return "a bool"


class ArrayLike:
    def accepts(self, value) -> bool:
        return hasattr(value, "shape") or isinstance(value, (list, tuple))

    def __str__(self) -> str:
        return "an array-like of shape (n_clusters, n_features)"


class InstanceOrNone:
    """None or an instance of ``cls`` (given by the caller, so that this module imports none of them)."""

    def __init__(self, cls: type):
        self.cls = cls

    def accepts(self, value) -> bool:
        return value is None or isinstance(value, self.cls)

    def __str__(self) -> str:
        return f"None or a {self.cls.__module__}.{self.cls.__name__}"


class RandomStateLike:
    def accepts(self, value) -> bool:
        return (
            value is None
            or (isinstance(value, numbers.Integral) and not isinstance(value, bool) and 0 <= value < 2**63)
            or isinstance(value, (np.random.RandomState, np.random.Generator))
        )

    def __str__(self) -> str:
        return "None, a non-negative int, a numpy RandomState or a numpy Generator"


def validate_params(params: dict, constraints: dict) -> None:
    """Raise a ValueError naming the parameter and every accepted form when a value fits none."""
    for name, allowed in constraints.items():
        value = params[name]
        if not any(rule.accepts(value) for rule in allowed):
            expected = " or ".join(str(rule) for rule in allowed)
            raise ValueError(f"The {name!r} parameter must be {expected}. Got {value!r} instead.")


def resolve_seed(random_state) -> int:
    """An int seed from None (fresh entropy), an int, a RandomState or a Generator."""
    if random_state is None:
        return int(np.random.SeedSequence().entropy % 2**63)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**63 - 1))
    return int(random_state)


# ----------------------------------------------------------------------------------------------------
# Data


def _float_dtype(dtype: np.dtype, what: str) -> np.dtype:
    if dtype.kind in "fiub":
        return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)
    if dtype.kind == "c":  # "Complex data not supported" is the message scikit-learn's checks look for
        raise ValueError(
            f"Complex data not supported: {what} has dtype {dtype}; K-means needs real numbers. Take the "
            "real part, the modulus or both as separate columns (float32 or float64) before clustering."
        )
    raise ValueError(
        f"{what} has dtype {dtype}; K-means needs real numbers. Convert the data to float32 or float64 "
        "(complex and string data are not supported)."
    )


def _numeric_array(X, what: str) -> np.ndarray:
    """``X`` as a numpy array; object arrays of numbers are converted, as scikit-learn does."""
    if scipy.sparse.issparse(X):
        raise TypeError(
            f"{what} is a sparse matrix; sparse input is not supported. Convert it with X.toarray() if it "
            "fits in memory, or to a dask array of dense chunks."
        )
    X = np.asarray(X)
    if X.dtype.kind == "O":
        try:
            X = X.astype(np.float64)
        except (TypeError, ValueError) as exc:
            # numpy's error type and message are kept: a TypeError for values such as dicts ("float()
            # argument must be a string or a real number"), a ValueError for strings that are no number.
            error = TypeError if isinstance(exc, TypeError) else ValueError
            raise error(
                f"{what} has dtype object and values that are not numbers ({exc}). "
                "Select the numeric columns, or encode the others, before clustering."
            ) from None
    return X


def _check_2d(shape: tuple, what: str) -> None:
    if len(shape) != 2:
        hint = " Reshape your data with X.reshape(-1, 1) for a single feature." if len(shape) == 1 else ""
        raise ValueError(f"Expected a 2-D {what} of shape (n_samples, n_features), got {len(shape)}-D.{hint}")


def row_chunk_size(n_samples: int, n_features: int, itemsize: int, store_rows: int = 1) -> int:
    """Rows per dask chunk, decided here for every source: about 32 MiB, at least two chunks per core.

    ``store_rows``: the rows of one chunk (or shard) of the store the rows come from; a dask chunk then
    holds whole store chunks, so that no store chunk is read by two tasks. Sources read by partitions
    (Parquet files, CSV blocks, dask DataFrames) keep one dask chunk per partition instead.
    """
    rows = max(_MIN_CHUNK_ROWS, _TARGET_CHUNK_BYTES // max(1, n_features * itemsize))
    rows = min(rows, max(_MIN_CHUNK_ROWS, -(-n_samples // (2 * CPU_COUNT))))
    rows = int(max(1, min(rows, n_samples)))
    return max(store_rows, rows // store_rows * store_rows)


def check_array(X, what: str = "X") -> np.ndarray | da.Array:
    """``X`` as a 2-D float32/float64 array: numpy stays numpy, a dask array gets one column chunk.

    Integer and boolean data become float64; complex, object and string data are refused.
    """
    if isinstance(X, da.Array):
        _check_2d(X.shape, what)
        if any(np.isnan(c) for c in X.chunks[0]):
            raise ValueError(
                f"{what} has unknown chunk sizes (from a filter or a dataframe conversion). "
                "Call X.compute_chunk_sizes() or dataframe.to_dask_array(lengths=True) first."
            )
        dtype = _float_dtype(np.dtype(X.dtype), what)
        if X.numblocks[1] != 1:
            X = X.rechunk({1: -1})
        return X.astype(dtype, copy=False)
    X = _numeric_array(X, what)
    _check_2d(X.shape, what)
    return np.ascontiguousarray(X, dtype=_float_dtype(X.dtype, what))


@dataclass(frozen=True)
class NamedRows:
    """Data already split from its column names, to hand on without converting the frame again."""

    X: object
    feature_names: tuple[str, ...] | None


def split_feature_names(X) -> tuple[object, tuple[str, ...] | None]:
    """The data without their column names, and the names: DataFrames and ``io.Table`` carry them.

    A pandas DataFrame becomes a numpy array; a dask DataFrame a dask array (computing its partition
    lengths costs one pass over it; ``dask_kmeans.io.read`` knows them from Parquet metadata instead).
    """
    if hasattr(X, "X") and hasattr(X, "feature_names"):  # a dask_kmeans.io.Table or NamedRows
        return X.X, X.feature_names
    if not (hasattr(X, "columns") and hasattr(X, "dtypes")):
        return X, None
    from pandas.api.types import is_numeric_dtype

    names = tuple(str(c) for c in X.columns)
    dtypes = list(X.dtypes)
    non_numeric = [f"{name!r} ({t})" for name, t in zip(names, dtypes) if not is_numeric_dtype(t)]
    if non_numeric:
        raise ValueError(
            f"Non-numeric feature column(s) {', '.join(non_numeric)}: K-means needs numbers. Select the "
            "numeric columns, or encode the others, before clustering."
        )
    dtype = np.float32 if all(t == np.float32 for t in dtypes) else np.float64
    if hasattr(X, "to_dask_array"):  # a dask DataFrame
        return X.to_dask_array(lengths=True).astype(dtype), names
    return X.to_numpy(dtype=dtype), names


def check_feature_names(expected, given: tuple[str, ...] | None) -> None:
    """Refuse data whose column names differ from those seen in ``fit`` (when both have names)."""
    if expected is None or given is None or list(expected) == list(given):
        return
    missing = [name for name in expected if name not in given]
    unexpected = [name for name in given if name not in expected]
    detail = (
        f"missing {missing}; unexpected {unexpected}"
        if missing or unexpected
        else "the same columns in another order"
    )
    raise ValueError(
        f"The feature names should match those that were passed during fit: {detail}. "
        f"Expected {list(expected)}."
    )


def to_dask_array(X: np.ndarray | da.Array) -> da.Array:
    """An in-memory array as a dask array with chunks of about 32 MiB; a dask array unchanged."""
    if isinstance(X, da.Array):
        return X
    rows = row_chunk_size(X.shape[0], X.shape[1], X.dtype.itemsize)
    return da.from_array(X, chunks=(rows, X.shape[1]))


def check_n_samples(n_samples: int, n_features: int, n_clusters: int) -> None:
    shape = (n_samples, n_features)
    if n_samples == 0:
        raise ValueError(
            f"Found array with 0 sample(s) (shape={shape}) while a minimum of 1 is required: "
            "K-means needs at least one row of data."
        )
    if n_features == 0:
        raise ValueError(
            f"Found array with 0 feature(s) (shape={shape}) while a minimum of 1 is required: "
            "K-means needs at least one column."
        )
    if n_samples < n_clusters:
        raise ValueError(
            f"n_samples={n_samples} should be >= n_clusters={n_clusters}. "
            "Ask for fewer clusters or give more data."
        )


def check_sample_weight(sample_weight, n_samples: int) -> np.ndarray | da.Array | None:
    """Weights as a 1-D float64 array (numpy or dask, as given), checked for length, sign and NaN.

    A dask array is checked in one small pass over the weights alone.
    """
    if sample_weight is None:
        return None
    if isinstance(sample_weight, da.Array):
        w = sample_weight.astype(np.float64)
        if w.shape != (n_samples,):
            raise ValueError(
                f"sample_weight has shape {w.shape}; expected ({n_samples},), one weight per row."
            )
        w_min, w_sum, finite = dask.compute(w.min(), w.sum(), da.isfinite(w).all())
    else:
        w = np.asarray(sample_weight, dtype=np.float64)
        if w.ndim == 0:
            w = np.full(n_samples, float(w))
        if w.shape != (n_samples,):
            raise ValueError(
                f"sample_weight has shape {w.shape}; expected ({n_samples},), one weight per row."
            )
        w_min, w_sum, finite = w.min(), w.sum(), np.isfinite(w).all()
    if not finite:
        raise ValueError("sample_weight contains NaN or infinity; give every row a finite weight.")
    if w_min < 0:
        raise ValueError("sample_weight has negative values; weights must be >= 0.")
    if w_sum <= 0:
        raise ValueError("sample_weight sums to zero; at least one row needs a positive weight.")
    return w


def chunk_like_rows(w: np.ndarray | da.Array | None, X: da.Array) -> da.Array | None:
    """Weights as a dask array with the same row chunks as ``X``."""
    if w is None:
        return None
    if isinstance(w, da.Array):
        return w.rechunk((X.chunks[0],))
    return da.from_array(w, chunks=(X.chunks[0],))


def as_init_array(init, n_clusters: int, n_features: int, dtype: np.dtype) -> np.ndarray:
    centers = np.asarray(init)
    if centers.dtype.kind not in "fiu":
        raise TypeError(f"The init array has dtype {centers.dtype}; it must hold real numbers.")
    if centers.shape != (n_clusters, n_features):
        raise ValueError(
            f"The init array has shape {centers.shape}; it must be (n_clusters, n_features) = "
            f"({n_clusters}, {n_features})."
        )
    if not np.isfinite(centers).all():
        raise ValueError("The init array contains NaN or infinity.")
    return centers.astype(dtype)
