"""Plots for choosing k and reading segments (matplotlib: the optional extra ``dask-kmeans[plots]``).

Every function draws on a new ``matplotlib.figure.Figure`` (no pyplot state, so it works in scripts,
servers and notebooks alike) and returns it; a notebook shows a returned figure inline (``_repr_png_``).
:func:`save_plots` writes them as PNG files.
"""

from __future__ import annotations

import io
import os

import numpy as np

try:
    from matplotlib.figure import Figure
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "dask_kmeans.plots needs matplotlib: pip install 'dask-kmeans[plots]' (or matplotlib)."
    ) from error


class SegmentFigure(Figure):
    """A matplotlib ``Figure`` that notebooks show inline (as PNG) without pyplot or ``%matplotlib``."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png")
        return buffer.getvalue()


def _figure(size=(6.0, 4.0)) -> tuple[Figure, object]:
    fig = SegmentFigure(figsize=size, layout="constrained")
    return fig, fig.add_subplot()


def _mark_suggested(ax, selection) -> None:
    k = selection.suggested_k
    ax.axvline(k, color="tab:red", linestyle="--", label=f"suggested k={k}")


def plot_elbow(selection) -> Figure:
    """Inertia against k (the elbow curve), the suggested k and the elbow marked."""
    fig, ax = _figure()
    table = selection.table
    ax.plot(table.index, table["inertia"], marker="o")
    _mark_suggested(ax, selection)
    if selection.elbow_k != selection.suggested_k:
        ax.axvline(selection.elbow_k, color="tab:gray", linestyle=":", label=f"elbow k={selection.elbow_k}")
    ax.set(xlabel="k (number of segments)", ylabel="inertia (sum of squared distances)", title="Elbow curve")
    ax.set_xticks(table.index)
    ax.legend()
    return fig


def plot_silhouette(selection) -> Figure:
    """Silhouette score (on the sweep's sample) against k, the suggested k marked."""
    fig, ax = _figure()
    table = selection.table
    ax.plot(table.index, table["silhouette"], marker="o", color="tab:green")
    _mark_suggested(ax, selection)
    ax.set(xlabel="k (number of segments)", ylabel="mean silhouette",
           title=f"Silhouette on a sample of {selection.sample_size:,} rows")
    ax.set_xticks(table.index)
    ax.legend()
    return fig


def _features(profile) -> list[str]:
    return [c[len("ratio_"):] for c in profile.columns if c.startswith("ratio_")]


def plot_profile_heatmap(profile) -> Figure:
    """Segments x features, coloured by each feature's ratio to the overall mean (log scale, 1 = white)."""
    from matplotlib.colors import LogNorm

    features = _features(profile)
    ordered = profile.sort_values("size", ascending=False)
    ratios = ordered[[f"ratio_{f}" for f in features]].to_numpy(dtype=np.float64)
    finite = ratios[np.isfinite(ratios) & (ratios > 0)]
    span = max(float(np.max(np.abs(np.log(finite)))) if finite.size else 1.0, np.log(1.5))
    fig, ax = _figure((1.2 + 1.0 * len(features), 1.4 + 0.55 * len(ordered)))
    image = ax.imshow(ratios, cmap="RdBu_r", norm=LogNorm(np.exp(-span), np.exp(span)), aspect="auto")
    ax.set_xticks(range(len(features)), features, rotation=30, ha="right")
    ax.set_yticks(range(len(ordered)), [f"{s}: {d}" for s, d in zip(ordered.index, ordered["description"])])
    for i in range(ratios.shape[0]):
        for j in range(ratios.shape[1]):
            ax.text(j, i, f"{ratios[i, j]:.2g}", ha="center", va="center", fontsize=8)
    from matplotlib.ticker import FuncFormatter, NullFormatter

    colorbar = fig.colorbar(image, ax=ax, label="mean / overall mean")
    colorbar.ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    colorbar.ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_title("Segment profiles")
    return fig


def plot_segment_sizes(profile) -> Figure:
    """Horizontal bars: the number of rows in each segment, with its share."""
    ordered = profile.sort_values("size")
    fig, ax = _figure((7.0, 1.2 + 0.45 * len(ordered)))
    bars = ax.barh([f"{s}: {d}" for s, d in zip(ordered.index, ordered["description"])], ordered["size"])
    ax.bar_label(bars, labels=[f"{share:.1%}" for share in ordered["share"]], padding=3)
    ax.set(xlabel="rows", title="Segment sizes")
    ax.margins(x=0.15)
    return fig


def save_plots(directory, *, selection=None, profile=None, dpi: int = 100) -> list[str]:
    """Write the plots that the given results allow to PNG files in ``directory``; returns their paths.

    ``selection`` (from :func:`dask_kmeans.choose_k`) gives ``elbow.png`` and ``silhouette.png``;
    ``profile`` (from :func:`dask_kmeans.profile`) gives ``profile_heatmap.png`` and ``segment_sizes.png``.
    """
    os.makedirs(directory, exist_ok=True)
    figures = {}
    if selection is not None:
        figures["elbow.png"] = plot_elbow(selection)
        figures["silhouette.png"] = plot_silhouette(selection)
    if profile is not None:
        figures["profile_heatmap.png"] = plot_profile_heatmap(profile)
        figures["segment_sizes.png"] = plot_segment_sizes(profile)
    paths = []
    for name, fig in figures.items():
        path = os.path.join(directory, name)
        fig.savefig(path, dpi=dpi)
        paths.append(path)
    return paths
