"""Images a trained model makes from codes that belong to no training image, and its codes.

VAEs decode z ~ N(0, I) (a conditional one for a chosen class); a plain autoencoder, as in
the material, decodes an image's code perturbed as code * (1 + N(0, 1) noise). With a 2-D
latent, the manifold decodes a grid of latent coordinates. Every function takes the model
and its parameters, and branches only on what the model declares.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import norm

from jaxae import losses
from jaxae.data.batches import to_float
from jaxae.data.records import HostArray
from jaxae.kernels import random
from jaxae.keys import check_key, eval_example_key
from jaxae.models import declarations
from jaxae.models.base import ModelParams, Variables, check_label_values, variables_of
from jaxae.tasks import Task
from jaxae.training.compiler import jit_per_model


def check_params(params: object, function: str) -> None:
    """A TypeError naming the fix for a train state (or anything else) given as parameters."""
    if not isinstance(params, (Mapping, Variables)):
        raise TypeError(f"{function} takes the model's parameters, not a "
                        f"{type(params).__name__}: pass state.params (state.variables for a "
                        "model that keeps state)")


def _check_float_inputs(inputs: jax.Array, function: str) -> None:
    """A TypeError naming the fix for integer images (uint8 as the data sets give them), which
    the model would encode as values of 0..255."""
    dtype = getattr(inputs, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{function} takes float model inputs in [0, 1], not {dtype}: scale "
                        "uint8 images with jaxae.data.batches.to_float (generation.encode "
                        "takes uint8 images)")


def deterministic_codes(model: nn.Module, params: ModelParams, images: jax.Array,
                        labels: jax.Array | None = None) -> jax.Array:
    """Codes [B, D] (flattened) of float images: z_mean for variational models."""
    check_params(params, "deterministic_codes")
    _check_float_inputs(images, "deterministic_codes")
    declarations.check_images(np.shape(images), "deterministic_codes")
    with declarations.matching_params(model):
        code = model.apply(variables_of(params), images, labels=labels, method="encode")
    if model.variational:
        code = code[0]
    return code.reshape(code.shape[0], -1)


@jit_per_model()
def _codes(model: nn.Module, params: ModelParams, images_u8: jax.Array, labels: jax.Array
           ) -> jax.Array:
    return deterministic_codes(model, params, to_float(images_u8), labels)


@jit_per_model(static=2)
def _task_codes(model: nn.Module, task: Task, params: ModelParams, images_u8: jax.Array,
                labels: jax.Array, key: jax.Array) -> jax.Array:
    inputs, _ = task.make_example(images_u8, key)
    return deterministic_codes(model, params, inputs, labels)


def draws_input(task: Task | None, task_key: jax.Array | None) -> bool:
    """Whether `task` draws the inputs a model encodes from the images
    (`Task.draws_input`); a ValueError naming `task_key` where it does and none is given."""
    if task is None or not task.draws_input:
        return False
    if task_key is None:
        raise ValueError(f"task {type(task).__name__} draws the inputs it encodes from the "
                         "images (a corruption or a binarised draw): give task_key= (a "
                         "run's Keys.eval draws them as its evaluation did)")
    return True


def encode(model: nn.Module, params: ModelParams, images_u8: HostArray,
           labels: HostArray | None = None, batch_size: int = 1000, task: Task | None = None,
           task_key: jax.Array | None = None) -> np.ndarray:
    """Codes [N, D] of uint8 images [N, H, W, C] (`deterministic_codes`), in batches: of the
    clean images, or, given a `task` that draws its input from them (a denoising task's
    corruption, a binarised draw: `Task.draws_input`), of the inputs it makes of them, the
    kind of input the model was trained to encode. With evaluation's key and batch size,
    batch i is drawn as evaluation's batch i is (`keys.eval_example_key`): such a task
    needs `task_key`. `labels`, each image's class, are read by conditional models only."""
    check_params(params, "encode")
    if not hasattr(images_u8, "shape"):  # a list of images (a streamed split stays lazy)
        images_u8 = np.asarray(images_u8)
    declarations.check_images(np.shape(images_u8), "encode", getattr(model, "image_shape", None))
    if model.conditional:
        _check_labels(model, labels, len(images_u8))
    corrupt = draws_input(task, task_key)
    parts = []
    for n, i in enumerate(range(0, len(images_u8), batch_size)):
        images = images_u8[i:i + batch_size]
        batch_labels = None if labels is None else labels[i:i + batch_size]
        parts.append(_task_codes(model, task, params, images, batch_labels,
                                 eval_example_key(task_key, n)) if corrupt
                     else _codes(model, params, images, batch_labels))
    return np.concatenate([np.asarray(p) for p in parts])


