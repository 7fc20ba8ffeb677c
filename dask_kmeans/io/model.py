"""Model files: a fitted ``KMeans`` in one portable JSON file, read without pickle.

A model file is a UTF-8 JSON object that any language can load, indented so that it can be read and
diffed (one line per field, per centre and per iteration). Floats are written with Python's shortest
round-tripping ``repr``, so the centres and the inertia come back bit-identical. The per-row ``labels_``
are not stored: they belong to the training data, not to the model (``predict`` recomputes them).

========================  ===================================================================  ==============
field                     meaning                                                              JSON type
========================  ===================================================================  ==============
``format``                always ``"dask-kmeans-model"``: marks the file as a model file       string
``format_version``        version of this layout, 1; readers refuse versions newer than        integer
                          theirs
``library_version``       ``dask_kmeans.__version__`` of the library that wrote the file       string
``created``               when the file was written, UTC, ISO 8601                             string
                          (``"2026-05-09T07:35:25+00:00"``)
``params``                the estimator's ``get_params()``, by name. An array ``init`` is a    object
                          list of rows (it loads back as a numpy array); a ``random_state``
                          that is a numpy ``RandomState`` or ``Generator`` cannot be stored
                          and is ``null`` (a refit of the loaded model draws fresh entropy)
``dtype``                 dtype of the centres: ``"float32"`` or ``"float64"``                 string
``n_features_in``         number of features seen in ``fit``                                   integer
``feature_names_in``      the feature names, or ``null`` when the model had no                 array of
                          ``feature_names_in_`` attribute                                      strings, null
``cluster_centers``       the centres, one row per cluster, shape (n_clusters, n_features).    array of
                          float32 centres are stored as their exact float64 values             arrays of
                                                                                               numbers
``inertia``               ``inertia_``: weighted sum of squared distances to the nearest       number
                          centre over the training data
``n_iter``                ``n_iter_``: Lloyd iterations of the kept run                        integer
``converged``             ``converged_``: whether that run met the tolerance                   boolean
``preprocessing``         ``preprocessing_`` (optional; absent or ``null`` without one): the   object, null
                          fitted scaler as ``{"type": "StandardScaler", "params": {...},
                          "mean": [...], "var": [...], "scale": [...], "n_samples_seen": n,
                          "n_features_in": d}``; ``params["preprocessing"]`` holds the same
                          ``type`` and ``params`` (the unfitted parameter)
``history``               ``history_``: one object per iteration (``iteration``,               array of
                          ``inertia``, ``center_shift``, ``relative_shift``, ...); a NaN or    objects
                          infinity there (a relative shift of data with zero variance) is
                          stored as ``null`` and loads back as NaN
``id_column``             ``id_column_`` (optional; absent or ``null`` without one): the       string, null
                          column that identified the training rows (``fit --id-column`` of
                          the command line sets it), so that ``predict`` and ``profile``
                          carry it to their outputs. Files without it load as before
``algorithm``             ``algorithm_`` (optional; absent or ``null`` in older files): the    string, null
                          algorithm the fit ran, ``"lloyd"``, ``"hamerly"`` or ``"yinyang"``
                          (``params["algorithm"]`` holds what was asked, ``"auto"`` too)
========================  ===================================================================  ==============

NaN and infinity are not JSON. The centres and inertia of a fitted model never hold them; writing refuses
them rather than emit the non-standard ``NaN`` token, and reading refuses that token.
"""

from __future__ import annotations

import os

from .._model_file import FORMAT_NAME, FORMAT_VERSION, read_model, write_model
from ..estimator import KMeans

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "load_model", "save_model"]


def save_model(
    model: KMeans,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    storage_options: dict | None = None,
) -> str:
    """Write a fitted ``KMeans`` to a JSON model file.

    The file appears only once it is complete: it is written under a temporary name next to ``path``
    and then moved into place.

    Parameters
    ----------
    model : KMeans
        A fitted estimator.
    path : str or os.PathLike
        Where to write: a local path or an fsspec URL (``memory://m.json``, ``s3://bucket/m.json``).
    overwrite : bool, default=False
        Replace an existing file at ``path``.
    storage_options : dict, optional
        Passed to fsspec for URLs.

    Returns
    -------
    path : str
        The path written.

    Raises
    ------
    NotFittedError
        When ``model`` has not been fitted.
    OutputExistsError
        When ``path`` exists and ``overwrite`` is False; nothing is written.
    TypeError
        When ``model`` is not a ``KMeans``, or holds a value (in ``history_`` for instance) that JSON
        cannot represent; nothing is written.
    ValueError
        When the centres or the inertia are NaN or infinite; nothing is written.

    See Also
    --------
    load_model : Read the file back.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from dask_kmeans import KMeans
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
    >>> km = KMeans(n_clusters=2, init=np.array([[0, 0], [12, 3]])).fit(X)
    >>> path = save_model(km, os.path.join(tempfile.mkdtemp(), "model.json"))
    >>> load_model(path).predict([[0, 0], [12, 3]])
    array([0, 1], dtype=int32)
    """
    if not isinstance(model, KMeans):
        raise TypeError(f"save_model saves a dask_kmeans.KMeans, not a {type(model).__name__}.")
    return write_model(model, path, overwrite=overwrite, storage_options=storage_options)


def load_model(path: str | os.PathLike, *, storage_options: dict | None = None) -> KMeans:
    """Read a ``KMeans`` from a model file written by :func:`save_model`.

    Parameters
    ----------
    path : str or os.PathLike
        A local path or an fsspec URL.
    storage_options : dict, optional
        Passed to fsspec for URLs.

    Returns
    -------
    model : KMeans
        The estimator with its parameters and fitted attributes (``cluster_centers_`` in the stored
        dtype, ``inertia_``, ``n_iter_``, ``converged_``, ``history_``, ``n_features_in_`` and, when they
        were saved, ``feature_names_in_`` and ``id_column_``), ready for ``predict``, ``transform`` and
        ``score``. It has no ``labels_``.

    Raises
    ------
    FileNotFoundError
        When there is no file at ``path``.
    ValueError
        When the file is not a dask-kmeans model file, is damaged, or has a ``format_version`` newer than
        this library reads.

    See Also
    --------
    save_model : Write the file.
    """
    return read_model(KMeans, path, storage_options=storage_options)
