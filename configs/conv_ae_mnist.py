"""The material's convolutional autoencoder on MNIST digits, BCE.

Command: python train.py --config=configs/conv_ae_mnist.py --workdir=runs/conv_ae_mnist
Offline, point --config.data_dir (or JAXAE_MNIST_DIR) at a folder of MNIST's 4 IDX files.
Expected: EXPECTED_CONV_MNIST
"""

from configs import conv_ae_fashion


def get_config():
    config = conv_ae_fashion.get_config()
    config.dataset = "mnist"
    return config
