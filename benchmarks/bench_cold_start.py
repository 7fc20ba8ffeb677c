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

from _common import fmt, median

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
    header = ("numba cache", "import (s)", "first fit (s)", "second fit (s)", "JIT adds (s)")
    print(" | ".join(header))
    for name, runs in results.items():
        figures = [
            median([r["import"] for r in runs]),
            median([r["first"] for r in runs]),
            median([r["second"] for r in runs]),
            median([r["first"] - r["second"] for r in runs]),
        ]
        cells = [fmt(value, ".2f").rjust(len(title)) for value, title in zip(figures, header[1:])]
        print(" | ".join([name.ljust(len(header[0])), *cells]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
