"""Experiment `encoder_probe`: freeze a trained encoder and train only a linear softmax classifier
on its codes; compare with the same classifier on PCA codes of the same size and on raw pixels."""

from __future__ import annotations

import math

import jax
import numpy as np

from jaxae.data import Splits
from jaxae.evaluation import generation, pca
from jaxae.evaluation.probe import train_probe
from jaxae.experiments import figures
from jaxae.experiments.ae_vs_pca import (
    AUTOENCODERS,
    flat_pixels,
    pca_sizes,
    train_autoencoders,
)
from jaxae.experiments.common import (
    Context,
    DataChoice,
    Result,
    and_list,
    by_dataset,
    column,
    run_as_command,
    sign_over_seeds,
)
from jaxae.keys import ENCODER_PROBE_STREAM, derive_keys

TITLE = "Reusing the encoder: a linear probe on autoencoder codes, PCA codes and raw pixels"
PROBE_EPOCHS = 10
# At least this many Adam steps (more epochs on a small training set): 150 steps, 10 epochs of
# the 4,000-image MNIST subset, left PCA codes near chance; 10,000 is within 1 point of 20,000.
# The tiny scale's 20 steps (10 epochs of 512 images) left them below chance.
PROBE_MIN_STEPS = {"full": 10_000, "small": 10_000, "tiny": 500}
RAW = "raw pixels"
PCA_CODES = "PCA codes"
POINTS = "+.1f"  # how the table and the findings print a difference in accuracy points


def encoder_name(key: str) -> str:
    """The feature set of an autoencoder of `ae_vs_pca.AUTOENCODERS`, e.g. 'dense_ae encoder'."""
    return f"{key} encoder"


def probe_row(dataset: str, splits: Splits, name: str, dim: int,
              train_x: np.ndarray, test_x: np.ndarray, min_steps: int, seed: int) -> dict:
    """Trains the linear softmax probe on `train_x` and scores it on both splits; its key is
    a stream of the seed's evaluation key of its own (the seed's key itself splits into the
    runs' streams: its halves would be a run's initialisation and training keys)."""
    key = jax.random.fold_in(derive_keys(seed).eval, ENCODER_PROBE_STREAM)
    probe = train_probe(np.asarray(train_x), splits.train.labels, key,
                        hidden=(), epochs=PROBE_EPOCHS, min_steps=min_steps,
                        num_classes=splits.num_classes)
    return {"dataset": dataset, "features": name, "dim": dim,
            "train_accuracy": probe.accuracy(train_x, splits.train.labels),
            "test_accuracy": probe.accuracy(test_x, splits.test.labels)}


def dataset_rows(ctx: Context, choice: DataChoice, shapes: dict | None = None) -> list[dict]:
    """The rows of one data set: raw pixels, PCA codes at every size, then each encoder.
    `shapes`, if given, receives {key: code shape} of the encoders whose config fixes it."""
    splits = ctx.splits(choice)
    min_steps = PROBE_MIN_STEPS[ctx.scale.name]
    train_px, test_px = flat_pixels(splits.train.images), flat_pixels(splits.test.images)
    pixels = math.prod(splits.image_shape)
    rows = [probe_row(choice.title, splits, RAW, pixels, train_px, test_px, min_steps,
                      ctx.seed)]
    trained = train_autoencoders(ctx, choice)
    sizes = pca_sizes(ctx.scale.name, trained)
    fitted = pca.fit(train_px, max(sizes))
    pca_accuracy = {}
    for d in sizes:
        part = pca.PCA(fitted.mean, fitted.components[:d])
        row = probe_row(choice.title, splits, PCA_CODES, d, pca.project(part, train_px),
                        pca.project(part, test_px), min_steps, ctx.seed)
        pca_accuracy[d] = row["test_accuracy"]
        rows.append(row)
    for t in trained:
        if t.fixed and shapes is not None:
            shapes[t.key] = tuple(t.run.model.latent_shape)
        row = probe_row(choice.title, splits, encoder_name(t.key), t.latent,
                        generation.encode(t.run.model, t.run.params, splits.train.images,
                                          splits.train.labels),
                        generation.encode(t.run.model, t.run.params, splits.test.images,
                                          splits.test.labels), min_steps, ctx.seed)
        row["points_over_pca"] = 100 * (row["test_accuracy"] - pca_accuracy[t.latent])
        rows.append(row)
    return rows


