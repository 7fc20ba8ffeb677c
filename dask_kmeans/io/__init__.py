"""Reading data lakes into dask arrays, writing labels and models back, atomically.

- :func:`read` turns a Zarr store, a Parquet file/directory/glob, a CSV file or a (pandas or dask)
  DataFrame into a :class:`Table`: a 2-D float dask array with known chunk sizes, its feature names and
  an optional id column aligned with its rows.
- :func:`write_labels` writes labels (and optionally each row's distance to its centre, and the ids) to
  Zarr or Parquet, out of core and aligned with the input chunks; output appears only when complete.
- :func:`save_model` / :func:`load_model` keep a fitted ``KMeans`` in a documented JSON file.
- :func:`atomic_output` gives a temporary path that becomes the output only when complete.
"""

from .._atomic import OutputExistsError, atomic_output
from .model import load_model, save_model
from .readers import IdLikeColumnWarning, Table, read, source_columns
from .writers import write_labels

__all__ = [
    "IdLikeColumnWarning", "OutputExistsError", "Table", "atomic_output", "load_model", "read", "save_model",
    "source_columns", "write_labels",
]
