"""``python -m dask_kmeans``: the same as the ``dask-kmeans`` command."""

import sys

from .cli import main

sys.exit(main())
