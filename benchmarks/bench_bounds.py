"""Bounded passes (``algorithm="hamerly"``, ``"yinyang"``, and "auto") against plain Lloyd, in memory.

Issue #13's claims: on clustered data in memory, from the same initial centres, the default fit converges
in at most 0.5x the time of ``algorithm="lloyd"``, iterations after the fifth take at most 0.3x a Lloyd
iteration, and on data with no structure the default costs at most 1.05x Lloyd::

    python benchmarks/bench_bounds.py                      # 5M rows, the three data sets, 3 repeats
    python benchmarks/bench_bounds.py --rows 500000 --repeats 1   # a quick check

Data sets (numpy arrays, seed ``--seed``; ``fit`` chunks them with the package's chunk sizes and keeps
them in memory; the local threaded scheduler with one task per core, BLAS limited to one thread a task):

clustered
    ``--rows`` x 16 float32, 32 anisotropic Gaussian clusters: centres uniform in [-10, 10]^16, each
    cluster's rows ``N(0, I) @ A_j`` with ``A_j`` a random 16 x 16 matrix of N(0, 0.5^2) entries.
overlap
    ``--rows`` x 32 float64, 64 isotropic clusters (centres uniform in [-10, 10]^32) with standard
    deviations uniform in [3, 5]: moderate overlap.
noise
    ``--rows`` x 16 float32 standard normal rows, k=32: no structure at all.

Every algorithm starts from the same ``k`` rows drawn with the seed (``init=C0``) with the default
``tol=1e-4`` and ``max_iter=--max-iter``. Per data set and algorithm, in ``--repeats`` rounds (the order of
the algorithms rotated each round; medians shown):

to converge (s)
    ``history_[-1]["elapsed"]``: the iterations only (the final labelling pass, the same for all, is left
    out).
late iter (ms)
    The median time of the iterations after the fifth (differences of ``history_[i]["elapsed"]``).
computed %
    The mean share of rows whose distances were computed, over the iterations after the fifth
    (``history_[i]["rows_computed"]``).
state B/row
    The per-row state the bounded passes keep on the workers (label, float32 bounds).
same
    Whether the labels and ``n_iter_`` equal Lloyd's, and the largest difference of a centre
    coordinate from Lloyd's relative to the largest coordinate ("bitwise" when the centres are equal
    bit for bit).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import Row, fmt, format_table, machine_info, median, pick_initial_centers, progress  # noqa: E402

from dask_kmeans import KMeans  # noqa: E402
from dask_kmeans._bounds import choose_algorithm, state_bytes_per_row  # noqa: E402

ALGORITHMS = ("lloyd", "hamerly", "yinyang")


def make_data(name: str, n: int, seed: int) -> tuple[np.ndarray, int]:
    rng = np.random.default_rng(seed)
    if name == "clustered":
        k, d = 32, 16
        centers = rng.uniform(-10, 10, (k, d))
        shapes = rng.normal(0, 0.5, (k, d, d))
        labels = rng.integers(k, size=n)
        X = np.empty((n, d), dtype=np.float32)
        for j in range(k):
            rows = np.flatnonzero(labels == j)
            X[rows] = rng.standard_normal((len(rows), d)) @ shapes[j] + centers[j]
        return X, k
    if name == "overlap":
        k, d = 64, 32
        centers, stds = rng.uniform(-10, 10, (k, d)), rng.uniform(3, 5, k)
        labels = rng.integers(k, size=n)
        X = rng.standard_normal((n, d))
        X *= stds[labels, None]
        X += centers[labels]
        return X, k
    return rng.standard_normal((n, 16), dtype=np.float32), 32


def run(X, k, C0, algorithm, max_iter):
    model = KMeans(k, init=C0, n_init=1, algorithm=algorithm, max_iter=max_iter).fit(X)
    history = model.history_
    elapsed = [h["elapsed"] for h in history]
    late = np.diff(elapsed)[4:]
    computed = [h["rows_computed"] / len(X) for h in history[5:]]
    return model, {
        "total": elapsed[-1],
        "late": float(np.median(late)) if len(late) else None,
        "computed": float(np.mean(computed)) if computed else None,
    }


def percent_or_ms(value, scale) -> str:
    return fmt(None if value is None else value * scale, ".1f")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-iter", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default="clustered,overlap,noise")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    for line in machine_info(["dask_kmeans"], dask_ml=False):
        print(line)
    print(f"{args.rows:,} rows; tol=1e-4, max_iter={args.max_iter}; repeats={args.repeats} (medians)\n",
          flush=True)
    rows = []
    for name in args.data.split(","):
        progress(f"making {name} ...")
        X, k = make_data(name, args.rows, args.seed)
        C0 = pick_initial_centers(X, k, seed=args.seed + 1).astype(np.float64)
        auto, _ = choose_algorithm("auto", k, X.shape[1], len(X), 1, data_bytes=X.nbytes)
        for algorithm in ALGORITHMS:  # warm-up: compilation (or loading it), thread pools
            run(X[:50_000], k, C0, algorithm, 5)
        figures = {a: [] for a in ALGORITHMS}
        models = {}
        for r in range(args.repeats):
            for algorithm in ALGORITHMS[r % 3:] + ALGORITHMS[: r % 3]:
                progress(f"{name}: round {r + 1}, {algorithm} ...")
                models[algorithm], result = run(X, k, C0, algorithm, args.max_iter)
                figures[algorithm].append(result)
        lloyd = models["lloyd"]
        base = {key: median([f[key] for f in figures["lloyd"]]) for key in ("total", "late")}
        for algorithm in ALGORITHMS:
            model = models[algorithm]
            total = median([f["total"] for f in figures[algorithm]])
            late = median([f["late"] for f in figures[algorithm]]) if figures[algorithm][0]["late"] else None
            computed = figures[algorithm][0]["computed"]
            agree = np.array_equal(model.labels_, lloyd.labels_) and model.n_iter_ == lloyd.n_iter_
            same = "yes" if agree else "NO"
            gap = np.abs(model.cluster_centers_ - lloyd.cluster_centers_).max()
            same += ", bitwise" if gap == 0 else f", {gap / np.abs(lloyd.cluster_centers_).max():.0e}"
            rows.append(Row(
                dataset=name, what=algorithm + (" (auto)" if algorithm == auto else ""), time_s=total,
                extra={"d": f"{X.shape[1]} {X.dtype}", "k": k, "n_iter": model.n_iter_, "late": late,
                       "computed": computed, "state": state_bytes_per_row(k, X.shape[1], algorithm),
                       "same": same},
                ratios={"total": total / base["total"], "late": late / base["late"] if late else None},
            ))
    columns = [
        ("data", lambda r: str(r.dataset)),
        ("d, dtype", lambda r: r.extra["d"]),
        ("k", lambda r: str(r.extra["k"])),
        ("algorithm", lambda r: r.what),
        ("n_iter", lambda r: str(r.extra["n_iter"])),
        ("to converge (s)", lambda r: fmt(r.time_s, ".2f")),
        ("x lloyd", lambda r: fmt(r.ratios["total"], ".2f")),
        ("late iter (ms)", lambda r: percent_or_ms(r.extra["late"], 1e3)),
        ("x lloyd ", lambda r: fmt(r.ratios["late"], ".2f")),
        ("computed %", lambda r: percent_or_ms(r.extra["computed"], 100)),
        ("state B/row", lambda r: fmt(r.extra["state"], ".0f")),
        ("same", lambda r: r.extra["same"]),
    ]
    print(format_table(rows, columns, args.markdown, text={"data", "d, dtype", "algorithm", "same"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
