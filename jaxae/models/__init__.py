"""Models: Flax modules with one calling convention (`jaxae.models.base`), by name.

    from jaxae import models
    model = models.build_model({"name": "conv_vae", "latent_dim": 16}, image_shape=(32, 32, 3))
    logits, aux = model.apply(variables, x, key=key)   # aux: mean, log_sigma, z

A model's own Dropout draws only in training steps: `nn.Dropout(rate, deterministic=not
models.in_training(self))`; its BatchNorm keeps running averages it declares as its state
(`state_collections = ("batch_stats",)`), which evaluation reads from `Variables`.
Register your own with `@models.register_model("my_vae")`, or
name it in a config as "my_models.py:MyVAE" (`jaxae.registry`).
"""

from jaxae.models import autoencoders
from jaxae.models.autoencoders import VAE, ConvAE, DeepAE, DenseAE, SuperResolution
from jaxae.models.base import (
    Autoencoder,
    Variables,
    VariationalAutoencoder,
    in_training,
    reparameterize,
)
from jaxae.models.registry import MODELS, build_model, register_model

__all__ = [
    "MODELS",
    "VAE",
    "Autoencoder",
    "ConvAE",
    "DeepAE",
    "DenseAE",
    "SuperResolution",
    "VariationalAutoencoder",
    "Variables",
    "autoencoders",
    "build_model",
    "in_training",
    "register_model",
    "reparameterize",
]
