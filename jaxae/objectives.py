"""What a model is trained to minimise, per image, chosen by what the model declares.

A plain autoencoder minimises a reconstruction loss (mean over pixels: `mse`, `bce`); a
variational one the negative ELBO in nats, -log p(x | z) + beta * KL(q(z | x) || N(0, I)),
under a likelihood p(x | z) (`bernoulli`, `gaussian`). Losses and likelihoods are
registries, open to your own. Every objective maps (flat logits [B, P], flat targets [B, P],
the model's aux dict) to per-image terms, of which "loss" is what training minimises.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np

from jaxae import losses
from jaxae.registry import Registry

Terms = dict[str, jax.Array]
LOSSES = Registry("loss")
LIKELIHOODS = Registry("likelihood")
LOSSES.register("mse")(losses.mse)
LOSSES.register("bce")(losses.bce_with_logits)


class Likelihood(Protocol):
    def log_prob(self, logits: jax.Array, targets: jax.Array) -> jax.Array:
        """log p(x | z) per image, in nats."""


@LIKELIHOODS.register("bernoulli")
@dataclasses.dataclass(frozen=True)
class Bernoulli:
    """Pixels ~ Bernoulli(sigmoid(logits)): log p(x | z) = -(number of pixels x BCE).

    A likelihood of binary pixels (data.binarize). On grey levels in [0, 1] it is the usual
    cross-entropy surrogate, not a density: its ELBO and IWAE figures bound no log p(x) and
    stay below 0 even for a perfect reconstruction (by the pixels' own binary entropy), so
    they compare only with figures of the same likelihood on the same pixels, never with
    binarised MNIST's."""

    def log_prob(self, logits: jax.Array, targets: jax.Array) -> jax.Array:
        return losses.bernoulli_log_likelihood(logits, targets)


@LIKELIHOODS.register("gaussian")
@dataclasses.dataclass(frozen=True)
class Gaussian:
    """Pixels ~ N(sigmoid(logits), gaussian_scale^2)."""

    gaussian_scale: float = 0.1

    SCALES = (1e-18, 3.4e38)  # float32: a pixel's residual over a smaller scale, squared,
    # is inf (an image's sum over its pixels can overflow at scales somewhat above it)

    def __post_init__(self):
        low, high = self.SCALES
        if isinstance(self.gaussian_scale, bool) or not isinstance(self.gaussian_scale,
                                                                   numbers.Real):
            raise ValueError(f"gaussian_scale={self.gaussian_scale!r} must be a number, e.g. 0.1")
        if not low <= self.gaussian_scale <= high:
            raise ValueError(f"gaussian_scale={self.gaussian_scale!r} must be in [{low:g}, "
                             f"{high:g}] (float32, in which training computes, overflows "
                             "outside it), e.g. 0.1")

    def log_prob(self, logits: jax.Array, targets: jax.Array) -> jax.Array:
        return losses.gaussian_log_likelihood(logits, targets, self.gaussian_scale)


class Objective(Protocol):
    def __call__(self, logits: jax.Array, targets: jax.Array, aux: dict) -> Terms:
        """Per-image terms; "loss" is what training minimises."""

    def at_step(self, step: jax.Array | int) -> Objective:
        """The objective training minimises at `step` (a schedule's; evaluation uses the
        objective itself, its schedule's end): itself, for an objective without one."""
        return self


@dataclasses.dataclass(frozen=True)
class Reconstruction:
    """A plain autoencoder's loss: `loss(logits, targets)` per image."""

    loss: Callable[[jax.Array, jax.Array], jax.Array]

    def __post_init__(self) -> None:
        if isinstance(self.loss, (str, type)) or not callable(self.loss):
            raise TypeError(f"Reconstruction(loss={self.loss!r}): give a function "
                            "loss(logits, targets) -> [B], e.g. losses.mse, or a registered "
                            "one by its name: objectives.LOSSES.get(name)")

    def __call__(self, logits: jax.Array, targets: jax.Array, aux: dict) -> Terms:
        return {"loss": self.loss(logits, targets)}

    def at_step(self, step: jax.Array | int) -> Reconstruction:
        return self


@dataclasses.dataclass(frozen=True)
class NegativeELBO:
    """-ELBO with a `beta` weight on the KL term; the reported ELBO always uses beta = 1.
    `warmup_steps`: KL annealing (Bowman et al., 2016), beta rising linearly from 0 at the
    first step to its value after that many steps (`at_step`); 0: beta from the start."""

    likelihood: Likelihood
    beta: float | jax.Array = 1.0  # an array inside a traced step (`at_step`'s)
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.likelihood, (str, type)) or not callable(
                getattr(self.likelihood, "log_prob", None)):
            raise TypeError(f"NegativeELBO(likelihood={self.likelihood!r}): give a likelihood "
                            "object with log_prob(logits, targets), e.g. Bernoulli(), or a "
                            "registered one by its name: objectives.LIKELIHOODS.get(name)()")
        warmup = self.warmup_steps
        if isinstance(warmup, bool) or not isinstance(warmup, (int, np.integer)) or warmup < 0:
            raise ValueError(f"warmup_steps={warmup!r} must be a whole number >= 0 (0: no "
                             "warm-up)")
        if isinstance(self.beta, jax.core.Tracer):  # a schedule's, inside a traced function
            return
        try:
            value = float(self.beta) if np.ndim(self.beta) == 0 and \
                not isinstance(self.beta, bool) else math.nan
        except (TypeError, ValueError):
            value = math.nan
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"beta={self.beta!r} must be a finite number >= 0 (1 is the plain "
                             "VAE; 0 leaves the KL term untrained)")

    def __call__(self, logits: jax.Array, targets: jax.Array, aux: dict) -> Terms:
        if "mean" not in aux or "log_sigma" not in aux:
            raise ValueError("NegativeELBO needs a variational model's aux (mean, log_sigma), "
                             f"and this one has {sorted(aux) or 'none'}: train a plain "
                             "autoencoder with objectives.Reconstruction(losses.mse or bce)")
        recon_nats = -self.likelihood.log_prob(logits, targets)
        kl_nats = losses.gaussian_kl(aux["mean"], aux["log_sigma"])
        return {"loss": recon_nats + self.beta * kl_nats, "recon_nats": recon_nats,
                "kl_nats": kl_nats, "elbo": -(recon_nats + kl_nats)}

    def at_step(self, step: jax.Array | int) -> NegativeELBO:
        """The objective at training step `step` (0 first; it may be traced): beta times
        min(1, step / warmup_steps); itself without a warm-up."""
        if not self.warmup_steps:
            return self
        ramp = jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / self.warmup_steps)
        return dataclasses.replace(self, beta=self.beta * ramp, warmup_steps=0)


def objective_for(variational: bool, *, loss: Callable | None = None,
                  likelihood: Likelihood | None = None, beta: float = 1.0,
                  warmup_steps: int = 0) -> Objective:
    """The negative ELBO for a variational model (its KL weight warmed up over
    `warmup_steps`), else the reconstruction loss."""
    if variational:
        return NegativeELBO(likelihood or Bernoulli(), beta, warmup_steps)
    return Reconstruction(loss or losses.mse)
