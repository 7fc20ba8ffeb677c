"""Segments in words, robust to heavy tails; the warning for unscaled heavy-tailed spend; the text table.

Every lake is generated here (fixed seeds, Parquet partitions in a temporary directory) with planted
segments: low spenders everywhere, all-round moderate, all-round high, and specialists in 1, 2 and 3
categories; heavy-tailed (log-normal, and a few customers who spend 50 times as much in one category) and
light-tailed (gamma of small variance, normal clipped at 0).
"""

from __future__ import annotations

import re
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

from dask_kmeans import KMeans, StandardScaler, describe_segment, profile
from dask_kmeans.io import read
from dask_kmeans.preprocessing import HeavyTailWarning, heavy_tail_message
from dask_kmeans.segments import format_profile

CATEGORIES = ["books", "music", "games", "travel", "garden", "fashion"]
BASE = np.array([120.0, 80.0, 200.0, 900.0, 150.0, 300.0])  # yearly dollars of an all-round customer
# Planted segment: (share of customers, multiple of BASE in each category).
PLANTED = {
    "low": (0.30, [0.15] * 6),
    "moderate": (0.28, [1] * 6),
    "high": (0.08, [8] * 6),
    "books": (0.12, [10, 1, 1, 1, 1, 1]),
    "music+games": (0.11, [1, 10, 10, 1, 1, 1]),
    "travel+garden+fashion": (0.11, [1, 1, 1, 10, 10, 10]),
}
EXPECTED = {
    "low": "low spenders",
    "moderate": "moderate spenders across all categories",
    "high": "high spenders across all categories",
    "books": {"books"},
    "music+games": {"music", "games"},
    "travel+garden+fashion": {"travel", "garden", "fashion"},
}


