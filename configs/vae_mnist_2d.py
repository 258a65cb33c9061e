"""The material's MLP VAE (784-512-2) on MNIST: the digit manifold.

Offline, point --config.data.data_dir (or JAXAE_MNIST_DIR) at a folder of MNIST's 4 IDX files;
the 5,000 digits below: python -m jaxae.data.mnist5k data/mnist5k, then add
--config.data.data_dir=data/mnist5k --config.data.tfds_dir=data/tfds_mnist5k
--config.train.num_epochs=150 (the 4,000 training digits for about the steps of 10 epochs
of full MNIST's 60,000; 10 epochs of them are 310 steps, too few for a manifold of digits).
Command: python train.py --config=configs/vae_mnist_2d.py --workdir=runs/vae_mnist_2d
Results: test ELBO and IWAE k=1000 bound on the 5,000 offline digits after 150 epochs (4,650
steps): the `vae_mnist_2d` row of results/RESULTS.md (written by scripts/config_results.py).
"""

from jaxae.configs import vae_fashion_2d


def get_config():
    config = vae_fashion_2d.get_config()
    config.data.name = "mnist"
    return config
