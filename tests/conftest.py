"""Shared fixtures: real Fashion-MNIST prepared once per session, and tiny configs."""

import pytest

from jaxae.config import base_config
from jaxae.data import load_dataset


@pytest.fixture(scope="session")
def fashion_tfds_dir(tmp_path_factory) -> str:
    """A TFDS data dir holding Fashion-MNIST, prepared from the local IDX files."""
    folder = str(tmp_path_factory.mktemp("tfds"))
    load_dataset("fashion_mnist", tfds_dir=folder)
    return folder


@pytest.fixture
def tiny_config(fashion_tfds_dir):
    """A function making a fast config on real images: 512 train, 256 test, batch 32."""

    def make(**overrides):
        config = base_config()
        config.tfds_dir = fashion_tfds_dir
        config.train_size, config.test_size = 512, 256
        config.batch_size, config.eval_batch_size = 32, 128
        config.num_epochs, config.log_every_steps = 2, 8
        for field, value in overrides.items():
            config[field] = value
        return config

    return make
