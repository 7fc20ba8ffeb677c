"""dask-kmeans: K-means clustering on Dask for data larger than memory."""

from ._validation import ConvergenceWarning, NonFiniteDataError, NotFittedError
from .estimator import KMeans

__version__ = "0.1.0"

__all__ = ["ConvergenceWarning", "KMeans", "NonFiniteDataError", "NotFittedError", "__version__"]
