"""Experiment `ae_vs_pca`: test reconstruction error of PCA against the dense, deep and conv
autoencoders, as a function of the code size d, on Fashion-MNIST and MNIST."""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from jaxae.data import Splits
from jaxae.evaluation import embedding, generation, pca
from jaxae.experiments import figures
from jaxae.experiments.common import (
    Context,
    DataChoice,
    Result,
    Run,
    and_list,
    column,
    fewer_images,
    recorded_train_sizes,
    run_as_command,
    sign_over_seeds,
    steps_note,
    steps_per_dataset,
)
from jaxae.experiments.render import SEED_SPREAD, seed_range

TITLE = "Autoencoders against PCA: test reconstruction error by code size"
LATENTS = {"full": (2, 10, 30, 64), "small": (2, 10, 30, 64), "tiny": (2, 10)}


@dataclasses.dataclass(frozen=True)
class Autoencoder:
    """One autoencoder the experiment compares: its config and the code sizes it is trained
    at per scale, or None for a model whose code the config fixes (its size is read from the
    model's `latent_shape`)."""

    config: str  # jaxae.configs.<config>
    latents: dict[str, tuple[int, ...]] | None


# The tiny scale compiles one deep AE: its compilation is the slowest.
AUTOENCODERS = {
    "dense_ae": Autoencoder("default", LATENTS),
    "deep_ae": Autoencoder("deep_ae", {**LATENTS, "tiny": (10,)}),
    "conv_ae": Autoencoder("conv_ae_fashion", None),
}
BAR = ("deep_ae", 30, "Fashion-MNIST")  # the claim checked: at most half of PCA's error there
PICTURE_D = 2  # the code size drawn as a 2-D picture, scored by embedding.neighbour_accuracy
Fixed = dict[str, tuple[str, tuple[int, ...]]]  # key -> (table label, code shape)


@dataclasses.dataclass(frozen=True)
class Trained:
    """A trained autoencoder of the comparison: its entry, code size, label and run."""

    key: str  # AUTOENCODERS' key
    latent: int
    label: str  # its method's name in the table
    fixed: bool  # its config fixes the code (no d to vary)
    run: Run


def flat_pixels(images_u8: np.ndarray) -> jnp.ndarray:
    """uint8 [N, H, W, C] -> float32 [N, H*W*C] in [0, 1]."""
    return jnp.asarray(images_u8.reshape(len(images_u8), -1), jnp.float32) / 255.0


def pca_test_mse(splits: Splits, sizes: list[int]) -> dict[int, float]:
    """Test MSE per pixel of PCA with d components, fitted on the training images, for each d
    (`pca.clipped_reconstructions`)."""
    test = flat_pixels(splits.test.images)
    return {d: float(jnp.mean(jnp.square(recon - test))) for d, recon in
            pca.clipped_reconstructions(flat_pixels(splits.train.images), test, sizes)}


def model_latents(key: str, scale: str) -> tuple[int, ...]:
    """The code sizes an autoencoder of AUTOENCODERS is trained at, at this scale (none for a
    fixed code)."""
    latents = AUTOENCODERS[key].latents
    return () if latents is None else latents[scale]


def code_shape_text(shape: tuple[int, ...]) -> str:
    """'4x4x8 = 128' for a code of shape (4, 4, 8)."""
    return f"{'x'.join(map(str, shape))} = {math.prod(shape)}"


def fixed_label(key: str, run: Run) -> str:
    """How the table names an autoencoder of fixed code, e.g. 'conv_ae (fixed 4x4x8 = 128
    code)'."""
    return f"{key} (fixed {code_shape_text(run.model.latent_shape)} code)"


def train_autoencoders(ctx: Context, choice: DataChoice) -> list[Trained]:
    """Every autoencoder this experiment compares, trained on one data set; `encoder_probe`
    reuses the same runs."""
    trained = []
    for key, entry in AUTOENCODERS.items():
        if entry.latents is None:
            run = ctx.train(entry.config, choice)
            trained.append(Trained(key, math.prod(run.model.latent_shape),
                                   fixed_label(key, run), True, run))
            continue
        for d in entry.latents[ctx.scale.name]:
            run = ctx.train(entry.config, choice, {"model.latent_dim": d})
            trained.append(Trained(key, d, key, False, run))
    return trained


