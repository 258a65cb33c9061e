"""Convolutional VAE on CelebA at 64x64x3, through TFDS's own `celeb_a` builder.

pip install 'jaxae[tfds]' first: TFDS's builder needs TensorFlow to prepare it.
Command: python train.py --config=configs/conv_vae_celeb_a.py --workdir=runs/celeb_a_conv_vae
then python evaluate.py --workdir=runs/celeb_a_conv_vae. Resized and centre-cropped to 64x64
as read; one class ("all"); held in device memory under the default budget, streamed with
Grain below it (see configs/conv_ae_celeb_a.py).
Expected: not measured here (CelebA cannot be downloaded on the machines jaxae is developed on).
"""

from jaxae.config import base_config


def get_config():
    config = base_config()
    config.data.name = "celeb_a"
    config.data.image_size = 64
    config.model = {
        "name": "conv_vae",
        "latent_dim": 128,
        "width": 4,
        "init": "torch",
        "conv": "patches",
    }
    config.objective.likelihood = "gaussian"  # colour photographs: N(x; decoded, 0.1^2)
    config.objective.gaussian_scale = 0.1
    config.train.num_epochs = 5
    config.eval.num_images = 12
    config.eval.iwae_samples = (1, 100)
    config.eval.iwae_images = 500
    return config
