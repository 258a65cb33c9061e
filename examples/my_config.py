"""The deeper VAE of my_models.py (beside this file) on Fashion-MNIST: a model of one's own,
named by its file.

    .venv/bin/python train.py --config=examples/my_config.py --workdir=runs/deeper
    .venv/bin/python evaluate.py --workdir=runs/deeper
"""

from jaxae.configs import test


def get_config():
    config = test.get_config()
    config.model = {"name": "my_models.py:DeeperVAE", "latent_dim": 2, "hidden": (64, 32)}
    return config
