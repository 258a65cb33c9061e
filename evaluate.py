"""Evaluates a trained run: python evaluate.py --workdir=runs/default

The same command as `jaxae-evaluate`, which an installed jaxae puts on the PATH
(jaxae/cli/evaluate_command.py; --help says what it does).
"""

from jaxae.cli import evaluate_command  # light: Ctrl-C from here on is one line, exit 130

if __name__ == "__main__":
    evaluate_command.main()
