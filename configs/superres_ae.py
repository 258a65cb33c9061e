"""The material's super-resolution autoencoder: a 14x14 average-pooled image in, through a
dense code, the 28x28 original out (BCE).

The same task as configs/superres.py (whose ESPCN has no code: it works on the small image
itself); here the lesson's dense autoencoder (dense_ae) maps the 196 input pixels to a code
of 940 (the denoising autoencoder's, 1.2 x 784) and decodes the full image from it. Use
--config.task.factor=4 for 7x7 inputs.
Command: python train.py --config=configs/superres_ae.py --workdir=runs/superres_ae
Results: test PSNR after 5 epochs, beside bicubic upsampling of the 14x14 input and ESPCN
(configs/superres.py): the `superres_ae` row of results/RESULTS.md (written by
scripts/config_results.py).
"""

from jaxae.configs import superres


def get_config():
    config = superres.get_config()
    config.model = {"name": "dense_ae", "latent_dim": int(28 * 28 * 1.2)}  # 940
    return config
