"""Deep MLP autoencoder 784-1000-500-250-30 (Hinton & Salakhutdinov, 2006), MSE.

Command: python train.py --config=configs/deep_ae.py --workdir=runs/deep_ae
Results: test MSE and PSNR after 40 epochs, beside PCA's with 30 components: the `deep_ae` row
of results/RESULTS.md (written by scripts/config_results.py). The learning rate decays by a
cosine schedule; --config.optim.schedule=constant compares a constant one.
"""

from jaxae.config import base_config


def get_config():
    config = base_config()
    config.model = {"name": "deep_ae", "latent_dim": 30, "init": "glorot"}
    config.train.num_epochs = 40  # the error still falls at 20 epochs
    config.optim.schedule = "cosine"  # decays to 0 over the run's steps
    return config
