"""A VAE on inpainting under a Laplace likelihood, all of my_parts.py (beside this file),
named by its file: nothing is registered, nothing in jaxae is edited.

    .venv/bin/python train.py --config=examples/my_parts_config.py --workdir=runs/inpaint
    .venv/bin/python evaluate.py --workdir=runs/inpaint
    # its other parts: --config.objective.loss=my_parts.py:l1 on a plain autoencoder,
    # --config.data.name=my_parts.py:gradients (images of its own)
"""

from jaxae.configs import test


def get_config():
    config = test.get_config()
    config.model = {"name": "vae", "latent_dim": 8}
    config.task = {"name": "my_parts.py:Inpaint", "hole": 10}
    config.objective.likelihood = "my_parts.py:Laplace"
    config.objective.laplace_scale = 0.1
    return config
