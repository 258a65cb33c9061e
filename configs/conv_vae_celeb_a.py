"""Convolutional VAE on CelebA at 64x64x3, through TFDS's own `celeb_a` builder.

pip install 'jaxae[tfds]' first: TFDS's builder needs TensorFlow to prepare it.
Command: python train.py --config=configs/conv_vae_celeb_a.py --workdir=runs/celeb_a_conv_vae
then python evaluate.py --workdir=runs/celeb_a_conv_vae. Resized and centre-cropped to 64x64
as read; one class ("all"); held in device memory under the default budget, streamed with
Grain below it (see configs/conv_ae_celeb_a.py).
Results: none recorded yet (they need CelebA's download).
"""

from jaxae.configs import conv_vae_cifar10


def get_config():
    config = conv_vae_cifar10.get_config()
    config.data.name = "celeb_a"
    config.data.image_size = 64
    config.train.num_epochs = 5
    config.eval.iwae_images = 500
    return config
