"""The registered models: dense, deep and convolutional autoencoders, VAEs, super-resolution.

Each takes the data's `image_shape` (H, W, C) and derives its layer sizes from it: the dense
models from H*W*C, the convolutional ones their number of 2x stages from the resolution.
Layers are fields (`dense=nn.Dense`, `conv=Conv`), so a faster kernel or another precision
is injected rather than chosen inside the model (`jaxae.kernels`); an injected `conv` takes
`Conv`'s fields, `upsample` and `relu_max_pool` included. Module and layer names are
part of the checkpoint format: renaming one changes every parameter path.
"""

from __future__ import annotations

import math
import numbers

import flax.linen as nn
import jax

from jaxae.kernels.conv import Conv
from jaxae.kernels.pooling import depth_to_space
from jaxae.models.base import (
    Autoencoder,
    ModuleDef,
    VariationalAutoencoder,
    flatten,
    one_hot_condition,
)
from jaxae.models.registry import NeedsClasses, register_model

Shape = tuple[int, int, int]


class DenseEncoder(nn.Module):
    """Flatten, then Linear(H*W*C -> latent_dim) + ReLU: the material's one-layer encoder."""

    latent_dim: int
    dense: ModuleDef = nn.Dense

    @nn.compact
    def __call__(self, x_BxHxWxC: jax.Array) -> jax.Array:
        return nn.relu(self.dense(self.latent_dim, name="code")(flatten(x_BxHxWxC)))


class DenseDecoder(nn.Module):
    """Linear(latent_dim -> H*W*C), reshaped to the image: the material's one-layer decoder."""

    image_shape: Shape
    dense: ModuleDef = nn.Dense

    @nn.compact
    def __call__(self, z_BxD: jax.Array) -> jax.Array:
        logits_BxP = self.dense(math.prod(self.image_shape), name="pixels")(z_BxD)
        return logits_BxP.reshape(z_BxD.shape[0], *self.image_shape)


def relu_layers(dense: ModuleDef, widths: tuple[int, ...], h: jax.Array) -> jax.Array:
    """ReLU Dense layers of `widths`, made in the calling compact method (named Dense_0,
    Dense_1, ... there)."""
    for width in widths:
        h = nn.relu(dense(width)(h))
    return h


class MLPEncoder(nn.Module):
    """Stack of ReLU Dense layers ending in a linear code (Hinton & Salakhutdinov 2006)."""

    hidden: tuple[int, ...]
    latent_dim: int
    dense: ModuleDef = nn.Dense

    @nn.compact
    def __call__(self, x_BxHxWxC: jax.Array) -> jax.Array:
        h = relu_layers(self.dense, self.hidden, flatten(x_BxHxWxC))
        return self.dense(self.latent_dim, name="code")(h)


class MLPDecoder(nn.Module):
    """Mirror of `MLPEncoder`: ReLU Dense layers, then a linear layer to the pixel logits."""

    hidden: tuple[int, ...]
    image_shape: Shape
    dense: ModuleDef = nn.Dense

    @nn.compact
    def __call__(self, z_BxD: jax.Array) -> jax.Array:
        h = relu_layers(self.dense, self.hidden, z_BxD)
        logits_BxP = self.dense(math.prod(self.image_shape), name="pixels")(h)
        return logits_BxP.reshape(z_BxD.shape[0], *self.image_shape)


class MLPFeatures(nn.Module):
    """Flatten, then ReLU Dense layers: the part of an MLP encoder before its code heads."""

    hidden: tuple[int, ...]
    dense: ModuleDef = nn.Dense

    @nn.compact
    def __call__(self, x_BxHxWxC: jax.Array) -> jax.Array:
        return relu_layers(self.dense, self.hidden, flatten(x_BxHxWxC))


# --- convolutional stages, chosen from the resolution -------------------------------------

MAX_CODE_SIDE = 4  # the encoder halves the image until no side is longer than this
LESSON_FEATURES = (16, 8)  # the material's first stage, then every later one (16, 8, 8)