def _spend(kind: str, levels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if kind == "lognormal":  # median = level, heavy right tail, and a few customers 50 times as high
        spend = levels * np.exp(0.8 * rng.standard_normal(levels.shape))
        whales = rng.choice(len(spend), size=len(spend) // 200, replace=False)
        spend[whales, rng.integers(0, spend.shape[1], size=len(whales))] *= 50
        return spend
    if kind == "gamma":  # mean = level, coefficient of variation 0.2
        return rng.gamma(25.0, levels / 25.0)
    if kind == "normal":  # mean = level, sd a quarter of it, clipped at 0
        return np.clip(rng.normal(levels, 0.25 * levels), 0.0, None)
    raise ValueError(kind)


def make_lake(path, kind: str, seed: int, n: int = 24_000, partition_rows: int = 6_000,
              planted: dict = PLANTED):
    """Write ``path/part-*.parquet`` (customer_id + CATEGORIES); return the planted segment of each row."""
    rng = np.random.default_rng(seed)
    shares = np.array([share for share, _ in planted.values()])
    multiples = np.array([m for _, m in planted.values()], dtype=np.float64)
    segment = rng.choice(len(shares), size=n, p=shares / shares.sum())
    spend = _spend(kind, BASE * multiples[segment], rng)
    frame = pd.DataFrame(np.round(spend, 2), columns=CATEGORIES)
    frame.insert(0, "customer_id", np.arange(n, dtype=np.int64) + 1000)
    path.mkdir(parents=True)
    for i, start in enumerate(range(0, n, partition_rows)):
        frame.iloc[start : start + partition_rows].to_parquet(path / f"part-{i:03d}.parquet", index=False)
    return segment


def _named(description: str) -> set[str]:
    """The categories of "high spenders on a, b and c" (checking the words: commas, one "and", no "more")."""
    prefix = "high spenders on "
    assert description.startswith(prefix) and "more" not in description, description
    rest = description[len(prefix):]
    if " and " not in rest:
        return {rest}
    head, last = rest.rsplit(" and ", 1)
    assert " and " not in head and "," not in last, description
    return {*head.split(", "), last}


def _planted_fit(path):
    """KMeans on log1p-standardised spend from the planted centres (the test is about the words)."""
    table = read(path, id_column="customer_id")
    multiples = np.array([m for _, m in PLANTED.values()], dtype=np.float64)
    scaler = StandardScaler(log1p=True).fit(table)
    init = scaler.transform(pd.DataFrame(BASE * multiples, columns=CATEGORIES))
    model = KMeans(len(PLANTED), init=init, preprocessing=StandardScaler(log1p=True)).fit(table)
    return table, model


def _matched(planted: np.ndarray, labels: np.ndarray) -> dict[str, int]:
    names = list(PLANTED)
    return {names[s]: int(np.bincount(labels[planted == s]).argmax()) for s in range(len(names))}


@pytest.mark.parametrize(("kind", "seed"), [("lognormal", 1), ("lognormal", 2), ("gamma", 3), ("normal", 4)])
def test_planted_segments_are_described_in_words(tmp_path, kind, seed):
    path = tmp_path / "customers"
    planted = make_lake(path, kind, seed)
    table, model = _planted_fit(path)
    matched = _matched(planted, model.labels_)
    assert len(set(matched.values())) == len(PLANTED), matched  # every planted segment found
    with warnings.catch_warnings():
        warnings.simplefilter("error", HeavyTailWarning)  # scaled: no warning
        prof = profile(model, table)
    described = {name: prof.loc[segment, "description"] for name, segment in matched.items()}
    for name, expected in EXPECTED.items():
        if isinstance(expected, str):
            assert described[name] == expected, described
        else:
            assert _named(described[name]) == expected, described
    # Highest first, in words.
    relative = prof.loc[matched["travel+garden+fashion"], [f"relative_{c}" for c in CATEGORIES]]
    order = [c[len("relative_"):] for c in relative.sort_values(ascending=False).index[:3]]
    assert described["travel+garden+fashion"] == f"high spenders on {order[0]}, {order[1]} and {order[2]}"
    # Typical values: the log-mean of each segment, over that of every row.
    frame = pd.read_parquet(path)[CATEGORIES]
    logs = np.log1p(frame)
    for segment in (matched["low"], matched["books"]):
        rows = model.labels_ == segment
        np.testing.assert_allclose(prof.loc[segment, "typical_books"], np.expm1(logs["books"][rows].mean()),
                                   rtol=1e-10)
        np.testing.assert_allclose(prof.loc[segment, "relative_books"],
                                   np.expm1(logs["books"][rows].mean()) / np.expm1(logs["books"].mean()),
                                   rtol=1e-10)
    assert prof.attrs["overall_typical"]["books"] == pytest.approx(np.expm1(logs["books"].mean()), rel=1e-10)


def test_the_old_rule_fails_where_the_new_one_holds(tmp_path):
    """On the heavy-tailed lake, means against the overall mean mislabel the segments (the issue)."""
    path = tmp_path / "customers"
    planted = make_lake(path, "lognormal", 1)
    table, model = _planted_fit(path)
    prof = profile(model, table)
    matched = _matched(planted, model.labels_)
    old = {name: describe_segment(prof.loc[s, [f"ratio_{c}" for c in CATEGORIES]], CATEGORIES, high=1.5,
                                  low=0.6) for name, s in matched.items()}
    new = {name: prof.loc[s, "description"] for name, s in matched.items()}
    assert old != new
    assert new["low"] == "low spenders" and new["moderate"] == "moderate spenders across all categories"


def test_describe_segment_words():
    names = ["books", "music", "games", "travel"]
    assert describe_segment([0.2, 0.3, 0.1, 0.4], names) == "low spenders"
    # Below the typical customer everywhere and low overall: low, though near typical in one category.
    assert describe_segment([0.2, 0.3, 0.1, 0.9], names) == "low spenders"
    assert describe_segment([0.8, 0.3, 1.2, 0.9], names) == "moderate spenders, little on music"
    assert describe_segment([0.8, 0.3, 1.2, 0.2], names) == "moderate spenders, little on travel and music"
    assert describe_segment([1.0, 1.4, 0.7, 2.5], names) == "moderate spenders across all categories"
    assert describe_segment([4, 5, 3, 9], names) == "high spenders across all categories"
    assert describe_segment([6, 1, 1, 1], names) == "high spenders on books"
    assert describe_segment([6, 8, 1, 1], names) == "high spenders on music and books"
    assert describe_segment([6, 8, 4, 1], names) == "high spenders on music, books and games"
    assert describe_segment([6, 8, 4, 0.1], names) == "high spenders on music, books and games"
    assert describe_segment([1, np.nan, 1, 1], names) == "moderate spenders across all categories"
    assert describe_segment([0, 0, 0, 0], names) == "low spenders"
    assert describe_segment([0.2, 0.1], ["a", "b"], noun="users") == "low users"


# ----------------------------------------------------------------------------------------------------
# The warning for unscaled heavy-tailed spend


def _light(n=20_000, seed=5):
    """Light-tailed spend without scaling trouble: gamma, three segments within a factor of 3."""
    rng = np.random.default_rng(seed)
    levels = BASE[:4] * rng.choice([0.6, 1.0, 1.6], size=(n, 1))
    return rng.gamma(25.0, levels / 25.0)


def _heavy(n=20_000, seed=6):
    rng = np.random.default_rng(seed)
    return np.exp(rng.normal(np.log(BASE[:4]), 1.0, size=(n, 4)))


def test_heavy_tail_message():
    names = CATEGORIES[:4]
    message = heavy_tail_message(_heavy(), names)
    assert message is not None and "\n" not in message
    assert "travel" in message and "% of the variance" in message
    assert "--scale log1p" in message and "preprocessing=StandardScaler(log1p=True)" in message
    assert heavy_tail_message(_light(), names) is None
    assert heavy_tail_message(np.log(_heavy()) - 5, names) is None  # not amounts: negative values
    assert heavy_tail_message(np.zeros((10, 2))) is None


def test_profile_warns_once_for_a_model_fitted_on_unscaled_heavy_tailed_spend():
    X = _heavy()
    model = KMeans(3, random_state=0).fit(X)
    with pytest.warns(HeavyTailWarning) as record:
        profile(model, X)
    assert len(record) == 1
    message = str(record[0].message)
    assert "\n" not in message and "--scale log1p" in message and "StandardScaler(log1p=True)" in message
    assert record[0].filename == __file__  # points at the caller
    with warnings.catch_warnings():
        warnings.simplefilter("error", HeavyTailWarning)
        profile(KMeans(3, random_state=0, preprocessing=StandardScaler(log1p=True)).fit(X), X)  # scaled
        Y = _light()
        profile(KMeans(3, random_state=0).fit(Y), Y)  # light tails: nothing to say
        profile(model, X, median_sample_size=0)  # no sample, no check


def run_cli(*args) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "dask_kmeans", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def _write(path, X):
    path.mkdir()
    pd.DataFrame(X, columns=CATEGORIES[: X.shape[1]]).to_parquet(path / "part-0.parquet", index=False)


def test_cli_fit_warns_once_for_unscaled_heavy_tailed_spend(tmp_path):
    _write(tmp_path / "heavy", _heavy(6000))
    _write(tmp_path / "light", _light(6000))
    warned = run_cli("fit", tmp_path / "heavy", "-k", 3, "--model-out", tmp_path / "m1.json", "--quiet")
    assert warned.returncode == 0, warned.stderr
    lines = [line for line in warned.stderr.splitlines() if "warning" in line]
    assert len(lines) == 1 and "--scale log1p" in lines[0], warned.stderr
    assert lines[0].startswith("dask-kmeans: warning: the data are unscaled")
    for args in (["heavy", "--scale", "log1p"], ["light"]):
        quiet = run_cli("fit", tmp_path / args[0], "-k", 3, "--model-out", tmp_path / f"{args[0]}.json",
                        *args[1:], "--quiet")
        assert quiet.returncode == 0 and "warning" not in quiet.stderr, quiet.stderr


# ----------------------------------------------------------------------------------------------------
# The text table


def test_format_profile_columns_fit_the_numbers():
    long_names = [f"yearly_spend_on_{c}" for c in CATEGORIES]
    rng = np.random.default_rng(7)
    X = np.exp(rng.normal(np.log(BASE), 0.5, size=(3000, 6))) * rng.choice([0.2, 1, 5], size=(3000, 1))
    frame = pd.DataFrame(X, columns=long_names)
    model = KMeans(3, random_state=0, preprocessing=StandardScaler(log1p=True)).fit(frame)
    prof = profile(model, frame)
    text = format_profile(prof)
    lines = text.splitlines()
    ordered = prof.sort_values("size", ascending=False)
    assert lines[0].split() == ["segment", *map(str, ordered.index)]
    assert lines[1].split()[1:] == [f"{s:,}" for s in ordered["size"]]
    # Every feature name once, down the left; every segment column as wide as its widest number.
    table_lines = lines[: lines.index("description")]
    label_width = max(len(f"  {name}") for name in long_names)
    widest_number = max(len(cell) for line in table_lines[1:] for cell in line[label_width:].split())
    assert max(len(line) for line in table_lines) <= label_width + 3 * (2 + max(widest_number, 1))
    for name in long_names:
        row = next(line for line in lines if line.startswith(f"  {name} "))
        cells = row.split()[1:]
        assert cells == [f"{v:,.0f}" if v >= 99.95 else f"{v:.3g}" for v in ordered[f"mean_{name}"]]
    described = lines[lines.index("description") + 1:]
    assert [line.split(None, 1) for line in described] == [
        [str(s), d] for s, d in zip(ordered.index, ordered["description"])
    ]
    top = format_profile(prof, top=2).splitlines()
    assert top[0].split() == ["segment", *map(str, ordered.index[:2])] and len(top) == len(lines) - 1


def test_cli_profile_prints_a_readable_table(tmp_path):
    path = tmp_path / "customers"
    make_lake(path, "lognormal", 8, n=6000, partition_rows=2000)
    fit = run_cli("fit", path, "-k", 6, "--scale", "log1p", "--id-column", "customer_id", "--model-out",
                  tmp_path / "model.json", "--seed", 0, "--quiet")
    assert fit.returncode == 0, fit.stderr
    prof = run_cli("profile", tmp_path / "model.json", path, "--id-column", "customer_id", "--quiet")
    assert prof.returncode == 0 and "warning" not in prof.stderr, prof.stderr
    lines = prof.stdout.splitlines()
    assert lines[0].split()[0] == "segment" and len(lines[0].split()) == 7
    assert "low spenders" in prof.stdout
    assert max(len(line) for line in lines[: lines.index("description")]) < 80
    assert all(re.fullmatch(r"  \d  \S.*", line) for line in lines[lines.index("description") + 1:])
