"""Flax (Linen) autoencoders: every module maps images [B, 28, 28, 1] to logits of the same shape.

Decoders return logits, not probabilities: losses apply the sigmoid in their numerically
stable forms (`jaxae.losses`), and `jax.nn.sigmoid(logits)` is the reconstructed image.
Initial values are redrawn after `init` under the config's scheme (`jaxae.initializers`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxae.conv import Conv

IMAGE_SHAPE = (28, 28, 1)
NUM_PIXELS = math.prod(IMAGE_SHAPE)


def _window_corners(x_BxHxWxC: jax.Array) -> list[jax.Array]:
    """The four values of every 2x2 window, [B, H/2, W/2, C] each, in row-major order."""
    b, h, w, c = x_BxHxWxC.shape
    x = x_BxHxWxC.reshape(b, h // 2, 2, w // 2, 2, c)
    return [x[:, :, i, :, j] for i in range(2) for j in range(2)]


def _pool_with_argmax(x_BxHxWxC: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(maxima, which corner holds the first maximum: 0..3, row-major), [B, H/2, W/2, C]."""
    corners = _window_corners(x_BxHxWxC)
    pooled = jnp.maximum(jnp.maximum(corners[0], corners[1]),
                         jnp.maximum(corners[2], corners[3]))
    first = jnp.where(corners[2] == pooled, 2, 3).astype(jnp.int8)
    for index in (1, 0):
        first = jnp.where(corners[index] == pooled, jnp.int8(index), first)
    return pooled, first


def _upsample_2x2(x_BxhxwxC: jax.Array) -> jax.Array:
    """Nearest 2x up-sampling, as a broadcast XLA can fuse into its consumer."""
    b, h, w, c = x_BxhxwxC.shape
    x = jnp.broadcast_to(x_BxhxwxC[:, :, None, :, None, :], (b, h, 2, w, 2, c))
    return x.reshape(b, 2 * h, 2 * w, c)


@jax.custom_vjp
def max_pool_2x2(x_BxHxWxC: jax.Array) -> jax.Array:
    """2x2 max pooling with stride 2 of an even-sized input, as elementwise maxima.

    The gradient goes to the first maximum of each window in row-major order, as in
    PyTorch's MaxPool2d for finite inputs (differentiating `jnp.max` would split it among
    tied maxima, which takes a count and a division). Both directions are one elementwise
    pass: on CPU, XLA's reductions and select-and-scatter over 2x2 windows are several times
    slower. A custom VJP: reverse mode only (`jax.jvp` and `jax.hessian` refuse it).
    """
    return _pool_with_argmax(x_BxHxWxC)[0]


def _max_pool_2x2_forward(x_BxHxWxC: jax.Array) -> tuple[jax.Array, jax.Array]:
    return _pool_with_argmax(x_BxHxWxC)


def _max_pool_2x2_backward(first_BxhxwxC: jax.Array, dy_BxhxwxC: jax.Array
                           ) -> tuple[jax.Array]:
    b, h, w, c = first_BxhxwxC.shape
    rows = jax.lax.broadcasted_iota(jnp.int32, (1, 2 * h, 2 * w, 1), 1) % 2
    cols = jax.lax.broadcasted_iota(jnp.int32, (1, 2 * h, 2 * w, 1), 2) % 2
    chosen = _upsample_2x2(first_BxhxwxC).astype(jnp.int32) == 2 * rows + cols
    return (jnp.where(chosen, _upsample_2x2(dy_BxhxwxC), 0.0),)


max_pool_2x2.defvjp(_max_pool_2x2_forward, _max_pool_2x2_backward)


def max_pool_ceil(x_BxHxWxC: jax.Array) -> jax.Array:
    """2x2 max pooling that keeps a ragged edge (7 -> 4), like Keras padding='same': the
    edge is padded with -inf, then `max_pool_2x2`. Values equal `nn.max_pool`'s."""
    _, h, w, _ = x_BxHxWxC.shape
    x = jnp.pad(x_BxHxWxC, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=-jnp.inf)
    return max_pool_2x2(x)