def encoder_sides(side: int, stages: int) -> list[int]:
    """A side's length after each 2x2 max pool that keeps ragged edges (14 -> 7 -> 4)."""
    sides = [side]
    for _ in range(stages):
        sides.append(-(-sides[-1] // 2))
    return sides


def default_stages(height: int, width: int) -> int:
    """How many 2x stages bring the longer side down to MAX_CODE_SIDE or less."""
    stages, side = 0, max(height, width)
    while side > MAX_CODE_SIDE:
        side, stages = -(-side // 2), stages + 1
    return stages


def decoder_paddings(code_side: int, target: int, stages: int) -> tuple[str, ...] | None:
    """Paddings of the decoder's up-sampled 3x3 convolutions ("SAME": 2s, "VALID": 2s - 2)
    that grow `code_side` to exactly `target` in `stages` steps, preferring "SAME" early
    (MNIST's size from 4x4: SAME, VALID, SAME, the material's); None if there is no way."""
    if stages == 0:
        return () if code_side == target else None
    for padding, side in (("SAME", 2 * code_side), ("VALID", 2 * code_side - 2)):
        rest = decoder_paddings(side, target, stages - 1)
        if side > 0 and rest is not None:
            return (padding, *rest)
    return None


def conv_plan(image_shape: Shape, features: tuple[int, ...] | None, width: int, owner: str
              ) -> tuple[tuple[int, ...], tuple[int, int, int], tuple[str, ...]]:
    """(encoder features per stage, code shape, decoder paddings) for an image shape.

    Without `features`, the stages are as many as the resolution needs and their widths the
    material's (16, then 8), times `width`. Raises ValueError when no plan fits the size.
    """
    height, wide, _ = image_shape
    fixed = features is not None
    if features is None:
        stages = default_stages(height, wide)
        if stages == 0:
            smallest = _decodable_near(MAX_CODE_SIDE + 1, 0, fixed=False)[1]
            raise ValueError(f"{owner} needs images larger than {MAX_CODE_SIDE}x"
                             f"{MAX_CODE_SIDE}; these are {height}x{wide}: use a larger size "
                             f"that decodes, the smallest being {smallest}x{smallest}")
        features = lesson_features(stages)
    if not features:
        raise ValueError(f"{owner}: features=() has no stage: give each stage's feature count "
                         "(e.g. (16, 8, 8)), or leave it unset for the material's")
    whole = [width, *features] if isinstance(features, (tuple, list)) else [width, features]
    if not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1
               for n in whole):
        raise ValueError(f"{owner}: width={width!r} and features={features!r} must be positive "
                         "whole numbers")
    features = tuple(f * width for f in features)
    stages = len(features)
    paddings = _paddings(height, wide, stages)
    if paddings is None:
        sides = (*_decodable_near(height, stages, fixed), *_decodable_near(wide, stages, fixed))
        near = " or ".join(dict.fromkeys(f"{s}x{s}" for s in sorted(sides)))
        counts = [n for n in range(1, MAX_STAGES + 1) if _paddings(height, wide, n)]
        other = ""
        if counts:
            n = min(counts, key=lambda count: (abs(count - stages), count))
            decode = "stage decodes" if n == 1 else "stages decode"
            other = f"; {n} {decode} {height}x{wide}: model.features='{lesson_features(n)}'"
        raise ValueError(f"{owner} cannot decode {stages} 2x stage{'s' * (stages > 1)} back "
                         f"to {height}x{wide}: resize the images to a size that decodes ({near}: "
                         "data.image_size) or change the number of stages (model.features, one "
                         f"count per stage, each times model.width{other})")
    code_h, code_w = encoder_sides(height, stages)[-1], encoder_sides(wide, stages)[-1]
    return features, (code_h, code_w, features[-1]), paddings


MAX_STAGES = 8  # the most stages a size's error message suggests


def lesson_features(stages: int) -> tuple[int, ...]:
    """The material's feature counts for `stages` stages: 16, then 8 for each later one."""
    return (LESSON_FEATURES[0], *[LESSON_FEATURES[1]] * (stages - 1))


def _paddings(height: int, width: int, stages: int) -> tuple[str, ...] | None:
    """The decoder's paddings that bring `stages` 2x stages of height x width back to it,
    the same for both sides (its convolutions pad both alike); None where none do."""
    code_h, code_w = encoder_sides(height, stages)[-1], encoder_sides(width, stages)[-1]
    paddings = decoder_paddings(code_h, height, stages)
    return paddings if paddings is not None and \
        paddings == decoder_paddings(code_w, width, stages) else None


def _decodable(side: int, stages: int) -> bool:
    return decoder_paddings(encoder_sides(side, stages)[-1], side, stages) is not None


def _decodable_near(side: int, stages: int, fixed: bool) -> tuple[int, int]:
    """The nearest square sizes' sides below and above `side` that the decoder reaches
    again (`side` itself if it does), with `stages` stages (`fixed`), or with as many as
    their own size needs."""
    def fits(s: int) -> bool:  # at least one stage: a size with none is refused
        stages_s = stages if fixed else default_stages(s, s)
        return stages_s > 0 and _decodable(s, stages_s)

    if fits(side):  # (of a non-square image, the other side may be the one that fails)
        return side, side
    below = next((s for s in range(side - 1, MAX_CODE_SIDE, -1) if fits(s)), side + 1)
    above = next(s for s in range(side + 1, 4 * side + 8) if fits(s))
    return (below, above) if below < side else (above, above)


class ConvEncoder(nn.Module):
    """3x3 conv + ReLU + 2x2 max pool per stage (one `Conv(relu_max_pool=True)`); the
    material's (16, 8, 8) features take MNIST's images to a 4x4x8 code."""

    features: tuple[int, ...] = (16, 8, 8)
    conv: ModuleDef = Conv

    @nn.compact
    def __call__(self, x_BxHxWxC: jax.Array) -> jax.Array:
        h = x_BxHxWxC
        for features in self.features:
            h = self.conv(features, (3, 3), "SAME", relu_max_pool=True)(h)
        return h


class ConvDecoder(nn.Module):
    """Mirror of `ConvEncoder` with nearest 2x up-sampling, each folded into the convolution
    after it (`Conv(upsample=2)`); `paddings` trim where the encoder rounded up (for MNIST's
    size, the material's 4 -> 8 -> 14 (VALID) -> full size)."""

    features: tuple[int, ...]
    out_channels: int
    paddings: tuple[str, ...]
    conv: ModuleDef = Conv

    @nn.compact
    def __call__(self, z_BxhxwxF: jax.Array) -> jax.Array:
        reverse = self.features[::-1]
        h = nn.relu(self.conv(reverse[0], (3, 3), "SAME")(z_BxhxwxF))
        for index, padding in enumerate(self.paddings):
            if index == len(self.paddings) - 1:
                return self.conv(self.out_channels, (3, 3), padding, upsample=2,
                                 name="pixels")(h)
            h = nn.relu(self.conv(reverse[index + 1], (3, 3), padding, upsample=2)(h))
        return h


@register_model("dense_ae")
class DenseAE(Autoencoder):
    """Linear(H*W*C -> d) + ReLU, Linear(d -> H*W*C): the material's autoencoder (d = 10), and
    with a corrupted input and d = 940 its denoising autoencoder."""

    image_shape: Shape
    latent_dim: int = 10
    dense: ModuleDef = nn.Dense

    @property
    def latent_shape(self) -> tuple[int]:
        return (self.latent_dim,)

    def setup(self) -> None:
        _check_latent_dim(self)
        self.encoder = DenseEncoder(self.latent_dim, self.dense)
        self.decoder = DenseDecoder(self.image_shape, self.dense)

    def encode(self, x: jax.Array, *, labels: jax.Array | None = None) -> jax.Array:
        return self.encoder(x)

    def decode(self, z: jax.Array, *, labels: jax.Array | None = None) -> jax.Array:
        return self.decoder(z)


DEEP_HIDDEN = (1000, 500, 250)  # Hinton & Salakhutdinov (2006): pixels-1000-500-250-d


@register_model("deep_ae")
class DeepAE(Autoencoder):
    """An MLP autoencoder, pixels-1000-500-250-d with ReLU and a linear code."""

    image_shape: Shape
    latent_dim: int = 30
    hidden: tuple[int, ...] = DEEP_HIDDEN
    dense: ModuleDef = nn.Dense

    @property
    def latent_shape(self) -> tuple[int]:
        return (self.latent_dim,)

    def setup(self) -> None:
        _check_latent_dim(self)
        self.encoder = MLPEncoder(self.hidden, self.latent_dim, self.dense)
        self.decoder = MLPDecoder(self.hidden[::-1], self.image_shape, self.dense)

    def encode(self, x: jax.Array, *, labels: jax.Array | None = None) -> jax.Array:
        return self.encoder(x)

    def decode(self, z: jax.Array, *, labels: jax.Array | None = None) -> jax.Array:
        return self.decoder(z)


@register_model("conv_ae")
class ConvAE(Autoencoder):
    """Conv 16 / pool / Conv 8 / pool / Conv 8 / pool to a 4x4x8 code on MNIST's images (the
    material's), mirrored with nearest up-sampling; other sizes get as many stages as their
    resolution needs, `width` times wider, or the `features` given per stage."""

    image_shape: Shape
    features: tuple[int, ...] | None = None
    width: int = 1
    conv: ModuleDef = Conv

    @property
    def plan(self):
        return conv_plan(self.image_shape, self.features, self.width, "conv_ae")

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return self.plan[1]

    def setup(self) -> None:
        features, _, paddings = self.plan
        self.encoder = ConvEncoder(features, self.conv)
        self.decoder = ConvDecoder(features, self.image_shape[-1], paddings, self.conv)

    def encode(self, x: jax.Array, *, labels: jax.Array | None = None) -> jax.Array:
        return self.encoder(x)

    def decode(self, z: jax.Array, *, labels: jax.Array | None = None) -> jax.Array:
        return self.decoder(z)


@register_model("superres")
class SuperResolution(Autoencoder):
    """ESPCN (Shi et al., 2016): convolutions at the low resolution of its input, and a last
    one that predicts each input pixel's f x f sub-pixels, rearranged by `depth_to_space`; f
    is the ratio of `image_shape` to the input's size. It has no bottleneck: its "code" is
    the low-resolution image itself (`encode` is the identity)."""

    image_shape: Shape
    features: int = 32
    conv: ModuleDef = Conv

    @property
    def latent_shape(self) -> None:
        return None

    def encode(self, x: jax.Array, *, labels: jax.Array | None = None) -> jax.Array:
        return x

    @nn.compact
    def decode(self, z: jax.Array, *, labels: jax.Array | None = None) -> jax.Array:
        height, wide, channels = self.image_shape
        factor = height // z.shape[1]
        if factor * z.shape[1] != height or factor * z.shape[2] != wide:
            raise ValueError(f"superres: a {z.shape[1]}x{z.shape[2]} input does not scale by "
                             f"a whole factor to {height}x{wide}")
        h = nn.relu(self.conv(self.features, (5, 5), "SAME")(z))
        h = nn.relu(self.conv(self.features // 2, (3, 3), "SAME")(h))
        subpixels = self.conv(factor ** 2 * channels, (3, 3), "SAME", name="pixels")(h)
        return depth_to_space(subpixels, factor)


class VAE(VariationalAutoencoder):
    """A VAE from a feature extractor and a decoder: the features feed the z_mean and
    z_log_sigma heads. With num_classes > 0, conditional on one-hot labels (a CVAE): the
    label is appended to the encoder's features and to z."""

    features: nn.Module
    decoder: nn.Module
    latent_dim: int
    num_classes: int = 0
    dense: ModuleDef = nn.Dense
    image_shape: Shape | None = None  # the images it reconstructs, as the other models say

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    @property
    def latent_shape(self) -> tuple[int]:
        return (self.latent_dim,)

    def setup(self) -> None:
        _check_latent_dim(self)
        self.z_mean = self.dense(self.latent_dim)
        self.z_log_sigma = self.dense(self.latent_dim)

    def _condition(self, h_BxF: jax.Array, labels_B: jax.Array | None) -> jax.Array:
        if not self.conditional:
            return h_BxF
        return one_hot_condition(h_BxF, labels_B, self.num_classes, type(self).__name__)

    def encode(self, x: jax.Array, *, labels: jax.Array | None = None
               ) -> tuple[jax.Array, jax.Array]:
        h = self._condition(self.features(x), labels)
        return self.z_mean(h), self.z_log_sigma(h)

    def decode(self, z: jax.Array, *, labels: jax.Array | None = None) -> jax.Array:
        return self.decoder(self._condition(z, labels))


def _check_latent_dim(model: nn.Module) -> None:
    """A ValueError naming the fix for a code size that is no positive integer (JAX's own
    error comes from deep in an initialiser)."""
    size = model.latent_dim
    if not isinstance(size, numbers.Integral) or isinstance(size, bool) or size < 1:
        raise ValueError(f"{type(model).__name__}'s latent_dim={size!r}: give the code's size, "
                         "a positive integer (e.g. 2)")


VAE_HIDDEN = (512,)  # the material's MLP VAE, pixels-512-d


@register_model("vae")
def mlp_vae(image_shape: Shape, latent_dim: int = 2, hidden: tuple[int, ...] = VAE_HIDDEN,
            dense: ModuleDef = nn.Dense) -> VAE:
    """The material's MLP VAE, pixels-512-d, heads z_mean and z_log_sigma, decoder d-512-pixels."""
    return VAE(MLPFeatures(hidden, dense), MLPDecoder(hidden, image_shape, dense), latent_dim,
               dense=dense, image_shape=image_shape)


@register_model("cvae")
def conditional_vae(image_shape: Shape, num_classes: int, latent_dim: int = 2,
                    hidden: tuple[int, ...] = VAE_HIDDEN, dense: ModuleDef = nn.Dense) -> VAE:
    """The MLP VAE conditioned on the class: the one-hot label joins the encoder's features
    and z, so samples of a chosen class can be asked for. Fewer than 2 classes (VAE's
    num_classes=0 builds an unconditional model) is NeedsClasses."""
    if num_classes < 2:
        raise NeedsClasses("cvae", num_classes)
    return VAE(MLPFeatures(hidden, dense), MLPDecoder(hidden, image_shape, dense), latent_dim,
               num_classes, dense=dense, image_shape=image_shape)


class ConvFeatures(nn.Module):
    """The conv AE's encoder, flattened (MNIST's images -> 128 features)."""

    features: tuple[int, ...] = (16, 8, 8)
    conv: ModuleDef = Conv

    @nn.compact
    def __call__(self, x_BxHxWxC: jax.Array) -> jax.Array:
        return flatten(ConvEncoder(self.features, self.conv)(x_BxHxWxC))


class ConvVAEDecoder(nn.Module):
    """z -> Dense to the code's size + ReLU -> the code shape -> the conv AE's decoder."""

    code_shape: tuple[int, int, int]
    features: tuple[int, ...]
    out_channels: int
    paddings: tuple[str, ...]
    conv: ModuleDef = Conv
    dense: ModuleDef = nn.Dense

    @nn.compact
    def __call__(self, z_BxD: jax.Array) -> jax.Array:
        h = nn.relu(self.dense(math.prod(self.code_shape))(z_BxD))
        decoder = ConvDecoder(self.features, self.out_channels, self.paddings, self.conv)
        return decoder(h.reshape(z_BxD.shape[0], *self.code_shape))


@register_model("conv_vae")
def conv_vae(image_shape: Shape, latent_dim: int = 16, features: tuple[int, ...] | None = None,
             width: int = 1, conv: ModuleDef = Conv, dense: ModuleDef = nn.Dense) -> VAE:
    """The conv AE's encoder feeding the two heads; Dense to its code, then its decoder."""
    features, code_shape, paddings = conv_plan(image_shape, features, width, "conv_vae")
    decoder = ConvVAEDecoder(code_shape, features, image_shape[-1], paddings, conv, dense)
    return VAE(ConvFeatures(features, conv), decoder, latent_dim, dense=dense,
               image_shape=image_shape)

