"""The material's dense autoencoder: Linear(784 -> 10) + ReLU, Linear(10 -> 784) + sigmoid, MSE.

Command: python train.py --config=configs/default.py --workdir=runs/default
Expected: test MSE 0.0215, PSNR 17.2 dB after 10 epochs (under a minute on 2 CPU cores).
"""

from jaxae.config import base_config


def get_config():
    return base_config()  # every field is documented in jaxae/config.py
