"""The pictures of a trained model, chosen by what the model and the task declare.

- reconstructions.png: [the task's input and classical baseline,] output, original;
- samples.png: a conditional variational model's samples per requested class (a z per
  column: the class changes down it, what else the code holds along it), a
  variational model's samples from the prior, or a plain autoencoder's decodes of perturbed
  codes (the material's generation: [the task's input,] three draws, original; a
  conditional one's with each image's own class); none for a model without a code
  (`latent_shape` None);
- manifold.png: for a 2-D code, decoded images over a grid of the latent plane (not for a
  conditional model, whose plane differs per class);
- latent_scatter.png: test codes coloured by class (of the task's inputs, where they differ
  from the images: what the model was trained to encode), projected by PCA when the code
  has more than two dimensions (a 1-D code is drawn against the class); for a model that
  encodes the images themselves, with PCA's 2-D picture of the same images' pixels beside
  it, each panel headed by its 5-NN class accuracy (the lesson's claim that a code is the
  better 2-D picture, measured).
"""

from __future__ import annotations

import dataclasses
import os

import flax.linen as nn
import jax
import numpy as np

from jaxae import losses
from jaxae.data.batches import to_float
from jaxae.data.records import HostArray
from jaxae.data.splits import Split, Splits
from jaxae.evaluation import embedding, generation, pca, plots
from jaxae.keys import PICTURES_STREAM, Keys, derive_keys, eval_example_key
from jaxae.models import declarations
from jaxae.models.base import ModelParams, variables_of
from jaxae.tasks import Task
from jaxae.training.compiler import jit_per_model

PRIOR_SAMPLE_ROWS = 4
PERTURBED_SAMPLE_ROWS = 3
BAND = 0.6  # the height of a class's band of points in a 1-D code's picture


@dataclasses.dataclass(frozen=True)
class PictureOptions:
    num_images: int = 10  # columns of the reconstruction and sample pictures
    manifold_size: int = 15  # decoded images per side of the manifold grid
    eval_batch_size: int = 1000  # evaluation's: the scatter's inputs are corrupted as its are


def picture_indices(labels: HostArray, num_images: int) -> np.ndarray:
    """Which test images the pictures show, in split order: the first `num_images`, unless
    they leave out a class that would fit (a split stored class by class, like an image
    folder's): then the classes in turns (each one's first image, then each one's second,
    ...), so that no class fills the picture. With more classes than pictures, the first
    images, unless they are all of one class: then the first image of as many classes as
    fit."""
    labels = np.asarray(labels)
    count = min(num_images, len(labels))
    classes = len(np.unique(labels))
    firsts = np.sort(np.unique(labels, return_index=True)[1])
    shown = len(np.unique(labels[:count]))
    if shown == classes or (classes > count and shown > 1):
        return np.arange(count)
    if classes > count:
        return firsts[:count]
    of_class = [np.flatnonzero(labels == labels[first]) for first in firsts]
    in_turns = [index for turn in range(max(map(len, of_class))) for index in
                (indices[turn] for indices in of_class if turn < len(indices))]
    return np.sort(np.asarray(in_turns[:count], np.int64))


def reconstruction_rows(model: nn.Module, task: Task, params: ModelParams, split: Split,
                        key: jax.Array, num_images: int) -> list[tuple[str, np.ndarray]]:
    """Rows of the reconstruction picture: [input, classical baseline,] output, original (the
    target a dynamically binarising task drew from it, or the static draw the split holds,
    so labelled)."""
    chosen = picture_indices(split.labels, num_images)
    images, labels = np.asarray(split.images)[chosen], np.asarray(split.labels)[chosen]
    inputs, targets = task.make_example(images, eval_example_key(key, 0))
    logits = _mean_logits(model, params, inputs, labels)
    image_shape = targets.shape[1:]
    rows = []
    if task.shows_input:
        rows.append((task.input_label(image_shape),
                     np.asarray(task.input_as_image(inputs, image_shape))))
    if task.shows_input and task.baseline_name is not None:
        rows.append((task.baseline_name, np.asarray(task.baseline(inputs, image_shape))))
    target = "target\n(binarised draw)" if task.binarize_targets else original_label(split)
    output = "output\n(z = z_mean)" if model.variational else "output"
    return rows + [(output, np.asarray(losses.sigmoid(logits))), (target, np.asarray(targets))]


@jit_per_model()
def _mean_logits(model: nn.Module, params: ModelParams, inputs: jax.Array, labels: jax.Array
                 ) -> jax.Array:
    """The reconstruction's logits, z = z_mean for a variational model."""
    with declarations.matching_params(model):
        return model.apply(variables_of(params), inputs, labels=labels, sample=False)[0]


