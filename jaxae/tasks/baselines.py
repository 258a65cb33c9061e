"""Classical answers that a denoiser or super-resolution model has to beat, as images."""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Compare-exchanges after which element 4 of 9 holds their median (Paeth's network, as in
# Devillard's opt_med9): 19 min/max pairs instead of a sort, many times faster on CPU than
# jnp.median over a stacked axis, and the same value, since the median is one of the nine.
MEDIAN_OF_9 = ((1, 2), (4, 5), (7, 8), (0, 1), (3, 4), (6, 7), (1, 2), (4, 5), (7, 8), (0, 3),
               (5, 8), (4, 7), (3, 6), (1, 4), (2, 5), (4, 7), (4, 2), (6, 4), (4, 2))


# Compare-exchanges that sort 9 values (Batcher's odd-even merge sort of 16, those that
# touch the first 9): a masked median needs the order, not only its middle.
SORT_9 = ((0, 1), (2, 3), (0, 2), (1, 3), (1, 2), (4, 5), (6, 7), (4, 6), (5, 7), (5, 6), (0, 4),
          (2, 6), (2, 4), (1, 5), (3, 7), (3, 5), (1, 2), (3, 4), (5, 6), (0, 8), (4, 8), (2, 4),
          (6, 8), (3, 5), (1, 2), (3, 4), (5, 6), (7, 8))


def _exchanged(values: list[jax.Array], network: tuple[tuple[int, int], ...]
               ) -> list[jax.Array]:
    v = list(values)
    for low, high in network:
        v[low], v[high] = jnp.minimum(v[low], v[high]), jnp.maximum(v[low], v[high])
    return v


def median_of_9(values: list[jax.Array]) -> jax.Array:
    """Elementwise median of nine equally shaped arrays."""
    return _exchanged(values, MEDIAN_OF_9)[4]


def median_filter_3x3(images_BxHxWxC: jax.Array) -> jax.Array:
    """Each pixel of each channel replaced by the median of its 3x3 neighbourhood (edges
    replicated)."""
    padded = jnp.pad(images_BxHxWxC, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = images_BxHxWxC.shape[1:3]
    return median_of_9([padded[:, i:i + h, j:j + w] for i in range(3) for j in range(3)])


def masked_median_3x3(images_BxHxWxC: jax.Array) -> jax.Array:
    """Each zero pixel value replaced by the median of the non-zero values of its 3x3
    neighbourhood (the mean of the middle two of an even count; 0 where all are zero, as
    beyond the edges), the others kept: the classical answer to dropout, which sets values
    to exactly 0 and leaves the others as they were. A plain median counts the dropped zeros
    as values, and at half of them dropped scores below the corrupted input itself."""
    h, w = images_BxHxWxC.shape[1:3]
    padded = jnp.pad(images_BxHxWxC, ((0, 0), (1, 1), (1, 1), (0, 0)))  # beyond: missing
    window = [padded[:, i:i + h, j:j + w] for i in range(3) for j in range(3)]
    count = sum((value > 0).astype(jnp.int32) for value in window)
    # the kept ones first, in order, by 28 min/max passes of a sorting network where
    # jnp.sort over a stacked axis is a general sort (the same values)
    ordered = _exchanged([jnp.where(value > 0, value, jnp.inf) for value in window], SORT_9)

    def at(index: jax.Array) -> jax.Array:
        return jnp.select([index == m for m in range(5)], ordered[:5])  # index <= 9 // 2

    low, high = at(jnp.maximum(count - 1, 0) // 2), at(count // 2)
    median = jnp.where(count > 0, (low + high) / 2, 0.0)
    return jnp.where(images_BxHxWxC > 0, images_BxHxWxC, median)


def interpolated_upsampling(images_BxhxwxC: jax.Array, height: int, width: int,
                            method: str = "bicubic") -> jax.Array:
    """Interpolation (`jax.image.resize`'s "bicubic", "bilinear", ...) to height x width,
    clipped to [0, 1]."""
    b, _, _, c = images_BxhxwxC.shape
    return jnp.clip(jax.image.resize(images_BxhxwxC, (b, height, width, c), method), 0, 1)


def bicubic_upsampling(images_BxhxwxC: jax.Array, height: int, width: int) -> jax.Array:
    """Bicubic interpolation to height x width, clipped to [0, 1]."""
    return interpolated_upsampling(images_BxhxwxC, height, width, "bicubic")


def nearest_upsampling(images_BxhxwxC: jax.Array, factor: int) -> jax.Array:
    """Each pixel repeated into a factor x factor block (how a low-resolution input looks)."""
    return jnp.repeat(jnp.repeat(images_BxhxwxC, factor, axis=1), factor, axis=2)
