"""Convolutional autoencoder on a folder of colour images: the photo crops, 32x32x3.

First build the real colour data set offline, from the photographs in the scikit-image and
scikit-learn wheels (pip install 'jaxae[photos]'): python -m jaxae.data.photo_crops data/photo_crops
Command: python train.py --config=configs/conv_ae_folder.py --workdir=runs/crops_conv_ae
then python evaluate.py --workdir=runs/crops_conv_ae, and the linear baseline at the same
code size: python scripts/pca_baseline.py --workdir=runs/crops_conv_ae
Any folder of class sub-folders (or of images alone: one class) works:
--config.data.path=FOLDER (--config.data.image_size=S resizes and centre-crops,
--config.data.channels=1 or 3 converts).
Results: test MSE and PSNR after 20 epochs (1,500 steps; 4,800 train / 1,200 held-out test
crops), beside PCA's with as many components as the code has numbers (512): the
`conv_ae_folder` row of results/RESULTS.md (written by scripts/config_results.py).
"""

from jaxae.configs import conv_ae_cifar10


def get_config():
    config = conv_ae_cifar10.get_config()
    config.data.name = "folder"
    config.data.path = "data/photo_crops"
    config.train.batch_size = 64
    return config
