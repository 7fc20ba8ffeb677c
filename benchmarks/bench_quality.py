"""Clustering quality of ``dask_kmeans.KMeans`` against scikit-learn's k-means++ with 1 and 10 restarts.

Run it from the repository root (issue #12, "near-global seeding")::

    python benchmarks/bench_quality.py --quick           # fewer points and 2 seeds: checks the script
    python benchmarks/bench_quality.py                   # the issue's figures (5 seeds)
    python benchmarks/bench_quality.py --variant os4='{"oversampling_factor": 4}' \\
        --variant r8='{"init_rounds": 8}' --families grid,d32

Methods, each fitted once per seed on the same float64 numpy array (in memory): ``dask_kmeans``,
``dask_kmeans.KMeans(k, random_state=seed)`` with its defaults (k-means|| seeding, ``n_init`` "auto" = 1,
``max_iter=300``, ``tol=1e-4``; the header prints them) on the local threaded scheduler; each
``--variant NAME=JSON`` (repeatable), ``dask_kmeans.KMeans(k, random_state=seed, **JSON)``, e.g. another
``oversampling_factor`` or ``init_rounds``; and ``sklearn n_init=R`` for R = 1 and 10,
``sklearn.cluster.KMeans(k, init="k-means++", n_init=R, algorithm="lloyd", max_iter=300, tol=1e-4,
random_state=seed)``. ``n_init=10`` is the reference of the goals.

Data (generated, no downloads; ``--families`` picks some): Gaussian clusters drawn with
``numpy.random.default_rng``, the true centres and the points from seeds made of the run's seed and the
family's (resp. the set's) name, so that the sets of one family share their centres. Except for the grid,
the centres are uniform in the unit cube (no two closer than half the typical spacing), then scaled so
that the nearest two are 1 apart: every spread ``σ`` below is a fraction of that nearest distance.

- overlap-2d: 15 equal clusters in 2-D, 5000 points, ``σ`` = 0.15, 0.25, 0.35, 0.45 (the same centres
  with growing overlap, like Fränti's S1-S4 sets); overlap-16d: the same in 16-D, ``σ`` = 0.15, 0.3, 0.45.
- grid: 100 clusters on a 10 x 10 grid of spacing 1, ``σ`` = 0.2, 100,000 points (like Birch1).
- unbalanced: 8 clusters in 2-D, ``σ`` = 0.12, 3 of 2000 points and 5 of 100 (20:1, like Unbalance).
- spread: 10 equal clusters in 2-D, 5000 points, ``σ`` from 0.05 to 0.35 (log-spaced, shuffled).
- d32: 50 equal clusters in 32-D, ``σ`` = 0.25, 50,000 points.

``--quick`` takes a fifth of the points (at least 1000) and 2 seeds. What is measured, per set and method,
over the seeds 0 .. ``--seeds``-1 (the seed is both the data's seed and ``random_state``):

inertia / sk10
    Sum of squared distances of the rows to the method's ``cluster_centers_`` (float64, computed by this
    script for every method), divided by scikit-learn ``n_init=10``'s on the same data: the mean of the
    ratios over the seeds, and the worst. The "true centres" row is the generating centres' inertia.
CI
    Centroid index (Fränti, Rezaei & Zhao 2014): map each found centre to its nearest true centre and count
    the true centres that get none; the same the other way round; CI is the larger count. 0 when every
    true cluster has exactly one centre. Mean and worst over the seeds.
passes
    dask_kmeans' passes over the data, mean over the seeds: the initialisation's (``init_rounds + 1`` for
    k-means||, ``k`` for k-means++, 0 for random or given centres) + ``n_iter_`` Lloyd passes + 1 final
    pass (labels and inertia). "-" for scikit-learn.
n_iter_
    Mean ``n_iter_`` (scikit-learn with ``n_init=10``: the kept run's).
time (s)
    Median wall time of ``fit``. On a small machine this is mostly fixed overhead; see ``bench_fit.py``.

Goals (issue #12), per set, for dask_kmeans and each variant: mean inertia ratio <= 1.0 (at the table's
four decimals: two fits that stop in the same optimum differ in the last digits), and mean CI at most
scikit-learn ``n_init=10``'s. The "goals" column says which a row misses; a line per family sums it up.

Threads: threadpoolctl limits every BLAS and OpenMP pool to the machine's cores for the whole script.
scikit-learn runs its OpenMP threads (as many as cores); dask_kmeans runs as many dask threads as cores
and limits BLAS to cores // dask threads inside each fit (one thread a task). The header lists the pools.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zlib
from dataclasses import dataclass, field

import numpy as np
from _common import Row, fmt, format_table, inertia_of, machine_info, median, progress, quiet_warnings

REFERENCE = "sklearn n_init=10"
SKLEARN = {"sklearn n_init=1": 1, REFERENCE: 10}
OURS = "dask_kmeans"
TRUTH = "true centres"
RATIO_DIGITS = 4  # the goal "ratio <= 1.0" is judged at this many decimals


# ----------------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class Spec:
    """One generated data set: ``k`` Gaussian clusters in ``d`` dimensions, ``n`` points in all."""

    family: str
    label: str
    k: int
    d: int
    n: int
    std: float | tuple[float, float]  # a fraction of the nearest centres' distance; (low, high): log-spaced
    weights: tuple[float, ...] | None = None  # relative cluster sizes; None: equal
    grid: bool = False  # centres on a sqrt(k) x sqrt(k) grid of spacing 1 (2-D)

    def make(self, seed: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
        """The points (shuffled) and the true centres for ``seed``, with ``scale`` times ``n`` points."""
        rng_centers = np.random.default_rng([seed, zlib.crc32(self.family.encode())])
        if self.grid:
            side = round(self.k**0.5)
            centers = np.stack(np.meshgrid(np.arange(side), np.arange(side)), axis=-1).reshape(-1, 2) * 1.0
        else:
            centers = spread_centers(rng_centers, self.k, self.d)
        stds = (rng_centers.permutation(np.geomspace(*self.std, self.k)) if isinstance(self.std, tuple)
                else np.full(self.k, self.std))
        n = max(1000, round(self.n * scale)) if scale != 1 else self.n
        w = np.ones(self.k) if self.weights is None else np.asarray(self.weights, dtype=float)
        counts = np.floor(n * w / w.sum()).astype(int)
        counts[: n - counts.sum()] += 1
        rng = np.random.default_rng([seed, zlib.crc32(self.label.encode())])
        X = np.concatenate([rng.normal(c, s, size=(m, self.d)) for c, s, m in zip(centers, stds, counts)])
        return X[rng.permutation(len(X))], centers


def spread_centers(rng: np.random.Generator, k: int, d: int) -> np.ndarray:
    """``k`` centres uniform in [0, 1]^d, none closer than half the typical spacing ``k^(-1/d)`` to another,
    scaled so that the nearest two are 1 apart."""
    min_sep, tries = 0.5 * k ** (-1.0 / d), 0
    centers: list[np.ndarray] = []
    while len(centers) < k:
        c = rng.uniform(size=d)
        if all(((c - x) ** 2).sum() >= min_sep**2 for x in centers):
            centers.append(c)
        elif (tries := tries + 1) % 10_000 == 0:
            min_sep *= 0.9  # crowded: never loop for ever
    out = np.array(centers)
    sq = ((out[:, None, :] - out[None, :, :]) ** 2).sum(axis=-1)
    np.fill_diagonal(sq, np.inf)
    return out / np.sqrt(sq.min())


FAMILIES: dict[str, list[Spec]] = {
    "overlap-2d": [Spec("overlap-2d", f"2-D k=15 σ={s:g}", 15, 2, 5000, s) for s in (0.15, 0.25, 0.35, 0.45)],
    "overlap-16d": [Spec("overlap-16d", f"16-D k=15 σ={s:g}", 15, 16, 5000, s) for s in (0.15, 0.3, 0.45)],
    "grid": [Spec("grid", "2-D 10x10 grid k=100 σ=0.2", 100, 2, 100_000, 0.2, grid=True)],
    "unbalanced": [Spec("unbalanced", "2-D k=8 sizes 20:1 σ=0.12", 8, 2, 6500, 0.12,
                        weights=(20.0,) * 3 + (1.0,) * 5)],
    "spread": [Spec("spread", "2-D k=10 σ=0.05..0.35", 10, 2, 5000, (0.05, 0.35))],
    "d32": [Spec("d32", "32-D k=50 σ=0.25", 50, 32, 50_000, 0.25)],
}


# ----------------------------------------------------------------------------------------------------
# Measures


def orphans(source: np.ndarray, target: np.ndarray) -> int:
    """Target centres that no source centre has as its nearest."""
    sq = ((source[:, None, :] - target[None, :, :]) ** 2).sum(axis=-1)
    return len(target) - len(np.unique(sq.argmin(axis=1)))


def centroid_index(found: np.ndarray, true: np.ndarray) -> int:
    """Fränti's centroid index: the larger count of orphan centres of the two mappings."""
    return max(orphans(found, true), orphans(true, found))


