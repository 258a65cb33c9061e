"""Reconstruction losses and input corruptions, as pure functions.

Losses take decoder logits and targets in [0, 1] and return one value per image (the mean
over its pixels), so callers choose how to reduce and can mask padded examples.
Corruptions take an explicit PRNG key: the same key always gives the same corruption.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _per_image_mean(values_BxHxWxC: jax.Array) -> jax.Array:
    return values_BxHxWxC.reshape(values_BxHxWxC.shape[0], -1).mean(axis=1)


def mse(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean squared error between sigmoid(logits) and the targets, per image."""
    return _per_image_mean(jnp.square(jax.nn.sigmoid(logits) - targets))


def bce_with_logits(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Binary cross-entropy of targets in [0, 1] under Bernoulli(sigmoid(logits)), per image.

    Uses max(l, 0) - l * t + log(1 + exp(-|l|)), which never takes the log of 0 and never
    overflows, unlike log(sigmoid(l)).
    """
    per_pixel = jnp.maximum(logits, 0) - logits * targets + jnp.log1p(jnp.exp(-jnp.abs(logits)))
    return _per_image_mean(per_pixel)


def psnr(images: jax.Array, targets: jax.Array) -> jax.Array:
    """Peak signal-to-noise ratio in dB for images in [0, 1], per image (capped at 100 dB)."""
    per_image_mse = _per_image_mean(jnp.square(images - targets))
    return -10.0 * jnp.log10(jnp.maximum(per_image_mse, 1e-10))


LOSSES = {"mse": mse, "bce": bce_with_logits}


def gaussian_noise(key: jax.Array, images: jax.Array, std: float) -> jax.Array:
    """Additive N(0, std^2) noise, clipped back to the valid pixel range [0, 1]."""
    noisy = images + std * jax.random.normal(key, images.shape, images.dtype)
    return jnp.clip(noisy, 0.0, 1.0)


def dropout_noise(key: jax.Array, images: jax.Array, rate: float, rescale: bool) -> jax.Array:
    """Sets each pixel to 0 with probability `rate`.

    rescale=False (our default) keeps the kept pixels as they are, so the corrupted image is
    still an image in [0, 1]: the same corruption can be shown, scored in PSNR and applied at
    test time. rescale=True divides kept pixels by (1 - rate), exactly what a dropout layer
    (PyTorch nn.Dropout, Keras Dropout) does in training, as in the material's DAE.
    """
    keep = jax.random.bernoulli(key, 1.0 - rate, images.shape)
    kept = images / (1.0 - rate) if rescale else images
    return jnp.where(keep, kept, jnp.zeros_like(images))


def downsample(images_BxHxWxC: jax.Array, factor: int) -> jax.Array:
    """Average pooling by `factor` (28x28 -> 14x14 for 2, 7x7 for 4): super-resolution inputs."""
    b, h, w, c = images_BxHxWxC.shape
    blocks = images_BxHxWxC.reshape(b, h // factor, factor, w // factor, factor, c)
    return blocks.mean(axis=(2, 4))
