"""Reconstruction losses and input corruptions, as pure functions.

Losses take decoder logits and targets in [0, 1] and return one value per image (the mean
over its pixels), so callers choose how to reduce and can mask padded examples.
Corruptions take an explicit PRNG key: the same key always gives the same corruption.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxae.kernels import random
from jaxae.keys import check_key


def _check_pair(logits: jax.Array, targets: jax.Array, loss: str) -> None:
    """A ValueError unless the two are shaped alike with a batch axis first: broadcasting a
    batch against one image (or [B, H, W] against [B, H, W, 1]) would average the wrong
    pairs silently; a TypeError for targets that are not floats (0..255 pixels give a
    meaningless, even negative, loss). Checked on the static shapes and dtypes, at trace
    time."""
    a, b = jnp.shape(logits), jnp.shape(targets)
    if a != b or not a:
        raise ValueError(f"{loss}: its two arguments are shaped {a} and {b}: give both as "
                         "[B, ...] with the same shape, one target per image")
    dtype = jnp.result_type(targets)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{loss}: its targets are {dtype}: give pixels as floats in [0, 1] "
                        "(x / 255.0 for 8-bit pixels, as jaxae.data.batches.to_float does)")


def _per_image_mean(values_BxHxWxC: jax.Array) -> jax.Array:
    return values_BxHxWxC.reshape(values_BxHxWxC.shape[0], -1).mean(axis=1)


def flat_images(images_BxHxWxC: jax.Array) -> jax.Array:
    """The images as [B, H*W*C], for losses and metrics to reduce. On XLA's CPU backend a
    per-image reduction of a [B, H, W, C] expression runs many times slower than the same
    reduction of a flat array (`python -m benchmarks.profile_epoch` lists the passes). The barrier
    keeps XLA's early passes from folding the reshape back into the expression: the
    compiled program has no barrier left, but without it the reshape alone can leave the
    slow reduction in place. The values agree to float rounding: the per-image sums may add
    in another order."""
    return jax.lax.optimization_barrier(images_BxHxWxC.reshape(images_BxHxWxC.shape[0], -1))


def sigmoid(logits: jax.Array) -> jax.Array:
    """The logistic function 1 / (1 + exp(-x)), as 0.5 * tanh(x / 2) + 0.5: pixels from
    decoder logits. XLA's CPU backend compiles `jax.nn.sigmoid` to an exponential and a
    division, and this form to its vectorised tanh, which is faster where a step is short
    (`python -m benchmarks.bench --models dense_ae`). The values stay in [0, 1] and agree
    with the exact function to 2e-7 (`tests/test_losses.py`); it is 0 below about -16,
    where the exact value is under 1.2e-7, and 1 above about 16."""
    return 0.5 * jnp.tanh(0.5 * logits) + 0.5


def mse(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean squared error between sigmoid(logits) and the targets, per image."""
    _check_pair(logits, targets, "mse")
    return _per_image_mean(jnp.square(sigmoid(logits) - targets))


