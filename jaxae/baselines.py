"""Classical answers that a denoiser or super-resolution model has to beat, as images."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections


def input_as_image(config: ml_collections.ConfigDict, inputs: jax.Array) -> jax.Array:
    """The model's input at 28x28 in [0, 1]: a low-resolution input is repeated into blocks."""
    if config.model == "superres":
        f = config.superres_factor
        return jnp.repeat(jnp.repeat(inputs, f, axis=1), f, axis=2)
    return jnp.clip(inputs, 0, 1)


def median_filter_3x3(images_BxHxWx1: jax.Array) -> jax.Array:
    """Each pixel replaced by the median of its 3x3 neighbourhood (edges replicated)."""
    padded = jnp.pad(images_BxHxWx1, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = images_BxHxWx1.shape[1:3]
    windows = [padded[:, i:i + h, j:j + w] for i in range(3) for j in range(3)]
    return jnp.median(jnp.stack(windows), axis=0)


def classical_baseline(config: ml_collections.ConfigDict, inputs: jax.Array) -> jax.Array:
    """Bicubic upsampling for super-resolution; a 3x3 median filter for denoising."""
    if config.model == "superres":
        resized = jax.image.resize(inputs, (inputs.shape[0], 28, 28, 1), "bicubic")
        return jnp.clip(resized, 0, 1)
    return median_filter_3x3(jnp.clip(inputs, 0, 1))


def baseline_name(config: ml_collections.ConfigDict) -> str:
    return "bicubic" if config.model == "superres" else "median 3x3"
