"""A model of one's own: a deeper MLP VAE (two hidden layers in the encoder, one in the
decoder), trained by naming its file: `config.model = {"name": "my_models.py:DeeperVAE"}`
(see my_config.py beside it).

What jaxae reads from a model is what it declares (`jaxae/models/base.py` gives the calling
convention): `image_shape` (a field: the data's shape is given to it), `latent_shape` (one
image's code), and for a VAE `encode` returning (z_mean, z_log_sigma), the log of the
standard deviation; `decode` returns logits shaped as the images (their sigmoid is the
pixels). The base class's `__call__` draws z with the key it is given.
"""

import math

import flax.linen as nn

from jaxae import models


class DeeperVAE(models.VariationalAutoencoder):
    image_shape: tuple
    latent_dim: int = 2
    hidden: tuple = (64, 32)

    @property
    def latent_shape(self):
        return (self.latent_dim,)

    def setup(self):
        self.layers = [nn.Dense(width) for width in self.hidden]
        self.mean = nn.Dense(self.latent_dim)
        self.log_sigma = nn.Dense(self.latent_dim)
        self.decoder_hidden = nn.Dense(self.hidden[0])
        self.pixels = nn.Dense(math.prod(self.image_shape))

    def encode(self, x, *, labels=None):
        h = x.reshape(x.shape[0], -1)
        for layer in self.layers:
            h = nn.relu(layer(h))
        return self.mean(h), self.log_sigma(h)

    def decode(self, z, *, labels=None):
        h = nn.relu(self.decoder_hidden(z))
        return self.pixels(h).reshape(z.shape[0], *self.image_shape)
