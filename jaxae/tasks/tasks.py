"""Tasks: what a model learns to produce from what, chosen once from `config.task`.

A task owns its example maker (a batch of uint8 images -> model inputs and clean targets),
the shape of its inputs, the classical baseline it is compared with, and how its inputs are
shown in pictures (and which classical method that picture is, if any). `reconstruct` gives
the image itself, `denoise` a corrupted copy (dropout or Gaussian noise), `superresolve` an
average-pooled copy by any factor that divides the image. Register your own with
`@tasks.register_task("name")`.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import ClassVar

import jax
import jax.numpy as jnp

from jaxae import losses
from jaxae.data.batches import to_float
from jaxae.keys import check_key
from jaxae.registry import Registry
from jaxae.tasks import baselines

TASKS = Registry("task")
register_task = TASKS.register
Shape = tuple[int, int, int]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Task:
    """Reconstruction targets from images; subclasses say how the input is made from them.

    binarize_targets: targets drawn as Bernoulli(pixel) with the step's key (dynamic
    binarisation), instead of the pixel intensities.
    """

    binarize_targets: bool = False
    # whether the input differs from the target, so that pictures and metrics show it and
    # codes are of what the model is given (False where `corrupt` returns its targets)
    shows_input: ClassVar[bool] = True
    baseline_name: ClassVar[str | None] = None  # the classical method it is compared with
    # the classical method that `input_as_image` is, where it is one (super-resolution's
    # nearest-neighbour upsampling), so that comparisons count it among the methods; None
    # where it only shows the input (a corrupted image is no method's answer)
    input_method: ClassVar[str | None] = None

    @property
    def draws_input(self) -> bool:
        """Whether the model's input is made from the image with the example's key (a
        corruption, or a binarised draw), so that codes of what the model was trained to
        encode need that key: the input a picture shows (`shows_input`), or a draw it does
        not show."""
        return self.shows_input or self.binarize_targets

    def input_shape(self, image_shape: Shape) -> Shape:
        """One input's shape, for images of `image_shape`."""
        return tuple(image_shape)

    def check(self, image_shape: Shape) -> None:
        """Raises ValueError (one line, with the fix) if the task cannot run at this shape."""

    def corrupt(self, targets: jax.Array, key: jax.Array) -> jax.Array:
        """The model's input for clean float targets in [0, 1]."""
        raise NotImplementedError

    def make_example(self, images_u8: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(model input, clean target) for a batch of uint8 images [B, H, W, C]; a shape the
        task cannot run at is its `check`'s ValueError, raised while tracing."""
        if len(images_u8.shape) != 4:
            one = (" (one image: image[None]; grey images without their channel axis: "
                   "images[..., None])") if len(images_u8.shape) == 3 else ""
            raise ValueError(f"images of shape {list(images_u8.shape)}: give a batch of images "
                             f"[B, H, W, C]{one}")
        self.check(tuple(images_u8.shape[1:]))
        check_key(key, "make_example's key")
        binarize_key, corrupt_key = jax.random.split(key)
        targets = to_float(images_u8)
        if self.binarize_targets:
            targets = jax.random.bernoulli(binarize_key, targets).astype(jnp.float32)
        return self.corrupt(targets, corrupt_key), targets

    def input_as_image(self, inputs: jax.Array, image_shape: Shape) -> jax.Array:
        """The input drawn at the image's size, in [0, 1]."""
        return jnp.clip(inputs, 0, 1)

    def baseline(self, inputs: jax.Array, image_shape: Shape) -> jax.Array:
        """The classical method's answer for these inputs, at the image's size."""
        raise NotImplementedError(f"{type(self).__name__} has no classical baseline")

    def input_label(self, image_shape: Shape) -> str:
        """How pictures label the input row."""
        return "input"


@register_task("reconstruct")
@dataclasses.dataclass(frozen=True, kw_only=True)
class Reconstruct(Task):
    """The input is the target: a plain (or variational) autoencoder."""

    shows_input: ClassVar[bool] = False

    def corrupt(self, targets: jax.Array, key: jax.Array) -> jax.Array:
        return targets


@dataclasses.dataclass(frozen=True)
class PixelDropout:
    """Each pixel value (each channel of a colour pixel on its own) zeroed with probability
    `rate`; the kept ones divided by 1 - rate if `rescale`, as a dropout layer does."""

    rate: float
    rescale: bool
    reads: ClassVar[tuple[str, ...]] = ("dropout_rate", "dropout_rescale")  # Denoise's fields
    baseline_name: ClassVar[str] = "masked median 3x3"  # dropped values from their neighbours
    baseline: ClassVar = staticmethod(baselines.masked_median_3x3)

    @classmethod
    def of(cls, task: Denoise) -> PixelDropout:
        return cls(task.dropout_rate, task.dropout_rescale)

    def __call__(self, targets: jax.Array, key: jax.Array) -> jax.Array:
        return losses.dropout_noise(key, targets, self.rate, self.rescale)

    @property
    def drawn_scale(self) -> float:
        """What brings a kept pixel back to its own value (1 - rate where rescaled)."""
        return 1.0 - self.rate if self.rescale else 1.0

    def label(self) -> str:
        kept = f",\nkept x{1 / (1 - self.rate):.3g}, drawn x1" if self.rescale else ""
        return f"input\n(dropout {self.rate:g}{kept})"


@dataclasses.dataclass(frozen=True)
class GaussianNoise:
    """N(0, std^2) added to each pixel value, clipped to [0, 1]."""

    std: float
    drawn_scale: ClassVar[float] = 1.0
    reads: ClassVar[tuple[str, ...]] = ("noise_std",)  # Denoise's fields
    baseline_name: ClassVar[str] = "median 3x3"
    baseline: ClassVar = staticmethod(baselines.median_filter_3x3)

    @classmethod
    def of(cls, task: Denoise) -> GaussianNoise:
        return cls(task.noise_std)

    def __call__(self, targets: jax.Array, key: jax.Array) -> jax.Array:
        return losses.gaussian_noise(key, targets, self.std)

    def label(self) -> str:
        return f"input\n(noise std {self.std:g})"


# task.corruption's values: the corruption each makes (`of`) of a Denoise task's fields
CORRUPTIONS: dict[str, type[PixelDropout | GaussianNoise]] = {
    "dropout": PixelDropout, "gaussian": GaussianNoise}


@register_task("denoise")
@dataclasses.dataclass(frozen=True, kw_only=True)
class Denoise(Task):
    """The input is the target corrupted afresh at every step by its `corruption` (a key of
    CORRUPTIONS): each pixel value (each channel of a colour pixel on its own) zeroed with
    probability `dropout_rate` (kept values divided by 1 - rate if `dropout_rescale`, as a
    dropout layer does), or N(0, noise_std^2) added and clipped to [0, 1]."""

    corruption: str = "dropout"
    dropout_rate: float = 0.5
    dropout_rescale: bool = False
    noise_std: float = 0.3

    def __post_init__(self) -> None:
        for name in ("dropout_rate", "noise_std"):  # NumPy's scalars (a sweep's) as Python's
            if isinstance(getattr(self, name), numbers.Real):
                object.__setattr__(self, name, float(getattr(self, name)))
        if not isinstance(self.dropout_rescale, bool):  # a string 'False' would be true
            raise ValueError(f"dropout_rescale={self.dropout_rescale!r} must be True or False")
        if self.corruption not in CORRUPTIONS:
            raise ValueError(f"corruption={self.corruption!r} is unknown: choose one of "
                             f"{', '.join(CORRUPTIONS)}")
        if not (isinstance(self.dropout_rate, (int, float)) and 0 <= self.dropout_rate < 1):
            raise ValueError(f"dropout_rate={self.dropout_rate!r} must lie in [0, 1), e.g. 0.5")
        if not (isinstance(self.noise_std, (int, float)) and self.noise_std >= 0):
            raise ValueError(f"noise_std={self.noise_std!r} must be >= 0, e.g. 0.3")

    @property
    def noise(self) -> PixelDropout | GaussianNoise:
        """The corruption this task applies."""
        return CORRUPTIONS[self.corruption].of(self)

    @property
    def unread_fields(self) -> dict[str, str]:
        """{field: why it is not read}: those of the corruptions this task does not apply."""
        fields = [f for corruption in CORRUPTIONS.values() for f in corruption.reads]
        return {f: f"its corruption is {self.corruption!r}" for f in fields
                if f not in self.noise.reads}

    def corrupt(self, targets: jax.Array, key: jax.Array) -> jax.Array:
        return self.noise(targets, key)

    def input_as_image(self, inputs: jax.Array, image_shape: Shape) -> jax.Array:
        """The corrupted image; rescaled kept pixels (up to 1 / (1 - rate)) at their own
        values, which clipping to [0, 1] would whiten."""
        scale = self.noise.drawn_scale
        return jnp.clip(inputs * scale if scale != 1.0 else inputs, 0, 1)

    @property
    def baseline_name(self) -> str:
        """Its corruption's classical answer: a masked median for dropout, a median for
        noise."""
        return self.noise.baseline_name

    def baseline(self, inputs: jax.Array, image_shape: Shape) -> jax.Array:
        return self.noise.baseline(self.input_as_image(inputs, image_shape))

    def input_label(self, image_shape: Shape) -> str:
        return self.noise.label()


@register_task("superresolve")
@dataclasses.dataclass(frozen=True, kw_only=True)
class SuperResolve(Task):
    """The input is the target average-pooled by `factor` (H x W -> H/f x W/f)."""

    factor: int = 2
    baseline_name: ClassVar[str] = "bicubic"
    input_method: ClassVar[str] = "nearest-neighbour upsampling"

    def __post_init__(self) -> None:
        if isinstance(self.factor, numbers.Integral):  # NumPy's integers (a sweep's) as int
            object.__setattr__(self, "factor", int(self.factor))

    def check(self, image_shape: Shape) -> None:
        height, width, _ = image_shape
        if not isinstance(self.factor, int) or self.factor < 2 or height % self.factor or \
                width % self.factor:
            usable = [f for f in range(2, min(height, width) + 1)
                      if height % f == 0 and width % f == 0]
            why = (f"does not divide the {height}x{width} images"
                   if isinstance(self.factor, int) and self.factor >= 2 else
                   f"must be a whole number of 2 or more that divides the {height}x{width} "
                   "images")
            fix = (f"use one of {', '.join(map(str, usable))}" if usable else
                   f"no factor of 2 or more divides both {height} and {width}: resize the "
                   "images (config.data.image_size) to a size that has one")
            raise ValueError(f"factor={self.factor!r} {why}: {fix}")

    def input_shape(self, image_shape: Shape) -> Shape:
        height, width, channels = image_shape
        return (height // self.factor, width // self.factor, channels)

    def corrupt(self, targets: jax.Array, key: jax.Array) -> jax.Array:
        return losses.downsample(targets, self.factor)

    def input_as_image(self, inputs: jax.Array, image_shape: Shape) -> jax.Array:
        return baselines.nearest_upsampling(inputs, self.factor)

    def baseline(self, inputs: jax.Array, image_shape: Shape) -> jax.Array:
        return baselines.bicubic_upsampling(inputs, image_shape[0], image_shape[1])

    def input_label(self, image_shape: Shape) -> str:
        height, width, _ = self.input_shape(image_shape)
        return f"input\n{height}x{width}"