def pca_sizes(scale: str, trained: list[Trained]) -> list[int]:
    """The code sizes PCA is fitted at: the scale's sizes, then those of the fixed codes."""
    sizes = list(LATENTS[scale])
    return sizes + [t.latent for t in trained if t.fixed and t.latent not in sizes]


def _row(dataset: str, method: str, d: int, mse: float, pca_mse: float | None,
         pixels: int, picture: float | None = None) -> dict:
    ratio = None if pca_mse is None else mse / pca_mse
    return {"dataset": dataset, "method": method, "latent": d, "test_mse": mse,
            "sse_per_image": mse * pixels, "ratio_to_pca": ratio, "picture_knn": picture}


def picture_accuracy(splits: Splits, run: Run | None = None) -> float:
    """How well the 2-D picture of the test images keeps the classes apart (leave-one-out
    5-NN accuracy, `embedding.neighbour_accuracy`): of an autoencoder's 2-D codes, or, without
    a run, of the pixels' first two principal components (`embedding.pixel_pca_points`, the
    picture evaluate.py draws beside the codes)."""
    if run is None:
        points = embedding.pixel_pca_points(splits.train.images, splits.test.images)
    else:
        points = generation.encode(run.model, run.params, splits.test.images,
                                   splits.test.labels)
    return embedding.neighbour_accuracy(points, np.asarray(splits.test.labels))


def dataset_rows(ctx: Context, choice: DataChoice, fixed: Fixed | None = None) -> list[dict]:
    """The rows of one data set: PCA at every size, then each autoencoder. `fixed`, if given,
    receives {key: (table label, code shape)} of the autoencoders whose config fixes the
    code."""
    splits = ctx.splits(choice)
    pixels = math.prod(splits.image_shape)
    trained = train_autoencoders(ctx, choice)
    sizes = pca_sizes(ctx.scale.name, trained)
    pca_mse = pca_test_mse(splits, sizes)
    rows = [_row(choice.title, "PCA", d, pca_mse[d], None, pixels,
                 picture_accuracy(splits) if d == PICTURE_D else None) for d in sizes]
    for t in trained:
        if t.fixed and fixed is not None:
            fixed[t.key] = (t.label, tuple(t.run.model.latent_shape))
        picture = picture_accuracy(splits, t.run) if t.latent == PICTURE_D else None
        rows.append(_row(choice.title, t.label, t.latent, t.run.metrics["mse"],
                         pca_mse[t.latent], pixels, picture))
    return rows


def picture_findings(rows: list[dict]) -> list[str]:
    """Per data set: how well each 2-D picture keeps the classes apart, PCA's and the
    autoencoders', and which keeps them apart best (the material's claim that an
    autoencoder's code is the better 2-D visualisation). Of several seeds' means, the best
    is named only where its lowest seed is above every other picture's highest."""
    out = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        drawn = [r for r in rows if r["dataset"] == dataset and r["picture_knn"] is not None]
        if len(drawn) < 2:
            continue
        best = max(drawn, key=lambda r: r["picture_knn"])
        scores = and_list([f"{r['method']} {r['picture_knn']:.1%}" for r in drawn])
        apart = all(seed_range(best, "picture_knn")[0] > seed_range(r, "picture_knn")[1]
                    for r in drawn if r is not best)
        several_seeds = any(SEED_SPREAD in r for r in drawn)
        verdict = (f"{best['method']}'s keeps the classes apart best" if apart else
                   f"{best['method']}'s is best on average, but not with every seed"
                   if several_seeds else "no one picture keeps them apart best (a tie)")
        out.append(f"{dataset}, {PICTURE_D}-D pictures of the test images: 5-NN class accuracy "
                   f"{scores}; {verdict}.")
    return out


def _ratios(rows: list[dict]) -> str:
    return ", ".join(f"d={r['latent']} ({r['ratio_to_pca']:.2f}x)" for r in rows)


def against_pca(row: dict) -> int:
    """1 where the row beats PCA with every seed, -1 where PCA beats it with every seed, 0
    for a tie: a ratio that prints as 1.00 (the table's precision), or seeds on both sides."""
    return -sign_over_seeds(row, "ratio_to_pca", ".2f", against=1.0)


