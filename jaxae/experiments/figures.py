"""Matplotlib helpers for the experiments' plots: one figure per experiment, panels per data
set, labelled axes, a title that names the scale, a legend."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; no display needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLORS = {"PCA": "tab:gray", "dense_ae": "tab:blue", "deep_ae": "tab:orange",
          "conv_ae": "tab:green", "vae": "tab:purple", "raw pixels": "black"}


def panels(count: int, title: str, scale: str, rows: int = 1, width: float = 6.0,
           height: float = 4.6):
    """A figure with `rows` x `count` axes (always a 2-D array) and a suptitle with the scale."""
    fig, axes = plt.subplots(rows, count, figsize=(width * count, height * rows), squeeze=False)
    fig.suptitle(f"{title} ({scale} scale)", fontsize=12)
    return fig, axes


def log2_latent_axis(ax, sizes: list[int]) -> None:
    """A log-2 x axis of code sizes, ticked at the sizes that were run."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("code size d (latent dimensions)")


def grouped_bars(ax, groups: list[str], series: dict[str, list[float | None]],
                 colors: dict[str, str] | None = None, annotate: str | None = None) -> None:
    """Bars per group (x) and series (colour); None leaves a gap; `annotate` formats values."""
    width = 0.8 / max(1, len(series))
    x = np.arange(len(groups))
    for i, (name, values) in enumerate(series.items()):
        heights = [np.nan if v is None else v for v in values]
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, heights, width, label=name,
                      color=(colors or {}).get(name))
        if annotate:
            labels = ["" if v is None else format(v, annotate) for v in values]
            ax.bar_label(bars, labels, fontsize=7, padding=2)
    ax.set_xticks(x, groups)


def figure_legend(fig, ax, colors: dict[str, str]) -> None:
    """One legend for every panel, in a row under the title, in the order of `colors`."""
    handles, labels = ax.get_legend_handles_labels()
    order = [labels.index(name) for name in colors if name in labels]
    fig.legend([handles[i] for i in order], [labels[i] for i in order], loc="upper center",
               ncol=len(order), fontsize=9, bbox_to_anchor=(0.5, 0.955), frameon=False)
    fig.set_layout_engine("tight", rect=(0, 0, 1, 0.93))


def save(fig, path: str) -> None:
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
