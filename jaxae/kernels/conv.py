"""Convolution as patch extraction plus one matmul: a drop-in for `flax.linen.Conv`.

XLA on CPU runs `lax.conv_general_dilated` and, above all, its two backward convolutions on
a slow path for the few channels these models have. Gathering the kh x kw shifted copies of
the input along the channel axis and multiplying by the kernel reshaped to [kh*kw*C, F] is
the same arithmetic (equal to `nn.Conv` to float rounding, `tests/test_kernels.py`) on XLA's
matmul path, and its gradient is matmuls plus pads, written out in `patch_conv2d`.
Parameters have `nn.Conv`'s names and shapes (kernel [kh, kw, C, F], bias [F]), so
initialisation schemes and checkpoints see the same tree whichever implementation computes
the layer.

`Conv(..., upsample=2)` is a convolution of the nearest up-sampled input, computed at the
input's resolution (`upsampled_conv2d`): a decoder never builds its up-sampled tensor.

Where a layer has more input channels than outputs, `tap_conv2d` multiplies first and shifts
after, with a written backward pass that never builds a kh*kw*C wide gradient. Its sum of
shifted taps is written to memory once (`fence.computed_once`): XLA's fusion would redo
it inside each of its readers (a decoder's last layer: the loss, its exponential and its
gradient).

`Conv(..., compute_dtype="bfloat16")` multiplies bfloat16 copies of the operands with float32
accumulation (`jaxae.kernels.precision`), in both passes of the matmul paths: on a GPU's tensor
cores, where the conv models grow large enough to be bound by arithmetic
(`python -m benchmarks.bench --image-sizes 64 --channels 3 --compute-dtype bfloat16`).

`Conv(..., relu_max_pool=True)` adds ReLU and 2x2 max pooling after the convolution. Where
the output's sides are even and the layer has no more inputs than outputs, the three are one
kernel (`relu_max_pool_conv2d`): one matmul gives each pooling window's four outputs side by
side, so the pooling reads them in order and the bias gradient is a sum at the pooled
resolution (an encoder's first layer: `python -m benchmarks.bench --models conv_ae`).

`implementation="xla"` calls `lax.conv_general_dilated` instead (`config.model.conv`): on a
GPU at large batches XLA's own convolutions win, at small ones the patches do. Models take the
layer as a field (`conv: ModuleDef = Conv`), so either can be injected. Timings of both:
`python -m benchmarks.bench --conv=patches,xla` (BENCHMARKS.md).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxae.kernels import dense, pooling, precision
from jaxae.kernels.fence import computed_once

Pads = tuple[tuple[int, int], tuple[int, int]]


def same_or_valid_pads(kernel_size: tuple[int, int], padding: str) -> Pads:
    """(top, bottom), (left, right) zeros for a stride-1 'SAME' or 'VALID' convolution;
    'SAME' puts an even kernel's extra row/column at the end, as XLA does."""
    kh, kw = kernel_size
    if padding == "SAME":
        return ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2)
    if padding == "VALID":
        return (0, 0), (0, 0)
    raise ValueError(f"padding={padding!r}: use 'SAME' or 'VALID'")


def pad_spatial(x_BxHxWxC: jax.Array, pads: Pads) -> jax.Array:
    """Zeros around H and W ((top, bottom), (left, right)); a negative pad crops."""
    return jax.lax.pad(x_BxHxWxC, jnp.zeros((), x_BxHxWxC.dtype),
                       ((0, 0, 0), (*pads[0], 0), (*pads[1], 0), (0, 0, 0)))


