"""Super-resolution: a 14x14 average-pooled image in, the 28x28 original out (BCE).

Use --config.task.factor=4 for 7x7 inputs (any factor of 2 or more that divides the image size
works).
Command: python train.py --config=configs/superres.py --workdir=runs/superres
Results: test PSNR after 5 epochs, beside bicubic upsampling of the 14x14 input: the
`superres` row of results/RESULTS.md (written by scripts/config_results.py).
"""

from jaxae.config import base_config


def get_config():
    config = base_config()
    config.model = {"name": "superres", "init": "glorot", "conv": "patches"}
    config.task.name = "superresolve"
    config.task.factor = 2  # 28 / 2 = 14x14 inputs
    config.objective.loss = "bce"
    config.train.num_epochs = 5
    return config
