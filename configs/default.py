"""The material's dense autoencoder: Linear(784 -> 10) + ReLU, Linear(10 -> 784) + sigmoid, MSE.

Command: python train.py --config=configs/default.py --workdir=runs/default
Expected: EXPECTED_DEFAULT
"""

from jaxae.config import base_config


def get_config():
    return base_config()  # every field is documented in jaxae/config.py
