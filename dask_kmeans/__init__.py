"""dask-kmeans: K-means clustering on Dask for data larger than memory."""

from ._passes import SchedulerLostError, WorkerDiedError
from ._validation import ConvergenceWarning, NonFiniteDataError, NotFittedError
from ._version import __version__
from .choose_k import KSelection, choose_k
from .estimator import KMeans
from .preprocessing import StandardScaler
from .segments import describe_segment, profile

__all__ = [
    "ConvergenceWarning",
    "KMeans",
    "KSelection",
    "NonFiniteDataError",
    "NotFittedError",
    "SchedulerLostError",
    "StandardScaler",
    "WorkerDiedError",
    "__version__",
    "choose_k",
    "describe_segment",
    "profile",
]
