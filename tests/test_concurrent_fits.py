"""Two fits at once on one cluster each get the answer they would get alone."""

from concurrent.futures import ThreadPoolExecutor

import dask
import dask.array as da
import numpy as np
from distributed import Client

from dask_kmeans import KMeans

from .conftest import make_blobs

PARAMS = [dict(n_clusters=4, random_state=1), dict(n_clusters=6, init="random", n_init=3, random_state=2)]


def _fit(X, params):
    km = KMeans(**params, max_iter=30).fit(da.from_array(X, chunks=(1500, X.shape[1])), persist=False)
    return km.cluster_centers_, km.labels_, km.n_iter_


def _same(a, b):
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_two_threads_of_one_client_and_two_clients_fit_at_once(process_client):
    X, _ = make_blobs(12000, 5, 6, std=2.0, seed=9)
    alone = [_fit(X, params) for params in PARAMS]
    # Two threads sharing the default client: the passes of both fits interleave on the same workers
    # (each pass names its tasks afresh; the reads of the same chunks are the same tasks).
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda params: _fit(X, params), PARAMS))
    for got, expected in zip(together, alone):
        _same(got, expected)

    # A second client of the same scheduler, as another notebook would be.
    def on_own_client(params):
        with Client(process_client.scheduler.address, set_as_default=False) as client, client.as_current():
            assert dask.base.get_scheduler().__self__ is client  # the fit's passes go through this client
            return _fit(X, params)

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.submit(_fit, X, PARAMS[0]), pool.submit(on_own_client, PARAMS[1])
        _same(first.result(), alone[0])
        _same(second.result(), alone[1])