@jit_per_model()
def _decoded_images(model: nn.Module, params: ModelParams, z: jax.Array, labels: jax.Array | None
                    ) -> jax.Array:
    with declarations.matching_params(model):
        logits = model.apply(variables_of(params), z, labels=labels, method="decode")
    return losses.sigmoid(logits)


def decode(model: nn.Module, params: ModelParams, z: jax.Array, labels: jax.Array | None = None
           ) -> np.ndarray:
    """Images [N, H, W, C] in [0, 1] decoded from codes z (one compiled program per model
    and shape: decoding op by op would compile every operation on its own)."""
    check_params(params, "decode")
    if model.conditional or labels is not None:
        _check_labels(model, labels, len(z))
    latent = model.latent_shape
    if latent is not None and tuple(np.shape(z)[1:]) != tuple(latent):
        shown = ", ".join(map(str, latent))
        if tuple(np.shape(z)) == tuple(latent):
            raise ValueError(f"decode's codes are [{shown}], one code without the batch axis: "
                             f"give codes [N, {shown}] (z[None] for one)")
        raise ValueError(f"decode's codes are [{', '.join(map(str, np.shape(z)))}], but "
                         f"{type(model).__name__}'s latent is [{shown}]: give codes [N, "
                         f"{shown}]")
    return np.asarray(_decoded_images(model, params, z, labels))


def prior_samples(model: nn.Module, params: ModelParams, key: jax.Array, num: int,
                  labels: jax.Array | None = None) -> np.ndarray:
    """Samples of a variational model: decode z ~ N(0, I) (with labels, if conditional). A
    plain autoencoder has no prior to draw from: `perturbed_code_samples` is its kind."""
    if not model.variational:
        raise ValueError(f"{type(model).__name__} is not a variational model, so N(0, I) is not "
                         "its prior: use perturbed_code_samples for a plain autoencoder")
    if not isinstance(num, numbers.Integral) or num < 1:
        raise ValueError(f"prior_samples' num={num!r}: give the number of samples, 1 or more")
    return _decoded_prior(model, params, key, num, num, labels, "prior_samples")


