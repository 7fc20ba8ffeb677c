"""Clustering embedding vectors, end to end: a Parquet lake of embeddings -> topics, with their typical items.

1. Generates a synthetic lake of embeddings (no model download): Parquet files of ``item_id`` and an
   ``embedding`` column of type ``fixed_size_list<float32>[384]``, as embedding pipelines write them,
   several row groups per file. Topics are planted: each vector is its topic's direction plus noise
   (cosine 0.5-0.8 to its topic, some topics tighter than others) at a random length, and topics are of
   unequal sizes. An item's planted topic is a function of its id, so the result can be scored
   without storing it.
2. Reads it with ``dask_kmeans.io.read(lake, columns=["embedding"], id_column="item_id")``: the list column
   is 384 float32 features, the ids come along; only the Parquet footers are read.
3. Fits spherical k-means, ``KMeans(metric="cosine")``: rows are scaled to unit length as they are read,
   so a vector's length does not matter, only its direction.
4. Labels every item with its cosine distance (``1 - cosine``) to its cluster's centre in one pass, and
   summarises the clusters chunk by chunk (each chunk reports a few numbers per cluster, no rows): each
   cluster's size, its mean distance, and its 5 most typical items (smallest distance to the centre: the
   top 5 of every chunk, then the top 5 of those), and how well the planted topics were recovered (purity and
   adjusted Rand index, from a clusters x topics count table).
5. Writes ``item_id``, ``label`` and ``distance`` of every item to Parquet.

Runs on the embedded default (dask's local threaded scheduler), or on a cluster with ``--scheduler``::

    python examples/embedding_clusters.py                        # 200k x 384, about 10 s on 2 cores
    python examples/embedding_clusters.py --rows 1000000 --dim 768 --topics 20 --out /tmp/clusters
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import time

import numpy as np

FILE_ROWS = 50_000  # rows per Parquet file
ROW_GROUP_ROWS = 10_000  # rows per row group
NOISE = (0.8, 1.6)  # range of the noise's length per topic (added to a unit direction): fuzzier topics
FIRST_ID = 10_000_000  # item ids are FIRST_ID, FIRST_ID + 1, ...
N_NEAREST = 5  # typical items shown per cluster


def topic_model(n_topics: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The planted topics: unit directions (n_topics, dim) and the length of each one's noise."""
    rng = np.random.default_rng([seed, 1_000_000])
    directions = rng.standard_normal((n_topics, dim))
    return directions / np.linalg.norm(directions, axis=1, keepdims=True), rng.uniform(*NOISE, n_topics)


def planted_topics(ids: np.ndarray, n_topics: int, seed: int) -> np.ndarray:
    """The planted topic of each item id: a hash of the id (splitmix64) against the topics' unequal shares,
    so that any chunk of ids can be scored without storing the topics."""
    shares = np.random.default_rng([seed, 2_000_000]).dirichlet(np.full(n_topics, 8.0))
    z = np.asarray(ids, dtype=np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    uniform = (z ^ (z >> np.uint64(31))) / np.float64(2**64)
    return np.minimum(np.searchsorted(np.cumsum(shares), uniform, side="right"), n_topics - 1)


def generate_file(index: int, start: int, n_rows: int, dim: int, n_topics: int, seed: int):
    """One file's items: ids and float32 embeddings (n_rows, dim).

    Deterministic per (seed, file index), so the lake does not depend on how it is written.
    """
    directions, noise_length = topic_model(n_topics, dim, seed)
    rng = np.random.default_rng([seed, index])
    ids = np.arange(start, start + n_rows, dtype=np.int64) + FIRST_ID
    topic = planted_topics(ids, n_topics, seed)
    noise = rng.standard_normal((n_rows, dim), dtype=np.float32)
    noise *= (noise_length[topic] / np.sqrt(dim)).astype(np.float32)[:, None]
    length = np.exp(rng.normal(0.0, 0.5, size=(n_rows, 1))).astype(np.float32)  # of all lengths
    return ids, (directions[topic].astype(np.float32) + noise) * length


def files(n_rows: int):
    """(file index, first row, rows) of each file."""
    return [(i, start, min(FILE_ROWS, n_rows - start)) for i, start in enumerate(range(0, n_rows, FILE_ROWS))]


def write_lake(path: str, n_rows: int, dim: int, n_topics: int, seed: int) -> str:
    """Write the lake as ``path/part-00000.parquet``, ... (replacing an earlier one)."""
    import dask
    import pyarrow as pa
    import pyarrow.parquet as pq

    if os.path.exists(path):
        shutil.rmtree(path)
    os.makedirs(path)

    def write(index, start, rows):
        ids, embedding = generate_file(index, start, rows, dim, n_topics, seed)
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(embedding.reshape(-1)), dim)
        table = pa.table({"item_id": ids, "embedding": vectors})
        pq.write_table(table, os.path.join(path, f"part-{index:05d}.parquet"), row_group_size=ROW_GROUP_ROWS)

    # Local threads even under a distributed client: the lake is a directory on this machine.
    dask.compute(*[dask.delayed(write)(*part) for part in files(n_rows)], scheduler="threads")
    return path


