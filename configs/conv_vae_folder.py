"""Convolutional VAE on a folder of colour images: the photo crops, 32x32x3.

First: python -m jaxae.data.photo_crops data/photo_crops (pip install 'jaxae[photos]')
Command: python train.py --config=configs/conv_vae_folder.py --workdir=runs/crops_conv_vae
then python evaluate.py --workdir=runs/crops_conv_vae and
python scripts/pca_baseline.py --workdir=runs/crops_conv_vae (PCA at k = latent_dim).
Results: test ELBO (a density of continuous pixels: higher is better), IWAE bound, MSE and
PSNR after 20 epochs (4,800 train / 1,200 held-out test crops), beside PCA's with 128
components: the `conv_vae_folder` row of results/RESULTS.md (written by
scripts/config_results.py). The pixels' likelihood is Gaussian;
--config.objective.likelihood=bernoulli compares a Bernoulli one.
"""

from jaxae.configs import conv_vae_cifar10


def get_config():
    config = conv_vae_cifar10.get_config()
    config.data.name = "folder"
    config.data.path = "data/photo_crops"
    config.train.batch_size = 64
    config.eval.iwae_images = 1200  # every test crop (the first 500 would be 5 classes)
    return config
