"""``KMeans``: the scikit-learn-style estimator over the dask engine."""

from __future__ import annotations

import contextlib
import logging
import numbers
import sys
import warnings

import dask
import dask.array as da
import numpy as np

from . import _checkpoint
from ._base import FittedInputMixin, ParamsMixin, clone
from ._bounds import ALGORITHMS, choose_algorithm
from ._init import initial_centers
from ._kernels import (
    assign,
    flagged_rows,
    left_out_rows,
    normalize_rows,
    pairwise_sq_distances,
)
from ._lloyd import CenterSet, FinalResult, LloydConfig, advance, final_pass, logger, unit_rows
from ._model_file import read_model, write_model
from ._passes import ChunkedRows
from ._scheduler import blas_threads_for_dask, should_persist
from ._validation import (
    ArrayLike,
    Boolean,
    ConvergenceWarning,
    InstanceOrNone,
    Interval,
    NamedRows,
    NotFittedError,
    Options,
    RandomStateLike,
    as_init_array,
    check_array,
    check_n_samples,
    check_non_finite,
    check_sample_weight,
    chunk_like_rows,
    resolve_seed,
    split_feature_names,
    to_dask_array,
    validate_params,
)
from .preprocessing import StandardScaler

_INITS = ("k-means||", "k-means++", "random")
_NAN_POLICIES = ("raise", "omit")
_METRICS = ("euclidean", "cosine")
_ALGORITHMS = ("auto", *ALGORITHMS)


