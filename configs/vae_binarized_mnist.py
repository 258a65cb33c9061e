"""MLP VAE with a 20-D latent on statically binarised MNIST: the Flax VAE example's setting.

Command: python train.py --config=configs/vae_binarized_mnist.py --workdir=runs/vae_bin
(offline, the 5,000 digits of python -m jaxae.data.mnist5k data/mnist5k: add
--config.data.data_dir=data/mnist5k --config.data.tfds_dir=data/tfds_mnist5k)
Results: test ELBO and IWAE k=1000 bound on the 5,000 offline digits (4,000 train) after 30
epochs (930 steps): the `vae_binarized_mnist` row of results/RESULTS.md (written by
scripts/config_results.py). Full MNIST has 15 times the training images: expect a better bound
there.
"""

from jaxae.config import base_config


def get_config():
    config = base_config()
    config.model = {
        "name": "vae",
        "latent_dim": 20,
        "init": "torch",  # PyTorch's default initialisers; --config.model.init=glorot compares
    }
    config.data.name = "mnist"
    config.data.binarize = "static"  # one fixed Bernoulli draw per pixel, as binarized MNIST
    config.train.num_epochs = 30
    return config