def _decoded_prior(model: nn.Module, params: ModelParams, key: jax.Array, draws: int,
                   num: int, labels: jax.Array | None, function: str) -> np.ndarray:
    """`num` images decoded from `draws` codes z ~ N(0, I), repeated in turn to `num` (a
    draw per sample, or one per column of a class grid), with `labels`, once checked."""
    check_params(params, function)
    check_key(key, f"{function}' key")  # (the functions' names end in s)
    _check_labels(model, labels, num)
    z = random.normal(key, (draws, *model.latent_shape))
    z = jnp.tile(z, (num // draws, *[1] * len(model.latent_shape)))
    return np.asarray(_decoded_images(model, params, z, labels))


def _check_labels(model: nn.Module, labels: jax.Array | None, num: int) -> None:
    """A ValueError naming the fix for labels that a conditional model cannot take: missing,
    not integers, not one per sample, or (where the model has num_classes) outside
    0 .. num_classes - 1,
    which one-hot encode to no class at all; and for labels given to a model that is not
    conditional, which would ignore them (samples of no chosen class)."""
    name = type(model).__name__
    if not model.conditional:
        if labels is not None:
            raise ValueError(f"{name} is not conditional on the class, so it would ignore the "
                             "labels: drop labels= (a conditional model, such as cvae, takes "
                             "them)")
        return
    if labels is None:
        raise ValueError(f"{name} is conditional on the class: pass labels= (int [num], the "
                         "class of each sample)")
    values = np.asarray(labels)
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"{name} was given labels of dtype {values.dtype}: give int labels, "
                         "the class of each sample")
    if values.shape != (num,):
        raise ValueError(f"{name} was given labels of shape {values.shape} for {num} samples: "
                         "give one class per sample, int [num]")
    check_label_values(name, values, getattr(model, "num_classes", None))


def class_samples(model: nn.Module, params: ModelParams, key: jax.Array, per_class: int,
                  num_classes: int, shared_z: bool = False) -> np.ndarray:
    """Conditional samples [num_classes, per_class, H, W, C]: row c is asked to be class c.
    `shared_z`: column j decodes one z ~ N(0, I) as every class (what the code holds apart
    from the class: a style); else every sample draws its own."""
    if not model.conditional:
        raise ValueError(f"{type(model).__name__} is not conditional on the class, so no class "
                         "can be asked of its samples: use prior_samples")
    labels = np.repeat(np.arange(num_classes), per_class)
    num = num_classes * per_class
    images = _decoded_prior(model, params, key, per_class if shared_z else num, num, labels,
                            "class_samples")
    return images.reshape(num_classes, per_class, *images.shape[1:])


def perturbed_code_samples(model: nn.Module, params: ModelParams, inputs: jax.Array,
                           key: jax.Array, labels: jax.Array | None = None) -> np.ndarray:
    """Plain-AE generation, as in the material: decode code * (1 + N(0, 1) noise), the codes
    of `inputs`: float model inputs, what the model was trained to encode (the clean images
    as `to_float` gives them, or a denoising task's corrupted ones). A conditional model
    takes each input's class as `labels`, for its code and its decode alike."""
    if model.variational:
        raise ValueError(f"{type(model).__name__} is a variational model: its samples decode "
                         "z ~ N(0, I), its prior: use prior_samples (perturbed codes are a "
                         "plain autoencoder's kind)")
    check_params(params, "perturbed_code_samples")
    _check_float_inputs(inputs, "perturbed_code_samples")
    check_key(key, "perturbed_code_samples' key")
    _check_labels(model, labels, len(inputs))
    code = _code(model, params, inputs, labels)
    noisy = code * (1 + random.normal(key, code.shape))
    return np.asarray(_decoded_images(model, params, noisy, labels))  # checked above


@jit_per_model()
def _code(model: nn.Module, params: ModelParams, inputs: jax.Array, labels: jax.Array | None
          ) -> jax.Array:
    with declarations.matching_params(model):
        return model.apply(variables_of(params), inputs, labels=labels, method="encode")


def manifold_coordinates(variational: bool, size: int, codes: np.ndarray | None = None
                         ) -> np.ndarray:
    """The latent values [2, size] swept along each axis of a 2-D latent.

    Variational: the N(0, 1) quantiles from 5% to 95% on both axes, so the grid covers the
    prior evenly. A plain AE has no prior: the 5th to 95th percentiles of the test codes
    along each axis.
    """
    if variational:
        quantiles = np.asarray(norm.ppf(jnp.linspace(0.05, 0.95, size)))
        return np.stack([quantiles, quantiles])
    if codes is None or np.ndim(codes) != 2 or np.shape(codes)[1] != 2:
        raise ValueError(f"a plain autoencoder's manifold spans its test codes, and codes="
                         f"{'None' if codes is None else list(np.shape(codes))}: give codes "
                         "[N, 2] (generation.encode of test images)")
    low, high = np.percentile(codes, [5, 95], axis=0)
    return np.linspace(low, high, size).T


def sweeps_a_plane(model: nn.Module) -> bool:
    """Whether the model's code is 2 numbers, a plane `manifold` can sweep (a [1, 1, 2] code,
    a conv model's, is not)."""
    return model.latent_shape is not None and tuple(model.latent_shape) == (2,)


def manifold(model: nn.Module, params: ModelParams, coords: np.ndarray, label: int | None = None
             ) -> np.ndarray:
    """Images [rows, cols, H, W, C] over coords [2, size]: row i has z[1] = y_i (top =
    largest), column j z[0] = x_j. A conditional model decodes every point as class
    `label`."""
    check_params(params, "manifold")
    if model.conditional and label is None:
        raise ValueError(f"{type(model).__name__} is conditional on the class: give label=, "
                         "the class every image of the grid is asked to be")
    if model.latent_shape is not None and not sweeps_a_plane(model):
        raise ValueError(f"manifold sweeps a code of 2 numbers, and {type(model).__name__}'s "
                         f"is [{', '.join(map(str, model.latent_shape))}]: give a model whose "
                         "code is 2 numbers (latent_dim=2 for the dense and variational "
                         "models), or see its codes in a latent scatter (a PCA plane)")
    if np.ndim(coords) != 2 or len(coords) != 2:
        raise ValueError(f"manifold's coords are shaped {np.shape(coords)}: give [2, size], "
                         "the values swept along each latent axis (manifold_coordinates)")
    xs, ys = coords
    grid_x, grid_y = np.meshgrid(xs, ys[::-1])
    z = jnp.asarray(np.stack([grid_x.ravel(), grid_y.ravel()], axis=1), jnp.float32)
    labels = None if label is None else np.full(len(z), label)
    images = decode(model, params, z, labels)
    return images.reshape(len(ys), len(xs), *images.shape[1:])