def _bce_per_pixel(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """max(l, 0) - l * t + log(1 + exp(-|l|)): never the log of 0, never an overflow. The
    max as a select whose gradient at l = 0 is 1 (jnp.maximum's is 0.5): with |l|'s 1 there,
    the gradient at 0 is sigmoid(0) - t, as everywhere else (the values are the same)."""
    relu = jnp.where(logits >= 0, logits, 0)
    return relu - logits * targets + jnp.log1p(jnp.exp(-jnp.abs(logits)))


def bce_with_logits(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Binary cross-entropy of targets in [0, 1] under Bernoulli(sigmoid(logits)), per image
    (the mean over pixels), in the stable form of `_bce_per_pixel`."""
    _check_pair(logits, targets, "bce_with_logits")
    return _per_image_mean(_bce_per_pixel(logits, targets))


def psnr(images: jax.Array, targets: jax.Array) -> jax.Array:
    """Peak signal-to-noise ratio in dB for images in [0, 1], per image (capped at 100 dB)."""
    _check_pair(images, targets, "psnr")
    per_image_mse = _per_image_mean(jnp.square(images - targets))
    return -10.0 * jnp.log10(jnp.maximum(per_image_mse, 1e-10))


LOG_2PI = math.log(2 * math.pi)


def _per_image_sum(values: jax.Array) -> jax.Array:
    return values.reshape(values.shape[0], -1).sum(axis=1)


def bernoulli_log_likelihood(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """log p(x | z) in nats per image for Bernoulli(sigmoid(logits)) pixels: -(H*W*C x BCE)."""
    _check_pair(logits, targets, "bernoulli_log_likelihood")
    return -_per_image_sum(_bce_per_pixel(logits, targets))


def gaussian_log_likelihood(logits: jax.Array, targets: jax.Array, scale: float) -> jax.Array:
    """log p(x | z) in nats per image for N(sigmoid(logits), scale^2) pixels."""
    _check_pair(logits, targets, "gaussian_log_likelihood")
    z = (targets - sigmoid(logits)) / scale
    return _per_image_sum(-0.5 * jnp.square(z) - jnp.log(scale) - 0.5 * LOG_2PI)


def gaussian_kl(mean: jax.Array, log_sigma: jax.Array) -> jax.Array:
    """KL(N(mean, exp(log_sigma)^2) || N(0, I)) in nats, summed over the last (latent) axis.

    With sigma = exp(log_sigma), the standard deviation (as in `models.reparameterize`):
    0.5 * sum(mean^2 + sigma^2 - 1 - 2 log_sigma).
    """
    if jnp.shape(mean) != jnp.shape(log_sigma):
        raise ValueError(f"gaussian_kl: mean and log_sigma are shaped {jnp.shape(mean)} and "
                         f"{jnp.shape(log_sigma)}: give both as [B, latent_dim], one pair of "
                         "each code's numbers")
    return 0.5 * jnp.sum(jnp.square(mean) + jnp.exp(2 * log_sigma) - 1 - 2 * log_sigma, -1)


def log_normal(z: jax.Array, mean: jax.Array, log_sigma: jax.Array) -> jax.Array:
    """log N(z; mean, exp(log_sigma)^2), summed over the last axis."""
    scaled = (z - mean) * jnp.exp(-log_sigma)
    return jnp.sum(-0.5 * jnp.square(scaled) - log_sigma - 0.5 * LOG_2PI, axis=-1)


def gaussian_noise(key: jax.Array, images: jax.Array, std: float) -> jax.Array:
    """Additive N(0, std^2) noise, clipped back to the valid pixel range [0, 1]."""
    check_key(key, "gaussian_noise's key")
    # a float64 host array (uint8 / 255.0) draws float32 where JAX runs in 32 bits, unwarned
    dtype = jax.dtypes.canonicalize_dtype(images.dtype)
    noisy = images + std * random.normal(key, images.shape, dtype)
    return jnp.clip(noisy, 0.0, 1.0)


def bernoulli_16bit(key: jax.Array, p: float, shape: tuple[int, ...]) -> jax.Array:
    """Booleans of `shape`, each True with probability round(p * 2^16) / 2^16.

    Each 32-bit random word gives two 16-bit uniforms, so threefry runs half as often as in
    `jax.random.bernoulli`, which spends a word per draw (the DAE's step is faster for it:
    `python -m benchmarks.bench --models dae`). p is off by at most 2^-17 (exact for
    multiples of 2^-16, such as 0.5).
    """
    threshold = round(p * 2**16)
    if threshold >= 2**16 or threshold <= 0:  # certain either way (and beyond uint16's range)
        return jnp.full(shape, threshold > 0)
    rows, per_row = shape[0], math.prod(shape[1:])  # rows stay whole: batch sharding holds
    words = random.bits32(key, (rows, (per_row + 1) // 2))
    halves = jax.lax.bitcast_convert_type(words, jnp.uint16)[..., ::-1].reshape(rows, -1)
    return (halves[:, :per_row] < threshold).reshape(shape)


def dropout_noise(key: jax.Array, images: jax.Array, rate: float, rescale: bool) -> jax.Array:
    """Sets each pixel value to 0 with probability `rate`: each channel of a colour pixel on
    its own, as a dropout layer drops each element (for grey images, each pixel).

    rescale=False (our default) keeps the kept pixels as they are, so the corrupted image is
    still an image in [0, 1]: the same corruption can be shown, scored in PSNR and applied at
    test time. rescale=True divides kept pixels by (1 - rate), exactly what a dropout layer
    (PyTorch nn.Dropout, Keras Dropout) does in training, as in the material's DAE.
    """
    check_key(key, "dropout_noise's key")
    keep = bernoulli_16bit(key, 1.0 - rate, images.shape)
    kept = images / (1.0 - rate) if rescale else images
    return jnp.where(keep, kept, jnp.zeros_like(images))


def downsample(images_BxHxWxC: jax.Array, factor: int) -> jax.Array:
    """Average pooling by `factor` (H x W -> H/f x W/f): super-resolution inputs."""
    b, h, w, c = images_BxHxWxC.shape
    blocks = images_BxHxWxC.reshape(b, h // factor, factor, w // factor, factor, c)
    return blocks.mean(axis=(2, 4))
