"""Matplotlib helpers for the experiments' plots: one figure per experiment, panels per data
set, labelled axes, a title that names the scale, a legend; where a row is the mean of several
seeds, an error bar from its lowest to its highest seed."""

from __future__ import annotations

import numpy as np
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure  # not pyplot: no backend chosen, no figure kept open

from jaxae.experiments.render import SEED_SPREAD, seed_range

COLORS = {"PCA": "tab:gray", "dense_ae": "tab:blue", "deep_ae": "tab:orange",
          "conv_ae": "tab:green", "vae": "tab:purple", "raw pixels": "black"}
SEED_BARS = "mean; bars: lowest to highest seed"  # what a plot with error bars shows
# Error bars in black, drawn over the markers and stars: a range narrower than its marker
# still shows, and a bar on a bar of any colour does too.
ERROR_COLOR, ERROR_ZORDER = "black", 4


def spread(row: dict, key: str, factor: float = 1.0) -> tuple[float, float] | None:
    """(lowest, highest) over the seeds of the row's figure `key`, times `factor`, where its
    seeds differ; None for a row of one seed or seeds that agree: no error bar to draw."""
    if key not in row.get(SEED_SPREAD, {}):
        return None
    low, high = seed_range(row, key)
    return factor * low, factor * high


def any_spread(rows: list[dict], *keys: str) -> bool:
    """Whether a plot of the rows' figures `keys` draws any error bar (`spread`)."""
    return any(spread(row, key) is not None for row in rows for key in keys)


def panels(count: int, title: str, scale: str, rows: int = 1, width: float = 6.0,
           height: float = 4.6, seed_bars: bool = False):
    """A figure with `rows` x `count` axes (always a 2-D array) and a suptitle with the scale
    and, with `seed_bars`, what the error bars are (SEED_BARS)."""
    fig = Figure(figsize=(width * count, height * rows))
    axes = fig.subplots(rows, count, squeeze=False)
    fig.suptitle(f"{title} ({scale} scale{'; ' + SEED_BARS if seed_bars else ''})", fontsize=12)
    return fig, axes


def seed_errorbars(ax, x: list[float], rows: list[dict], key: str, factor: float = 1.0
                   ) -> ErrorbarContainer | None:
    """Error bars at `x` from the lowest to the highest seed of each row's figure `key` (times
    `factor`, as plotted), for the rows whose seeds differ (`spread`); None where no row's do.
    The reader sees which differences lie within the seeds' noise."""
    return _errorbars(ax, [(at, factor * row[key], ends) for at, row in zip(x, rows, strict=True)
                           if (ends := spread(row, key, factor)) is not None])


def _errorbars(ax, points: list[tuple[float, float, tuple[float, float]]]
               ) -> ErrorbarContainer | None:
    """An error bar at each point (x, y, (lowest, highest)) from its lowest to its highest,
    without markers; None for no points."""
    if not points:
        return None
    xs, ys, ends = zip(*points, strict=True)
    below = [y - low for y, (low, _) in zip(ys, ends, strict=True)]
    above = [high - y for y, (_, high) in zip(ys, ends, strict=True)]
    return ax.errorbar(xs, ys, yerr=[below, above], fmt="none", ecolor=ERROR_COLOR, capsize=3,
                       zorder=ERROR_ZORDER)


def log2_latent_axis(ax, sizes: list[int]) -> None:
    """A log-2 x axis of code sizes, ticked at the sizes that were run."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("code size d (latent dimensions)")


def grouped_bars(ax, groups: list[str], series: dict[str, list[float | None]],
                 colors: dict[str, str] | None = None, annotate: str | None = None,
                 spreads: dict[str, list[tuple[float, float] | None]] | None = None,
                 missing: str | None = None) -> None:
    """Bars per group (x) and series (colour); None leaves a gap, marked `missing` where
    given (e.g. "n/a": a method that does not apply, not a zero); `annotate` formats values.
    `spreads` ({series: each group's (lowest, highest) over the seeds, or None}) draws an error
    bar on each bar that has one; a value's label then sits beyond its bar's error bar."""
    width = 0.8 / max(1, len(series))
    x = np.arange(len(groups))
    for i, (name, values) in enumerate(series.items()):
        heights = [np.nan if v is None else v for v in values]
        centers = x + (i - (len(series) - 1) / 2) * width
        ax.bar(centers, heights, width, label=name, color=(colors or {}).get(name))
        ends = (spreads or {}).get(name) or [None] * len(values)
        _errorbars(ax, [(at, v, e) for at, v, e in zip(centers, values, ends, strict=True)
                        if v is not None and e is not None])
        if annotate:
            for at, v, e in zip(centers, values, ends, strict=True):
                if v is not None:
                    _value_label(ax, at, v, e, annotate)
        if missing:
            for at, v in zip(centers, values, strict=True):
                if v is None:
                    ax.annotate(missing, (at, 0), xytext=(0, 2), textcoords="offset points",
                                ha="center", va="bottom", fontsize=6, color="0.45",
                                rotation=90)
    ax.set_xticks(x, groups)


def _value_label(ax, x: float, value: float, ends: tuple[float, float] | None,
                 fmt: str) -> None:
    """A bar's value, `fmt`-formatted, just beyond the bar's end or its error bar's."""
    up = value >= 0
    edge = value if ends is None else (max(value, ends[1]) if up else min(value, ends[0]))
    ax.annotate(format(value, fmt), (x, edge), xytext=(0, 2 if up else -2),
                textcoords="offset points", ha="center", va="bottom" if up else "top",
                fontsize=7)


def figure_legend(fig, ax, colors: dict[str, str], names: dict[str, str] | None = None
                  ) -> None:
    """One legend for every panel, in a row under the title, in the order of `colors`; each
    series named by `names` where it gives a name (a longer one than the bars' label)."""
    handles, labels = ax.get_legend_handles_labels()
    order = [labels.index(name) for name in colors if name in labels]
    fig.legend([handles[i] for i in order], [(names or {}).get(labels[i], labels[i])
                                              for i in order], loc="upper center",
               ncol=len(order), fontsize=9, bbox_to_anchor=(0.5, 0.955), frameon=False)
    fig.set_layout_engine("tight", rect=(0, 0, 1, 0.93))


def save(fig: Figure, path: str) -> None:
    """Writes the figure to `path`."""
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
