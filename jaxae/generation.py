"""Images a trained model makes from codes that belong to no training image, and its codes.

VAEs decode z ~ N(0, I) (a CVAE for a chosen class); a plain autoencoder, as in the
material, decodes an image's code perturbed as code * (1 + N(0, 1) noise). With a 2-D
latent, the manifold decodes a grid of latent coordinates.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.scipy.stats import norm

from jaxae import pipeline
from jaxae.objectives import is_variational


def encode(config: ml_collections.ConfigDict, model, params: dict, images_u8: np.ndarray,
           labels: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Codes [N, D] of clean images: z_mean for VAEs, the (flattened) code for AEs."""

    @jax.jit
    def codes(images, labels):
        x = pipeline.to_float(images)
        if is_variational(config):
            return model.apply({"params": params}, x, labels, method=model.encode)[0]
        code = model.apply({"params": params}, x, method=model.encode)
        return code.reshape(code.shape[0], -1)

    parts = [codes(images_u8[i:i + batch_size], labels[i:i + batch_size])
             for i in range(0, len(images_u8), batch_size)]
    return np.concatenate([np.asarray(p) for p in parts])


def decode(config: ml_collections.ConfigDict, model, params: dict, z: jax.Array,
           labels: jax.Array | None = None) -> np.ndarray:
    """Images [N, 28, 28] in [0, 1] decoded from codes z."""
    args = (z, labels) if is_variational(config) else (z,)
    logits = model.apply({"params": params}, *args, method=model.decode)
    return np.asarray(jax.nn.sigmoid(logits))[..., 0]


def prior_samples(config, model, params, key: jax.Array, num: int,
                  labels: jax.Array | None = None) -> np.ndarray:
    """VAE samples: decode z ~ N(0, I); a CVAE decodes them with the given labels."""
    z = jax.random.normal(key, (num, config.latent_dim))
    return decode(config, model, params, z, labels)


def class_samples(config, model, params, key: jax.Array, per_class: int,
                  num_classes: int = 10) -> np.ndarray:
    """CVAE samples [num_classes, per_class, 28, 28]: row c is asked to be of class c."""
    labels = jnp.repeat(jnp.arange(num_classes), per_class)
    images = prior_samples(config, model, params, key, num_classes * per_class, labels)
    return images.reshape(num_classes, per_class, 28, 28)


def perturbed_code_samples(config, model, params, images_u8: np.ndarray, key: jax.Array
                           ) -> np.ndarray:
    """Plain-AE generation, as in the material: decode code * (1 + N(0, 1) noise)."""
    code = model.apply({"params": params}, pipeline.to_float(images_u8), method=model.encode)
    noisy = code * (1 + jax.random.normal(key, code.shape))
    return decode(config, model, params, noisy)


def manifold_coordinates(config, size: int, codes: np.ndarray | None = None) -> np.ndarray:
    """The latent values [size] swept along each axis of a 2-D latent.

    VAEs: the N(0, 1) quantiles from 5% to 95%, so the grid covers the prior evenly. AEs have
    no prior: the 5th to 95th percentiles of the test codes along each axis ([2, size]).
    """
    if is_variational(config):
        return np.asarray(norm.ppf(jnp.linspace(0.05, 0.95, size)))
    low, high = np.percentile(codes, [5, 95], axis=0)
    return np.linspace(low, high, size).T


def manifold(config, model, params, coords: np.ndarray) -> np.ndarray:
    """Images [size, size, 28, 28]: row i has z[1] = y_i (top = largest), column j z[0] = x_j."""
    xs, ys = (coords, coords) if coords.ndim == 1 else (coords[0], coords[1])
    grid_x, grid_y = np.meshgrid(xs, ys[::-1])
    z = jnp.asarray(np.stack([grid_x.ravel(), grid_y.ravel()], axis=1), jnp.float32)
    return decode(config, model, params, z).reshape(len(ys), len(xs), 28, 28)
