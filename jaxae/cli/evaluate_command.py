"""Evaluates a trained run: jaxae-evaluate --workdir=runs/default
(in a clone: python evaluate.py, the same command).

Reloads the newest intact Orbax checkpoint (or --step) and the run's config.json, then
writes metrics.json and the pictures that apply to its model (reconstructions, samples,
manifold, latent scatter) as PNG files into <workdir>/eval (<workdir>/eval_step_N for
--step=N, so one never overwrites the other; or --eval_dir). Safe while the run trains: it
reads a checkpoint that stays (a step deleted meanwhile is not "damaged").

What is measured can be changed without retraining, e.g. --config.eval.iwae_samples='(1, 50)'
--config.eval.iwae_images=500 (the fields of config.eval, and where the data lives:
config.data.tfds_dir, data_dir, and path, whose images must be those the run trained on; and
config.model.name, task.name, objective.loss, objective.likelihood or data.name only to name
the run's own file where its project moved); a field that would change the trained model is
refused.

--images=FOLDER (or FILE.npz) scores the trained model on every image there instead, brought
to the run's image size and channels, into <workdir>/eval_on_<FOLDER> (the same metrics and
pictures; the corrupted input's and the classical baseline's figures on those images too).
The run's own images are read as well (its image size, classes, and the training images a
picture's pixel PCA is fitted on): where they moved, give --config.data.path too.

Ctrl-C, SIGTERM or SIGUSR1 stops it at once, with one line (exit code 128 + its number):
nothing is checkpointed, and metrics.json is written whole or not at all.

The code the run's config.json names (its model's file, say) is imported and run, as training
ran it: evaluate only runs you trust (docs/extending.md, "Trust").
"""

from __future__ import annotations

import json
import os
import sys

from jaxae import cli  # light: Ctrl-C from `main` on is one line and exit code 130


def main() -> None:
    """The command `jaxae-evaluate` (and a clone's evaluate.py)."""
    cli.output.usable_streams()
    cli.use_deterministic_gpu_ops()  # before anything starts JAX's backend
    cli.stop_at_once_on_signal("evaluation")
    from absl import app, flags

    flags.DEFINE_string("workdir", None, "Folder of a run made by train.py.")
    flags.DEFINE_integer("step", None, "Checkpoint step to evaluate (default: the newest).")
    flags.DEFINE_string("eval_dir", None, "Where to write metrics.json and the pictures "
                        "(default: <workdir>/eval, or <workdir>/eval_step_N "
                        "for --step=N).")
    flags.DEFINE_string("images", None, "Score the model on these images instead of the "
                        "run's test split: a folder of images or an .npz (default --eval_dir: "
                        "<workdir>/eval_on_<name>).")
    flags.mark_flags_as_required(["workdir"])
    cli.define_eval_overrides()
    flags.declare_key_flag("config")  # --help lists it (it is defined in jaxae.cli)

    def run(argv: list[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        if os.getcwd() not in sys.path and not sys.flags.safe_path:  # a run's model may
            sys.path.append(os.getcwd())  # live in a module here; last: it shadows none
        from jaxae.evaluation.evaluate import eval_dir, evaluate_workdir
        from jaxae.training.files import finite_or_null

        given = flags.FLAGS
        workdir, out_dir = cli.user_path(given.workdir), cli.user_path(given.eval_dir)
        images = cli.user_path(given.images)
        with cli.output.watched(cli.output.raised):  # one line, not a traceback
            metrics = cli.run(evaluate_workdir, workdir, given.step,
                              overrides=cli.eval_overrides(sys.argv), out_dir=out_dir,
                              images=images, entry_point=True)
        cli.work_done()  # its files are written: a Ctrl-C from now on does not undo them
        pictures = ", ".join(metrics.get("pictures", {})) or "no pictures"
        written = os.path.join(out_dir or eval_dir(workdir, given.step, images), "metrics.json")
        with cli.output.watched(cli.output.dropped):  # a reader gone now loses nothing
            print(json.dumps(finite_or_null(metrics), indent=2))  # as metrics.json holds them
            print(f"wrote {written} and {pictures} beside it", flush=True)

    cli.use_help_of(__doc__)
    app.run(run, flags_parser=cli.parse_flags)