class KMeans(ParamsMixin, FittedInputMixin):
    """K-means clustering (Lloyd's algorithm) on data that need not fit in memory.

    The data may be a numpy array or a chunked ``dask.array``; it is never gathered in one place. Each
    iteration is one pass over the data: every chunk computes partial weighted sums, counts and inertia
    for the current centres, the partials are added up in a tree, and the client computes the new centres.
    Tasks run on the current dask scheduler: the local threaded scheduler by default, or a
    ``distributed.Client``'s cluster when one is active.

    Parameters
    ----------
    n_clusters : int, default=8
        The number of clusters (centres) to find.
    init : {"k-means||", "k-means++", "random"} or array-like of shape (n_clusters, n_features), \
default="k-means||"
        How to choose the initial centres.

        - "k-means||": scalable k-means++ (Bahmani et al. 2012). The first centre is a random row; each of
          ``init_rounds`` passes samples about ``oversampling_factor * n_clusters`` candidates with
          probability proportional to their squared distance to the candidates so far; one more pass
          weights each candidate by the rows nearest to it and draws a uniform sample of the rows (100
          a cluster, at least 5000), and a search on the client (k-means++ restarts, Lloyd and swaps) finds
          ``n_clusters`` centres of the sample (of the weighted candidates for large ``k``, where the
          sample would cost the search too much). Costs ``init_rounds + 1`` passes.
        - "k-means++": greedy k-means++ (each centre the best of ``2 + log(k)`` D^2-weighted draws), in
          memory for a numpy array as in scikit-learn. On a dask array it costs ``n_clusters`` passes
          over the data: prefer "k-means||" for large dask arrays.
        - "random": ``n_clusters`` distinct rows drawn at random (by weight, if given).
        - an array: the initial centres themselves.
    n_init : "auto" or int, default="auto"
        How many initialisations to run; the run with the lowest final inertia is kept (of equal ones,
        the first). "auto" means 1 for "k-means||", "k-means++" and an array, and 10 for "random". The
        runs share every pass over the data (their initialisations too), so ``n_init`` runs read the data
        as often as one; each pass computes every run's distances (in one GEMM per block of rows).
    max_iter : int, default=300
        Maximum number of Lloyd iterations of one run.
    tol : float, default=1e-4
        Relative tolerance: a run stops when the summed squared movement of the centres is at most
        ``tol * mean(var(X, axis=0))`` (as in scikit-learn). A run also stops when the centres do not
        change at all.
    random_state : int, numpy RandomState or Generator, or None, default=None
        Seeds the initialisation. With the same data, chunking and seed, the centres are bitwise
        identical on every scheduler and number of workers with ``algorithm="lloyd"``, and on local
        schedulers with bounds; with bounds on a distributed cluster the labels are identical and the
        centres equal to rounding (a task that runs away from its chunk's state recomputes the chunk).
    oversampling_factor : float, default=2.0
        k-means|| samples about ``oversampling_factor * n_clusters`` candidates per round.
    init_rounds : int, default=5
        Number of k-means|| sampling rounds (passes over the data).
    verbose : int, default=0
        With ``verbose > 0``, log each iteration (inertia, centre shift, elapsed time) through the
        ``logging`` logger "dask_kmeans" at INFO level; a stderr handler is added if none is configured.
    nan_policy : {"raise", "omit"}, default="raise"
        What to do with rows holding NaN or infinity (or values so large that squared distances
        overflow). "raise": stop at the first pass with an error that says how many rows and where the
        first one is. "omit": leave them out of the centres, the inertia and the initialisation; their
        label is -1, ``transform`` gives them NaN distances, and ``n_omitted_`` counts them. Detected
        from each row's distance, which every pass computes anyway: no extra pass.
    compute_labels : bool, default=True
        Whether ``fit`` keeps ``labels_``, one int32 per row, on the client. For data far larger than
        memory pass False: the client then holds nothing per row, and ``predict(X)`` gives the labels
        lazily, chunk by chunk (for example to write them with ``dask_kmeans.io.write_labels``).

    preprocessing : StandardScaler or None, default=None
        A :class:`dask_kmeans.preprocessing.StandardScaler` (for example ``StandardScaler(log1p=True)``
        for spending) fitted on ``X`` at the start of ``fit`` (one more pass) and applied, chunk by chunk,
        wherever the model meets data: ``fit``, ``predict``, ``transform``, ``score``. The fitted copy is
        ``preprocessing_`` and is saved in the model file; centres live in the scaled space and
        ``preprocessing_.inverse_transform(cluster_centers_)`` maps them back to the data's units.
    metric : {"euclidean", "cosine"}, default="euclidean"
        "cosine": spherical k-means, for embedding vectors. Rows are scaled to unit length as each chunk is
        read (the data are never rewritten), a row goes to the centre of largest cosine similarity, a
        centre is the direction of the (weighted) sum of its rows (a unit vector), ``inertia_`` is the
        weighted sum of ``1 - cosine``, and ``transform`` gives cosine distances ``1 - cosine``. The
        initializers sample by cosine distance. Rows of zeros have no direction: they are refused, or left
        out under ``nan_policy="omit"``, like rows with NaN.
    algorithm : {"auto", "lloyd", "hamerly", "yinyang"}, default="auto"
        How each iteration finds the rows' nearest centres; every choice gives the same labels and
        ``n_iter_``, and centres equal to rounding (the bounded ones move each chunk's sums with the
        rows that change cluster, so their last bits may differ from Lloyd's). "lloyd" computes every
        row's distances every pass. "hamerly" and "yinyang" keep per-row triangle-inequality bounds
        beside each chunk, in the workers' memory, and compute distances only for rows whose bounds
        cannot prove that they keep their centre: after the first iterations a small share of the rows.
        Hamerly keeps one lower bound per row (12 bytes a row with the label and upper bound); Yinyang
        one per group of about ten centres (``8 + 4 k / 10`` bytes) and skips a few more rows, but costs
        more per row it reassigns. "auto": Hamerly where the data are in memory and its state fits
        beside them in half the memory, else Lloyd; and where the bounds cost more than they save (data
        without clusters), a run goes back to Lloyd once they have lost it about two Lloyd passes
        (estimated from the rows each pass computed, not timed: the answer does not depend on the
        machine's load). The fit's log and ``algorithm_`` say which ran.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
        The centres, in the dtype of the data (float32 or float64).
    labels_ : ndarray of shape (n_samples,), dtype int32
        The cluster of each training row, from the final centres (equal to ``predict(X)``); -1 for rows
        left out under ``nan_policy="omit"``. Not set with ``compute_labels=False``.
    inertia_ : float
        Sum of the weighted squared distances of the rows to their nearest centre.
    n_omitted_ : int
        Rows left out because they hold NaN or infinity (always 0 with ``nan_policy="raise"``).
    algorithm_ : str
        The algorithm the fit ran ("lloyd", "hamerly" or "yinyang"), see ``algorithm``.
    n_iter_ : int
        Number of Lloyd iterations of the kept run.
    preprocessing_ : StandardScaler
        The fitted copy of ``preprocessing`` (only when that is given).
    converged_ : bool
        Whether the kept run met the tolerance before ``max_iter``.
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,), dtype object
        Column names seen during ``fit``, when ``X`` was a pandas or dask DataFrame (or a table read by
        :func:`dask_kmeans.io.read`). Frames given to ``predict``, ``transform`` and ``score`` must
        have the same columns in the same order.
    history_ : list of dict
        One dict per iteration of the kept run: ``iteration``, ``inertia`` (of the centres at the start
        of the iteration), ``center_shift`` (summed squared movement), ``relative_shift`` (that over
        ``mean(var(X, axis=0))``, the quantity ``tol`` bounds), ``n_relocated`` (empty clusters moved
        to far points), ``rows_computed`` (rows whose distances the iteration computed: all of them
        for Lloyd, those whose bounds failed otherwise) and ``elapsed`` seconds.
        ``pandas.DataFrame(history_)`` makes a table. A bounded iteration's inertia comes from
        per-cluster sums rather than every row's distance: the same to rounding (1e-12 relative).

    See Also
    --------
    sklearn.cluster.KMeans : The in-memory estimator this one follows.

    Notes
    -----
    A fit reads the data ``init passes + n_iter + 1`` times, ``n_iter`` being the most iterations of any
    run: the last pass computes every run's inertia for its final centres and ``labels_`` of the best
    (the other runs' labels wait on the workers, one or two bytes a row, until the best is known). The
    first Lloyd pass also measures the feature variances for ``tol``, and every pass checks for NaN and
    infinity through its inertia. Sums and inertia accumulate
    in float64 whatever the data's dtype. An empty cluster is moved to the row farthest from its centre,
    found in the same pass.

    Examples
    --------
    >>> import numpy as np
    >>> from dask_kmeans import KMeans
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
    >>> km = KMeans(n_clusters=2, init=np.array([[0, 0], [12, 3]])).fit(X)
    >>> km.cluster_centers_
    array([[ 1.,  2.],
           [10.,  2.]])
    >>> km.labels_
    array([0, 0, 0, 1, 1, 1], dtype=int32)
    >>> km.inertia_
    16.0
    >>> km.predict([[0, 0], [12, 3]])
    array([0, 1], dtype=int32)

    A dask array gives lazy results:

    >>> import dask.array as da
    >>> labels = km.predict(da.from_array(X, chunks=(3, 2)))
    >>> labels.compute()
    array([0, 0, 0, 1, 1, 1], dtype=int32)
    """

    _parameter_constraints = {
        "n_clusters": [Interval(numbers.Integral, 1, None)],
        "init": [Options(*_INITS), ArrayLike()],
        "n_init": [Options("auto"), Interval(numbers.Integral, 1, None)],
        "max_iter": [Interval(numbers.Integral, 1, None)],
        "tol": [Interval(numbers.Real, 0, None)],
        "random_state": [RandomStateLike()],
        "oversampling_factor": [Interval(numbers.Real, 0, None, closed="neither")],
        "init_rounds": [Interval(numbers.Integral, 1, None)],
        "verbose": [Interval(numbers.Integral, 0, None)],
        "nan_policy": [Options(*_NAN_POLICIES)],
        "compute_labels": [Boolean()],
        "metric": [Options(*_METRICS)],
        "algorithm": [Options(*_ALGORITHMS)],
        "preprocessing": [InstanceOrNone(StandardScaler)],
    }

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        init="k-means||",
        n_init="auto",
        max_iter: int = 300,
        tol: float = 1e-4,
        random_state=None,
        oversampling_factor: float = 2.0,
        init_rounds: int = 5,
        verbose: int = 0,
        nan_policy: str = "raise",
        compute_labels: bool = True,
        preprocessing=None,
        metric: str = "euclidean",
        algorithm: str = "auto",
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.oversampling_factor = oversampling_factor
        self.init_rounds = init_rounds
        self.verbose = verbose
        self.nan_policy = nan_policy
        self.compute_labels = compute_labels
        self.metric = metric
        self.algorithm = algorithm
        self.preprocessing = preprocessing

    def __sklearn_tags__(self):
        # Called by scikit-learn only (Pipeline, GridSearchCV, clone), so scikit-learn is importable here.
        from sklearn.utils import InputTags, Tags, TargetTags, TransformerTags

        return Tags(
            estimator_type="clusterer",
            target_tags=TargetTags(required=False),
            transformer_tags=TransformerTags(preserves_dtype=["float64", "float32"]),
            input_tags=InputTags(),
        )

    # ------------------------------------------------------------------------------------------------
    # Fitting

    def _resolved_n_init(self) -> int:
        if not isinstance(self.init, str):
            if self.n_init not in ("auto", 1):
                warnings.warn(
                    f"Explicit initial centres given: running one initialisation, not n_init={self.n_init}.",
                    RuntimeWarning,
                    stacklevel=3,
                )
            return 1
        if self.n_init == "auto":
            return 10 if self.init == "random" else 1
        return int(self.n_init)

    def fit(self, X, y=None, sample_weight=None, *, persist="auto", checkpoint=None) -> KMeans:
        """Compute the K-means clustering.

        Parameters
        ----------
        X : array-like or dask array of shape (n_samples, n_features)
            Training data. Integer and boolean data are converted to float64; float32 stays float32.
        y : ignored
            Present for scikit-learn API consistency.
        sample_weight : array-like or dask array of shape (n_samples,), default=None
            Non-negative weight of each row in the centres, the inertia and the initialisation.
            Integer weights give the same result as repeating rows.
        persist : "auto", bool, default="auto"
            Whether to keep a dask array in the cluster's memory for the fit, so that passes do not read it
            from its store again. "auto" persists when the data take at most half of the workers' memory
            limits (or of this machine's free memory with a local scheduler); otherwise every pass streams
            the data from its source, holding one chunk per task. An in-memory array goes to a cluster's
            workers once whatever this says.
        checkpoint : str or path, default=None
            A file where the fit's state is saved (atomically) after the initialisation and every
            iteration. If the file exists, the fit resumes from it and ends with the same centres as an
            uninterrupted fit; a checkpoint of other data or parameters is refused. The file is removed
            when the fit completes.

        Returns
        -------
        self : KMeans
            The fitted estimator.
        """
        validate_params(self.get_params(deep=False), self._parameter_constraints)
        X, feature_names = split_feature_names(X)
        X = check_array(X)
        preprocessing = None
        if self.preprocessing is not None:
            # Given the names too, for its messages; the frame is not converted a second time.
            preprocessing = clone(self.preprocessing).fit(NamedRows(X, feature_names))
            X = preprocessing.transform(X)
        X = _metric_rows(X, self.metric)
        n_samples, n_features = X.shape
        check_n_samples(n_samples, n_features, self.n_clusters)
        init = self.init
        if not isinstance(init, str):
            init = as_init_array(init, self.n_clusters, n_features, X.dtype)
            if self.metric == "cosine":
                init = unit_rows(init)
        weights = check_sample_weight(sample_weight, n_samples)
        n_init = self._resolved_n_init()
        seeds = np.random.default_rng(resolve_seed(self.random_state)).integers(0, 2**63 - 1, size=n_init)

        X_dask = to_dask_array(X)
        data = ChunkedRows(X_dask, chunk_like_rows(weights, X_dask))
        persisted = should_persist(X, persist)
        if persisted:
            data = ChunkedRows(*dask.persist(data.X, data.weights))
        in_memory = persisted or not isinstance(X, da.Array)
        algorithm, why = choose_algorithm(self.algorithm, self.n_clusters, n_features, n_samples, n_init,
                                          data_bytes=data.X.nbytes if in_memory else None)

        with blas_threads_for_dask(), _logging_to_stderr(self.verbose):
            logger.info("Algorithm %s.", why)
            best, final = _fit_runs(
                self, data, init, seeds, X if not isinstance(X, da.Array) else None,
                weights if isinstance(weights, np.ndarray) else None, checkpoint, algorithm,
            )

        n_distinct = int(np.count_nonzero(final.sizes[final.best]))
        if n_distinct < self.n_clusters:
            warnings.warn(
                f"Number of distinct clusters ({n_distinct}) found smaller than n_clusters "
                f"({self.n_clusters}). Possibly due to duplicate points in X.",
                ConvergenceWarning,
                stacklevel=2,
            )
        self.cluster_centers_ = best.centers.astype(X.dtype)
        if self.compute_labels:
            self.labels_ = final.labels
        elif hasattr(self, "labels_"):
            del self.labels_
        self.inertia_ = final.inertias[final.best]
        self.n_omitted_ = final.non_finite[final.best]["count"]
        self.algorithm_ = algorithm
        self.n_iter_ = best.n_iter
        self.converged_ = best.converged
        self.history_ = best.history
        self.n_features_in_ = n_features
        if preprocessing is not None:
            self.preprocessing_ = preprocessing
        elif hasattr(self, "preprocessing_"):
            del self.preprocessing_
        self._set_feature_names(feature_names)
        return self

    # ------------------------------------------------------------------------------------------------
    # Using a fitted model

    def _check_fitted_input(self, X):
        X = self._checked_new_input(X, "cluster_centers_")
        if hasattr(self, "preprocessing_"):
            X = self.preprocessing_.transform(X)
        return _metric_rows(X, self.metric), self.cluster_centers_.astype(X.dtype)

    def predict(self, X):
        """The nearest centre of each row.

        Parameters
        ----------
        X : array-like or dask array of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray or dask array of shape (n_samples,), dtype int32
            Lazy (a dask array) when ``X`` is a dask array.
        """
        X, centers = self._check_fitted_input(X)
        if isinstance(X, da.Array):
            return X.map_blocks(_predict_block, centers, self.nan_policy, dtype=np.int32, drop_axis=1)
        return _predict_block(X, centers, self.nan_policy)

    def predict_with_distance(self, X):
        """The nearest centre of each row and the (exact) distance to it (see :meth:`transform`), one pass.

        Returns
        -------
        labels : ndarray or dask array of shape (n_samples,), dtype int32
        distances : ndarray or dask array of shape (n_samples,), dtype float64
            Rows left out under ``nan_policy="omit"`` have label -1 and distance NaN. Both lazy when ``X``
            is a dask array, computed by the same task per chunk.
        """
        X, centers = self._check_fitted_input(X)
        if isinstance(X, da.Array):
            both = X.map_blocks(
                _labels_and_distances_block, centers, self.nan_policy, self.metric, dtype=np.float64,
                chunks=(X.chunks[0], (2,)),
            )
        else:
            both = _labels_and_distances_block(X, centers, self.nan_policy, self.metric)
        return both[:, 0].astype(np.int32), both[:, 1]

    def transform(self, X):
        """Distance of each row to every centre: Euclidean, or ``1 - cosine`` with ``metric="cosine"``
        (exact, from differences where it matters).

        Returns
        -------
        distances : ndarray or dask array of shape (n_samples, n_clusters)
            Lazy (a dask array) when ``X`` is a dask array.
        """
        X, centers = self._check_fitted_input(X)
        if isinstance(X, da.Array):
            return X.map_blocks(
                _distances_block, centers, self.nan_policy, self.metric, dtype=X.dtype,
                chunks=(X.chunks[0], (len(centers),)),
            )
        return _distances_block(X, centers, self.nan_policy, self.metric)

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then return ``labels_`` (as a dask array chunked like ``X`` when ``X`` is one)."""
        self.fit(X, sample_weight=sample_weight)
        if not self.compute_labels:
            return self.predict(X)
        labels = self.labels_
        if isinstance(X, da.Array):
            return da.from_array(labels, chunks=(X.chunks[0],))
        return labels

    def fit_transform(self, X, y=None, sample_weight=None):
        """Fit, then return the distances of ``X`` to the centres (see :meth:`transform`)."""
        return self.fit(X, sample_weight=sample_weight).transform(X)

    def save(self, path, *, overwrite: bool = False, storage_options: dict | None = None) -> str:
        """Save the fitted model to a JSON file (see :mod:`dask_kmeans.io.model` for the format).

        The file holds the parameters, centres, inertia, iterations and feature names, not the labels.
        It appears only once complete; an existing file is replaced only with ``overwrite=True``.
        """
        return write_model(self, path, overwrite=overwrite, storage_options=storage_options)

    @classmethod
    def load(cls, path, *, storage_options: dict | None = None) -> KMeans:
        """Load a model saved by :meth:`save` (no pickle involved)."""
        return read_model(cls, path, storage_options=storage_options)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Names of the columns of :meth:`transform`'s output: ``kmeans0``, ``kmeans1``, ..."""
        if not hasattr(self, "cluster_centers_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call 'fit' first.")
        return np.array([f"kmeans{j}" for j in range(len(self.cluster_centers_))], dtype=object)

    def score(self, X, y=None, sample_weight=None) -> float:
        """Opposite of the weighted inertia of ``X`` with respect to the centres (higher is better)."""
        X, centers = self._check_fitted_input(X)
        weights = check_sample_weight(sample_weight, X.shape[0])
        X_dask = to_dask_array(X)
        data = ChunkedRows(X_dask, chunk_like_rows(weights, X_dask))
        with blas_threads_for_dask():  # the fit's own last pass, for these centres
            final = final_pass(data, [centers], keep_labels=False, metric=self.metric)
        check_non_finite(final.non_finite[0], X_dask.chunks[0], self.nan_policy)
        return -final.inertias[0]


