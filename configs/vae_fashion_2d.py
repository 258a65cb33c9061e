"""The material's MLP VAE (784-512-2) on Fashion-MNIST: a 2-D latent to look at.

evaluate.py draws the manifold (decoded images over a grid of z) and the scatter of test
z_mean coloured by class, besides samples and reconstructions.
Command: python train.py --config=configs/vae_fashion_2d.py --workdir=runs/vae_fashion_2d
Results: test ELBO, KL and IWAE bounds for k = 1, 50 and 1000 after 10 epochs: the
`vae_fashion_2d` row of results/RESULTS.md (written by scripts/config_results.py).
"""

from jaxae.config import base_config


def get_config():
    config = base_config()
    config.model = {
        "name": "vae",
        "latent_dim": 2,
        "init": "torch",  # PyTorch's default initialisers; --config.model.init=glorot compares
    }
    # BCE summed over pixels, in nats: on grey pixels a surrogate, not a density
    # (objectives.Bernoulli): its ELBO compares only with the same likelihood's on them
    config.objective.likelihood = "bernoulli"
    return config
