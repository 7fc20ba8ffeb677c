"""Customer segmentation demo: cluster customers by their spending per product category.

Generates a synthetic customer base (heavy-tailed spending in six categories, with planted segments of
unequal sizes) as a chunked dask array, clusters log-spending with dask-kmeans on the embedded default
scheduler (no cluster needed), and prints the segments it found in dollars.

    python examples/customer_segmentation.py --customers 1000000 --segments 4
"""

from __future__ import annotations

import argparse
import time

import dask.array as da
import numpy as np

from dask_kmeans import KMeans

CATEGORIES = ["electronics", "clothing", "home", "grocery", "beauty", "sports"]

# Planted segments: (share of customers, median yearly spend per category in dollars).
SEGMENTS = {
    "electronics enthusiasts": (0.10, [2400, 150, 200, 900, 60, 120]),
    "all-round moderate spenders": (0.30, [500, 450, 400, 1500, 250, 200]),
    "fashion and beauty": (0.15, [150, 1600, 250, 1100, 900, 100]),
    "low spenders": (0.45, [60, 80, 50, 500, 30, 20]),
}


def make_customers(n_customers: int, seed: int, chunk_rows: int = 250_000) -> da.Array:
    """Yearly spend per category, one row per customer, generated chunk by chunk (never all in memory)."""
    shares = np.array([share for share, _ in SEGMENTS.values()])
    medians = np.log(np.array([spend for _, spend in SEGMENTS.values()], dtype=np.float64))

    def chunk(block_id, n_rows):
        rng = np.random.default_rng([seed, block_id])
        segment = rng.choice(len(shares), size=n_rows, p=shares)
        # Log-normal spend around each segment's median: heavy right tails, as real spending has.
        return np.exp(medians[segment] + 0.35 * rng.standard_normal((n_rows, len(CATEGORIES))))

    sizes = [min(chunk_rows, n_customers - start) for start in range(0, n_customers, chunk_rows)]
    blocks = [da.from_delayed(_delayed(chunk)(i, n), (n, len(CATEGORIES)), dtype=np.float64)
              for i, n in enumerate(sizes)]
    return da.concatenate(blocks, axis=0)


def _delayed(func):
    from dask import delayed

    return delayed(func, pure=True)


def describe(center_dollars: np.ndarray, overall: np.ndarray) -> str:
    """A short label from each category's ratio to the typical customer overall."""
    ratio = center_dollars / overall
    if ratio.max() < 0.7:
        return "low spenders"
    if ratio.max() < 2.5 * ratio.min():
        return "moderate spenders across all categories"
    high = [j for j in np.argsort(ratio)[::-1] if ratio[j] >= 2 and ratio[j] >= 0.5 * ratio.max()]
    if high:
        return "high spenders on " + " and ".join(CATEGORIES[j] for j in high[:2])
    return "mixed spenders"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--segments", type=int, default=len(SEGMENTS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    spend = make_customers(args.customers, args.seed).persist()
    features = da.log1p(spend)  # spending is heavy-tailed: cluster its logarithm
    started = time.perf_counter()
    model = KMeans(args.segments, random_state=args.seed).fit(features)
    elapsed = time.perf_counter() - started

    sizes = np.bincount(model.labels_, minlength=args.segments)
    typical = np.expm1(model.cluster_centers_)  # back to dollars: a typical customer of each segment
    overall = np.expm1(features.mean(axis=0).compute())
    print(f"Clustered {args.customers:,} customers x {len(CATEGORIES)} categories into {args.segments} "
          f"segments in {elapsed:.1f}s ({model.n_iter_} iterations, inertia {model.inertia_:.4g}).\n")
    header = f"{'segment':>7} {'customers':>10} {'share':>6}  " + " ".join(f"{c:>11}" for c in CATEGORIES)
    print(header + "  description")
    for j in np.argsort(-sizes):
        cells = " ".join(f"{v:>11,.0f}" for v in typical[j])
        share = sizes[j] / sizes.sum()
        print(f"{j:>7} {sizes[j]:>10,} {share:>6.1%}  {cells}  {describe(typical[j], overall)}")
    print("\nTypical yearly spend in dollars per category (centres mapped back from log space).")


if __name__ == "__main__":
    main()
