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


_TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)


def _heat_columns(profile) -> tuple[str, list[str]]:
    """Which ratio colours the heatmap (``relative_``, what the descriptions use, else ``ratio_``) and the
    features that have it."""
    for prefix in ("relative_", "ratio_"):
        features = [c[len(prefix):] for c in profile.columns if c.startswith(prefix)]
        if features:
            return prefix, features
    raise ValueError("the profile has neither relative_<feature> nor ratio_<feature> columns")


def _ratio_text(value: float) -> str:
    if not np.isfinite(value):
        return "-"
    return f"{value:,.0f}" if value >= 9.95 else f"{value:.2g}"


def _text_colour(rgba) -> str:
    """Black or white, whichever reads better on a cell of this colour (WCAG relative luminance)."""
    channels = np.asarray(rgba[:3], dtype=np.float64)
    linear = np.where(channels <= 0.04045, channels / 12.92, ((channels + 0.055) / 1.055) ** 2.4)
    luminance = float(linear @ np.array([0.2126, 0.7152, 0.0722]))
    # Contrast with black (L + 0.05) / 0.05 against white 1.05 / (L + 0.05): equal at L = 0.179.
    return "black" if luminance > 0.179 else "white"


def _segment_labels(ordered) -> list[str]:
    return [f"{segment}: {text}" for segment, text in zip(ordered.index, ordered["description"])]


def _labels_width(labels) -> float:
    """Inches that tick labels of this many characters take at matplotlib's default 10 points (about)."""
    return 0.075 * max((len(label) for label in labels), default=0)


def plot_profile_heatmap(profile) -> Figure:
    """Segments (largest first) x features, coloured on a log scale by each segment's ``relative_`` value
    (its typical value over the typical row's, what the descriptions judge; ``ratio_``, mean over the
    overall mean, for a profile without them): 1 is white, above red, below blue.
    """
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    prefix, features = _heat_columns(profile)
    ordered = profile.sort_values("size", ascending=False, kind="stable")
    ratios = ordered[[f"{prefix}{f}" for f in features]].to_numpy(dtype=np.float64)
    finite = ratios[np.isfinite(ratios) & (ratios > 0)]
    # Symmetric about 1 on the log scale, at least 0.5-2 so that near-average profiles stay pale.
    span = max(float(np.max(np.abs(np.log(finite)))) if finite.size else 0.0, np.log(2.0))
    norm = LogNorm(np.exp(-span), np.exp(span))
    labels = _segment_labels(ordered)
    fig, ax = _figure((_labels_width(labels) + 2.0 + 0.8 * len(features), 1.8 + 0.55 * len(ordered)))
    image = ax.imshow(np.clip(ratios, norm.vmin, norm.vmax), cmap="RdBu_r", norm=norm, aspect="auto")
    ax.set_xticks(range(len(features)), features, rotation=30, ha="right")
    ax.set_yticks(range(len(ordered)), labels)
    for i in range(ratios.shape[0]):
        for j in range(ratios.shape[1]):
            value = ratios[i, j]
            colour = _text_colour(image.cmap(norm(np.clip(value, norm.vmin, norm.vmax)))) \
                if np.isfinite(value) and value > 0 else "black"
            ax.text(j, i, _ratio_text(value), ha="center", va="center", fontsize=8, color=colour)
    label = ("typical value / overall typical value" if prefix == "relative_" else "mean / overall mean")
    colorbar = fig.colorbar(image, ax=ax, label=f"{label} (log scale)")
    ticks = [t for t in _TICKS if norm.vmin * 0.999 <= t <= norm.vmax * 1.001]
    colorbar.ax.yaxis.set_major_locator(FixedLocator(ticks))
    colorbar.ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    colorbar.ax.yaxis.set_minor_locator(NullLocator())
    fig.suptitle("Segment profiles (largest segment first)")
    fig.get_layout_engine().set(w_pad=0.1, h_pad=0.1)
    return fig


def _row_noun(profile, id_column: str | None) -> str:
    """What a row is: "customers" for an id column ``customer_id``; "rows" without an id column."""
    name = id_column if id_column is not None else profile.attrs.get("id_column")
    if not name:
        return "rows"
    words = [w for w in str(name).replace("-", "_").replace(" ", "_").split("_") if w]
    if words and words[-1].lower() in ("id", "ids", "key", "no", "number", "code"):
        words = words[:-1]
    elif words and words[-1].lower().endswith("id") and len(words[-1]) > 2:  # customerId, CustomerID
        words[-1] = words[-1][:-2]
    if not words:
        return "rows"
    noun = " ".join(words).lower()
    return noun if noun.endswith("s") else noun + "s"


def plot_segment_sizes(profile, *, id_column: str | None = None) -> Figure:
    """Horizontal bars, largest segment on top: each segment's size and share.

    The axis counts "customers" when ``id_column`` (or ``profile.attrs["id_column"]``) is ``customer_id``,
    and so on; "rows" without one.
    """
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    ordered = profile.sort_values("size", ascending=True, kind="stable")
    noun = _row_noun(profile, id_column)
    labels = _segment_labels(ordered)
    fig, ax = _figure((_labels_width(labels) + 4.5, 1.4 + 0.45 * len(ordered)))
    bars = ax.barh(labels, ordered["size"])
    ax.bar_label(bars, labels=[f"{int(size):,} ({share:.1%})" for size, share in zip(ordered["size"],
                                                                                   ordered["share"])],
                 padding=3, fontsize=9)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    ax.set_xlabel(noun)
    fig.suptitle(f"Segment sizes ({int(ordered['size'].sum()):,} {noun})")
    ax.margins(x=0.3, y=0.08)
    ax.set_xlim(left=0)
    fig.get_layout_engine().set(w_pad=0.1, h_pad=0.1)
    return fig


def save_plots(directory, *, selection=None, profile=None, id_column: str | None = None,
               dpi: int = 100) -> list[str]:
    """Write the plots that the given results allow to PNG files in ``directory``; returns their paths.

    ``selection`` (from :func:`dask_kmeans.choose_k`) gives ``elbow.png`` and ``silhouette.png``;
    ``profile`` (from :func:`dask_kmeans.profile`) gives ``profile_heatmap.png`` and ``segment_sizes.png``
    (``id_column``, the data's id column, names what the sizes count: see :func:`plot_segment_sizes`).
    """
    os.makedirs(directory, exist_ok=True)
    figures = {}
    if selection is not None:
        figures["elbow.png"] = plot_elbow(selection)
        figures["silhouette.png"] = plot_silhouette(selection)
    if profile is not None:
        figures["profile_heatmap.png"] = plot_profile_heatmap(profile)
        figures["segment_sizes.png"] = plot_segment_sizes(profile, id_column=id_column)
    paths = []
    for name, fig in figures.items():
        path = os.path.join(directory, name)
        fig.savefig(path, dpi=dpi)
        paths.append(path)
    return paths