# ----------------------------------------------------------------------------------------------------
# Summaries computed chunk by chunk, then combined: a few numbers per cluster, never a value per row.


def chunk_summary(labels, distances, ids, topics, n_clusters: int, n_topics: int, top: int) -> dict:
    """One chunk's clusters x topics counts, summed distances, and the ``top`` nearest items per cluster."""
    counts = np.bincount(labels * n_topics + topics, minlength=n_clusters * n_topics)
    distance_sums = np.bincount(labels, weights=distances, minlength=n_clusters)
    nearest_d = np.full((n_clusters, top), np.inf)
    nearest_id = np.full((n_clusters, top), -1, dtype=np.int64)
    order = np.lexsort((distances, labels))  # by cluster, then by distance
    sorted_labels = labels[order]
    starts = np.searchsorted(sorted_labels, np.arange(n_clusters))
    ends = np.searchsorted(sorted_labels, np.arange(n_clusters), side="right")
    for c in range(n_clusters):
        rows = order[starts[c] : min(ends[c], starts[c] + top)]
        nearest_d[c, : len(rows)] = distances[rows]
        nearest_id[c, : len(rows)] = ids[rows]
    return {"counts": counts.reshape(n_clusters, n_topics), "distance_sums": distance_sums,
            "nearest_d": nearest_d, "nearest_id": nearest_id}


def combine_summaries(*parts: dict) -> dict:
    """Add up the counts and distances; keep the ``top`` nearest items of each cluster over all chunks."""
    nearest_d = np.concatenate([p["nearest_d"] for p in parts], axis=1)
    nearest_id = np.concatenate([p["nearest_id"] for p in parts], axis=1)
    top = parts[0]["nearest_d"].shape[1]
    keep = np.argsort(nearest_d, axis=1, kind="stable")[:, :top]
    return {"counts": sum(p["counts"] for p in parts),
            "distance_sums": sum(p["distance_sums"] for p in parts),
            "nearest_d": np.take_along_axis(nearest_d, keep, axis=1),
            "nearest_id": np.take_along_axis(nearest_id, keep, axis=1)}


def summarise(labels, distances, ids, topics, n_clusters: int, n_topics: int, top: int = N_NEAREST) -> dict:
    """The summary of lazy per-row arrays (chunked alike), one task per chunk and one to combine."""
    import dask

    parts = [dask.delayed(chunk_summary)(*blocks, n_clusters, n_topics, top)
             for blocks in zip(*(a.to_delayed() for a in (labels, distances, ids, topics)))]
    return dask.delayed(combine_summaries)(*parts).compute()


def adjusted_rand_index(counts: np.ndarray) -> float:
    """Adjusted Rand index from a contingency table (Hubert and Arabie, 1985)."""
    def pairs(n):
        n = np.asarray(n, dtype=np.float64)
        return (n * (n - 1) / 2).sum()

    n = counts.sum()
    index, rows, cols = pairs(counts), pairs(counts.sum(axis=1)), pairs(counts.sum(axis=0))
    expected = rows * cols / pairs(n)
    return float((index - expected) / ((rows + cols) / 2 - expected))


def recovery(counts: np.ndarray) -> dict:
    """How well clusters (rows of ``counts``) match planted topics (columns)."""
    n = counts.sum()
    majority = counts.argmax(axis=1)  # each cluster's main topic
    home = counts.argmax(axis=0)  # the cluster holding most of each topic's items
    # A topic is recovered when most of its items share a cluster whose items are mostly that topic.
    recovered = [t for t in range(counts.shape[1]) if majority[home[t]] == t
                 and counts[home[t], t] > 0.5 * counts[:, t].sum()]
    return {"purity": float(counts.max(axis=1).sum() / n), "ari": adjusted_rand_index(counts),
            "majority": majority, "recovered": recovered}