def init_passes(params: dict, k: int) -> int:
    """Passes over the data of dask_kmeans' initialisation with these parameters."""
    init = params["init"] if isinstance(params["init"], str) else "given centres"
    return {"k-means||": int(params["init_rounds"]) + 1, "k-means++": k}.get(init, 0)


@dataclass
class Measured:
    """One method on one set, over the seeds."""

    ratios: list[float] = field(default_factory=list)
    ci: list[int] = field(default_factory=list)
    passes: list[int] = field(default_factory=list)
    n_iter: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    inertia: list[float] = field(default_factory=list)  # until the reference's is known
    errors: list[str] = field(default_factory=list)


def fit(method: dict | int, k: int, seed: int, X: np.ndarray):
    """Fit ``method``, dask_kmeans' keyword arguments or scikit-learn's ``n_init``: the centres, ``n_iter_``,
    dask_kmeans' passes over the data (None for scikit-learn) and the wall time of ``fit``."""
    if isinstance(method, dict):
        from dask_kmeans import KMeans

        model = KMeans(k, random_state=seed, **method)
    else:
        from sklearn.cluster import KMeans

        model = KMeans(k, init="k-means++", n_init=method, algorithm="lloyd", max_iter=300, tol=1e-4,
                       random_state=seed)
    start = time.perf_counter()
    model.fit(X)
    elapsed = time.perf_counter() - start
    ours = isinstance(method, dict)
    passes = init_passes(model.get_params(), k) + int(model.n_iter_) + 1 if ours else None
    return model.cluster_centers_, int(model.n_iter_), passes, elapsed


