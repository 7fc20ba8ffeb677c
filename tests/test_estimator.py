"""The scikit-learn contract: parameters, fitted attributes, outputs, pipelines, pickling, errors."""

import logging
import pickle

import dask.array as da
import numpy as np
import pytest
import scipy.sparse
from sklearn.base import clone
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from dask_kmeans import KMeans, NonFiniteDataError, NotFittedError
from dask_kmeans import StandardScaler as DKStandardScaler

from .conftest import make_blobs, pick_rows


@pytest.fixture(scope="module")
def X():
    return make_blobs(3000, 4, 5, std=1.5, seed=71)[0]


@pytest.fixture(scope="module")
def fitted(X):
    return KMeans(5, random_state=0).fit(X)


def test_params_round_trip_and_clone():
    km = KMeans(3, init="random", n_init=4, max_iter=50, tol=1e-3, random_state=5, oversampling_factor=3.0,
                init_rounds=2, verbose=0)
    params = km.get_params()
    assert params["n_clusters"] == 3 and params["init"] == "random" and params["init_rounds"] == 2
    assert clone(km).get_params() == params
    assert km.set_params(n_clusters=4) is km and km.n_clusters == 4
    with pytest.raises(ValueError, match="Invalid parameter 'bogus'"):
        km.set_params(bogus=1)
    assert repr(KMeans(3, random_state=0)) == "KMeans(n_clusters=3, random_state=0)"


def test_fitted_attributes(X, fitted):
    assert fitted.cluster_centers_.shape == (5, 4) and fitted.cluster_centers_.dtype == np.float64
    assert fitted.labels_.shape == (len(X),) and fitted.labels_.dtype == np.int32
    assert fitted.n_features_in_ == 4
    assert isinstance(fitted.inertia_, float) and fitted.inertia_ > 0
    assert len(fitted.history_) == fitted.n_iter_ and fitted.converged_
    inertias = [h["inertia"] for h in fitted.history_]
    assert all(b <= a * (1 + 1e-12) for a, b in zip(inertias, inertias[1:]))  # Lloyd never goes up
    assert fitted.inertia_ <= inertias[-1] * (1 + 1e-12)


def test_outputs_agree_with_each_other(X, fitted):
    np.testing.assert_array_equal(fitted.predict(X), fitted.labels_)
    distances = fitted.transform(X)
    expected = np.sqrt(((X[:, None, :] - fitted.cluster_centers_[None]) ** 2).sum(-1))
    np.testing.assert_allclose(distances, expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(distances.argmin(1), fitted.labels_)
    np.testing.assert_allclose(fitted.score(X), -fitted.inertia_, rtol=1e-12)
    np.testing.assert_allclose((distances.min(1) ** 2).sum(), fitted.inertia_, rtol=1e-9)


def test_dask_input_gives_lazy_outputs(X, fitted):
    Xd = da.from_array(X, chunks=(700, 4))
    labels, distances = fitted.predict(Xd), fitted.transform(Xd)
    assert isinstance(labels, da.Array) and isinstance(distances, da.Array)
    assert labels.chunks[0] == Xd.chunks[0] and distances.chunks == (Xd.chunks[0], (5,))
    np.testing.assert_array_equal(labels.compute(), fitted.labels_)
    np.testing.assert_allclose(distances.compute(), fitted.transform(X))
    np.testing.assert_allclose(fitted.score(Xd), fitted.score(X), rtol=1e-12)


@pytest.mark.parametrize("as_dask", [False, True])
def test_fit_predict_and_fit_transform(X, as_dask):
    X_in = da.from_array(X, chunks=(700, 4)) if as_dask else X
    km = KMeans(5, random_state=1)
    labels = km.fit_predict(X_in)
    assert isinstance(labels, da.Array) == as_dask
    np.testing.assert_array_equal(np.asarray(labels), km.labels_)
    distances = KMeans(5, random_state=1).fit_transform(X_in)
    np.testing.assert_allclose(np.asarray(distances), km.transform(X))


def test_float32_stays_float32(X):
    X32 = X.astype(np.float32)
    km = KMeans(5, random_state=0).fit(da.from_array(X32, chunks=(1000, 4)))
    assert km.cluster_centers_.dtype == np.float32
    assert km.transform(X32).dtype == np.float32
    ref = KMeans(5, init=km.cluster_centers_.astype(np.float64), max_iter=1).fit(X)
    np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, rtol=1e-5, atol=1e-5)


