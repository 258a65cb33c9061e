"""Trains a model: python train.py --config=configs/default.py --workdir=runs/default

The same command as `jaxae-train`, which an installed jaxae puts on the PATH
(jaxae/cli/train_command.py; --help says what it does).
"""

import os
import sys

from jaxae.cli import train_command  # light: its signal handlers go in before JAX is imported

if __name__ == "__main__":
    train_command.main(  # the same Python, and the evaluate.py beside this file
        default_config="configs/default.py",
        evaluate_command=[train_command.cli.shortest_path(path) for path in (
            sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                         "evaluate.py"))])
