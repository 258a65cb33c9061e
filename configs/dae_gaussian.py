"""Denoising autoencoder for additive Gaussian noise (std 0.3, clipped to [0, 1]).

Command: python train.py --config=configs/dae_gaussian.py --workdir=runs/dae_gaussian
Expected: EXPECTED_DAE_GAUSSIAN
"""

from jaxae.config import base_config


def get_config():
    config = base_config()
    config.latent_dim = int(784 * 1.2)  # 940, as the dropout DAE
    config.corruption = "gaussian"
    config.noise_std = 0.3
    return config
