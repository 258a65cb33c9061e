"""PNG pictures a person can read: labelled grids of images."""

from __future__ import annotations

import math
import textwrap
from typing import NamedTuple

import matplotlib.lines
import matplotlib.ticker
import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure  # not pyplot: no backend chosen, no figure kept open


def _wrapped(title: str, inches: float, fontsize: int = 11) -> str:
    """`title` in lines that fit `inches` (about ten characters an inch at 11 points), so a
    long title is never cut off at the picture's edges."""
    return textwrap.fill(title, max(24, int(inches * 10 * 11 / fontsize)))


def _set_title(ax, title: str, fontsize: int = 11, share: float = 1.0) -> None:
    """A title wrapped to `share` of the figure's width (`_wrapped`)."""
    ax.set_title(_wrapped(title, ax.figure.get_figwidth() * share, fontsize), fontsize=fontsize)


def _show(ax, image_HxWxC: np.ndarray) -> None:
    """One image in [0, 1]: grey for one channel (or none), colour for three."""
    image = np.clip(image_HxWxC, 0, 1)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(image, interpolation="nearest")


def _enlarged(image_HxWxC: np.ndarray, height: int, width: int) -> np.ndarray:
    """An image repeated into blocks of a larger cell (nearest neighbour), as float [h, w, C]."""
    image = np.asarray(image_HxWxC, np.float32)
    if image.ndim == 2:
        image = image[..., None]
    rows, cols = height // image.shape[0], width // image.shape[1]
    return np.repeat(np.repeat(image, rows, axis=0), cols, axis=1)


MAX_COLUMNS = 16  # a picture's rows wrap past this many images, in blocks of equal width


def wrapped(rows: list[tuple[str, np.ndarray]]) -> list[tuple[str, np.ndarray]]:
    """`rows` of more than MAX_COLUMNS images cut into blocks of at most that many columns,
    all of equal width but the last, the blocks one under the other (the labels repeated)."""
    num_cols = max(len(images) for _, images in rows)
    blocks = math.ceil(num_cols / MAX_COLUMNS)
    width = math.ceil(num_cols / blocks)
    return [(label, images[b * width:(b + 1) * width])
            for b in range(blocks) for label, images in rows]


