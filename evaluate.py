"""Evaluates a trained run: python evaluate.py --workdir=runs/default

Reloads the newest Orbax checkpoint (or --step) and the run's config.json, then writes
<workdir>/eval/metrics.json and the pictures that apply to its model (reconstructions,
samples, manifold, latent scatter) as PNG files.
"""

import json
import os
import sys

from absl import app, flags

from jaxae import cli
from jaxae.evaluation.evaluate import evaluate_workdir

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Folder of a run made by train.py.")
flags.DEFINE_integer("step", None, "Checkpoint step to evaluate (default: the newest).")
flags.mark_flags_as_required(["workdir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if os.getcwd() not in sys.path:  # a run's model may live in a module of this directory
        sys.path.insert(1, os.getcwd())
    metrics = cli.run(evaluate_workdir, FLAGS.workdir, FLAGS.step)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