@contextlib.contextmanager
def scheduler(address: str | None):
    if address is None:
        yield None  # the embedded default: dask's local threaded scheduler
        return
    from distributed import Client

    with Client(address, timeout="10s") as client:
        yield client


def run(n_rows: int, dim: int, n_topics: int, out: str, *, seed: int = 0, quiet: bool = False) -> dict:
    """The whole job; returns what it produced (for tests)."""
    import dask

    from dask_kmeans import KMeans
    from dask_kmeans.io import read, write_labels

    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    os.makedirs(out, exist_ok=True)
    started = time.perf_counter()
    lake = write_lake(os.path.join(out, "items"), n_rows, dim, n_topics, seed)
    n_files = len(os.listdir(lake))
    say(f"Wrote {n_rows:,} items x {dim}-d float32 embeddings ({n_topics} planted topics) to {lake}/ "
        f"({n_files} Parquet file{'s' if n_files != 1 else ''}, row groups of {ROW_GROUP_ROWS:,} rows) "
        f"in {time.perf_counter() - started:.1f}s.")

    table = read(lake, columns=["embedding"], id_column="item_id")
    say(f"Read {table.X.shape[0]:,} rows x {table.X.shape[1]} features ({table.X.dtype}, "
        f"{table.feature_names[0]} ... {table.feature_names[-1]}) in {table.X.numblocks[0]} chunks.")

    t = time.perf_counter()
    model = KMeans(n_clusters=n_topics, metric="cosine", random_state=seed, compute_labels=False).fit(table)
    say(f"\nFitted {n_topics} clusters (spherical k-means) in {time.perf_counter() - t:.1f}s: "
        f"{model.n_iter_} Lloyd iteration{'s' if model.n_iter_ != 1 else ''}, "
        f"mean cosine distance to the centre {model.inertia_ / n_rows:.3f}.")

    # Labels and distances, lazily, in one pass; kept on the workers with the ids (20 bytes a row against
    # the embeddings' 4 * dim) for the summary and the output file, so the lake is read once more, not twice.
    t = time.perf_counter()
    labels, distances = model.predict_with_distance(table)
    labels, distances, ids = dask.persist(labels, distances, table.ids)
    topics = ids.map_blocks(planted_topics, n_topics, seed, dtype=np.int64)  # only to score the result
    summary = summarise(labels, distances, ids, topics, n_topics, n_topics)
    scores = recovery(summary["counts"])
    sizes = summary["counts"].sum(axis=1)
    say(f"Labelled every item and summarised the clusters in {time.perf_counter() - t:.1f}s (one pass).")

    say("\nClusters: mean dist is the mean of 1 - cosine to the centre, main topic the planted topic of")
    say(f"most of its items (and their share), nearest its {N_NEAREST} items closest to the centre.")
    say(f"{'cluster':>7} {'items':>9} {'share':>6} {'main topic':>15} {'mean dist':>9}  nearest item_ids")
    for c in range(n_topics):
        main = scores["majority"][c]
        main_share = summary["counts"][c, main] / max(sizes[c], 1)
        mean = summary["distance_sums"][c] / max(sizes[c], 1)
        nearest = " ".join(str(i) for i in summary["nearest_id"][c] if i >= 0)
        say(f"{c:>7} {sizes[c]:>9,} {sizes[c] / n_rows:>6.1%} {f'{main} ({main_share:.1%})':>15} "
            f"{mean:>9.3f}  {nearest}")
    say(f"\nPlanted topics recovered: {len(scores['recovered'])} of {n_topics}; "
        f"purity {scores['purity']:.4f}, adjusted Rand index {scores['ari']:.4f}.")

    labels_path = os.path.join(out, "labels.parquet")
    write_labels(labels_path, labels, distances=distances, ids=ids, id_name="item_id", overwrite=True)
    say(f"\nWrote item_id, label and distance of every item to {labels_path}/.")
    say(f"Total {time.perf_counter() - started:.1f}s.")
    return {"model": model, "lake": lake, "labels_path": labels_path, "summary": summary, **scores}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="items to generate (default 200k)")
    parser.add_argument("--dim", type=int, default=384, help="embedding dimension (default 384)")
    parser.add_argument("--topics", type=int, default=12, help="planted topics, and clusters (default 12)")
    parser.add_argument("--out", default="embedding-clusters",
                        help="output directory (default ./embedding-clusters)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scheduler", help="address of a Dask scheduler (default: the local threaded one)")
    args = parser.parse_args(argv)
    with scheduler(args.scheduler):
        run(args.rows, args.dim, args.topics, args.out, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