def extract_patches(x_BxHxWxC: jax.Array, kernel_size: tuple[int, int], pads: Pads,
                    stride: int = 1) -> jax.Array:
    """[B, H, W, C] -> [B, Ho, Wo, kh*kw*C]: each output pixel's receptive field, ordered
    (row, column, channel) like a kernel [kh, kw, C, F] flattened to [kh*kw*C, F]; with
    `stride`, that of every stride-th output pixel along each side."""
    kh, kw = kernel_size
    x_BxHxWxC = pad_spatial(x_BxHxWxC, pads)
    _, h, w, _ = x_BxHxWxC.shape
    out_h, out_w = h - kh + 1, w - kw + 1
    shifted = [x_BxHxWxC[:, i:i + out_h:stride, j:j + out_w:stride, :]
               for i in range(kh) for j in range(kw)]
    return jnp.concatenate(shifted, axis=-1)


def sum_of_shifted_taps(z_BxHxWxTF: jax.Array, kernel_size: tuple[int, int]) -> jax.Array:
    """[B, H, W, kh*kw*F] -> [B, H-kh+1, W-kw+1, F]: output pixel (y, x) sums tap (i, j)'s F
    values of pixel (y + i, x + j)."""
    kh, kw = kernel_size
    _, h, w, taps_f = z_BxHxWxTF.shape
    f = taps_f // (kh * kw)
    out_h, out_w = h - kh + 1, w - kw + 1
    return sum(z_BxHxWxTF[:, i:i + out_h, j:j + out_w, (i * kw + j) * f:(i * kw + j + 1) * f]
               for i in range(kh) for j in range(kw))


def _full_pads(kernel_size: tuple[int, int], pads: Pads) -> Pads:
    """Pads that turn a convolution's output gradient into its input gradient's patches."""
    (kh, kw), ((top, bottom), (left, right)) = kernel_size, pads
    return (kh - 1 - top, kh - 1 - bottom), (kw - 1 - left, kw - 1 - right)


def _kernel_gradient(x_NxK: jax.Array, dy_NxF: jax.Array, compute_dtype: str) -> jax.Array:
    """x.T @ dy over the N rows (`dense.kernel_gradient`: a narrow one, F <= 16 < K on the CPU,
    computed transposed); for "bfloat16", of bfloat16 copies with float32 accumulation."""
    dot = dense.contract if compute_dtype == "float32" else precision.bfloat16_dot
    return dense.kernel_gradient(x_NxK, dy_NxF, dot)


