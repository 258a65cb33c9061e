"""A VAE on inpainting under a Laplace likelihood, all of my_parts.py (beside this file),
named by its file: nothing is registered, nothing in jaxae is edited.

    .venv/bin/python train.py --config=examples/my_parts_config.py --workdir=runs/inpaint
    .venv/bin/python evaluate.py --workdir=runs/inpaint

Its other parts: the loss, on a plain autoencoder, and the data set of its own (the whole of
its 500 / 100 images, at a size of its own):

    .venv/bin/python train.py --config=configs/test.py --workdir=runs/l1 \
        --config.objective.loss=examples/my_parts.py:l1
    .venv/bin/python train.py --config=examples/my_parts_config.py --workdir=runs/gradients \
        --config.data.name=my_parts.py:gradients --config.data.size=12 \
        --config.data.train_size=None --config.data.test_size=None
"""

from jaxae.configs import test


def get_config():
    config = test.get_config()
    config.model = {"name": "vae", "latent_dim": 8}
    config.task = {"name": "my_parts.py:Inpaint", "hole": 10}
    config.objective.likelihood = "my_parts.py:Laplace"
    config.objective.laplace_scale = 0.1
    return config
