"""Convolution as patch extraction plus one matmul: a drop-in for `flax.linen.Conv`.

XLA on CPU runs `lax.conv_general_dilated` and, above all, its two backward convolutions on
a slow path for the few channels these models have: the conv AE's training step took
169 ms at batch 128 on 2 cores with `nn.Conv`. Gathering the kh x kw shifted copies of the
input along the channel axis and multiplying by the kernel reshaped to [kh*kw*C, F] is the
same arithmetic (equal to `nn.Conv` to float rounding, `tests/test_models.py`) on XLA's
matmul path, and its gradient is matmuls plus pads: 3.4x faster for the whole step
(`python -m jaxae.bench`). Parameters have `nn.Conv`'s names and shapes (kernel
[kh, kw, C, F], bias [F]), so initialisation schemes and checkpoints see the same tree.

`implementation="xla"` calls `lax.conv_general_dilated` instead (`config.conv`): on an H100
the conv AE's whole epoch at batch 8192 took 58 ms with it and 96 ms with patches, while at
batch 128 patches were faster (167 ms against 315 ms; BENCHMARKS.md), so they stay the default.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

IMPLEMENTATIONS = ("patches", "xla")


def extract_patches(x_BxHxWxC: jax.Array, kernel_size: tuple[int, int], padding: str
                    ) -> jax.Array:
    """[B, H, W, C] -> [B, Ho, Wo, kh*kw*C]: each output pixel's receptive field, ordered
    (row, column, channel) like a kernel [kh, kw, C, F] flattened to [kh*kw*C, F]."""
    kh, kw = kernel_size
    if padding == "SAME":  # stride 1: keep H x W, extra row/column at the end as XLA does
        x_BxHxWxC = jnp.pad(x_BxHxWxC, ((0, 0), ((kh - 1) // 2, kh // 2),
                                        ((kw - 1) // 2, kw // 2), (0, 0)))
    elif padding != "VALID":
        raise ValueError(f"padding={padding!r}: use 'SAME' or 'VALID'")
    _, h, w, _ = x_BxHxWxC.shape
    out_h, out_w = h - kh + 1, w - kw + 1
    shifted = [x_BxHxWxC[:, i:i + out_h, j:j + out_w, :] for i in range(kh) for j in range(kw)]
    return jnp.concatenate(shifted, axis=-1)


class Conv(nn.Module):
    """Stride-1 2-D convolution, NHWC, 'SAME' or 'VALID' padding: one matmul over patches
    ("patches") or XLA's own convolution ("xla")."""

    features: int
    kernel_size: tuple[int, int] = (3, 3)
    padding: str = "SAME"
    implementation: str = "patches"

    @nn.compact
    def __call__(self, x_BxHxWxC: jax.Array) -> jax.Array:
        channels = x_BxHxWxC.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (*self.kernel_size, channels, self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        if self.implementation not in IMPLEMENTATIONS:
            raise ValueError(f"implementation={self.implementation!r}: use one of "
                             f"{IMPLEMENTATIONS}")
        if self.implementation == "xla":
            return jax.lax.conv_general_dilated(
                x_BxHxWxC, kernel, window_strides=(1, 1), padding=self.padding,
                dimension_numbers=("NHWC", "HWIO", "NHWC")) + bias
        patches = extract_patches(x_BxHxWxC, self.kernel_size, self.padding)
        return patches @ kernel.reshape(-1, self.features) + bias
