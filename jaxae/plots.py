"""PNG pictures a person can read: labelled grids of images."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; no display needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def image_rows(rows: list[tuple[str, np.ndarray]], title: str, path: str) -> None:
    """Saves a grid: one row per (label, images [N, H, W] in [0, 1]), label on the left.

    Rows may have different resolutions (a 14x14 input above a 28x28 output): each image is
    drawn in the same cell size, so a low-resolution input is shown enlarged, as blocks.
    """
    num_cols = max(len(images) for _, images in rows)
    fig, axes = plt.subplots(len(rows), num_cols, squeeze=False,
                             figsize=(1.0 * num_cols + 1.2, 1.05 * len(rows) + 0.6))
    for r, (label, images) in enumerate(rows):
        for c in range(num_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(images):
                ax.imshow(np.clip(images[c], 0, 1), cmap="gray", vmin=0, vmax=1,
                          interpolation="nearest")
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=10)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