def test_integer_input_becomes_float64():
    X = np.array([[0, 0], [0, 1], [10, 10], [10, 11]])
    km = KMeans(2, init=np.array([[0, 0], [10, 10]])).fit(X)
    assert km.cluster_centers_.dtype == np.float64
    np.testing.assert_array_equal(km.cluster_centers_, [[0, 0.5], [10, 10.5]])


def test_pipeline_and_grid_search(X):
    pipe = Pipeline([("scale", StandardScaler()), ("kmeans", KMeans(5, random_state=0))]).fit(X)
    assert pipe.predict(X).shape == (len(X),)
    assert pipe.transform(X).shape == (len(X), 5)
    assert list(pipe.get_feature_names_out()) == [f"kmeans{j}" for j in range(5)]


def test_grid_search_tunes_a_nested_parameter():
    # Heavy-tailed spend with three planted segments: only log1p scaling finds them. The search scores
    # the agreement with the planted segments, so it must reach preprocessing__log1p through
    # get_params(deep=True) / set_params to pick the right value (the inertia of different scalings
    # would not be comparable).
    rng = np.random.default_rng(3)
    planted = rng.integers(0, 3, 3000)
    log_means = np.array([[1.0, 1.0, 1.0, 1.0], [3.0, 3.0, 1.0, 1.0], [1.0, 1.0, 3.0, 3.0]])
    X = np.expm1(log_means[planted] + 0.6 * rng.standard_normal((3000, 4)))
    model = KMeans(3, random_state=0, preprocessing=DKStandardScaler())
    assert model.get_params()["preprocessing__log1p"] is False
    assert clone(model).set_params(preprocessing__log1p=True).preprocessing.log1p is True
    assert model.preprocessing.log1p is False  # clone copied the scaler: the original is untouched

    def agreement(estimator, X_test, y_test):
        return adjusted_rand_score(y_test, estimator.predict(X_test))

    search = GridSearchCV(model, {"preprocessing__log1p": [False, True]}, scoring=agreement, cv=3)
    search.fit(X, planted)
    scores = search.cv_results_["mean_test_score"]
    assert search.best_params_ == {"preprocessing__log1p": True}
    assert scores[1] > 0.8 and scores[0] < scores[1] - 0.2, scores


def test_pickle_holds_no_task_graph(X, fitted):
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.predict(X), fitted.labels_)
    allowed = (np.ndarray, int, float, bool, str, list, type(None))
    for name, value in vars(fitted).items():
        assert isinstance(value, allowed), (name, type(value))
    km = KMeans(5, random_state=0).fit(da.from_array(X, chunks=(700, 4)))
    for value in vars(km).values():
        assert not isinstance(value, da.Array)


def test_verbose_logs_each_iteration(X, caplog):
    with caplog.at_level(logging.INFO, logger="dask_kmeans"):
        km = KMeans(5, init=pick_rows(X, 5), max_iter=3, tol=0, verbose=1).fit(X)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Iteration")]
    assert len(lines) == km.n_iter_ == 3


