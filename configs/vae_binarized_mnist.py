"""MLP VAE with a 20-D latent on statically binarised MNIST: the Flax VAE example's setting.

Command: python train.py --config=configs/vae_binarized_mnist.py --workdir=runs/vae_bin
(offline, the 5,000 digits of python -m jaxae.data.mnist5k data/mnist5k: add
--config.data.data_dir=data/mnist5k --config.data.tfds_dir=data/tfds_mnist5k)
Expected: on the 5,000 offline MNIST digits (4,000 train), test ELBO -118.2 nats,
IWAE k=1000 -111.3, after 30 epochs (930 steps; under a minute on 2 CPU cores). Full MNIST
has 15 times the training images: expect a better bound there.
"""

from jaxae.config import base_config


def get_config():
    config = base_config()
    config.model = {
        "name": "vae",
        "latent_dim": 20,
        "init": "torch",  # 2-D VAE, test ELBO after 5 epochs: torch -266.9, glorot -270.4
    }
    config.data.name = "mnist"
    config.data.binarize = "static"  # one fixed Bernoulli draw per pixel, as binarized MNIST
    config.train.num_epochs = 30
    return config