def comparison_findings(rows: list[dict]) -> list[str]:
    """Per data set and model: the code sizes where it beats PCA and where it does not."""
    out = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        methods = dict.fromkeys(r["method"] for r in rows
                                if r["dataset"] == dataset and r["method"] != "PCA")
        for method in methods:
            mine = [r for r in rows if r["dataset"] == dataset and r["method"] == method]
            parts = []
            for verdict, text in ((1, "beats PCA at"), (0, "ties with PCA at"),
                                  (-1, "does not beat PCA at")):
                found = [r for r in mine if against_pca(r) == verdict]
                if found:
                    parts.append(f"{text} {_ratios(found)}")
            out.append(f"{dataset}, {method}: " + "; ".join(parts) +
                       " (its test MSE as a multiple of PCA's at the same d; a tie: 1.00x, or "
                       "seeds on both sides of PCA).")
    return out


def method_rows(rows: list[dict], dataset: str, method: str) -> list[dict]:
    return sorted((r for r in rows if r["dataset"] == dataset and r["method"] == method),
                  key=lambda r: r["latent"])


def against_pca_range(mine: list[dict]) -> str:
    """Where one model's test MSE is below PCA's on one data set, and its range as a multiple
    of PCA's, e.g. 'lower at every d (0.43x at d=10 to 0.62x at d=64)'."""
    wins = [r for r in mine if against_pca(r) == 1]
    if len(mine) == 1:
        where = f"{'lower' if wins else 'not lower'} at d={mine[0]['latent']}"
    elif len(wins) == len(mine):
        where = "lower at every d"
    elif not wins:
        where = "lower at no d"
    else:
        rest = [r for r in mine if r not in wins]
        where = (f"lower at d={', '.join(str(r['latent']) for r in wins)}, not at "
                 f"d={', '.join(str(r['latent']) for r in rest)}")
    low = min(mine, key=lambda r: r["ratio_to_pca"])
    high = max(mine, key=lambda r: r["ratio_to_pca"])
    if low is high:
        return f"{where} ({low['ratio_to_pca']:.2f}x)"
    return (f"{where} ({low['ratio_to_pca']:.2f}x at d={low['latent']} to "
            f"{high['ratio_to_pca']:.2f}x at d={high['latent']})")


def here(rows: list[dict], method: str) -> str:
    """' Its test MSE against PCA's here: A, lower at every d (...); B, ...' from the rows;
    '' if the method has no rows."""
    parts = [f"{dataset}, {against_pca_range(mine)}"
             for dataset in dict.fromkeys(r["dataset"] for r in rows)
             if (mine := method_rows(rows, dataset, method))]
    return f" Its test MSE against PCA's here: {'; '.join(parts)}." if parts else ""


def pca_error_falls(rows: list[dict]) -> bool:
    """Whether PCA's test error falls with d on every data set of the table."""
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        errors = [r["test_mse"] for r in method_rows(rows, dataset, "PCA")]
        if any(b >= a for a, b in zip(errors, errors[1:], strict=False)):
            return False
    return True


def bar_finding(rows: list[dict], scale: str) -> str:
    """The claim checked (BAR): deep AE at d=30 at most half of PCA's error on Fashion-MNIST,
    met only where every seed meets it."""
    method, latent, dataset = BAR
    match = [r for r in rows if r["dataset"] == dataset and r["method"] == method
             and r["latent"] == latent]
    if not match:
        return f"The bar ({method} at d={latent} on {dataset}) is not run at this scale."
    ratio = match[0]["ratio_to_pca"]
    low, high = seed_range(match[0], "ratio_to_pca")
    verdict = "met" if high <= 0.5 else "not met" if low > 0.5 else \
        f"met by some seeds only ({low:.3f}x to {high:.3f}x)"
    where = "" if scale == "full" else " (the bar is set for the full scale; this is " \
        f"the {scale} scale)"
    return (f"Bar: {method} at d={latent} on {dataset} has {ratio:.2f}x PCA's test "
            f"MSE; the bar is at most 0.5x: {verdict}{where}.")


