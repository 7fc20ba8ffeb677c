"""Model files: reading and writing the JSON format that :mod:`dask_kmeans.io.model` documents.

Below the estimator (which saves and loads itself through it) and above the scaler it may hold.
"""

from __future__ import annotations

import datetime
import errno
import json
import os

import fsspec
import numpy as np

from ._atomic import atomic_output
from ._bounds import ALGORITHMS
from ._validation import NotFittedError
from ._version import __version__
from .preprocessing import StandardScaler

FORMAT_NAME = "dask-kmeans-model"
FORMAT_VERSION = 1

_CENTER_DTYPES = ("float32", "float64")
_REQUIRED_FIELDS = (
    "params",
    "dtype",
    "n_features_in",
    "cluster_centers",
    "inertia",
    "n_iter",
    "converged",
    "history",
)


def write_model(model, path: str | os.PathLike, *, overwrite: bool = False,
                storage_options: dict | None = None) -> str:
    """Write a fitted ``KMeans`` to a model file, atomically (see :func:`dask_kmeans.io.save_model`)."""
    document = _model_document(model)
    path = os.fspath(path)
    with atomic_output(path, overwrite=overwrite, storage_options=storage_options) as temporary_path:
        # Serialised in the block, so that an existing output is refused before this work is done.
        text = _json_text(document)
        with fsspec.open(temporary_path, "wb", **(storage_options or {})) as file:
            file.write((text + "\n").encode("utf-8"))
    return path


def read_model(cls: type, path: str | os.PathLike, *, storage_options: dict | None = None):
    """A fitted ``cls`` (``KMeans``) from a model file (see :func:`dask_kmeans.io.load_model`)."""
    path = os.fspath(path)
    return _model_from_document(cls, _read_document(path, storage_options), path)


# ----------------------------------------------------------------------------------------------------
# Writing


def _model_document(model) -> dict:
    """The content of a model file, as plain Python values (numpy values are converted on writing)."""
    if not hasattr(model, "cluster_centers_"):
        raise NotFittedError(
            f"This {type(model).__name__} instance is not fitted yet; fit it before saving it."
        )
    centers = np.asarray(model.cluster_centers_)
    if centers.dtype.name not in _CENTER_DTYPES:
        raise TypeError(f"cluster_centers_ has dtype {centers.dtype}; a model file holds float32 or float64.")
    params = model.get_params(deep=False)
    if params["preprocessing"] is not None:
        params["preprocessing"] = _scaler_params(params["preprocessing"])
    if not isinstance(params["init"], str):
        params["init"] = np.asarray(params["init"]).tolist()
    if isinstance(params["random_state"], (np.random.RandomState, np.random.Generator)):
        params["random_state"] = None  # documented: a generator's state is not part of the format
    feature_names = getattr(model, "feature_names_in_", None)
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "params": params,
        "dtype": centers.dtype.name,
        "n_features_in": int(model.n_features_in_),
        "feature_names_in": None if feature_names is None else [str(name) for name in feature_names],
        # float32 -> float64 is exact, and tolist() gives Python floats, which json writes with repr.
        "cluster_centers": centers.astype(np.float64).tolist(),
        "inertia": float(model.inertia_),
        "n_iter": int(model.n_iter_),
        "converged": bool(model.converged_),
        # JSON has no NaN (relative_shift is NaN when tol=0): null stands for it, as in JavaScript.
        "history": [
            {name: None if _is_non_finite_float(value) else value for name, value in record.items()}
            for record in model.history_
        ],
        "preprocessing": (
            {**_scaler_params(model.preprocessing_), **model.preprocessing_._state()}
            if hasattr(model, "preprocessing_") else None
        ),
        # Optional (absent from older files): the column of the training data that identified its rows.
        "id_column": None if getattr(model, "id_column_", None) is None else str(model.id_column_),
        # Optional (absent from older files): the algorithm the fit ran ("auto" resolved).
        "algorithm": getattr(model, "algorithm_", None),
    }


def _scaler_params(scaler) -> dict:
    return {"type": type(scaler).__name__, "params": scaler.get_params(deep=False)}


def _scaler_from(value, path: str, *, fitted: bool):
    if not isinstance(value, dict) or value.get("type") != "StandardScaler" or not isinstance(
        value.get("params"), dict
    ):
        raise _not_a_model_file(path, '"preprocessing" is not a StandardScaler object')
    try:
        scaler = StandardScaler(**value["params"])
        return scaler._set_state(value) if fitted else scaler
    except (TypeError, ValueError, KeyError) as error:
        raise _not_a_model_file(path, f'its "preprocessing" cannot be read ({error})') from None


def _is_non_finite_float(value) -> bool:
    return isinstance(value, (float, np.floating)) and not np.isfinite(value)


def _json_text(value, *, depth: int = 0, in_list: bool = False) -> str:
    """Indented JSON, with a list of numbers (a centre) or a record of a list (an iteration) on one line."""
    if _fits_one_line(value, in_list):
        return json.dumps(value, ensure_ascii=False, allow_nan=False, default=_plain_json)
    inner = "  " * (depth + 1)
    if isinstance(value, dict):
        for name in value:
            if not isinstance(name, str):
                raise TypeError(f"A model file's keys are strings, not {type(name).__name__} ({name!r}).")
        items = [
            f"{inner}{json.dumps(name, ensure_ascii=False)}: {_json_text(item, depth=depth + 1)}"
            for name, item in value.items()
        ]
        opening, closing = "{", "}"
    else:
        items = [f"{inner}{_json_text(item, depth=depth + 1, in_list=True)}" for item in value]
        opening, closing = "[", "]"
    return opening + "\n" + ",\n".join(items) + "\n" + "  " * depth + closing