def sample_rows(model: nn.Module, params: ModelParams, data: Splits, key: jax.Array,
                num_images: int, task: Task | None = None, task_key: jax.Array | None = None
                ) -> tuple[str, list[tuple[str, np.ndarray]]] | None:
    """(what they are, rows) of the generation picture, or None for a model without a code.
    A plain autoencoder's codes are of what its `task` gives it to encode (a denoising
    task's corrupted images, drawn with `task_key`, shown as a row), not of clean images
    it never saw; a task that draws nothing (`Task.draws_input`) needs no `task_key`."""
    if model.latent_shape is None:
        return None
    generation.draws_input(task, task_key)  # a task that draws needs its key
    if model.variational and model.conditional:
        grid = generation.class_samples(model, params, key, num_images, data.num_classes,
                                        shared_z=True)
        return ("samples per requested class, one z per column",
                list(zip(data.class_names, grid, strict=True)))
    if model.variational:
        grid = generation.prior_samples(model, params, key, PRIOR_SAMPLE_ROWS * num_images)
        rows = grid.reshape(PRIOR_SAMPLE_ROWS, num_images, *grid.shape[1:])
        return "samples from the prior", [("z ~ N(0, I)", row) for row in rows]
    indices = picture_indices(data.test.labels, num_images)
    images = np.asarray(data.test.images)[indices]
    labels = np.asarray(data.test.labels)[indices] if model.conditional else None
    rows = []  # in the reconstruction picture's order: [input,] what the model made, original
    if task is None:
        inputs = to_float(images)
    else:  # what the model was trained to encode: the task's inputs (corrupted, binarised...)
        # a task that draws nothing reads no key: `key` stands in for the one not given
        inputs, targets = task.make_example(images, key if task_key is None else task_key)
        if task.shows_input:
            rows.append((task.input_label(targets.shape[1:]),
                         np.asarray(task.input_as_image(inputs, targets.shape[1:]))))
    for i in range(PERTURBED_SAMPLE_ROWS):
        perturbed = generation.perturbed_code_samples(model, params, inputs,
                                                      jax.random.fold_in(key, i), labels)
        rows.append((f"code x (1+N(0,1))\ndraw {i + 1}", perturbed))
    return "perturbed codes", rows + [(original_label(data.test), images / 255.0)]


def original_label(split: Split) -> str:
    """How pictures label a split's own images: binarised where the split holds a static
    draw of them (data.binarize=static), not the data set's grey originals."""
    return "original\n(binarised)" if split.binarized else "original"


