"""scikit-learn's own estimator checks (``check_estimator``) on ``KMeans`` (issue #16).

scikit-learn is a test-only dependency; the package itself must import and work without it.
"""

import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import sklearn.exceptions
from sklearn.utils.estimator_checks import check_estimator

from dask_kmeans import KMeans, NotFittedError, StandardScaler

# The checks scikit-learn's own KMeans is expected to fail too (PER_ESTIMATOR_XFAIL_CHECKS in
# sklearn/utils/_test_common/instance_generator.py), with scikit-learn's reason. Their sparse twin,
# check_sample_weight_equivalence_on_sparse_data, is not run at all: KMeans refuses sparse input.
EXPECTED_FAILED_CHECKS = {
    "check_sample_weight_equivalence_on_dense_data": (
        "sample_weight is not equivalent to removing/repeating samples: the random initialisation "
        "draws differently from weighted rows than from repeated ones (as in sklearn.cluster.KMeans)."
    ),
}


def _run_checks(estimator):
    results = check_estimator(
        estimator, expected_failed_checks=EXPECTED_FAILED_CHECKS, on_fail=None, on_skip=None
    )
    failed = {
        r["check_name"]: f"{type(r['exception']).__name__}: {r['exception']}"
        for r in results
        if r["status"] == "failed"
    }
    assert not failed, f"scikit-learn checks failed: {failed}"
    # Strict about the expected failures: one that starts passing (or is no longer run) must be noticed,
    # so that it can leave the list.
    xfailed = {r["check_name"] for r in results if r["status"] == "xfail"}
    assert xfailed == set(EXPECTED_FAILED_CHECKS), (
        f"expected failures {sorted(EXPECTED_FAILED_CHECKS)}, but these failed as expected: {sorted(xfailed)}"
    )
    return results


# The checks fit 8 clusters to tiny data sets, some with duplicate rows: fewer distinct clusters is expected.
@pytest.mark.filterwarnings("ignore::dask_kmeans.ConvergenceWarning")
# Deriving from sklearn.base.BaseEstimator would make scikit-learn a dependency; the protocol is ours.
@pytest.mark.filterwarnings("ignore:Estimator KMeans does not inherit from `sklearn.base.BaseEstimator`")
def test_check_estimator_kmeans():
    _run_checks(KMeans())


def test_sklearn_not_fitted_error_catches_ours():
    X = np.arange(12.0).reshape(6, 2)
    for unfitted in (KMeans(2), StandardScaler()):
        with pytest.raises(sklearn.exceptions.NotFittedError):
            unfitted.transform(X)
    try:
        KMeans(2).predict(X)
    except sklearn.exceptions.NotFittedError as error:
        assert isinstance(error, NotFittedError)
        assert isinstance(error, ValueError) and isinstance(error, AttributeError)
        copy = pickle.loads(pickle.dumps(error))  # the subclass made at construction pickles by its base
        assert isinstance(copy, sklearn.exceptions.NotFittedError) and copy.args == error.args
    else:  # pragma: no cover
        raise AssertionError("predict before fit did not raise")


def test_not_fitted_error_without_sklearn():
    """Without scikit-learn the package imports, and NotFittedError is a ValueError and AttributeError."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["sklearn"] = None  # makes every `import sklearn...` raise ImportError
        import numpy as np
        import dask_kmeans
        assert dask_kmeans.NotFittedError.__mro__[1:] == (ValueError, AttributeError, Exception,
                                                          BaseException, object)
        X = np.arange(12.0).reshape(6, 2)
        try:
            dask_kmeans.KMeans(2).predict(X)
        except ValueError as error:
            assert isinstance(error, AttributeError)
        km = dask_kmeans.KMeans(2, random_state=0).fit(X)
        assert km.predict(X).shape == (6,)
        assert "sklearn" not in [name.split(".")[0] for name, m in sys.modules.items() if m is not None]
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_complex_and_object_data_messages():
    X = np.arange(12.0).reshape(6, 2)
    with pytest.raises(ValueError, match="Complex data not supported.*real part"):
        KMeans(2).fit(X.astype(complex))
    X_object = X.astype(object)
    X_object[0, 0] = {"foo": "bar"}
    with pytest.raises(TypeError, match="argument must be .* string.* number.*numeric columns"):
        KMeans(2).fit(X_object)
    X_object[0, 0] = "foo"
    with pytest.raises(ValueError, match="not numbers.*numeric columns"):
        KMeans(2).fit(X_object)
