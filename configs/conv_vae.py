"""Convolutional VAE on Fashion-MNIST: the conv AE's encoder feeding z_mean / z_log_sigma.

Command: python train.py --config=configs/conv_vae.py --workdir=runs/conv_vae
Expected: test ELBO -252.5 nats (KL 14.4), IWAE k=1000 bound -248.2 after 10 epochs.
"""

from jaxae.config import base_config


def get_config():
    config = base_config()
    config.model = {
        "name": "conv_vae",
        "latent_dim": 16,
        "init": "torch",  # 2-D VAE, test ELBO after 5 epochs: torch -266.9, glorot -270.4
        "conv": "patches",
    }
    config.eval.batch_size = 250  # on CPU faster than 1000 (its patches stay in cache);
    # the test figures' noise is drawn per batch: they are those of this batch size
    return config