def notes(image_shape: tuple[int, int, int], fixed: Fixed, rows: list[dict],
          train_sizes: dict[str, int], run_steps: dict[str, list[int]] | None = None,
          cap: int | None = None) -> list[str]:
    """Why the numbers come out as they do, for images of `image_shape`; every statement about
    the results is computed from `rows`, `train_sizes` ({data set: training images}) and
    `run_steps` ({data set: each run's steps}; `cap`: the scale's cap on epochs)."""
    pixels = math.prod(image_shape)
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    conv_note = []
    if "conv_ae" in fixed:
        label, shape = fixed["conv_ae"]
        size = math.prod(shape)
        ratios = [f"{r['ratio_to_pca']:.2f}x PCA's on {dataset}" for dataset in datasets
                  for r in method_rows(rows, dataset, label)]
        largest = size >= max(r["latent"] for r in rows if r["method"] == "PCA")
        conv_note = [
            f"conv_ae has no d to vary: its code is fixed at {code_shape_text(shape)} values, and "
            "its config trains it with binary cross-entropy, not MSE. It is compared with PCA at "
            f"{size} components{', the largest PCA here' if largest else ''}; its test MSE is "
            f"{and_list(ratios)}."]
    falls = (", and PCA's own error falls as d grows, leaving less room for a better code"
             if pca_error_falls(rows) else "")
    steps = steps_note(run_steps or {}, cap)
    if steps and (fewer := fewer_images(train_sizes)) is not None:
        small, n, large, m = fewer
        steps = (f"{small} has {n:,} training images against {large}'s {m:,}. {steps} PCA is "
                 "fitted exactly on either.")
    return [
        "PCA is the best linear code: among all rank-d linear encoders and decoders, the d "
        "leading principal components give the smallest squared error (Eckart-Young). An "
        "autoencoder can only beat it through its non-linearities, and it must also find its "
        "optimum by gradient descent, where PCA gets its exactly from an SVD.",
        "dense_ae is the material's one-layer autoencoder: code ReLU(Wx + b), image "
        "sigmoid(Vz + c). Between its two non-linearities it is a rank-d linear map. The ReLU "
        "cuts every code coordinate at 0, which at small d throws away half the range of "
        "directions it cannot spare (and a unit that stops firing stays off); the sigmoid helps "
        "only on pixels that sit at 0 or 1, such as the black background." +
        here(rows, "dense_ae"),
        f"deep_ae ({pixels}-1000-500-250-d, Hinton & Salakhutdinov 2006) encodes and decodes "
        "non-linearly: its d-dimensional code can follow a curved set of images that a "
        f"d-dimensional plane cannot{falls}." + here(rows, "deep_ae"),
        *conv_note,
        *(["A 2-D picture keeps the classes apart only as far as two coordinates can: PCA's, "
           "and nearly dense_ae's, are linear maps of the pixels onto a plane, where images "
           "that differ off the plane fall on top of each other; a non-linear encoder "
           "(deep_ae) can place them apart. The 5-NN accuracy counts how often an image's "
           "neighbours in the picture are of its class, which no model saw in training."]
          if any(r.get("picture_knn") is not None for r in rows) else []),
        *([steps] if steps else []),
        "Errors are test mean squared errors per pixel (pixels in [0, 1]); summed squared error "
        f"per image = {pixels} x MSE. PCA is fitted with jaxae.evaluation.pca (an SVD in JAX) "
        "on the same training images the autoencoders were trained on; its reconstructions are "
        "clipped to [0, 1], the range of the autoencoders' sigmoid outputs.",
    ]


def fixed_methods(rows: list[dict]) -> dict[str, str]:
    """{key: its rows' method} of the autoencoders whose config fixes the code, as the rows
    name them (`fixed_label`): the plot draws them as stars, the others as curves over d."""
    methods = dict.fromkeys(r["method"] for r in rows)
    return {key: method for key, entry in AUTOENCODERS.items() if entry.latents is None
            for method in methods if method.startswith(f"{key} (fixed ")}


def plot_record(record: dict, path: str) -> None:
    """The plot drawn again from the experiment's table.json record alone (no training)."""
    plot(record["rows"], record["scale"], recorded_train_sizes(record), path)


