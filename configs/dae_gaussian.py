"""Denoising autoencoder for additive Gaussian noise (std 0.3, clipped to [0, 1]).

Command: python train.py --config=configs/dae_gaussian.py --workdir=runs/dae_gaussian
Results: restored test PSNR after 10 epochs, beside the noisy input's and a 3x3 median
filter's: the `dae_gaussian` row of results/RESULTS.md (written by scripts/config_results.py).
"""

from jaxae.config import base_config


def get_config():
    config = base_config()
    config.model.latent_dim = int(28 * 28 * 1.2)  # 940, as the dropout DAE
    config.task.name = "denoise"
    config.task.corruption = "gaussian"
    config.task.noise_std = 0.3
    return config
