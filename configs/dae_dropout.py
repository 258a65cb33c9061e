"""The material's denoising autoencoder: half the pixels dropped, an over-complete code of 940.

The code is int(784 * 1.2) = 940 wide, as in the material; try --config.model.latent_dim=256
to see whether a code smaller than the image still denoises. Dropout corruption zeroes pixels
only (--config.task.dropout_rescale=True also doubles the kept ones, like a dropout layer).
Command: python train.py --config=configs/dae_dropout.py --workdir=runs/dae_dropout
Results: restored test PSNR after 10 epochs, beside the corrupted input's and a masked 3x3
median's (each dropped value filled from its kept neighbours): the `dae_dropout` row of
results/RESULTS.md (written by scripts/config_results.py).
"""

from jaxae.config import base_config


def get_config():
    config = base_config()
    config.model.latent_dim = int(28 * 28 * 1.2)  # 940
    config.task.name = "denoise"
    config.task.corruption = "dropout"
    config.task.dropout_rate = 0.5
    return config