def measure_set(spec: Spec, methods: dict[str, dict], args: argparse.Namespace) -> dict[str, Measured]:
    """Every method (and the true centres) on every seed's data of ``spec``."""
    results = {name: Measured() for name in [TRUTH, *methods, *SKLEARN]}
    for seed in range(args.seeds):
        X, true = spec.make(seed, args.scale)
        progress(f"{spec.label}, seed {seed}: {len(X):,} points")
        names = [*methods, *SKLEARN]
        shift = seed % len(names)  # rotate the order, so that drift does not fall on one method
        results[TRUTH].inertia.append(inertia_of(X, true))
        results[TRUTH].ci.append(0)
        for name in names[shift:] + names[:shift]:
            res = results[name]
            try:
                with quiet_warnings():
                    centers, n_iter, passes, elapsed = fit({**methods, **SKLEARN}[name], spec.k, seed, X)
            except Exception as exc:  # noqa: BLE001 - a variant's bad parameter: report it, go on
                if name == REFERENCE:
                    raise
                res.errors.append(f"{type(exc).__name__}: {exc}".splitlines()[0])
                res.inertia.append(np.nan)
                continue
            res.inertia.append(inertia_of(X, centers))
            res.ci.append(centroid_index(np.asarray(centers, dtype=np.float64), true))
            res.n_iter.append(n_iter)
            res.times.append(elapsed)
            if passes is not None:
                res.passes.append(passes)
    reference = results[REFERENCE].inertia
    for res in results.values():
        res.ratios = [a / b for a, b in zip(res.inertia, reference) if not np.isnan(a)]
    return results