def findings(rows: list[dict]) -> list[str]:
    """Per data set: raw pixels, and each encoder against PCA codes of its size."""
    out = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == dataset]
        raw = next(r for r in mine if r["features"] == RAW)
        best = max(mine, key=lambda r: r["test_accuracy"])
        out.append(f"{dataset}: raw pixels {100 * raw['test_accuracy']:.1f}% test accuracy; "
                   f"best probe: {best['features']} ({best['dim']}-D), "
                   f"{100 * best['test_accuracy']:.1f}%.")
        for name in map(encoder_name, AUTOENCODERS):
            codes = [r for r in mine if r["features"] == name]
            if not codes:
                continue
            diffs = ", ".join(f"d={r['dim']}: {r['points_over_pca']:{POINTS}}" for r in codes)
            out.append(f"{dataset}, {name} against PCA codes of the same size, in accuracy "
                       f"points: {diffs} ({tally(codes)}).")
    return out


def over_pca(row: dict) -> int:
    """1 where the encoder's codes beat PCA's with every seed, -1 where they lose with every
    seed, 0 for a tie: a difference that prints as zero at the table's precision (+0.0,
    -0.0), or seeds on both sides."""
    return sign_over_seeds(row, "points_over_pca", POINTS)


def tally(codes: list[dict]) -> str:
    """'better at 2, worse at 1, tied at 1 of 4 sizes' (`over_pca`)."""
    signs = [over_pca(r) for r in codes]
    parts = [f"better at {signs.count(1)}"]
    parts += [f"{what} at {signs.count(sign)}" for sign, what in ((-1, "worse"), (0, "tied"))
              if signs.count(sign)]
    return f"{', '.join(parts)} of {len(codes)} sizes"


def _pct(row: dict) -> str:
    return f"{100 * row['test_accuracy']:.1f}%"


def accuracy_with_d(mine: list[dict]) -> str:
    """'rises with d for every feature set' of one data set, or which ones it does not rise
    for and where: an equal or lower accuracy at the next larger d."""
    falls = []
    for name in dict.fromkeys(r["features"] for r in mine if r["features"] != RAW):
        line = sorted((r for r in mine if r["features"] == name), key=lambda r: r["dim"])
        drops = [f"from {_pct(a)} at d={a['dim']} to {_pct(b)} at d={b['dim']}"
                 for a, b in zip(line, line[1:], strict=False)
                 if b["test_accuracy"] <= a["test_accuracy"]]
        if drops:
            falls.append(f"{name} ({'; '.join(drops)})")
    if not falls:
        return "rises with d for every feature set"
    return f"rises with d except for {and_list(falls)}"


def size_notes(rows: list[dict]) -> list[str]:
    """What the rows say about code size, per data set: the best code of the smallest size,
    whether accuracy rises with d, which encoders beat PCA codes at the smallest d, and PCA
    codes of the largest size against raw pixels."""
    out = []
    for dataset, mine in by_dataset(rows).items():
        codes = [r for r in mine if r["features"] != RAW]
        if not codes:
            continue
        raw = next(r for r in mine if r["features"] == RAW)
        smallest = min(r["dim"] for r in codes)
        best = max((r for r in codes if r["dim"] == smallest), key=lambda r: r["test_accuracy"])
        text = (f"{dataset}: the best {smallest}-D code reaches {_pct(best)} ({best['features']}), "
                f"raw pixels {_pct(raw)}; accuracy {accuracy_with_d(mine)}.")
        winners = [r for r in codes if r["dim"] == smallest and "points_over_pca" in r
                   and over_pca(r) > 0]
        if winners:
            text += (f" At d={smallest}, " + and_list(
                [f"the {r['features']} ({r['points_over_pca']:{POINTS}} points)"
                 for r in winners]) + f" beat{'s' if len(winners) == 1 else ''} PCA codes.")
        pca = [r for r in mine if r["features"] == PCA_CODES]
        if pca:
            top = max(pca, key=lambda r: r["dim"])
            text += (f" PCA codes of the largest size, d={top['dim']}: {_pct(top)} "
                     f"({100 * (top['test_accuracy'] - raw['test_accuracy']):{POINTS}} points "
                     "against raw pixels).")
        out.append(text)
    return out