def _fit_runs(model: KMeans, data: ChunkedRows, init, seeds: np.ndarray, in_memory, in_memory_weights,
              checkpoint, algorithm: str) -> tuple[CenterSet, FinalResult]:
    """The ``n_init`` runs of one fit, all in the same passes: initialisations, Lloyd, the final pass.

    Returns the run of lowest final inertia (ties: the lowest run index) and the final pass's result.
    With a checkpoint, the state of every run is saved after the initialisation and after every pass,
    and a fit that finds a checkpoint of its own data and parameters goes on from there.
    """
    save = None
    sets, mean_variance = None, None
    if checkpoint is not None:
        checkpoint = str(checkpoint)
        fingerprint = {
            "params": _checkpoint.params_fingerprint(model.get_params(deep=False)),
            "data": _checkpoint.data_fingerprint(data),
        }
        state = _checkpoint.load(checkpoint, fingerprint)
        if state is not None:
            logger.info("Resuming from the checkpoint %s.", checkpoint)
            seeds = np.array(state["seeds"], dtype=np.int64)
            sets, mean_variance = _checkpoint.restore_sets(state["runs"]), state["mean_variance"]

        def save(sets, mean_variance):
            _checkpoint.save(checkpoint, {
                **fingerprint, "seeds": [int(s) for s in seeds], "runs": _checkpoint.sets_state(sets),
                "mean_variance": mean_variance,
            })

    if sets is None:
        starts = initial_centers(
            data, model.n_clusters, init, [int(s) for s in seeds],
            oversampling_factor=model.oversampling_factor, init_rounds=model.init_rounds,
            nan_policy=model.nan_policy, in_memory=in_memory, in_memory_weights=in_memory_weights,
        )
        if model.metric == "cosine":  # a row drawn as a centre may be a mean of candidates: make it unit
            starts = [unit_rows(centers) for centers in starts]
        sets = [CenterSet(centers) for centers in starts]
        if save is not None:
            save(sets, mean_variance)
    config = LloydConfig(max_iter=model.max_iter, tol=model.tol, nan_policy=model.nan_policy,
                         metric=model.metric, algorithm=algorithm, fall_back=model.algorithm == "auto")
    advance(data, sets, config, mean_variance=mean_variance, on_pass=save)
    final = final_pass(data, [s.centers for s in sets], keep_labels=model.compute_labels, metric=model.metric)
    if len(sets) > 1:
        for run, (center_set, inertia) in enumerate(zip(sets, final.inertias)):
            logger.info("Run %d of %d: inertia %.6g after %d iterations.", run + 1, len(sets), inertia,
                        center_set.n_iter)
    if checkpoint is not None:
        _checkpoint.remove(checkpoint)
    return sets[final.best], final