# ----------------------------------------------------------------------------------------------------
# Reporting


def mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def misses(res: Measured, ref: Measured) -> list[str]:
    """The goals a method misses on one set."""
    if not res.ratios:
        return ["errors"]
    out = [] if round(mean(res.ratios), RATIO_DIGITS) <= 1.0 else ["inertia"]
    if mean(res.ci) > mean(ref.ci) + 1e-12:
        out.append("CI")
    return out + (["errors"] if res.errors else [])


def set_rows(spec: Spec, results: dict[str, Measured], ours: list[str]) -> list[Row]:
    rows = []
    for name, res in results.items():
        if name in ours:
            missed = misses(res, results[REFERENCE])
            goals = "met" if not missed else "NOT: " + ", ".join(missed)
        else:
            goals = "reference" if name == REFERENCE else ""
        note = "; ".join(sorted(set(res.errors)))
        if res.errors:
            note = f"{len(res.errors)} of {len(res.inertia)} fits failed: {note}"
        rows.append(Row(
            spec.label, name, time_s=median(res.times) if res.times else None, inertia=mean(res.ratios),
            note=note, extra={"max_ratio": max(res.ratios, default=None), "ci": mean(res.ci),
                              "ci_max": max(res.ci, default=None), "passes": mean(res.passes),
                              "n_iter": mean(res.n_iter), "goals": goals},
        ))
    return rows


def family_summary(family: str, specs: list[Spec], per_set: dict[str, dict[str, Measured]],
                   ours: list[str]) -> list[str]:
    lines = []
    for name in ours:
        failed = []
        for spec in specs:
            res, ref = per_set[spec.label][name], per_set[spec.label][REFERENCE]
            if missed := misses(res, ref):
                r, c, rc = mean(res.ratios), mean(res.ci), mean(ref.ci)
                failed.append(f"{spec.label}: {'/'.join(missed)} (ratio {fmt(r, '.4f')}, CI {fmt(c, '.2f')} "
                              f"vs {rc:.2f})")
        ratios = [r for s in specs if (r := mean(per_set[s.label][name].ratios)) is not None]
        span = f"{min(ratios):.4f}..{max(ratios):.4f}" if ratios else "-"
        verdict = "goals met" if not failed else "goals NOT met on " + "; ".join(failed)
        lines.append(f"{family}: {name}: {verdict} (mean inertia ratio over its sets {span})")
    return lines


COLUMNS = (
    ("data", lambda r: r.dataset),
    ("method", lambda r: r.what),
    ("inertia/sk10 mean", lambda r: fmt(r.inertia, f".{RATIO_DIGITS}f")),
    ("max", lambda r: fmt(r.extra["max_ratio"], f".{RATIO_DIGITS}f")),
    ("CI mean", lambda r: fmt(r.extra["ci"], ".2f")),
    ("CI max", lambda r: fmt(r.extra["ci_max"], "d")),
    ("goals", lambda r: r.extra["goals"]),
    ("passes", lambda r: fmt(r.extra["passes"], ".1f")),
    ("n_iter_", lambda r: fmt(r.extra["n_iter"], ".1f")),
    ("time (s)", lambda r: fmt(r.time_s, ".3f")),
    ("note", lambda r: r.note),
)


def threads_lines(cores: int) -> list[str]:
    from threadpoolctl import threadpool_info

    lines = [f"threads: threadpoolctl limits BLAS and OpenMP pools to {cores} (the machine's cores); "
             f"scikit-learn: {cores} OpenMP threads; dask_kmeans: {cores} dask threads (local threaded "
             "scheduler), and BLAS threads x dask threads <= cores inside its fits"]
    for pool in threadpool_info():
        lines.append(f"threadpool: {pool.get('user_api')} {pool.get('internal_api')} "
                     f"{pool.get('version') or ''} ({pool.get('num_threads')} threads) "
                     f"{os.path.basename(pool.get('filepath', ''))}")
    return lines