class DenseEncoder(nn.Module):
    """Flatten, then Linear(784 -> latent_dim) + ReLU: the material's one-layer encoder."""

    latent_dim: int

    @nn.compact
    def __call__(self, x_BxHxWxC: jax.Array) -> jax.Array:
        x_BxP = x_BxHxWxC.reshape(x_BxHxWxC.shape[0], -1)
        return nn.relu(nn.Dense(self.latent_dim, name="code")(x_BxP))


class DenseDecoder(nn.Module):
    """Linear(latent_dim -> 784), reshaped to 28x28x1: the material's one-layer decoder."""

    @nn.compact
    def __call__(self, z_BxD: jax.Array) -> jax.Array:
        logits_BxP = nn.Dense(NUM_PIXELS, name="pixels")(z_BxD)
        return logits_BxP.reshape(z_BxD.shape[0], *IMAGE_SHAPE)


class MLPEncoder(nn.Module):
    """Stack of ReLU Dense layers ending in a linear code (Hinton & Salakhutdinov 2006)."""

    hidden: tuple[int, ...]
    latent_dim: int

    @nn.compact
    def __call__(self, x_BxHxWxC: jax.Array) -> jax.Array:
        h = x_BxHxWxC.reshape(x_BxHxWxC.shape[0], -1)
        for width in self.hidden:
            h = nn.relu(nn.Dense(width)(h))
        return nn.Dense(self.latent_dim, name="code")(h)


class MLPDecoder(nn.Module):
    """Mirror of `MLPEncoder`: ReLU Dense layers, then a linear layer to 784 pixel logits."""

    hidden: tuple[int, ...]

    @nn.compact
    def __call__(self, z_BxD: jax.Array) -> jax.Array:
        h = z_BxD
        for width in self.hidden:
            h = nn.relu(nn.Dense(width)(h))
        return nn.Dense(NUM_PIXELS, name="pixels")(h).reshape(z_BxD.shape[0], *IMAGE_SHAPE)


class ConvEncoder(nn.Module):
    """Conv 16 / pool / Conv 8 / pool / Conv 8 / pool: 28x28x1 -> a 4x4x8 code (128 numbers)."""

    conv: str = "patches"  # how convolutions are computed: see jaxae.conv.Conv

    @nn.compact
    def __call__(self, x_BxHxWxC: jax.Array) -> jax.Array:
        h = x_BxHxWxC
        for features in (16, 8, 8):  # 28 -> 14 -> 7 -> 4
            h = max_pool_ceil(nn.relu(Conv(features, (3, 3), "SAME", self.conv)(h)))
        return h


class ConvDecoder(nn.Module):
    """Mirror of `ConvEncoder` with nearest up-sampling, each folded into the convolution
    after it (`Conv(upsample=2)`): 4x4x8 -> 28x28x1 logits."""

    conv: str = "patches"

    @nn.compact
    def __call__(self, z_Bx4x4x8: jax.Array) -> jax.Array:
        h = nn.relu(Conv(8, (3, 3), "SAME", self.conv)(z_Bx4x4x8))  # 4x4
        h = nn.relu(Conv(8, (3, 3), "SAME", self.conv, upsample=2)(h))  # 8x8
        h = nn.relu(Conv(16, (3, 3), "VALID", self.conv, upsample=2)(h))  # 16 -> 14x14
        return Conv(1, (3, 3), "SAME", self.conv, upsample=2, name="pixels")(h)  # 28x28


class Autoencoder(nn.Module):
    """An encoder and a decoder; `encode` gives the code, `decode` the image logits."""

    encoder: nn.Module
    decoder: nn.Module

    def encode(self, x_BxHxWxC: jax.Array) -> jax.Array:
        return self.encoder(x_BxHxWxC)

    def decode(self, z: jax.Array) -> jax.Array:
        return self.decoder(z)

    def __call__(self, x_BxHxWxC: jax.Array) -> jax.Array:
        return self.decode(self.encode(x_BxHxWxC))