def write_pictures(model: nn.Module, task: Task, params: ModelParams, data: Splits,
                   keys: Keys | int | jax.Array, title: str, out_dir: str,
                   options: PictureOptions = PictureOptions(),
                   test_codes: np.ndarray | None = None) -> dict[str, str]:
    """Writes every picture that applies to the model into `out_dir` (made if missing);
    returns {file name: its title}. `keys`: a run's `Keys`, or a seed or PRNG key to derive
    them from as a run does (`jaxae.keys.derive_keys`). `test_codes`: the test images'
    codes as `generation.encode` gives them with these keys and batch size, where the
    caller has them already (else encoded here)."""
    if not isinstance(data, Splits):
        raise TypeError(f"write_pictures takes the run's Splits (jaxae.data.make_splits), not "
                        f"a {type(data).__name__}: its test split is drawn, and its class "
                        "names label the pictures")
    generation.check_params(params, "write_pictures")
    keys = keys if isinstance(keys, Keys) else derive_keys(keys)
    written = {}

    def save(file: str, picture_title: str) -> tuple[str, str]:
        os.makedirs(out_dir, exist_ok=True)  # once the first picture is drawn: no empty folder
        written[file] = picture_title
        return picture_title, os.path.join(out_dir, file)

    plots.image_rows(reconstruction_rows(model, task, params, data.test, keys.eval,
                                         options.num_images),
                     *save("reconstructions.png", f"{title}: test images"))
    samples = sample_rows(model, params, data, jax.random.fold_in(keys.sample, PICTURES_STREAM),
                          options.num_images, task,
                          eval_example_key(keys.eval, 0))
    if samples is None:
        return written
    what, rows = samples
    plots.image_rows(rows, *save("samples.png", f"{title}: {what}"))
    codes = test_codes if test_codes is not None else generation.encode(
        model, params, data.test.images, data.test.labels, options.eval_batch_size, task,
        keys.eval)
    name = "z" if model.variational else "code"
    if codes.shape[1] == 2:
        points, axes = codes, (f"{name}[0]", f"{name}[1]")
        if not model.conditional and generation.sweeps_a_plane(model):
            coords = generation.manifold_coordinates(model.variational, options.manifold_size,
                                                     codes)
            grid = generation.manifold(model, params, coords)
            xs, ys = coords
            span = ("the N(0, 1) quantiles 5% to 95%" if model.variational
                    else "the test codes' 5th to 95th percentiles (latent_scatter.png)")
            plots.manifold(grid, xs, ys, *save("manifold.png",
                                               f"{title}: decoded latent grid over {span}"),
                           axes)
    elif codes.shape[1] == 1:  # a 1-D code: along x, one band per class
        points = np.stack([np.asarray(codes[:, 0]),
                           np.asarray(data.test.labels) + band_offsets(len(codes))], axis=1)
        axes = (f"{name}[0]", f"class (points spread +-{BAND / 2} about each class's row)")
    else:
        points = pca.two_columns(pca.project(pca.fit(codes, 2), codes))
        codes_are = "z_mean" if model.variational else "the codes"
        axes = (f"principal component 1 of {codes_are}", f"principal component 2 of {codes_are}")
    what = "z_mean" if model.variational else "codes"
    if task.shows_input:  # the model encodes what the task gives it, as in training
        label = task.input_label(data.test.images.shape[1:]).replace("\n", " ")
        what += f" of the {label}"
    elif task.draws_input:  # a draw the picture does not show (dynamic binarisation)
        what += " of a binarised draw of each image"
    if model.conditional:  # the encoder was told each image's class
        what += ", given its class"
    caption, beside = "", None
    if codes.shape[1] > 1 and not (task.draws_input or model.conditional):
        drawn = f"{what} ({codes.shape[1]}-D)"
        caption, beside = pixel_pca_panel(
            points, data, drawn if codes.shape[1] == 2 else f"PCA of the {drawn}, in this plane")
    plots.latent_scatter(points, data.test.labels, data.class_names,
                         *save("latent_scatter.png", f"{title}: test {what} ({codes.shape[1]}-D)"),
                         axes, y_is_class=codes.shape[1] == 1, caption=caption, beside=beside)
    return written


def band_offsets(count: int) -> np.ndarray:
    """y offsets in [-BAND/2, BAND/2) for `count` points, spread evenly and without a draw
    (the golden ratio's multiples, mod 1): a 1-D code's points on one line per class drew
    each class as a solid bar from its least code to its largest, its density unseen."""
    return (np.arange(count) * 0.6180339887498949 % 1.0 - 0.5) * BAND


def pixel_pca_panel(points_Nx2: np.ndarray, data: Splits, what: str
                    ) -> tuple[str, plots.Panel | None]:
    """The caption of a latent scatter's own panel, and the panel of PCA's 2-D picture of the
    same test images' pixels beside it, each with how well it keeps the classes apart
    (`embedding.neighbour_accuracy`, in the plane drawn); ("", None) for too few test images
    to score. Test images of one class, or a class of k test images or fewer (a score the
    counts would set, not the picture), get no accuracy: the panel is drawn alone, saying
    why in the second case; a score says over how many test images it is."""
    labels = np.asarray(data.test.labels)
    if len(labels) <= embedding.NEIGHBOURS:
        return "", None
    reference = embedding.pixel_pca_points(data.train.images, data.test.images)
    k, fitted = embedding.NEIGHBOURS, min(len(data.train), embedding.PCA_FIT_IMAGES)
    pixels = f"PCA of the pixels (fitted on {fitted:,} training images)"
    axes = ("principal component 1 of the pixels", "principal component 2 of the pixels")
    counts = np.unique(labels[:embedding.MAX_POINTS], return_counts=True)[1]
    if len(counts) < 2:
        return "", plots.Panel(reference, axes, pixels)
    if counts.min() <= k:  # its points' neighbours are mostly other classes', whatever
        return "", plots.Panel(reference, axes, (  # the picture: a score of the counts
            f"{pixels}; no {k}-NN class accuracy: a class has {counts.min()} test "
            f"image{'s' if counts.min() > 1 else ''}, {k} neighbours need more"))
    scored = f"over {counts.sum():,} test images"

    def agreement(points: np.ndarray) -> str:
        accuracy = embedding.neighbour_accuracy(points, labels)
        return f"{k}-NN class accuracy {accuracy:.1%} {scored}"

    return (f"{what}: {agreement(points_Nx2)}",
            plots.Panel(reference, axes, f"{pixels}: {agreement(reference)}"))
