"""Image quality and a classical image operation in JAX: SSIM and Gaussian blur (resizing,
the super-resolution baselines' upsampling, is `jaxae.tasks.baselines`).

SSIM follows Wang et al. (2004) with a 7x7 Gaussian window (sigma 1.5, the standard sigma, in
a window cut to fit MNIST's small images), K1 = 0.01, K2 = 0.03, a data range of 1 and
population (co)variances; the SSIM map is averaged over the window positions that lie inside
the image (no padding), and over the channels. For one channel this equals scikit-image's
structural_similarity(x, y, data_range=1, gaussian_weights=True, sigma=1.5, truncate=2.0,
use_sample_covariance=False). Every filter works on each channel on its own.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

K1, K2 = 0.01, 0.03
SSIM_WINDOW, SSIM_SIGMA = 7, 1.5


def gaussian_kernel(size: int, sigma: float) -> jax.Array:
    """A normalised 2-D Gaussian [size, size]."""
    x = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2
    g = jnp.exp(-0.5 * jnp.square(x / sigma))
    kernel = jnp.outer(g, g)
    return kernel / kernel.sum()


def filter2d(images_BxHxWxC: jax.Array, kernel_KxK: jax.Array, padding: str = "VALID"
             ) -> jax.Array:
    """Correlation of each channel of the images with one kernel ('VALID' or 'SAME' zero
    padding)."""
    channels = images_BxHxWxC.shape[-1]
    kernel = jnp.broadcast_to(kernel_KxK.astype(images_BxHxWxC.dtype)[:, :, None, None],
                              (*kernel_KxK.shape, 1, channels))
    return jax.lax.conv_general_dilated(images_BxHxWxC, kernel, (1, 1), padding,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=channels)


def ssim(x_BxHxWxC: jax.Array, y_BxHxWxC: jax.Array, data_range: float = 1.0) -> jax.Array:
    """Structural similarity per image [B] (1 for identical images)."""
    x = jnp.asarray(x_BxHxWxC, jnp.float32)
    y = jnp.asarray(y_BxHxWxC, jnp.float32)
    w = gaussian_kernel(SSIM_WINDOW, SSIM_SIGMA)
    mu_x, mu_y = filter2d(x, w), filter2d(y, w)
    var_x = filter2d(x * x, w) - mu_x * mu_x
    var_y = filter2d(y * y, w) - mu_y * mu_y
    cov = filter2d(x * y, w) - mu_x * mu_y
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return (num / den).reshape(x.shape[0], -1).mean(axis=1)


def gaussian_blur(images_BxHxWxC: jax.Array, sigma: float) -> jax.Array:
    """A Gaussian blur of width `sigma` pixels, edges replicated (as the median filter's)."""
    radius = max(1, math.ceil(3 * sigma))
    padded = jnp.pad(images_BxHxWxC, ((0, 0), (radius, radius), (radius, radius), (0, 0)),
                     mode="edge")
    return filter2d(padded, gaussian_kernel(2 * radius + 1, sigma))