def _matmul(a: jax.Array, b: jax.Array, compute_dtype: str) -> jax.Array:
    """a @ b over their last and first axes; for "bfloat16", of bfloat16 copies of both with
    float32 accumulation and result (`jaxae.kernels.precision`)."""
    if compute_dtype == "float32":
        return a @ b
    return precision.bfloat16_dot(a, b, a.ndim - 1, 0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def tap_conv2d(x_BxHxWxC: jax.Array, kernel_KHxKWxCxF: jax.Array, pads: Pads,
               compute_dtype: str = "float32") -> jax.Array:
    """Stride-1 convolution for more input channels than outputs (C > F), by kernel taps.

    The input meets every tap's kernel in one matmul, [B, H, W, kh*kw*F], and shifted
    slices of that are summed (`sum_of_shifted_taps`): kh*kw copies of the narrow side
    instead of the input's patches [B, Ho, Wo, kh*kw*C]. Both gradients come from one set
    of patches of the output's gradient, again kh*kw*F wide: the input's gradient is their
    product with the kernel flipped in space, and the kernel's is the input's transpose
    times them. Differentiating the patches would build a kh*kw*C wide gradient instead.
    With compute_dtype "bfloat16" all three matmuls take bfloat16 operands and accumulate
    in float32. A custom VJP: reverse mode only (`jax.jvp` refuses it; "xla" takes both).
    """
    return _tap_conv2d_forward(x_BxHxWxC, kernel_KHxKWxCxF, pads, compute_dtype)[0]


def _tap_conv2d_forward(x_BxHxWxC: jax.Array, kernel_KHxKWxCxF: jax.Array, pads: Pads,
                        compute_dtype: str
                        ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    kh, kw, c, f = kernel_KHxKWxCxF.shape
    per_tap_CxTF = kernel_KHxKWxCxF.transpose(2, 0, 1, 3).reshape(c, kh * kw * f)
    # Pad the narrow input, not the kh*kw*F wide product (zero pixels give zero rows): the
    # product then comes straight from the matmul, with no padded copy of it to write.
    out = sum_of_shifted_taps(_matmul(pad_spatial(x_BxHxWxC, pads), per_tap_CxTF,
                                      compute_dtype), (kh, kw))
    # read by several fusions (`fence`): summed once
    return computed_once(out), (x_BxHxWxC, kernel_KHxKWxCxF)


def _tap_conv2d_backward(pads: Pads, compute_dtype: str,
                         residuals: tuple[jax.Array, jax.Array],
                         dy_BxHoxWoxF: jax.Array) -> tuple[jax.Array, jax.Array]:
    x_BxHxWxC, kernel_KHxKWxCxF = residuals
    kh, kw, c, f = kernel_KHxKWxCxF.shape
    # Tap (i, j) of these patches holds dy at (y - (kh-1-i) + top, x - (kw-1-j) + left).
    dy_patches = extract_patches(dy_BxHoxWoxF, (kh, kw), _full_pads((kh, kw), pads))
    flipped_KHxKWxFxC = kernel_KHxKWxCxF[::-1, ::-1].transpose(0, 1, 3, 2)
    dx = _matmul(dy_patches, flipped_KHxKWxFxC.reshape(-1, c), compute_dtype)
    dflipped_CxKHxKWxF = _kernel_gradient(x_BxHxWxC.reshape(-1, c),
                                          dy_patches.reshape(-1, kh * kw * f),
                                          compute_dtype).reshape(c, kh, kw, f)
    dkernel = dflipped_CxKHxKWxF[:, ::-1, ::-1].transpose(1, 2, 0, 3)
    return dx.astype(x_BxHxWxC.dtype), dkernel.astype(kernel_KHxKWxCxF.dtype)


tap_conv2d.defvjp(_tap_conv2d_forward, _tap_conv2d_backward)


def _corner_kernels(kernel_KHxKWxCxF: jax.Array) -> jax.Array:
    """[kh, kw, C, F] -> [kh+1, kw+1, C, 4F]: the kernel placed at each corner (a, b) of a
    (kh+1) x (kw+1) block, corners in row-major order along the outputs."""
    return jnp.concatenate([jnp.pad(kernel_KHxKWxCxF, ((a, 1 - a), (b, 1 - b), (0, 0), (0, 0)))
                            for a in range(2) for b in range(2)], axis=-1)


def window_patches(x_BxHxWxC: jax.Array, kernel_size: tuple[int, int], pads: Pads
                   ) -> jax.Array:
    """[B, H, W, C] -> [B, Ho/2, Wo/2, (kh+1)*(kw+1)*C]: the input block that every output
    pixel of one 2x2 pooling window reads, ordered (row, column, channel): the patches of a
    (kh+1) x (kw+1) kernel at stride 2."""
    kh, kw = kernel_size
    return extract_patches(x_BxHxWxC, (kh + 1, kw + 1), pads, stride=2)


def _pool_corners(z_BxhxwxFFFF: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(ReLU of each window's maximum over its four corners' F values, which corner holds
    the first maximum: 0..3 row-major, or 4 where ReLU passes no gradient)."""
    f = z_BxhxwxFFFF.shape[-1] // 4
    pooled, first = pooling.first_maximum([z_BxhxwxFFFF[..., i * f:(i + 1) * f]
                                           for i in range(4)])
    first = jnp.where(pooled > 0, first, jnp.int8(4))
    return jnp.maximum(pooled, 0), first


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def relu_max_pool_conv2d(x_BxHxWxC: jax.Array, kernel_KHxKWxCxF: jax.Array, bias_F: jax.Array,
                         pads: Pads, compute_dtype: str = "float32") -> jax.Array:
    """`max_pool_2x2(relu(conv2d(x, kernel, pads) + bias))`, for an even-sized output.

    One matmul of each pooling window's input block (`window_patches`) with the kernel at
    the window's four corners (`_corner_kernels`) gives the window's four outputs side by
    side along the channels; their maximum is an elementwise pass over that product, and
    the gradient goes to the first maximum as in `pooling.max_pool_2x2`. The product is as
    large as the full-resolution output, but in a layout the pooling reads in order. With
    compute_dtype "bfloat16" the matmuls take bfloat16 operands and accumulate in float32.
    A custom VJP: reverse mode only (`jax.jvp` refuses it; "xla" takes both).
    """
    return _relu_max_pool_conv2d_forward(x_BxHxWxC, kernel_KHxKWxCxF, bias_F, pads,
                                         compute_dtype)[0]


def _relu_max_pool_conv2d_forward(x_BxHxWxC: jax.Array, kernel_KHxKWxCxF: jax.Array,
                                  bias_F: jax.Array, pads: Pads, compute_dtype: str
                                  ) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    kh, kw, _, f = kernel_KHxKWxCxF.shape
    patches = window_patches(x_BxHxWxC, (kh, kw), pads)
    corners = _corner_kernels(kernel_KHxKWxCxF).reshape(-1, 4 * f)
    pooled, first = _pool_corners(_matmul(patches, corners, compute_dtype)
                                  + jnp.tile(bias_F, 4))
    return pooled, (x_BxHxWxC, patches, computed_once(first), kernel_KHxKWxCxF, bias_F)


def _relu_max_pool_conv2d_backward(pads: Pads, compute_dtype: str,
                                   residuals: tuple[jax.Array, ...], dy_BxhxwxF: jax.Array
                                   ) -> tuple[jax.Array, jax.Array, jax.Array]:
    x_BxHxWxC, patches, first, kernel_KHxKWxCxF, bias_F = residuals
    kh, kw, c, f = kernel_KHxKWxCxF.shape
    # The gradient of the four corners' outputs: dy at the window's first maximum, else 0.
    dz = jnp.concatenate([jnp.where(first == i, dy_BxhxwxF, 0.0) for i in range(4)], axis=-1)
    dcorners = _kernel_gradient(patches.reshape(-1, patches.shape[-1]), dz.reshape(-1, 4 * f),
                                compute_dtype).reshape(kh + 1, kw + 1, c, 4 * f)
    dkernel = sum(dcorners[a:a + kh, b:b + kw, :, (2 * a + b) * f:(2 * a + b + 1) * f]
                  for a in range(2) for b in range(2))
    dbias = jnp.where(first < 4, dy_BxhxwxF, 0.0).sum((0, 1, 2))
    corners = _corner_kernels(kernel_KHxKWxCxF).reshape(-1, 4 * f)
    dpatches = _matmul(dz, corners.T, compute_dtype)
    _, pullback = jax.vjp(lambda x: window_patches(x, (kh, kw), pads), x_BxHxWxC)
    dx = pullback(dpatches.astype(x_BxHxWxC.dtype))[0]
    return dx, dkernel.astype(kernel_KHxKWxCxF.dtype), dbias.astype(bias_F.dtype)


relu_max_pool_conv2d.defvjp(_relu_max_pool_conv2d_forward, _relu_max_pool_conv2d_backward)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def patch_conv2d(x_BxHxWxC: jax.Array, kernel_KHxKWxCxF: jax.Array, pads: Pads) -> jax.Array:
    """Stride-1 float32 convolution: the input's patches [B, Ho, Wo, kh*kw*C] times the
    kernel [kh*kw*C, F], in one matmul.

    The backward pass is written out so that the kernel's gradient is the flattened patches'
    transpose times the flattened output gradient. Differentiated by JAX, XLA's CPU compiler
    first copied the output gradient into a transposed layout: one pass more per layer, the
    larger in a decoder, whose output gradient is first rearranged from depth to space
    (`python -m benchmarks.profile_epoch --model conv_ae`). The input's gradient is the
    patches' gradient folded back by the transpose of `extract_patches`. A custom VJP:
    reverse mode only (`jax.jvp` refuses it; "xla" takes both).
    """
    return _patch_conv2d_forward(x_BxHxWxC, kernel_KHxKWxCxF, pads)[0]


def _patch_conv2d_forward(x_BxHxWxC: jax.Array, kernel_KHxKWxCxF: jax.Array, pads: Pads
                          ) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    kh, kw, _, f = kernel_KHxKWxCxF.shape
    patches = extract_patches(x_BxHxWxC, (kh, kw), pads)
    return patches @ kernel_KHxKWxCxF.reshape(-1, f), (x_BxHxWxC, patches, kernel_KHxKWxCxF)


def _patch_conv2d_backward(pads: Pads, residuals: tuple[jax.Array, ...],
                           dy_BxHoxWoxF: jax.Array) -> tuple[jax.Array, jax.Array]:
    x_BxHxWxC, patches, kernel_KHxKWxCxF = residuals
    kh, kw, _, f = kernel_KHxKWxCxF.shape
    dkernel = _kernel_gradient(patches.reshape(-1, patches.shape[-1]),
                               dy_BxHoxWoxF.reshape(-1, f), "float32")
    dpatches = dy_BxHoxWoxF @ kernel_KHxKWxCxF.reshape(-1, f).T
    _, pullback = jax.vjp(lambda x: extract_patches(x, (kh, kw), pads), x_BxHxWxC)
    dx = pullback(dpatches.astype(x_BxHxWxC.dtype))[0]
    return dx, dkernel.reshape(kernel_KHxKWxCxF.shape).astype(kernel_KHxKWxCxF.dtype)


patch_conv2d.defvjp(_patch_conv2d_forward, _patch_conv2d_backward)


def xla_conv2d(x_BxHxWxC: jax.Array, kernel_KHxKWxCxF: jax.Array, pads: Pads,
               compute_dtype: str = "float32") -> jax.Array:
    """XLA's own convolution (`lax.conv_general_dilated`); bfloat16 in the forward pass only
    (JAX differentiates it in float32)."""
    # operands of one dtype, as lax requires: a bfloat16 input under float32 parameters (or
    # the reverse) promoted to float32, as "patches" and nn.Conv do
    dtype, wide = jnp.promote_types(x_BxHxWxC.dtype, kernel_KHxKWxCxF.dtype), {}
    if compute_dtype == "bfloat16":
        dtype, wide = jnp.bfloat16, {"preferred_element_type": jnp.float32}
    x_BxHxWxC, kernel_KHxKWxCxF = x_BxHxWxC.astype(dtype), kernel_KHxKWxCxF.astype(dtype)
    return jax.lax.conv_general_dilated(x_BxHxWxC, kernel_KHxKWxCxF, window_strides=(1, 1),
                                        padding=pads,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"), **wide)


def matmul_conv2d(x_BxHxWxC: jax.Array, kernel_KHxKWxCxF: jax.Array, pads: Pads,
                  compute_dtype: str = "float32") -> jax.Array:
    """One matmul over patches, or over kernel taps where there are more input channels
    than outputs (`tap_conv2d`)."""
    kh, kw, c, f = kernel_KHxKWxCxF.shape
    if c > f:
        return tap_conv2d(x_BxHxWxC, kernel_KHxKWxCxF, pads, compute_dtype)
    if compute_dtype == "float32":
        return patch_conv2d(x_BxHxWxC, kernel_KHxKWxCxF, pads)
    patches = extract_patches(x_BxHxWxC, (kh, kw), pads)
    out = precision.bfloat16_matmul(patches.reshape(-1, kh * kw * c),
                                    kernel_KHxKWxCxF.reshape(-1, f))
    return out.reshape(*patches.shape[:-1], f)


@dataclasses.dataclass(frozen=True)
class Implementation:
    """How a `Conv` computes: its stride-1 convolution, and whether a convolution followed
    by ReLU and 2x2 max pooling may be one fused pass (`relu_max_pool_conv2d`)."""

    conv2d: Callable[..., jax.Array]
    fuses_pooling: bool


# config.model.conv's values; the first is the default
IMPLEMENTATIONS: dict[str, Implementation] = {
    "patches": Implementation(matmul_conv2d, fuses_pooling=True),
    "xla": Implementation(xla_conv2d, fuses_pooling=False)}
DEFAULT_IMPLEMENTATION = next(iter(IMPLEMENTATIONS))  # a config's model.conv when it names none


def conv2d(x_BxHxWxC: jax.Array, kernel_KHxKWxCxF: jax.Array, pads: Pads, implementation: str,
           compute_dtype: str = "float32") -> jax.Array:
    """Stride-1 convolution, NHWC input, HWIO kernel, explicit zero padding, no bias, as
    `implementation` (a key of IMPLEMENTATIONS) computes it; with compute_dtype "bfloat16",
    of bfloat16 operands with float32 accumulation."""
    if compute_dtype not in precision.COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype={compute_dtype!r}: use one of "
                         f"{precision.COMPUTE_DTYPES}")
    return IMPLEMENTATIONS[implementation].conv2d(x_BxHxWxC, kernel_KHxKWxCxF, pads,
                                                  compute_dtype)


def _subpixel_taps(size: int, pad: int, factor: int) -> tuple[np.ndarray, int]:
    """Which low-resolution row each kernel row reads, after nearest up-sampling.

    Output row factor*y + a of a convolution over the up-sampled input reads up-sampled row
    factor*y + a + i - pad with kernel row i, that is low-resolution row y + (a + i - pad)
    // factor. Returns M [factor, taps, size] with M[a, r, i] = 1 where kernel row i lands on
    low-resolution offset r + first, and `first`, the smallest offset.
    """
    offsets = np.array([[(a + i - pad) // factor for i in range(size)] for a in range(factor)])
    first = int(offsets.min())
    taps = int(offsets.max()) - first + 1
    landing = np.zeros((factor, taps, size), np.float32)
    for a in range(factor):
        for i in range(size):
            landing[a, offsets[a, i] - first, i] = 1.0
    return landing, first


def upsampled_conv2d(x_BxHxWxC: jax.Array, kernel_KHxKWxCxF: jax.Array, padding: str,
                     factor: int, implementation: str, compute_dtype: str = "float32"
                     ) -> jax.Array:
    """conv2d(nearest up-sampling of x by `factor`, kernel): computed at the low resolution.

    Every output pixel in the same factor x factor block reads the same few low-resolution
    pixels, with sums of kernel taps as weights. So one convolution of the low-resolution
    input with factor**2 * F outputs (the summed kernels of each position in the block),
    then a depth-to-space, gives the same values without the up-sampled tensor: the layer
    reads factor**2 times fewer input values.
    """
    kh, kw, c, f = kernel_KHxKWxCxF.shape
    b, h, w, _ = x_BxHxWxC.shape
    (top, bottom), (left, right) = same_or_valid_pads((kh, kw), padding)
    out_h, out_w = factor * h + top + bottom - kh + 1, factor * w + left + right - kw + 1
    if out_h % factor or out_w % factor:
        raise ValueError(f"a {kh}x{kw} {padding} convolution of a {factor}x up-sampled "
                         f"{h}x{w} input gives {out_h}x{out_w}, not whole {factor}x{factor} "
                         "blocks: up-sample and convolve separately")
    rows, first_row = _subpixel_taps(kh, top, factor)
    cols, first_col = _subpixel_taps(kw, left, factor)
    # [taps_h, taps_w, C, (a, b, F)]: output position (a, b)'s summed kernel per offset.
    summed = jnp.einsum("ari,bsj,ijcf->rscabf", rows, cols, kernel_KHxKWxCxF)
    summed = summed.reshape(rows.shape[1], cols.shape[1], c, factor * factor * f)
    low_h, low_w = out_h // factor, out_w // factor
    pads = ((-first_row, low_h - 1 + first_row + rows.shape[1] - h),
            (-first_col, low_w - 1 + first_col + cols.shape[1] - w))
    blocks = conv2d(x_BxHxWxC, summed, pads, implementation, compute_dtype)
    blocks = blocks.reshape(b, low_h, low_w, factor, factor, f).transpose(0, 1, 3, 2, 4, 5)
    return blocks.reshape(b, out_h, out_w, f)


class Conv(nn.Module):
    """Stride-1 2-D convolution, NHWC, 'SAME' or 'VALID' padding, of the input or of its
    nearest `upsample`-fold up-sampling: one matmul over patches, or over kernel taps where
    there are more input channels than outputs ("patches"), or XLA's own convolution
    ("xla"). With `relu_max_pool`, the output is then passed through ReLU and 2x2 max
    pooling with stride 2 that keeps a ragged edge (`pooling.max_pool_ceil`), fused into
    the convolution where it can be (`relu_max_pool_conv2d`). "patches" gives its own
    gradients, reverse mode only: forward mode (`jax.jvp`, `jax.jacfwd`) needs "xla" (a
    model's `conv="xla"`)."""

    features: int
    kernel_size: int | tuple[int, int] = (3, 3)  # an int: a square kernel, as nn.Conv takes
    padding: str = "SAME"
    implementation: str = DEFAULT_IMPLEMENTATION
    upsample: int = 1
    compute_dtype: str = "float32"  # or "bfloat16": bfloat16 operands, float32 accumulation
    relu_max_pool: bool = False  # then ReLU and 2x2 max pooling (an encoder's stage)
    param_dtype: Any = jnp.float32  # as nn.Dense's, float32 under jax_enable_x64 too

    @nn.compact
    def __call__(self, x_BxHxWxC: jax.Array) -> jax.Array:
        channels = x_BxHxWxC.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (*self._kernel_hw, channels, self.features), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,),
                          self.param_dtype)
        if self.implementation not in IMPLEMENTATIONS:
            raise ValueError(f"implementation={self.implementation!r}: use one of "
                             f"{', '.join(IMPLEMENTATIONS)}")
        pads = same_or_valid_pads(self._kernel_hw, self.padding)
        if self.relu_max_pool and self._fuses_pooling(x_BxHxWxC.shape, pads):
            return relu_max_pool_conv2d(x_BxHxWxC, kernel, bias, pads, self.compute_dtype)
        if self.upsample > 1:
            y = upsampled_conv2d(x_BxHxWxC, kernel, self.padding, self.upsample,
                                 self.implementation, self.compute_dtype) + bias
        else:
            y = conv2d(x_BxHxWxC, kernel, pads, self.implementation, self.compute_dtype) + bias
        return pooling.max_pool_ceil(nn.relu(y)) if self.relu_max_pool else y

    @property
    def _kernel_hw(self) -> tuple[int, int]:
        size = self.kernel_size
        return (size, size) if isinstance(size, int) else tuple(size)

    def _fuses_pooling(self, input_shape: tuple[int, ...], pads: Pads) -> bool:
        """Whether `relu_max_pool_conv2d` computes this layer: the patches implementation,
        no up-sampling, even output sides, and no more inputs than outputs (with more, the
        tap-first convolution and a separate pooling pass run faster:
        `python -m benchmarks.bench --models conv_ae`)."""
        _, h, w, c = input_shape
        (top, bottom), (left, right) = pads
        out_h = h + top + bottom - self._kernel_hw[0] + 1
        out_w = w + left + right - self._kernel_hw[1] + 1
        return (IMPLEMENTATIONS[self.implementation].fuses_pooling and self.upsample == 1
                and out_h > 0 and out_w > 0 and out_h % 2 == 0 and out_w % 2 == 0
                and c <= self.features)
