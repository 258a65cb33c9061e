"""A tiny run for tests and smoke checks: 512 training and 256 test images, 2 epochs.

Command: python train.py --config=configs/test.py --workdir=/tmp/jaxae_test
Expected: finishes in seconds on a laptop CPU; the test loss falls between the two epochs.
"""

from jaxae.config import base_config


def get_config():
    config = base_config()
    config.train_size = 512
    config.test_size = 256
    config.batch_size = 32
    config.eval_batch_size = 128
    config.num_epochs = 2
    config.log_every_steps = 8
    return config