def image_rows(rows: list[tuple[str, np.ndarray]], title: str, path: str) -> None:
    """Saves a grid: one row per (label, images [N, H, W(, C)] in [0, 1]), label on the left;
    rows of more than MAX_COLUMNS images wrap (`wrapped`), the blocks apart by a wider gap.

    Rows may have different resolutions (a 14x14 input above a 28x28 output): each image is
    drawn in the same cell size, so a low-resolution input is shown enlarged, as blocks. The
    grid is one canvas with a 2-pixel white gutter, drawn in a single image call, at least
    one picture pixel per image pixel (larger images: a larger picture).
    """
    per_block = len(rows)
    rows = wrapped(rows)
    num_cols = max(len(images) for _, images in rows)
    height = max(images.shape[1] for _, images in rows)
    width = max(images.shape[2] for _, images in rows)
    channels = max(1 if images.ndim == 3 else images.shape[-1] for _, images in rows)
    gap, block_gap = 2, max(8, height // 3)
    tops = [r * (height + gap) + (r // per_block) * block_gap for r in range(len(rows))]
    canvas = np.ones((tops[-1] + height, num_cols * (width + gap) - gap, channels), np.float32)
    for top, (_, images) in zip(tops, rows, strict=True):
        for c, image in enumerate(images[:num_cols]):
            left = c * (width + gap)
            canvas[top:top + height, left:left + width] = _enlarged(image, height, width)
    inches = max(1.0, (width + gap) / 90), max(1.05, (height + gap) / 90)  # 100 dpi, margins
    fig = Figure(figsize=(inches[0] * num_cols + 1.2,
                          inches[1] * canvas.shape[0] / (height + gap) + 0.6))
    ax = fig.subplots()
    _show(ax, canvas)
    ax.set_xticks([])
    ax.set_yticks([top + height / 2 for top in tops], [label for label, _ in rows],
                  fontsize=10)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    _set_title(ax, title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def manifold(images_RxCxHxWxC: np.ndarray, xs: np.ndarray, ys: np.ndarray, title: str,
             path: str, axis_names: tuple[str, str] = ("z[0]", "z[1]")) -> None:
    """Decoded images tiled over the latent grid; the axes give the latent coordinates. The
    figure takes the grid's shape, at least one picture pixel per image pixel (larger
    images: a larger picture); an axis along which the grid does not move says so."""
    rows, cols, h, w, c = images_RxCxHxWxC.shape
    canvas = images_RxCxHxWxC.transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)
    per_pixel = max(8.0 / max(cols * w, rows * h), 1 / 70)  # inches: 8 in at least, 100 dpi
    fig = Figure(figsize=(cols * w * per_pixel + 1.2, rows * h * per_pixel + 1.4))
    ax = fig.subplots()
    _show(ax, canvas)
    ax.set_xticks(np.arange(cols) * w + w / 2, tick_labels(xs), rotation=90, fontsize=7)
    ax.set_yticks(np.arange(rows) * h + h / 2, tick_labels(ys)[::-1], fontsize=7)
    ax.set_xlabel(_axis_name(axis_names[0], xs))
    ax.set_ylabel(_axis_name(axis_names[1], ys))
    _set_title(ax, title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def tick_labels(values: np.ndarray) -> list[str]:
    """The grid's coordinates with one number of decimals, enough for two significant digits
    of the smallest step between them: an even grid reads even (9.1, 11.0, 12.9, not 9.1,
    11, 13)."""
    values = np.asarray(values, np.float64)
    steps = np.abs(np.diff(values))
    steps = steps[steps > 0]
    decimals = max(0, 1 - math.floor(math.log10(steps.min()))) if len(steps) else 2
    return [f"{v:.{decimals}f}" for v in values]


def _axis_name(name: str, values: np.ndarray) -> str:
    """An axis's name; where the grid does not move along it, that said with its value."""
    values = np.asarray(values)
    if len(values) > 1 and np.ptp(values) == 0:
        return f"{name}: one value, {values[0]:.3g} (the codes do not vary along it)"
    return name


MARKERS = "os^Dv<>ph*"  # with many classes, shapes tell apart neighbouring colours
LEGEND_ROWS = 30  # class names per legend column
MAX_LEGEND = 120  # more classes than this: no legend (it would not be read)


def class_styles(num_classes: int) -> list[tuple[tuple[float, ...], str]]:
    """(colour, marker) per class: tab10's colours, dots for the first ten classes and
    triangles for the next ten (tab20 pairs a dark and a pale shade of one hue, the pale
    ones lost on white); beyond 20 classes hues around the colour wheel cycled with marker
    shapes, so no two classes share both."""
    if num_classes <= 20:
        cmap = colormaps["tab10"]
        return [(cmap(c % 10), "o" if c < 10 else "^") for c in range(num_classes)]
    hues = colormaps["turbo"](np.linspace(0.05, 0.95, num_classes))
    stride = len(MARKERS)
    return [(tuple(hues[c]), MARKERS[c % stride]) for c in range(num_classes)]


def dot_size(num_points: int) -> float:
    """A scatter's dot area in points^2: small for thousands of points, larger for a few,
    so that a handful of test images is seen."""
    return float(np.clip(20_000 / max(num_points, 1), 3, 40))


class Panel(NamedTuple):
    """A second scatter beside a latent scatter's own: [N, 2] points of the same images."""

    points_Nx2: np.ndarray
    axis_names: tuple[str, str]
    caption: str


def latent_scatter(points_Nx2: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...],
                   title: str, path: str, axis_names: tuple[str, str],
                   y_is_class: bool = False, caption: str = "",
                   beside: Panel | None = None) -> None:
    """Points coloured by class, with a legend of class names (in columns when there are
    many; no legend beyond MAX_LEGEND classes). `y_is_class`: the y coordinate is the class
    index (a 1-D code), ticked with whole numbers. `beside`: the same images' points of
    another picture (PCA of the pixels), drawn alike to the right; `caption` heads the first
    panel when there are two."""
    num_classes = len(class_names)
    columns = -(-num_classes // LEGEND_ROWS)
    panels = [Panel(points_Nx2, axis_names, caption)] + ([beside] if beside else [])
    fig = Figure(figsize=(8.5 + 6.5 * (len(panels) - 1) + 1.6 * (min(columns, 4) - 1), 7))
    axes = fig.subplots(1, len(panels), squeeze=False)
    styles, size = class_styles(num_classes), dot_size(len(points_Nx2))
    present = sorted(set(np.unique(labels).tolist()))  # classes the images lack: no entry
    for ax, panel in zip(axes[0], panels, strict=True):
        for group in draw_groups(labels):  # no class drawn over all the others
            markers = np.array([styles[c][1] for c in labels[group]])
            for marker in dict.fromkeys(markers):  # a call per marker, a colour per point
                chosen = group[markers == marker]
                ax.scatter(panel.points_Nx2[chosen, 0], panel.points_Nx2[chosen, 1],
                           s=size if marker == "o" else size * 5 / 3, alpha=0.6,
                           marker=marker,
                           c=[styles[c][0] for c in labels[chosen]], rasterized=True)
        ax.set_xlabel(panel.axis_names[0])
        ax.set_ylabel(panel.axis_names[1])
    if y_is_class and num_classes <= MAX_LEGEND:  # each class's row named on its tick
        axes[0, 0].set_yticks(range(num_classes), [_short(name) for name in class_names])
    elif y_is_class:
        axes[0, 0].yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    title = title if num_classes <= MAX_LEGEND else f"{title} ({num_classes} classes)"
    if beside:
        fig.suptitle(_wrapped(title, fig.get_figwidth()), fontsize=11)
        for ax, panel in zip(axes[0], panels, strict=True):
            _set_title(ax, panel.caption, fontsize=10, share=1 / len(panels))
    else:
        _set_title(axes[0, 0], title)
    if num_classes <= MAX_LEGEND:
        entries = [matplotlib.lines.Line2D([], [], linestyle="", color=styles[c][0],
                                           marker=styles[c][1], label=_short(class_names[c]),
                                           markersize=7 if num_classes <= 20 else 4.5)
                   for c in present]
        axes[0, -1].legend(handles=entries, fontsize=8 if num_classes <= 40 else 6,
                           loc="center left", bbox_to_anchor=(1.0, 0.5), ncol=columns)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def draw_groups(labels: np.ndarray, groups: int = 20) -> list[np.ndarray]:
    """The points' indices in `groups` groups, in the order a scatter draws them: each
    class's points spread evenly over the groups, and within group k the classes in turn
    from the k-th on, so that no class lies under all the others where they overlap (drawn
    class by class, the last class would cover the rest)."""
    labels = np.asarray(labels)
    classes = np.unique(labels).tolist()
    share = np.empty(len(labels))
    for c in classes:
        where = np.flatnonzero(labels == c)
        share[where] = np.arange(len(where)) / len(where)
    order = np.argsort(share, kind="stable")
    drawn = []
    for k, group in enumerate(np.array_split(order, min(groups, max(1, len(order))))):
        turn = k % len(classes)
        rank = {c: i for i, c in enumerate(classes[turn:] + classes[:turn])}
        drawn.append(group[np.argsort([rank[c] for c in labels[group]], kind="stable")])
    return drawn


def _short(name: str, width: int = 24) -> str:
    """A class name cut to `width` characters for the legend."""
    return name if len(name) <= width else name[:width - 1] + "…"