def _predict_block(X, centers, nan_policy):
    result = assign(X, centers)
    check_non_finite(result["non_finite"], None, nan_policy)
    return result["labels"]  # -1 for rows left out under nan_policy="omit"


def _metric_rows(X, metric: str):
    """The rows the kernel sees: as they are, or (``metric="cosine"``) scaled to unit norm, chunk by chunk
    as each is read (the data are never rewritten)."""
    if metric != "cosine":
        return X
    if isinstance(X, da.Array):
        return X.map_blocks(normalize_rows, dtype=X.dtype)
    return normalize_rows(X)


def _distances(sq_distances: np.ndarray, metric: str) -> np.ndarray:
    """Squared Euclidean distances of the kernel as the metric's distances: Euclidean, or 1 - cosine."""
    with np.errstate(invalid="ignore"):
        return sq_distances * 0.5 if metric == "cosine" else np.sqrt(sq_distances)


def _labels_and_distances_block(X, centers, nan_policy, metric):
    """Labels and exact distances to the assigned centre, as two float64 columns."""
    result = assign(X, centers)
    check_non_finite(result["non_finite"], None, nan_policy)
    # Rows left out (nan_policy="omit") have label -1 and distance NaN.
    return np.column_stack([result["labels"], _distances(result["sq_dist"], metric)])


def _distances_block(X, centers, nan_policy, metric):
    sq_distances = pairwise_sq_distances(X, centers)
    bad = left_out_rows(sq_distances, X.dtype)  # the rows predict leaves out, overflowing ones included
    check_non_finite(flagged_rows(bad, 0), None, nan_policy)
    distances = _distances(sq_distances, metric).astype(X.dtype, copy=False)
    distances[bad] = np.nan
    return distances


@contextlib.contextmanager
def _logging_to_stderr(verbose: int):
    """With ``verbose``, show the "dask_kmeans" INFO logs on stderr unless logging is configured."""
    if not verbose:
        yield
        return
    handler = None
    if not logger.hasHandlers():
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.setLevel(previous)
        if handler is not None:
            logger.removeHandler(handler)
