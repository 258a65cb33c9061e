"""A tiny run for tests and smoke checks: 512 training and 256 test images, 2 epochs.

Command: python train.py --config=configs/test.py --workdir=/tmp/jaxae_test
Results: none kept (a smoke test of the whole pipeline); the test loss falls between the two
epochs.
"""

from jaxae.config import base_config


def get_config():
    config = base_config()
    config.data.train_size = 512
    config.data.test_size = 256
    config.train.batch_size = 32
    config.train.num_epochs = 2
    config.train.log_every_steps = 8
    config.eval.batch_size = 128
    return config
