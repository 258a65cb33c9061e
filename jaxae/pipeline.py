"""From uint8 images held in memory to (model input, target) pairs, deterministically.

Every random choice takes a key derived from the config's seed: the order of the training
images is a permutation drawn from (data key, epoch), so any step's batch can be recomputed
from the step number alone, which makes a resumed run see exactly the same batches.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxae import losses


class Keys(NamedTuple):
    """The independent PRNG streams of a run, all derived from the config's seed."""

    init: jax.Array  # parameter initialisation
    train: jax.Array  # per-step corruption and dynamic binarisation (folded with the step)
    eval: jax.Array  # evaluation-time corruption, fixed so every evaluation sees the same
    sample: jax.Array  # generation from the trained model
    data: jax.Array  # epoch permutations, validation split, static binarisation


def derive_keys(seed: int) -> Keys:
    """Splits the seed once into the named streams of `Keys`."""
    return Keys(*jax.random.split(jax.random.key(seed), len(Keys._fields)))


# Streams of the data key besides the epochs' permutations (fold_in(data_key, epoch)):
# numbers no epoch count reaches.
VALIDATION_STREAM = 2**31 - 1
STATIC_BINARIZATION_STREAM = 2**31 - 2


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Full batches per epoch; the remainder is left out so every step has one shape."""
    return num_examples // batch_size


@functools.partial(jax.jit, static_argnums=2)
def epoch_permutation(data_key: jax.Array, epoch: int, num_examples: int) -> jax.Array:
    """The training order of `epoch` (0-based): a permutation of range(num_examples)."""
    return jax.random.permutation(jax.random.fold_in(data_key, epoch), num_examples)


def gather_batch(arrays: dict[str, jax.Array], order: jax.Array, index: jax.Array,
                 batch_size: int) -> dict[str, jax.Array]:
    """Batch number `index` of an epoch whose order is `order`, gathered from every array of
    `arrays` (e.g. {"image": uint8 [N, 28, 28], "label": int32 [N]}), inside a traced
    function."""
    idx = jax.lax.dynamic_slice_in_dim(order, index * batch_size, batch_size)
    return jax.tree.map(lambda a: jnp.take(a, idx, axis=0), arrays)


take_batch = jax.jit(gather_batch, static_argnums=3)  # the same, as its own dispatch


def split_validation(images: np.ndarray, labels: np.ndarray, val_size: int,
                     data_key: jax.Array) -> tuple[tuple[np.ndarray, np.ndarray],
                                                   tuple[np.ndarray, np.ndarray]]:
    """Carves `val_size` examples from the training split with a fixed permutation."""
    key = jax.random.fold_in(data_key, VALIDATION_STREAM)
    order = np.asarray(jax.random.permutation(key, len(images)))
    train_idx, val_idx = np.sort(order[val_size:]), np.sort(order[:val_size])
    return (images[train_idx], labels[train_idx]), (images[val_idx], labels[val_idx])


def binarize_static(images_u8: np.ndarray, data_key: jax.Array) -> np.ndarray:
    """One fixed Bernoulli draw per pixel (p = intensity), stored as uint8 in {0, 255}."""
    probs = jnp.asarray(images_u8, jnp.float32) / 255.0
    key = jax.random.fold_in(data_key, STATIC_BINARIZATION_STREAM)
    draw = jax.random.bernoulli(key, probs)
    return np.asarray(draw, np.uint8) * np.uint8(255)


def to_float(images_u8_BxHxW: jax.Array) -> jax.Array:
    """uint8 [B, 28, 28] -> float32 [B, 28, 28, 1] in [0, 1], on the device."""
    return (images_u8_BxHxW.astype(jnp.float32) / 255.0)[..., None]


def make_example(config: ml_collections.ConfigDict, images_u8_BxHxW: jax.Array,
                 key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(model input, clean target) for a batch, per the config's task.

    The target is the image (binarised when asked); the input is the target itself, a
    corrupted copy (denoising) or an average-pooled copy (super-resolution).
    """
    binarize_key, corrupt_key = jax.random.split(key)
    target = to_float(images_u8_BxHxW)
    if config.binarize == "dynamic":
        target = jax.random.bernoulli(binarize_key, target).astype(jnp.float32)
    if config.model == "superres":
        return losses.downsample(target, config.superres_factor), target
    if config.corruption == "dropout":
        noisy = losses.dropout_noise(corrupt_key, target, config.dropout_rate,
                                     config.dropout_rescale)
        return noisy, target
    if config.corruption == "gaussian":
        return losses.gaussian_noise(corrupt_key, target, config.noise_std), target
    return target, target
