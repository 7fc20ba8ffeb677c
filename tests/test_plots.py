"""The profile heatmap and the segment-size chart: what they colour, label and order, and that they fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("matplotlib")

from dask_kmeans import KMeans, StandardScaler, profile  # noqa: E402
from dask_kmeans.plots import (  # noqa: E402
    _row_noun,
    _text_colour,
    plot_profile_heatmap,
    plot_segment_sizes,
    save_plots,
)

FEATURES = ["electronics", "fashion", "home"]


def _profile(with_relative: bool = True) -> pd.DataFrame:
    """A profile as :func:`dask_kmeans.profile` returns it (labels sorted, not sizes)."""
    sizes = np.array([120_751, 449_356, 80_904, 248_353])
    columns = {"size": sizes, "share": sizes / sizes.sum()}
    ratio = np.array([[0.6, 4.8, 0.6], [0.15, 0.15, 0.15], [6.8, 0.6, 0.6], [1.0, 1.0, 1.0]])
    relative = np.array([[1.3, 10.0, 1.3], [0.34, 0.32, 0.33], [15.0, 1.3, 1.3], [2.2, 2.1, 2.2]])
    for j, name in enumerate(FEATURES):
        columns[f"mean_{name}"] = ratio[:, j] * 300
        columns[f"ratio_{name}"] = ratio[:, j]
        if with_relative:
            columns[f"relative_{name}"] = relative[:, j]
    columns["description"] = ["high spenders on fashion", "low spenders", "high spenders on electronics",
                              "moderate spenders across all categories"]
    return pd.DataFrame(columns, index=pd.RangeIndex(4, name="segment"))


def _heatmap_parts(fig):
    ax = fig.axes[0]
    return ax, ax.images[0], list(ax.texts)


def _draw(fig):
    """Lay the figure out and draw it as ``savefig`` would (on an Agg canvas); returns the renderer."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _fits_in_figure(fig) -> None:
    """Everything drawn (labels, titles, the colour bar) lies inside the figure, clear of its edges."""
    renderer = _draw(fig)
    box = fig.get_tightbbox(renderer)  # inches
    width, height = fig.get_size_inches()
    margin = 0.02
    assert box.x0 >= margin and box.y0 >= margin and box.x1 <= width - margin and box.y1 <= height - margin, (
        box, (width, height))


@pytest.mark.parametrize("with_relative", [True, False])
def test_heatmap_colours_by_relative_when_present_largest_segment_first(with_relative):
    prof = _profile(with_relative)
    fig = plot_profile_heatmap(prof)
    ax, image, texts = _heatmap_parts(fig)
    prefix = "relative_" if with_relative else "ratio_"
    by_size = prof.sort_values("size", ascending=False)
    np.testing.assert_allclose(image.get_array(), by_size[[prefix + f for f in FEATURES]].to_numpy())
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["1: low spenders", "3: moderate spenders across all categories",
                      "0: high spenders on fashion", "2: high spenders on electronics"]
    colorbar_label = fig.axes[1].get_ylabel()
    assert ("typical" in colorbar_label) == with_relative and "log scale" in colorbar_label
    assert texts[0].get_text() == ("0.34" if with_relative else "0.15")
    _fits_in_figure(fig)


def test_heatmap_colour_bar_has_labelled_ticks_on_the_log_scale():
    fig = plot_profile_heatmap(_profile())
    _draw(fig)
    colorbar = fig.axes[1]
    ticks = colorbar.get_yticks()
    labels = [t.get_text() for t in colorbar.get_yticklabels()]
    for value in (0.2, 0.5, 1, 2, 5):
        assert value in ticks and f"{value:g}" in labels, (ticks, labels)
    image = fig.axes[0].images[0]
    assert image.norm.vmin == pytest.approx(1 / image.norm.vmax)  # 1 sits in the middle: white


def test_heatmap_text_is_readable_on_dark_and_light_cells():
    assert _text_colour((0.4, 0.0, 0.12, 1.0)) == "white"  # dark red
    assert _text_colour((0.02, 0.19, 0.38, 1.0)) == "white"  # dark blue
    assert _text_colour((0.97, 0.97, 0.97, 1.0)) == "black"  # near white
    assert _text_colour((0.99, 0.86, 0.78, 1.0)) == "black"  # pale red
    fig = plot_profile_heatmap(_profile())
    ax, image, texts = _heatmap_parts(fig)
    colours = {t.get_text(): t.get_color() for t in texts}
    assert colours["15"] == "white" and colours["10"] == "white"  # the darkest reds
    assert colours["1.3"] == "black" and colours["2.2"] == "black"  # pale cells


def test_heatmap_survives_empty_segments_and_flat_profiles():
    prof = _profile()
    prof.loc[0, [f"relative_{f}" for f in FEATURES]] = np.nan
    prof.loc[0, "size"] = 0
    _fits_in_figure(plot_profile_heatmap(prof))
    flat = _profile()
    for f in FEATURES:
        flat[f"relative_{f}"] = 1.0
    fig = plot_profile_heatmap(flat)
    _draw(fig)
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == ["0.5", "1", "2"]


def test_sizes_count_customers_when_an_id_column_names_them():
    prof = _profile()
    fig = plot_segment_sizes(prof, id_column="customer_id")
    _draw(fig)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "customers" and fig.get_suptitle() == "Segment sizes (899,364 customers)"
    assert [t.get_text() for t in ax.get_yticklabels()][-1] == "1: low spenders"  # largest on top
    bar_labels = [t.get_text() for t in ax.texts]
    assert "449,356 (50.0%)" in bar_labels and "80,904 (9.0%)" in bar_labels, bar_labels
    ticks = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert any("," in t for t in ticks), ticks
    _fits_in_figure(fig)
    assert plot_segment_sizes(prof).axes[0].get_xlabel() == "rows"


@pytest.mark.parametrize(("id_column", "noun"), [
    ("customer_id", "customers"), ("item_id", "items"), ("CustomerID", "customers"), ("user", "users"),
    ("id", "rows"), (None, "rows"),
])
def test_row_noun(id_column, noun):
    assert _row_noun(_profile(), id_column) == noun


def test_save_plots_of_a_real_profile(tmp_path):
    rng = np.random.default_rng(0)
    X = np.exp(rng.normal(4.0, 1.0, size=(3000, 3)) + np.repeat([[0, 0, 0], [2, 0, 0], [0, 2, 0]], 1000, 0))
    model = KMeans(3, random_state=0, preprocessing=StandardScaler(log1p=True)).fit(X)
    prof = profile(model, X)
    assert any(c.startswith("relative_") for c in prof.columns)
    paths = save_plots(tmp_path, profile=prof, id_column="customer_id")
    assert sorted(p.split("/")[-1] for p in paths) == ["profile_heatmap.png", "segment_sizes.png"]
    import matplotlib.image

    for path in paths:
        image = matplotlib.image.imread(path)
        assert image.shape[0] > 100 and image.std() > 0.01
