"""The material's convolutional autoencoder (16/8/8 filters, 4x4x8 code) on Fashion-MNIST, BCE.

Command: python train.py --config=configs/conv_ae_fashion.py --workdir=runs/conv_ae_fashion
Results: test BCE, MSE and PSNR after 5 epochs (2,340 steps): the `conv_ae_fashion` row of
results/RESULTS.md (written by scripts/config_results.py).
"""

from jaxae.config import base_config


def get_config():
    config = base_config()
    config.model = {
        "name": "conv_ae",  # stages from the image size: 28 -> 14 -> 7 -> a 4x4x8 code
        "init": "glorot",
        "conv": "patches",  # convolutions as matmuls (fast on CPU), or "xla"
    }
    config.objective.loss = "bce"  # pixel intensities as Bernoulli means, as in the material
    config.train.num_epochs = 5
    config.eval.batch_size = 250  # on CPU faster than 1000: its patches stay in cache
    return config
