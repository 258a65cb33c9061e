"""Convolutional VAE on Fashion-MNIST: the conv AE's encoder feeding z_mean / z_log_sigma.

Command: python train.py --config=configs/conv_vae.py --workdir=runs/conv_vae
Results: test ELBO, KL and IWAE k=1000 bound after 10 epochs: the `conv_vae` row of
results/RESULTS.md (written by scripts/config_results.py).
"""

from jaxae.config import base_config


def get_config():
    config = base_config()
    config.model = {
        "name": "conv_vae",
        "latent_dim": 16,
        "init": "torch",  # PyTorch's default initialisers; --config.model.init=glorot compares
        "conv": "patches",
    }
    config.eval.batch_size = 250  # on CPU faster than 1000 (its patches stay in cache);
    # the test figures' noise is drawn per batch: they are those of this batch size
    return config
