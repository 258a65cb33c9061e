"""What a model is trained to minimise, per image: a reconstruction loss, or the negative ELBO.

Autoencoders: the config's `loss` (mean over pixels). VAEs: -ELBO with a `beta` weight on the
KL term, in nats per image: -log p(x | z) + beta * KL(q(z | x) || N(0, I)), z sampled with the
step's key. Both return (per-image terms, logits), so the steps treat every model alike.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import ml_collections

from jaxae import losses
from jaxae.models import VARIATIONAL

Terms = dict[str, jax.Array]


def is_variational(config: ml_collections.ConfigDict) -> bool:
    return config.model in VARIATIONAL


def log_likelihood(config: ml_collections.ConfigDict, logits: jax.Array, targets: jax.Array
                   ) -> jax.Array:
    """log p(x | z) per image in nats, under the config's `likelihood`."""
    if config.likelihood == "gaussian":
        return losses.gaussian_log_likelihood(logits, targets, config.gaussian_scale)
    return losses.bernoulli_log_likelihood(logits, targets)


def vae_terms(config: ml_collections.ConfigDict, logits: jax.Array, targets: jax.Array,
              latent: dict[str, jax.Array]) -> Terms:
    """Per-image ELBO terms in nats; `loss` = recon_nats + beta * kl_nats."""
    recon_nats = -log_likelihood(config, logits, targets)
    kl_nats = losses.gaussian_kl(latent["mean"], latent["log_sigma"])
    return {"loss": recon_nats + config.beta * kl_nats, "recon_nats": recon_nats,
            "kl_nats": kl_nats, "elbo": -(recon_nats + kl_nats)}


def per_image_terms(config: ml_collections.ConfigDict, apply_fn: Callable, params: dict,
                    inputs: jax.Array, targets: jax.Array, labels: jax.Array,
                    key: jax.Array | None) -> tuple[Terms, jax.Array]:
    """(terms, logits); terms["loss"] is what training minimises. key=None: z = z_mean."""
    if is_variational(config):
        logits, latent = apply_fn({"params": params}, inputs, key, labels)
        return vae_terms(config, logits, targets, latent), logits
    logits = apply_fn({"params": params}, inputs)
    return {"loss": losses.LOSSES[config.loss](logits, targets)}, logits
