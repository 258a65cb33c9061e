"""A task, a likelihood, a loss and a data set of one's own, named by this file in a config
(`my_parts_config.py` beside it) or registered under short names by a module the config
imports. docs/extending.md says what each must do; jaxae checks it before compiling.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxae import data
from jaxae.tasks import Task


@dataclasses.dataclass(frozen=True, kw_only=True)
class Inpaint(Task):
    """A square of `hole` pixels a side, at a place drawn per image, blanked in the input;
    the target is the whole image. Its fields are config.task's (--config.task.hole=8)."""

    hole: int = 10

    def check(self, image_shape: tuple[int, int, int]) -> None:
        if not 0 < self.hole < min(image_shape[:2]):
            raise ValueError(f"hole={self.hole} must lie in 1..{min(image_shape[:2]) - 1} "
                             f"for {image_shape[0]}x{image_shape[1]} images")

    def corrupt(self, targets: jax.Array, key: jax.Array) -> jax.Array:
        batch, height, width, _ = targets.shape
        top_key, left_key = jax.random.split(key)  # every draw from the key it is given
        top = jax.random.randint(top_key, (batch, 1, 1, 1), 0, height - self.hole + 1)
        left = jax.random.randint(left_key, (batch, 1, 1, 1), 0, width - self.hole + 1)
        rows = jnp.arange(height)[None, :, None, None]
        cols = jnp.arange(width)[None, None, :, None]
        inside = (rows >= top) & (rows < top + self.hole) & (cols >= left) & \
            (cols < left + self.hole)
        return jnp.where(inside, 0.0, targets)


@dataclasses.dataclass(frozen=True)
class Laplace:
    """Pixels ~ Laplace(sigmoid(logits), laplace_scale): log p(x | z) in nats per image,
    from flat logits and targets [B, pixels]. Its fields are config.objective's."""

    laplace_scale: float = 0.1

    def __post_init__(self) -> None:  # a bad value: one line before anything compiles
        if not self.laplace_scale > 0:
            raise ValueError(f"laplace_scale={self.laplace_scale!r} must be > 0, e.g. 0.1")

    def log_prob(self, logits: jax.Array, targets: jax.Array) -> jax.Array:
        distance = jnp.abs(jax.nn.sigmoid(logits) - targets)
        return -(distance / self.laplace_scale + jnp.log(2 * self.laplace_scale)).sum(axis=-1)


def l1(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """A plain autoencoder's loss: mean absolute error per image, from flat [B, pixels]."""
    return jnp.abs(jax.nn.sigmoid(logits) - targets).mean(axis=-1)


def gradients(size: int = 16, count: int = 600) -> data.Dataset:
    """A data set from arrays: `count` grey size x size images of linear gradients, two
    classes by direction. Its parameters are config.data fields (config.data.size)."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, size)
    labels = rng.integers(0, 2, count).astype(np.int32)
    scale = rng.uniform(0.3, 1.0, (count, 1, 1))
    images = np.where(labels[:, None, None] == 0, ramp[None, None, :], ramp[None, :, None])
    images = (255 * images * scale)[..., None].astype(np.uint8)
    cut = count * 5 // 6
    return data.from_arrays(images[:cut], images[cut:], labels[:cut], labels[cut:],
                            ("across", "down"), name="gradients")
