"""Convolutional VAE on Fashion-MNIST: the conv AE's encoder feeding z_mean / z_log_sigma.

Command: python train.py --config=configs/conv_vae.py --workdir=runs/conv_vae
Expected: EXPECTED_CONV_VAE
"""

from jaxae.config import base_config


def get_config():
    config = base_config()
    config.init = "torch"  # 2-D VAE, test ELBO after 5 epochs: torch -266.9, glorot -270.4
    config.model = "conv_vae"
    config.latent_dim = 16
    config.num_epochs = 10
    return config
