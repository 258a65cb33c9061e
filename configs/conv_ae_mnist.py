"""The material's convolutional autoencoder on MNIST digits, BCE.

Command: python train.py --config=configs/conv_ae_mnist.py --workdir=runs/conv_ae_mnist
Offline, point --config.data.data_dir (or JAXAE_MNIST_DIR) at a folder of MNIST's 4 IDX files;
the 5,000 digits below: python -m jaxae.data.mnist5k data/mnist5k, then add
--config.data.data_dir=data/mnist5k --config.data.tfds_dir=data/tfds_mnist5k
--config.train.num_epochs=75 (the 4,000 training digits for about the steps of 5 epochs of
full MNIST's 60,000; 5 epochs of them are 155 steps, too few to draw readable digits).
Results: test BCE and PSNR on the 5,000 offline digits (4,000 train / 1,000 test) after 75
epochs (2,325 steps): the `conv_ae_mnist` row of results/RESULTS.md (written by
scripts/config_results.py).
"""

from jaxae.configs import conv_ae_fashion


def get_config():
    config = conv_ae_fashion.get_config()
    config.data.name = "mnist"
    return config
