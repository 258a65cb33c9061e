"""Conditional VAE on Fashion-MNIST: the one-hot class goes to encoder and decoder, so
evaluate.py can draw samples of each requested class (eval/samples.png, a row per class).

Command: python train.py --config=configs/cvae.py --workdir=runs/cvae
Results: test ELBO after 30 epochs, and the share of its samples a pixel classifier recognises
as the requested class (beside the classifier's accuracy on real test images): the `cvae` row
of results/RESULTS.md (written by scripts/config_results.py).
"""

from jaxae.config import base_config


def get_config():
    config = base_config()
    config.model = {
        "name": "cvae",  # num_classes comes from the data set
        "latent_dim": 2,  # the material's 2-D code (--config.model.latent_dim=8 compares)
        "init": "torch",  # PyTorch's default initialisers; --config.model.init=glorot compares
    }
    config.train.num_epochs = 30
    return config
