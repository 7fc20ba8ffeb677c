"""scikit-learn's parameter protocol (``get_params``, ``set_params``, ``clone``, a short ``repr``).

scikit-learn is not a dependency, so the estimators carry the protocol themselves: parameters are the
keyword arguments of ``__init__``, stored unchanged as attributes of the same name.
"""

from __future__ import annotations

import inspect

import numpy as np

from ._validation import NotFittedError, check_array, check_feature_names, split_feature_names


class ParamsMixin:
    """``get_params`` / ``set_params`` / ``repr`` from the signature of ``__init__``."""

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [p.name for p in signature.parameters.values() if p.name != "self"]

    def get_params(self, deep: bool = True) -> dict:
        """Parameters of this estimator, by name.

        With ``deep``, the parameters of an estimator held as a parameter too, as ``name__param``
        (``preprocessing__log1p``), so that a grid search can tune them.
        """
        params = {}
        for name in self._param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                params.update((f"{name}__{key}", item) for key, item in value.get_params().items())
            params[name] = value
        return params

    def set_params(self, **params):
        """Set parameters by name (``name__param`` for an estimator held as a parameter); returns self."""
        valid = self._param_names()
        nested: dict[str, dict] = {}
        for name, value in params.items():
            name, _, inner = name.partition("__")
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for estimator {type(self).__name__}. "
                    f"Valid parameters are: {sorted(valid)!r}."
                )
            if inner:
                nested.setdefault(name, {})[inner] = value
            else:
                setattr(self, name, value)
        for name, inner_params in nested.items():  # after a plain `preprocessing=...` in the same call
            holder = getattr(self, name)
            if not hasattr(holder, "set_params"):
                raise ValueError(f"{name} is {holder!r}: it has no parameters {sorted(inner_params)} to set.")
            holder.set_params(**inner_params)
        return self

    def __repr__(self) -> str:
        defaults = {
            p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()
        }
        changed = []
        for name, value in self.get_params(deep=False).items():
            default = defaults[name]
            same = value is default or (
                not hasattr(value, "shape") and not hasattr(default, "shape") and value == default
            )
            if not same:
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"


class FittedInputMixin:
    """Checks shared by estimators that meet new data after ``fit`` (same columns, same names)."""

    def _checked_new_input(self, X, fitted_attribute: str):
        """``X`` as a checked array: the estimator is fitted, and names and feature count match ``fit``'s."""
        if not hasattr(self, fitted_attribute):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with appropriate "
                "arguments before using this estimator."
            )
        X, feature_names = split_feature_names(X)
        check_feature_names(getattr(self, "feature_names_in_", None), feature_names)
        X = check_array(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )
        return X

    def _set_feature_names(self, feature_names) -> None:
        """Keep ``fit``'s column names as ``feature_names_in_`` (or forget older ones)."""
        if feature_names is not None:
            self.feature_names_in_ = np.array(feature_names, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_


def clone(estimator):
    """A new, unfitted estimator with the same parameters (estimator parameters cloned too)."""
    params = {
        name: clone(value) if isinstance(value, ParamsMixin) else value
        for name, value in estimator.get_params(deep=False).items()
    }
    return type(estimator)(**params)
