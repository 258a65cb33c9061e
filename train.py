"""Trains an autoencoder: python train.py --config=configs/default.py --workdir=runs/default

Any config field can be overridden, e.g. --config.latent_dim=2 --config.num_epochs=5.
Rerunning the same command on the same workdir resumes from its newest checkpoint.
Several hosts: start one process per host with JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES
and JAX_PROCESS_ID set; training runs data-parallel over every device of every process.
"""

import ml_collections
from absl import app, flags

from jaxae import cli, parallel
from jaxae.trainer import train_and_evaluate

FLAGS = flags.FLAGS
cli.define_config_flag("configs/default.py")
flags.DEFINE_string("workdir", None, "Folder for checkpoints, metrics and pictures.")
flags.mark_flags_as_required(["workdir"])


def train(config: ml_collections.ConfigDict, workdir: str) -> None:
    parallel.initialize_distributed()  # a no-op unless JAX_COORDINATOR_ADDRESS is set
    train_and_evaluate(config, workdir)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    cli.run(train, FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