def notes(pixels: int, rows: list[dict], shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """Why the numbers come out as they do, for images of `pixels` values; what is said about
    the results is computed from `rows`. `shapes`: {key: code shape} of the fixed codes."""
    conv = shapes.get("conv_ae")
    layout = ("" if conv is None or len(conv) != 3 else
              f" The conv AE's {math.prod(conv)} values keep a {conv[0]}x{conv[1]} spatial "
              f"layout of {conv[2]} channels.")
    return [
        "The probe is jaxae.evaluation.probe's linear softmax classifier (hidden=()), trained "
        "with Adam on standardised features, identical for every feature set; the encoder is "
        "frozen: its codes are computed once with the trained parameters and only the "
        "classifier learns.",
        "An autoencoder is trained to reconstruct, not to separate classes: its code keeps what "
        "the decoder needs, which need not be linearly separable by class. PCA keeps the "
        "directions of largest variance, which on these images already follow the classes "
        "closely (overall shape, brightness), so it is a strong baseline at the same size.",
        "A small code limits any linear classifier, and a non-linear encoder can fold more of "
        "the class structure into few dimensions than a projection can. As d grows, PCA codes "
        f"keep more of the pixels; at d = {pixels} they are a rotation of the raw pixels, the "
        "reference.",
        *size_notes(rows),
        "dense_ae codes are ReLU outputs: units that never fire give constant features, which "
        "the probe cannot use." + layout,
    ]


def fixed_sizes(rows: list[dict]) -> dict[str, int]:
    """{key: code size} of the encoders whose config fixes the code, as the rows give it."""
    return {key: dims[0] for key, entry in AUTOENCODERS.items() if entry.latents is None
            and (dims := [r["dim"] for r in rows if r["features"] == encoder_name(key)])}


def plot_record(record: dict, path: str) -> None:
    """The plot drawn again from the experiment's table.json record alone (no training)."""
    plot(record["rows"], record["scale"], path)


def plot(rows: list[dict], scale: str, path: str) -> None:
    """Accuracy against code size: raw pixels as a line across, PCA codes and the encoders
    of free size as curves, those of fixed size (`fixed_sizes`) as stars; with several seeds,
    error bars (for raw pixels a band) from the lowest to the highest seed."""
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fixed = fixed_sizes(rows)
    fig, axes = figures.panels(len(datasets), "Linear probe test accuracy against code size",
                               scale, seed_bars=figures.any_spread(rows, "test_accuracy"))
    for ax, dataset in zip(axes[0], datasets, strict=True):
        mine = [r for r in rows if r["dataset"] == dataset]
        raw = next(r for r in mine if r["features"] == RAW)
        band = figures.spread(raw, "test_accuracy", 100)  # often too narrow to see: named too
        ax.axhline(100 * raw["test_accuracy"], color=figures.COLORS[RAW], linestyle="--",
                   label=f"{RAW} ({raw['dim']}-D" + (
                       f"; band: lowest to highest seed, {band[0]:.1f}-{band[1]:.1f}%)"
                       if band else ")"))
        if band:
            ax.axhspan(*band, color=figures.COLORS[RAW], alpha=0.15, linewidth=0)
        curves = [(PCA_CODES, "PCA")] + [(encoder_name(k), k) for k in AUTOENCODERS
                                           if k not in fixed]
        for name, color in curves:
            line = [r for r in mine if r["features"] == name]
            x = [r["dim"] for r in line]
            ax.plot(x, [100 * r["test_accuracy"] for r in line], marker="o",
                    color=figures.COLORS[color], label=name)
            figures.seed_errorbars(ax, x, line, "test_accuracy", 100)
        for key, size in fixed.items():
            points = [r for r in mine if r["features"] == encoder_name(key)]
            x = [r["dim"] for r in points]
            ax.scatter(x, [100 * r["test_accuracy"] for r in points], marker="*", s=180,
                       color=figures.COLORS[key], zorder=3,
                       label=f"{encoder_name(key)} (fixed {size} code)")
            figures.seed_errorbars(ax, x, points, "test_accuracy", 100)
        figures.log2_latent_axis(ax, sorted({r["dim"] for r in mine if r["features"] != RAW}))
        ax.set_ylabel("test accuracy of the linear probe (%)")
        ax.set_title(dataset)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    figures.save(fig, path)


def run(ctx: Context) -> Result:
    choices = ctx.data()
    shapes: dict[str, tuple[int, ...]] = {}
    rows = ctx.over_seeds(
        lambda c: [row for choice in choices for row in dataset_rows(c, choice, shapes)])
    pixels = math.prod(ctx.splits(choices[0]).image_shape)
    columns = [column("dataset", "data set"), column("features", "features"),
               column("dim", "dimensions", "d"),
               column("test_accuracy", "test accuracy", ".4f"),
               column("train_accuracy", "train accuracy", ".4f"),
               column("points_over_pca", "points over PCA codes of this size", POINTS)]
    return Result(
        title=TITLE,
        question="Is a trained encoder a good feature extractor? A linear softmax classifier "
                 "is trained on frozen codes and compared with the same classifier on PCA "
                 "codes of the same size and on the raw pixels.",
        columns=columns, rows=rows, findings=findings(rows), notes=notes(pixels, rows, shapes),
        plot=lambda path: plot(rows, ctx.scale.name, path),
        settings={"probe": f"linear softmax, Adam 1e-3, batch 256, {PROBE_EPOCHS} epochs"
                           + (f" or {steps:,} steps if that is more"
                              if (steps := PROBE_MIN_STEPS[ctx.scale.name]) else "")
                           + f", seed{'s' if len(ctx.seeds) > 1 else ''} "
                           + ", ".join(map(str, ctx.seeds)),
                  "encoders": "the runs of ae_vs_pca (same workdirs)"})


if __name__ == "__main__":
    run_as_command("encoder_probe")
