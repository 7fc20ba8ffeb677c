"""The embedding demo (``examples/embedding_clusters.py``) end to end, at a small size.

Checks what it promises: the planted topics are recovered, the labels file has every item once with its id,
label and cosine distance, and the report has one line per cluster whose nearest items really are the
cluster's items closest to its centre.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from sklearn.metrics import adjusted_rand_score

ROOT = Path(__file__).resolve().parents[1]


def _load_demo():
    path = ROOT / "examples" / "embedding_clusters.py"
    spec = importlib.util.spec_from_file_location("embedding_clusters", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo = _load_demo()

N_ROWS, DIM, TOPICS = 20_000, 32, 6
CLUSTER_LINE = re.compile(r"^\s+(\d+)\s+([\d,]+)\s+[\d.]+%\s+(\d+) \(([\d.]+)%\)\s+([\d.]+)\s+((?:\d+ ?)+)$")


def test_demo_recovers_the_planted_topics_and_writes_labels_with_ids(tmp_path, monkeypatch, capsys):
    # Several files of several row groups, as at the default size.
    monkeypatch.setattr(demo, "FILE_ROWS", 7_000)
    monkeypatch.setattr(demo, "ROW_GROUP_ROWS", 2_000)
    assert demo.main(["--rows", str(N_ROWS), "--dim", str(DIM), "--topics", str(TOPICS),
                      "--out", str(tmp_path)]) == 0
    report = capsys.readouterr().out
    assert "(3 Parquet files, row groups of 2,000 rows)" in report
    assert f"Planted topics recovered: {TOPICS} of {TOPICS}" in report

    # The lake: an id column and a fixed-size list column of float32.
    schema = pq.read_schema(next((tmp_path / "items").glob("*.parquet")))
    assert str(schema.field("embedding").type) == f"fixed_size_list<element: float>[{DIM}]"
    assert schema.names == ["item_id", "embedding"]

    # One row per item, with its id, label and distance.
    labels = pd.read_parquet(tmp_path / "labels.parquet")
    assert list(labels.columns) == ["item_id", "label", "distance"] and len(labels) == N_ROWS
    np.testing.assert_array_equal(np.sort(labels["item_id"]), demo.FIRST_ID + np.arange(N_ROWS))
    assert set(labels["label"]) == set(range(TOPICS))
    assert labels["distance"].between(0, 2).all()

    # The planted topics are recovered (scored here with scikit-learn, independently of the demo's numpy).
    truth = demo.planted_topics(labels["item_id"].to_numpy(), TOPICS, 0)
    counts = pd.crosstab(labels["label"], truth).to_numpy()
    assert counts.max(axis=1).sum() / N_ROWS >= 0.95
    assert adjusted_rand_score(truth, labels["label"]) >= 0.95
    assert len(set(counts.argmax(axis=1))) == TOPICS  # every topic has a cluster of its own

    # The distances are 1 - cosine to the centre: the (normalised) mean direction of the cluster's items.
    lake = pd.read_parquet(tmp_path / "items").merge(labels, on="item_id")
    X = np.stack(lake["embedding"].to_numpy()).astype(np.float64)
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    centres = np.stack([U[lake["label"] == c].sum(axis=0) for c in range(TOPICS)])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    cosine = (U * centres[lake["label"]]).sum(axis=1)
    np.testing.assert_allclose(lake["distance"], 1 - cosine, atol=2e-3)

    # One report line per cluster: its size and its 5 nearest items.
    lines = [CLUSTER_LINE.match(line) for line in report.splitlines()]
    lines = [m for m in lines if m]
    assert [int(m[1]) for m in lines] == list(range(TOPICS))
    sizes = labels["label"].value_counts()
    for m in lines:
        cluster = int(m[1])
        assert int(m[2].replace(",", "")) == sizes[cluster]
        members = labels[labels["label"] == cluster]
        assert float(m[5]) == round(members["distance"].mean(), 3)
        nearest = [int(i) for i in m[6].split()]
        assert nearest == members.nsmallest(demo.N_NEAREST, "distance")["item_id"].tolist()
