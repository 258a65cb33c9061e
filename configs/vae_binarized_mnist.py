"""MLP VAE with a 20-D latent on statically binarised MNIST: the Flax VAE example's setting.

Command: python train.py --config=configs/vae_binarized_mnist.py --workdir=runs/vae_bin
Expected: EXPECTED_VAE_BINARIZED
"""

from jaxae.config import base_config


def get_config():
    config = base_config()
    config.init = "torch"  # 2-D VAE, test ELBO after 5 epochs: torch -266.9, glorot -270.4
    config.model = "vae"
    config.dataset = "mnist"
    config.latent_dim = 20
    config.binarize = "static"  # one fixed Bernoulli draw per pixel, as binarized MNIST
    config.num_epochs = 30
    return config
