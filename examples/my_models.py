"""Models of one's own: a deeper MLP VAE (two hidden layers in the encoder, one in the
decoder), trained by naming its file: `config.model = {"name": "my_models.py:DeeperVAE"}`
(see my_config.py beside it); and an autoencoder with BatchNorm and Dropout, trained with
that config's model section replaced whole (its DeeperVAE fields are not NormedAE's):
`--config.model="{'name': 'my_models.py:NormedAE'}"`.

What jaxae reads from a model is what it declares (`jaxae/models/base.py` gives the calling
convention): `image_shape` (a field: the data's shape is given to it), `latent_shape` (one
image's code), and for a VAE `encode` returning (z_mean, z_log_sigma), the log of the
standard deviation; `decode` returns logits shaped as the images (their sigmoid is the
pixels). The base class's `__call__` draws z with the key it is given. Layers that act only
while training ask `models.in_training(self)`; a layer's state (BatchNorm's running
averages) is declared in `state_collections`, so that the training steps update it and
evaluation reads it.
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


class NormedAE(models.Autoencoder):
    image_shape: tuple
    latent_dim: int = 16
    hidden: int = 256
    dropout: float = 0.1
    state_collections = ("batch_stats",)  # BatchNorm's running averages

    @property
    def latent_shape(self):
        return (self.latent_dim,)

    @nn.compact
    def encode(self, x, *, labels=None):
        training = models.in_training(self)
        h = nn.Dense(self.hidden, name="hidden")(x.reshape(x.shape[0], -1))
        h = nn.BatchNorm(use_running_average=not training, name="norm")(h)
        h = nn.Dropout(self.dropout, deterministic=not training)(nn.relu(h))
        return nn.Dense(self.latent_dim, name="code")(h)

    @nn.compact
    def decode(self, z, *, labels=None):
        pixels = nn.Dense(math.prod(self.image_shape), name="pixels")(z)
        return pixels.reshape(z.shape[0], *self.image_shape)