# ----------------------------------------------------------------------------------------------------
# Driver


def parse_variant(text: str) -> tuple[str, dict]:
    name, sep, kwargs = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected name=JSON, got {text!r}")
    try:
        params = json.loads(kwargs)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"{name}: not JSON: {exc}") from None
    if not isinstance(params, dict):
        raise argparse.ArgumentTypeError(f"{name}: expected a JSON object of keyword arguments")
    return name.strip(), params


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="a fifth of the points (at least 1000) and 2 seeds: a check run")
    add("--seeds", type=int, default=None, help="seeds 0..N-1, data and random_state (default 5; --quick 2)")
    add("--scale", type=float, default=None, help="fraction of each set's points (default 1; --quick 0.2)")
    add("--families", default=",".join(FAMILIES), help=f"comma-separated subset of {','.join(FAMILIES)}")
    add("--variant", action="append", type=parse_variant, default=[], metavar="NAME=JSON",
        help="an extra row of KMeans(k, random_state=seed, **JSON), e.g. os4='{\"oversampling_factor\": 4}'")
    add("--markdown", action="store_true", help="print the table in markdown")
    args = parser.parse_args(argv)
    args.seeds = args.seeds or (2 if args.quick else 5)
    args.scale = args.scale or (0.2 if args.quick else 1.0)
    args.families = [f.strip() for f in args.families.split(",") if f.strip()]
    if unknown := sorted(set(args.families) - set(FAMILIES)):
        parser.error(f"unknown families {unknown}; choose from {', '.join(FAMILIES)}")
    names = [name for name, _ in args.variant]
    if len(set(names)) != len(names) or set(names) & {OURS, TRUTH, *SKLEARN}:
        parser.error("variant names must be distinct, and not those of the other rows")
    if args.seeds < 1 or not 0 < args.scale <= 1:
        parser.error("--seeds must be at least 1 and --scale in (0, 1]")
    return args


def main(argv: list[str] | None = None) -> int:
    from threadpoolctl import threadpool_limits

    args = parse_args(argv)
    methods = {OURS: {}, **dict(args.variant)}
    cores = os.cpu_count() or 1
    with threadpool_limits(limits=cores):
        from dask_kmeans import KMeans

        progress("warm-up (imports, JIT compilation, thread pools)")
        X = np.random.default_rng(0).standard_normal((2000, 4))
        with quiet_warnings():
            KMeans(3, random_state=0).fit(X)
            fit(1, 3, 0, X)
        for line in machine_info(["sklearn", "threadpoolctl"], dask_ml=False) + threads_lines(cores):
            print(line)
        defaults = KMeans().get_params()
        shown = ("init", "n_init", "init_rounds", "oversampling_factor", "max_iter", "tol")
        print(f"{OURS}: KMeans(k, random_state=seed): " + ", ".join(f"{p}={defaults[p]!r}" for p in shown))
        for name, kwargs in args.variant:
            print(f"{name}: KMeans(k, random_state=seed, **{kwargs!r})")
        print('sklearn: KMeans(k, init="k-means++", n_init=1 or 10, algorithm="lloyd", max_iter=300, '
              "tol=1e-4, random_state=seed)")
        print(f"seeds 0..{args.seeds - 1} (data and random_state); {args.scale:g} x each set's points"
              + (" (--quick)" if args.quick else ""))
        print(flush=True)

        rows, summary = [], []  # the table's rows, the lines per family
        for family in args.families:
            per_set = {spec.label: measure_set(spec, methods, args) for spec in FAMILIES[family]}
            for spec in FAMILIES[family]:
                rows += set_rows(spec, per_set[spec.label], list(methods))
            summary += family_summary(family, FAMILIES[family], per_set, list(methods))

    print(format_table(rows, COLUMNS, args.markdown, text=("data", "method", "goals", "note")))
    print()
    print(f"goals per set: mean inertia ratio <= 1.0 (at {RATIO_DIGITS} decimals) against {REFERENCE}, "
          f"and mean CI at most {REFERENCE}'s")
    for line in summary:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
