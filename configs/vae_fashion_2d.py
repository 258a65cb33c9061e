"""The material's MLP VAE (784-512-2) on Fashion-MNIST: a 2-D latent to look at.

evaluate.py draws the manifold (decoded images over a grid of z) and the scatter of test
z_mean coloured by class, besides samples and reconstructions.
Command: python train.py --config=configs/vae_fashion_2d.py --workdir=runs/vae_fashion_2d
Expected: test ELBO -264.5 nats (KL 6.6), IWAE bounds -264.2 / -262.7 / -262.4
for k = 1 / 50 / 1000, after 10 epochs (under 2 minutes on 2 CPU cores).
"""

from jaxae.config import base_config


def get_config():
    config = base_config()
    config.model = {
        "name": "vae",
        "latent_dim": 2,
        "init": "torch",  # 2-D VAE, test ELBO after 5 epochs: torch -266.9, glorot -270.4
    }
    config.objective.likelihood = "bernoulli"  # BCE summed over pixels, in nats
    return config