def test_errors_say_what_to_do(X, fitted):
    with pytest.raises(NotFittedError, match="not fitted yet"):
        KMeans(3).predict(X)
    with pytest.raises(ValueError, match="X has 3 features, but KMeans is expecting 4"):
        fitted.predict(X[:, :3])
    with pytest.raises(ValueError, match="'k-means\\|\\|', 'k-means\\+\\+', 'random'"):
        KMeans(3, init="kmeans").fit(X)
    with pytest.raises(ValueError, match="n_clusters"):
        KMeans(0).fit(X)
    with pytest.raises(ValueError, match="n_samples=3 should be >= n_clusters=5"):
        KMeans(5).fit(X[:3])
    with pytest.raises(ValueError, match="shape \\(2, 4\\); it must be \\(n_clusters, n_features\\)"):
        KMeans(3, init=X[:2]).fit(X)
    with pytest.raises(ValueError, match="Expected a 2-D X"):
        KMeans(3).fit(X[:, 0])
    with pytest.raises(ValueError, match="complex"):
        KMeans(2).fit(X.astype(complex))
    with pytest.raises(ValueError, match="not numbers"):
        KMeans(2).fit(np.array([["a", 1.0], ["b", 2.0]], dtype=object))
    with pytest.raises(TypeError, match="sparse input is not supported"):
        KMeans(2).fit(scipy.sparse.random(10, 3, density=0.5, format="csr"))
    with pytest.raises(ValueError, match="0 sample\\(s\\)"):
        KMeans(2).fit(np.empty((0, 3)))
    with pytest.raises(ValueError, match="0 feature\\(s\\)"):
        KMeans(2).fit(np.empty((5, 0)))
    with pytest.raises(ValueError, match="sample_weight has shape"):
        KMeans(2).fit(X, sample_weight=np.ones(5))
    with pytest.raises(ValueError, match="NaN or infinity"):
        X_bad = X.copy()
        X_bad[10, 2] = np.nan
        KMeans(2, random_state=0).fit(X_bad)


def test_object_arrays_of_numbers_are_converted():
    X = np.array([[0, 1.0], [0, 1.5], [9, 9.0], [9, 9.5]], dtype=object)
    km = KMeans(2, init=np.array([[0.0, 1.0], [9.0, 9.0]])).fit(X)
    np.testing.assert_array_equal(km.cluster_centers_, [[0.0, 1.25], [9.0, 9.25]])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_predict_transform_score_refuse_non_finite_rows(X, fitted, bad):
    X_bad = X.copy()
    X_bad[[3, 17], 1] = bad
    for method in (fitted.predict, fitted.transform, fitted.score):
        with pytest.raises(NonFiniteDataError, match="NaN or infinity"):
            method(X_bad)
    with pytest.raises(NonFiniteDataError, match="in 2 row"):
        fitted.predict(da.from_array(X_bad, chunks=(1000, 4))).compute()


def test_explicit_init_with_n_init_warns(X):
    with pytest.warns(RuntimeWarning, match="one initialisation"):
        KMeans(5, init=pick_rows(X, 5), n_init=3).fit(X)


def test_dataframes_set_and_check_feature_names(X):
    import dask.dataframe as dd
    import pandas as pd

    frame = pd.DataFrame(X, columns=["electronics", "clothing", "home", "grocery"])
    km = KMeans(5, random_state=0).fit(frame)
    assert list(km.feature_names_in_) == list(frame.columns)
    np.testing.assert_array_equal(km.predict(frame), km.labels_)
    lazy = dd.from_pandas(frame, npartitions=3)
    np.testing.assert_array_equal(km.predict(lazy).compute(), km.labels_)
    with pytest.raises(ValueError, match="missing \\['home'\\]; unexpected \\['garden'\\]"):
        km.predict(frame.rename(columns={"home": "garden"}))
    with pytest.raises(ValueError, match="another order"):
        km.predict(frame[["clothing", "electronics", "home", "grocery"]])
    with pytest.raises(ValueError, match="Non-numeric feature column\\(s\\) 'city'"):
        KMeans(2).fit(frame.assign(city="Paris"))
    km.fit(X)  # refitting on an array forgets the names
    assert not hasattr(km, "feature_names_in_")
