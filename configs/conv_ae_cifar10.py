"""Convolutional autoencoder on CIFAR-10 (32x32x3), through jaxae's TensorFlow-free builder.

Command: python train.py --config=configs/conv_ae_cifar10.py --workdir=runs/cifar10_conv_ae
then python evaluate.py --workdir=runs/cifar10_conv_ae. Offline: put cifar-10-python.tar.gz
(or cifar-10-batches-py/) in a folder and add --config.data.data_dir=FOLDER; it is prepared
once into the TFDS data dir.
Results: none recorded yet (they need CIFAR-10's download). The same model on photo crops of
the same size: configs/conv_ae_folder.py (its row in results/RESULTS.md); CIFAR-10's 50,000
training images are about 10 times the crops' 4,800.
"""

from jaxae.config import base_config


def get_config():
    config = base_config()
    config.data.name = "cifar10"
    config.model = {
        "name": "conv_ae",  # stages from the image size: 32 -> 16 -> 8 -> a 4x4 code
        "width": 4,  # 64 / 32 / 32 filters: a 4x4x32 code (512 numbers for 3,072 pixels)
        "init": "glorot",
        "conv": "patches",
    }
    config.objective.loss = "mse"
    config.train.num_epochs = 20
    config.eval.num_images = 12
    config.eval.batch_size = 250  # on CPU faster than 1000: its patches stay in cache
    return config