def depth_to_space(x_BxhxwxC: jax.Array, factor: int) -> jax.Array:
    """[B, h, w, f*f*C] -> [B, h*f, w*f, C]: each pixel's channels become an f x f block."""
    b, h, w, c = x_BxhxwxC.shape
    out_c = c // (factor * factor)
    x = x_BxhxwxC.reshape(b, h, w, factor, factor, out_c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h * factor, w * factor, out_c)


class SuperResolution(nn.Module):
    """Low-resolution image [B, 28/f, 28/f, 1] -> 28x28 logits, f in {2, 4}.

    ESPCN (Shi et al., 2016): every convolution runs at the low resolution, and the last one
    predicts the f x f sub-pixels of each input pixel, rearranged by `depth_to_space`. This
    costs f^2 times fewer operations than convolving at 28x28.
    """

    factor: int = 2
    features: int = 32
    conv: str = "patches"

    @nn.compact
    def __call__(self, x_BxhxwxC: jax.Array) -> jax.Array:
        h = nn.relu(Conv(self.features, (5, 5), "SAME", self.conv)(x_BxhxwxC))
        h = nn.relu(Conv(self.features // 2, (3, 3), "SAME", self.conv)(h))
        subpixels = Conv(self.factor ** 2, (3, 3), "SAME", self.conv, name="pixels")(h)
        return depth_to_space(subpixels, self.factor)


class MLPFeatures(nn.Module):
    """Flatten, then ReLU Dense layers: the part of an MLP encoder before its code heads."""

    hidden: tuple[int, ...]

    @nn.compact
    def __call__(self, x_BxHxWxC: jax.Array) -> jax.Array:
        h = x_BxHxWxC.reshape(x_BxHxWxC.shape[0], -1)
        for width in self.hidden:
            h = nn.relu(nn.Dense(width)(h))
        return h


class ConvFeatures(nn.Module):
    """The conv AE's encoder, flattened: 28x28x1 -> 128 features."""

    conv: str = "patches"

    @nn.compact
    def __call__(self, x_BxHxWxC: jax.Array) -> jax.Array:
        h = ConvEncoder(self.conv)(x_BxHxWxC)
        return h.reshape(h.shape[0], -1)


class ConvVAEDecoder(nn.Module):
    """z -> nn.Dense(128) + ReLU -> 4x4x8 -> the conv AE's decoder -> 28x28x1 logits."""

    conv: str = "patches"

    @nn.compact
    def __call__(self, z_BxD: jax.Array) -> jax.Array:
        h = nn.relu(nn.Dense(CONV_AE_CODE_SIZE)(z_BxD))
        return ConvDecoder(self.conv)(h.reshape(z_BxD.shape[0], 4, 4, 8))


def reparameterize(key: jax.Array, mean: jax.Array, log_sigma: jax.Array) -> jax.Array:
    """z = mean + exp(log_sigma) * eps, eps ~ N(0, I): log_sigma is the log of the std."""
    return mean + jnp.exp(log_sigma) * jax.random.normal(key, mean.shape, mean.dtype)


class VAE(nn.Module):
    """Variational autoencoder; with num_classes > 0, conditional on one-hot labels (CVAE).

    The encoder predicts z_mean and z_log_sigma (the log of the standard deviation). Given a
    key, z is sampled by `reparameterize`; without one, z = z_mean (evaluation).
    A CVAE appends the one-hot label to the encoder's features and to z.
    """

    features: nn.Module
    decoder: nn.Module
    latent_dim: int
    num_classes: int = 0

    def setup(self):
        self.z_mean = nn.Dense(self.latent_dim)
        self.z_log_sigma = nn.Dense(self.latent_dim)

    def _condition(self, h_BxF: jax.Array, labels_B: jax.Array | None) -> jax.Array:
        if not self.num_classes:
            return h_BxF
        one_hot = jax.nn.one_hot(labels_B, self.num_classes, dtype=h_BxF.dtype)
        return jnp.concatenate([h_BxF, one_hot], axis=-1)

    def encode(self, x_BxHxWxC: jax.Array, labels_B: jax.Array | None = None
               ) -> tuple[jax.Array, jax.Array]:
        h = self._condition(self.features(x_BxHxWxC), labels_B)
        return self.z_mean(h), self.z_log_sigma(h)

    def decode(self, z_BxD: jax.Array, labels_B: jax.Array | None = None) -> jax.Array:
        return self.decoder(self._condition(z_BxD, labels_B))

    def __call__(self, x_BxHxWxC: jax.Array, key: jax.Array | None = None,
                 labels_B: jax.Array | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
        mean, log_sigma = self.encode(x_BxHxWxC, labels_B)
        z = mean if key is None else reparameterize(key, mean, log_sigma)
        return self.decode(z, labels_B), {"mean": mean, "log_sigma": log_sigma, "z": z}


DEEP_HIDDEN = (1000, 500, 250)  # Hinton & Salakhutdinov (2006), 784-1000-500-250-d
VAE_HIDDEN = (512,)  # the material's MLP VAE, 784-512-d


def dense_ae(latent_dim: int, conv: str = "patches") -> Autoencoder:
    del conv  # no convolutions
    return Autoencoder(DenseEncoder(latent_dim), DenseDecoder())


def deep_ae(latent_dim: int, conv: str = "patches") -> Autoencoder:
    del conv
    return Autoencoder(MLPEncoder(DEEP_HIDDEN, latent_dim), MLPDecoder(DEEP_HIDDEN[::-1]))


def conv_ae(latent_dim: int, conv: str = "patches") -> Autoencoder:
    del latent_dim  # fixed by the architecture: 4 x 4 x 8 = 128
    return Autoencoder(ConvEncoder(conv), ConvDecoder(conv))


def vae(latent_dim: int, conv: str = "patches") -> VAE:
    del conv
    return VAE(MLPFeatures(VAE_HIDDEN), MLPDecoder(VAE_HIDDEN), latent_dim)


def conv_vae(latent_dim: int, conv: str = "patches") -> VAE:
    return VAE(ConvFeatures(conv), ConvVAEDecoder(conv), latent_dim)


def cvae(latent_dim: int, conv: str = "patches") -> VAE:
    del conv
    return VAE(MLPFeatures(VAE_HIDDEN), MLPDecoder(VAE_HIDDEN), latent_dim, NUM_CLASSES)


NUM_CLASSES = 10
MODELS: dict[str, Callable[[int, str], nn.Module]] = {
    "dense_ae": dense_ae,
    "deep_ae": deep_ae,
    "conv_ae": conv_ae,
    "vae": vae,
    "conv_vae": conv_vae,
    "cvae": cvae,
}
MODEL_NAMES = (*MODELS, "superres")
VARIATIONAL = ("vae", "conv_vae", "cvae")
CONV_AE_CODE_SIZE = 4 * 4 * 8


def build_model(name: str, latent_dim: int, superres_factor: int = 2,
                conv: str = "patches") -> nn.Module:
    """The model a config names; `latent_dim` is ignored where the architecture fixes it.
    `conv` says how convolutions are computed ("patches" or "xla", `jaxae.conv.Conv`); the
    parameters are the same either way."""
    if name == "superres":
        return SuperResolution(factor=superres_factor, conv=conv)
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: choose one of {', '.join(MODEL_NAMES)}")
    return MODELS[name](latent_dim, conv)


def model_from_config(config) -> nn.Module:
    """The model of a config: its model, latent_dim, superres_factor and conv fields."""
    return build_model(config.model, config.latent_dim, config.superres_factor, config.conv)
