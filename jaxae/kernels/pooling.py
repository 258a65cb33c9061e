"""2x2 max pooling as elementwise maxima, with PyTorch's gradient, and pixel rearrangements.

On CPU, XLA's reductions and select-and-scatter over 2x2 windows run several times slower
than the elementwise passes used here (`python -m benchmarks.bench --models conv_ae`). The
index of each window's first maximum is computed once, in the forward pass, and kept in memory
for the backward pass (`fence.computed_once`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxae.kernels.fence import computed_once


def _window_corners(x_BxHxWxC: jax.Array) -> list[jax.Array]:
    """The four values of every 2x2 window, [B, H/2, W/2, C] each, in row-major order."""
    b, h, w, c = x_BxHxWxC.shape
    x = x_BxHxWxC.reshape(b, h // 2, 2, w // 2, 2, c)
    return [x[:, :, i, :, j] for i in range(2) for j in range(2)]


def first_maximum(corners: list[jax.Array]) -> tuple[jax.Array, jax.Array]:
    """(elementwise maximum of a window's four corners, which corner holds the first
    maximum: 0..3 in row-major order, int8)."""
    pooled = jnp.maximum(jnp.maximum(corners[0], corners[1]),
                         jnp.maximum(corners[2], corners[3]))
    first = jnp.where(corners[2] == pooled, 2, 3).astype(jnp.int8)
    for index in (1, 0):
        first = jnp.where(corners[index] == pooled, jnp.int8(index), first)
    return pooled, first


def _pool_with_argmax(x_BxHxWxC: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(maxima, which corner holds the first maximum: 0..3, row-major), [B, H/2, W/2, C]."""
    return first_maximum(_window_corners(x_BxHxWxC))


def upsample_2x2(x_BxhxwxC: jax.Array) -> jax.Array:
    """Nearest 2x up-sampling, as a broadcast XLA can fuse into its consumer."""
    b, h, w, c = x_BxhxwxC.shape
    x = jnp.broadcast_to(x_BxhxwxC[:, :, None, :, None, :], (b, h, 2, w, 2, c))
    return x.reshape(b, 2 * h, 2 * w, c)


@jax.custom_jvp
def max_pool_2x2(x_BxHxWxC: jax.Array) -> jax.Array:
    """2x2 max pooling with stride 2 of an even-sized input, as elementwise maxima.

    The gradient goes to the first maximum of each window in row-major order, as in
    PyTorch's MaxPool2d for finite inputs (differentiating `jnp.max` would split it among
    tied maxima, which takes a count and a division). Both directions are one elementwise
    pass. A custom JVP (`_window_tangent`): forward mode and `jax.vmap` work too.
    """
    return _pool_with_argmax(x_BxHxWxC)[0]


@max_pool_2x2.defjvp
def _max_pool_2x2_jvp(primals: tuple, tangents: tuple) -> tuple[jax.Array, jax.Array]:
    pooled, first = _pool_with_argmax(primals[0])
    return pooled, _window_tangent(computed_once(first), tangents[0])


def _window_tangent(first_BxhxwxC: jax.Array, dx_BxHxWxC: jax.Array) -> jax.Array:
    """Each window's tangent at its first maximum: the window sum of dx where `first`
    points. Linear in dx, so JAX transposes it for reverse mode into the gradient
    `where(first points here, upsampled dy, 0)`, one elementwise pass."""
    b, h, w, c = first_BxhxwxC.shape
    rows = jax.lax.broadcasted_iota(jnp.int32, (1, 2 * h, 2 * w, 1), 1) % 2
    cols = jax.lax.broadcasted_iota(jnp.int32, (1, 2 * h, 2 * w, 1), 2) % 2
    chosen = upsample_2x2(first_BxhxwxC).astype(jnp.int32) == 2 * rows + cols
    picked = jnp.where(chosen, dx_BxHxWxC, 0.0)
    return picked.reshape(b, h, 2, w, 2, c).sum(axis=(2, 4))


def max_pool_ceil(x_BxHxWxC: jax.Array) -> jax.Array:
    """2x2 max pooling that keeps a ragged edge (7 -> 4), like Keras padding='same': the
    edge is padded with -inf, then `max_pool_2x2`. Values equal `nn.max_pool`'s."""
    _, h, w, _ = x_BxHxWxC.shape
    x = jnp.pad(x_BxHxWxC, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=-jnp.inf)
    return max_pool_2x2(x)


def depth_to_space(x_BxhxwxC: jax.Array, factor: int) -> jax.Array:
    """[B, h, w, f*f*C] -> [B, h*f, w*f, C]: each pixel's channels become an f x f block."""
    b, h, w, c = x_BxhxwxC.shape
    out_c = c // (factor * factor)
    x = x_BxhxwxC.reshape(b, h, w, factor, factor, out_c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h * factor, w * factor, out_c)
