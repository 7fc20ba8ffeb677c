"""What the compiled kernel's JIT costs the first fit of a fresh process, with and without numba's cache.

Run from the repository root::

    python benchmarks/bench_cold_start.py --repeats 3

Each measurement is a new Python process that imports dask_kmeans and fits ``KMeans(8)`` twice on the
same 10k x 16 float32 array (local threaded scheduler). The first fit pays the compilation (or the load
from numba's on-disk cache); the second is the same work with everything compiled, so their difference
is what the JIT adds. ``NUMBA_CACHE_DIR`` points at a fresh empty folder for "no cache" (numba compiles
and writes the cache there) and at that same, now filled, folder for "cache". A dask worker process is
like a fresh process here: its first task pays the same (once per process).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from _common import Row, fmt, format_table, median

CHILD = r"""
import json, time
t0 = time.perf_counter()
import numpy as np
import dask_kmeans
t_import = time.perf_counter() - t0
X = np.random.default_rng(0).standard_normal((10_000, 16)).astype(np.float32)
times = []
for _ in range(2):
    t = time.perf_counter()
    dask_kmeans.KMeans(8, random_state=0).fit(X)
    times.append(time.perf_counter() - t)
print(json.dumps({"import": t_import, "first": times[0], "second": times[1]}))
"""

FIGURES = {  # a column of the table: the figure of one run (medians shown)
    "import (s)": lambda run: run["import"],
    "first fit (s)": lambda run: run["first"],
    "second fit (s)": lambda run: run["second"],
    "JIT adds (s)": lambda run: run["first"] - run["second"],
}
COLUMNS = (
    ("numba cache", lambda r: r.what),
    *((title, lambda r, title=title: fmt(r.extra[title], ".2f")) for title in FIGURES),
)


def run_child(cache_dir: str) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    out = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    results: dict[str, list[dict]] = {"no cache": [], "cache": []}
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache_dir:
            results["no cache"].append(run_child(cache_dir))
            results["cache"].append(run_child(cache_dir))
    print(f"KMeans(8).fit on 10k x 16 float32 in a fresh process, medians of {args.repeats}")
    rows = [
        Row(None, name, extra={title: median([get(run) for run in runs]) for title, get in FIGURES.items()})
        for name, runs in results.items()
    ]
    print(format_table(rows, COLUMNS, markdown=False, text=("numba cache",)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