def plot(rows: list[dict], scale: str, sizes: dict[str, int], path: str) -> None:
    """Test MSE against code size per data set (`sizes`: {data set: training images}): PCA and
    the autoencoders of free size as curves, those of fixed size as stars; with several seeds,
    error bars from the lowest to the highest seed."""
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fixed = fixed_methods(rows)
    fig, axes = figures.panels(len(datasets), "Test reconstruction error against code size",
                               scale, seed_bars=figures.any_spread(rows, "test_mse"))
    for ax, dataset in zip(axes[0], datasets, strict=True):
        mine = [r for r in rows if r["dataset"] == dataset]
        for method in ["PCA", *(k for k in AUTOENCODERS if k not in fixed)]:
            line = [r for r in mine if r["method"] == method]
            x = [r["latent"] for r in line]
            ax.plot(x, [r["test_mse"] for r in line], marker="o",
                    color=figures.COLORS[method], label=method)
            figures.seed_errorbars(ax, x, line, "test_mse")
        for key, label in fixed.items():
            points = [r for r in mine if r["method"] == label]
            x = [r["latent"] for r in points]
            ax.scatter(x, [r["test_mse"] for r in points], marker="*", s=180,
                       color=figures.COLORS[key], label=label, zorder=3)
            figures.seed_errorbars(ax, x, points, "test_mse")
        figures.log2_latent_axis(ax, sorted({r["latent"] for r in mine}))
        ax.set_yscale("log")
        ax.set_ylabel("test MSE per pixel (log scale)")
        ax.set_title(f"{dataset} ({sizes[dataset]:,} training images)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="best")
    figures.save(fig, path)


def code_sizes(scale: str, fixed: Fixed) -> str:
    """'dense_ae 2, 10; deep_ae 10; conv_ae 128': the sizes each autoencoder is trained at."""
    return "; ".join(
        f"{key} {math.prod(fixed[key][1])}" if key in fixed else
        f"{key} " + ", ".join(map(str, model_latents(key, scale))) for key in AUTOENCODERS)


def run(ctx: Context) -> Result:
    fixed: Fixed = {}
    choices = ctx.data()
    rows = ctx.over_seeds(
        lambda c: [row for choice in choices for row in dataset_rows(c, choice, fixed)])
    sizes = ctx.train_sizes()
    image_shape = ctx.splits(choices[0]).image_shape
    columns = [column("dataset", "data set"), column("method", "method"),
               column("latent", "code size d", "d"), column("test_mse", "test MSE", ".5f"),
               column("sse_per_image", "summed squared error per image", ".2f"),
               column("ratio_to_pca", "x PCA's MSE at this d", ".2f"),
               column("picture_knn", f"5-NN class accuracy of the {PICTURE_D}-D picture",
                      ".1%")]
    return Result(
        title=TITLE,
        question="Does an autoencoder compress images better than PCA? Test reconstruction "
                 "error of PCA (fitted on the training split) and of three autoencoders, "
                 "at the same code size; and does a 2-D code draw the classes further apart "
                 "than PCA's first two components? (In a 2-D picture of the test images, the "
                 "share of images whose own class gets the most votes among their 5 nearest "
                 "other points: about 10% is no separation for 10 classes, 100% full "
                 "separation; no model saw the labels.)",
        columns=columns, rows=rows,
        findings=comparison_findings(rows) + picture_findings(rows)
        + [bar_finding(rows, ctx.scale.name)],
        notes=notes(image_shape, fixed, rows, sizes, steps_per_dataset(ctx.used_runs),
                    ctx.scale.max_epochs),
        plot=lambda path: plot(rows, ctx.scale.name, sizes, path),
        settings={"code sizes": code_sizes(ctx.scale.name, fixed),
                  "configs": "configs/default.py (dense_ae), configs/deep_ae.py, "
                             "configs/conv_ae_fashion.py (conv_ae), with data.name set per "
                             "row",
                  "2-D pictures": f"the d={PICTURE_D} codes of the test images; PCA's, their "
                                  "pixels on the first two principal components of the first "
                                  f"{embedding.PCA_FIT_IMAGES:,} training images (as evaluate.py "
                                  "draws it beside the codes)"})


if __name__ == "__main__":
    run_as_command("ae_vs_pca")
