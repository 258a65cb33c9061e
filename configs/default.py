"""The material's dense autoencoder: Linear(784 -> 10) + ReLU, Linear(10 -> 784) + sigmoid, MSE.

Command: python train.py --config=configs/default.py --workdir=runs/default
Results: test MSE and PSNR after 10 epochs: the `default` row of results/RESULTS.md (written
by scripts/config_results.py).
"""

from jaxae.config import base_config


def get_config():
    return base_config()  # every field is documented in jaxae/config.py