def _fits_one_line(value, in_list: bool) -> bool:
    if isinstance(value, (list, tuple)):
        return _all_scalars(value)
    if isinstance(value, dict):
        return not value or (in_list and _all_scalars(value.values()))
    return True


def _all_scalars(items) -> bool:
    return all(not isinstance(item, (dict, list, tuple)) for item in items)


def _plain_json(value):
    """``json.dumps`` hook: numpy scalars and arrays as plain numbers and lists; anything else refused."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"A model file cannot hold a {type(value).__name__} ({value!r}): it is not JSON.")


# ----------------------------------------------------------------------------------------------------
# Reading


def _read_document(path: str, storage_options: dict | None) -> dict:
    """The parsed JSON object of a model file, with its format and version checked."""
    try:
        with fsspec.open(path, "rb", **(storage_options or {})) as file:
            start = file.read(1024)
            # A model file is a JSON object: refuse anything else before reading what may be a huge file.
            if not start.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
                raise _not_a_model_file(path, "it is not a JSON object")
            raw = start + file.read()
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "No model file at this path", path) from None
    try:
        document = json.loads(raw.decode("utf-8-sig"), parse_constant=_refuse_constant)
    except ValueError as error:  # bad UTF-8, bad JSON, or a NaN/Infinity token
        raise _not_a_model_file(path, f"it is not valid JSON ({error})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise _not_a_model_file(path, f'its "format" field is not {FORMAT_NAME!r}')
    version = document.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _not_a_model_file(path, f'its "format_version" is {version!r}, not a positive integer')
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path} is a dask-kmeans model file of format version {version}, written by dask-kmeans "
            f"{document.get('library_version', '(unknown)')}; this dask-kmeans ({__version__}) reads "
            f"format version {FORMAT_VERSION} and older. Upgrade dask-kmeans to load it."
        )
    missing = [name for name in _REQUIRED_FIELDS if name not in document]
    if missing:
        raise _not_a_model_file(path, f"it lacks the fields {missing}")
    return document


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _not_a_model_file(path: str, reason: str) -> ValueError:
    return ValueError(f"{path} is not a dask-kmeans model file: {reason}.")


def _model_from_document(cls: type, document: dict, path: str):
    """A fitted ``cls`` (``KMeans``) from a checked model document."""
    dtype_name = document["dtype"]
    if dtype_name not in _CENTER_DTYPES:
        raise _not_a_model_file(path, f'its "dtype" is {dtype_name!r}, not one of {list(_CENTER_DTYPES)}')
    n_features = document["n_features_in"]
    not_numbers = _not_a_model_file(path, '"cluster_centers" is not a table of numbers')
    try:
        centers = np.array(document["cluster_centers"])
    except ValueError:  # ragged rows
        raise not_numbers from None
    if centers.dtype.kind not in "fi":  # strings, booleans or integers too large for int64
        raise not_numbers
    centers = centers.astype(np.float64)
    if centers.ndim != 2 or centers.shape[0] < 1 or centers.shape[1] != n_features:
        raise _not_a_model_file(
            path, f'"cluster_centers" has shape {centers.shape}, not (n_clusters, {n_features})'
        )
    if not np.isfinite(centers).all():
        raise _not_a_model_file(path, '"cluster_centers" holds values that are not finite')

    if not isinstance(document["params"], dict):
        raise _not_a_model_file(path, '"params" is not an object')
    if not isinstance(document["history"], list) or not all(
        isinstance(record, dict) for record in document["history"]
    ):
        raise _not_a_model_file(path, '"history" is not an array of objects')
    params = dict(document["params"])
    if isinstance(params.get("init"), list):
        params["init"] = np.array(params["init"])
    if params.get("preprocessing") is not None:
        params["preprocessing"] = _scaler_from(params["preprocessing"], path, fitted=False)
    model = cls()
    try:
        model.set_params(**params)
    except ValueError as error:
        raise ValueError(
            f"{path} has parameters this version of dask-kmeans does not know: {error}"
        ) from None

    model.cluster_centers_ = centers.astype(dtype_name)
    model.inertia_ = float(document["inertia"])
    model.n_iter_ = int(document["n_iter"])
    model.converged_ = bool(document["converged"])
    model.history_ = [
        {name: float("nan") if item is None else item for name, item in record.items()}
        for record in document["history"]
    ]
    model.n_features_in_ = int(n_features)
    if document.get("preprocessing") is not None:
        model.preprocessing_ = _scaler_from(document["preprocessing"], path, fitted=True)
    feature_names = document.get("feature_names_in")
    if feature_names is not None:
        # scikit-learn keeps feature names as an object array of str.
        model.feature_names_in_ = np.array(feature_names, dtype=object)
    id_column = document.get("id_column")
    if id_column is not None:
        if not isinstance(id_column, str):
            raise _not_a_model_file(path, '"id_column" is not a string')
        model.id_column_ = id_column
    algorithm = document.get("algorithm")
    if algorithm is not None:
        if algorithm not in ALGORITHMS:
            raise _not_a_model_file(path, f'"algorithm" is {algorithm!r}, not one of {list(ALGORITHMS)}')
        model.algorithm_ = algorithm
    return model
