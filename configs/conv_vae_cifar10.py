"""Convolutional VAE on CIFAR-10 (32x32x3), through jaxae's TensorFlow-free builder.

Command: python train.py --config=configs/conv_vae_cifar10.py --workdir=runs/cifar10_conv_vae
then python evaluate.py --workdir=runs/cifar10_conv_vae. Offline: add
--config.data.data_dir=FOLDER holding cifar-10-python.tar.gz.
Results: none recorded yet (they need CIFAR-10's download); the same model on the photo crops:
configs/conv_vae_folder.py.
"""

from jaxae.config import base_config


def get_config():
    config = base_config()
    config.data.name = "cifar10"
    config.model = {
        "name": "conv_vae",
        "latent_dim": 128,
        "width": 4,  # encoder 64 / 32 / 32 filters to a 4x4x32 map, then the two heads
        "init": "torch",
        "conv": "patches",
    }
    config.objective.likelihood = "gaussian"  # colour photographs: N(x; decoded, 0.1^2)
    config.objective.gaussian_scale = 0.1
    config.train.num_epochs = 20
    config.eval.num_images = 12
    config.eval.iwae_samples = (1, 100)
    config.eval.batch_size = 250  # on CPU faster than 1000: its patches stay in cache
    return config
