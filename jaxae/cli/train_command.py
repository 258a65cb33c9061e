"""Trains a model: jaxae-train --workdir=runs/default [--config=FILE] (without --config: the
shipped default config; in a clone, python train.py is the same command).

Any config field can be overridden, e.g. --config.model.latent_dim=2
--config.train.num_epochs=5. Rerunning the same command on the same workdir resumes from its
newest checkpoint (config.RESUMABLE_FIELDS lists what a resumed run may change); a second
run on a workdir in use is refused. SIGTERM, Ctrl-C or SIGUSR1 (a scheduler's warning
before its time limit) checkpoints, then ends the process as the signal does (a shell reports
128 + its number, 143, 130 or 138 on Linux, and its loop, or `&&`, stops too), also during
start-up (nothing to save then); a second signal stops at once, without that checkpoint (and
without a save still being written, which the rerun says it removed).
Several hosts: start one process per host with JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES
and JAX_PROCESS_ID set; training runs data-parallel over every device of every process.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Sequence

import ml_collections

from jaxae import cli  # light: a signal during the imports in `main` is a stop too

EVALUATE_COMMAND = "jaxae-evaluate"  # an installed jaxae's evaluate command


def shipped_config(name: str) -> str:
    """The path of a config jaxae ships (configs/NAME.py; installed: jaxae/configs)."""
    import jaxae.configs

    return cli.shortest_path(os.path.join(jaxae.configs.__path__[0], f"{name}.py"))


def installed_evaluate_command() -> list[str]:
    """How to call the evaluate command installed beside this one: its name where the PATH
    finds it there, else its path."""
    beside = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), EVALUATE_COMMAND)
    found = shutil.which(EVALUATE_COMMAND)
    if found and os.path.realpath(found) == os.path.realpath(beside):
        return [EVALUATE_COMMAND]
    return [cli.shortest_path(beside)]


def main(default_config: str | None = None,
         evaluate_command: Sequence[str] | None = None) -> None:
    """The command `jaxae-train` (and a clone's train.py, which names its own
    `default_config` and the `evaluate_command` beside it)."""
    cli.output.usable_streams()
    cli.use_deterministic_gpu_ops()  # before anything starts JAX's backend
    stop = cli.GracefulStop().install()
    cli.refuse_busy_workdir()  # a workdir in use: refused before JAX is imported
    from absl import app, flags

    from jaxae.training import parallel
    from jaxae.training.trainer import train_and_evaluate

    cli.define_config_flag(default_config or shipped_config("default"))
    flags.declare_key_flag("config")  # --help lists it (it is defined in jaxae.cli)
    flags.DEFINE_string("workdir", None, "Folder for the run's checkpoints, config and "
                        "metrics (evaluate.py writes its pictures into <workdir>/eval).")
    flags.mark_flags_as_required(["workdir"])
    stopped: list[str] = []  # the stop request that ended the run before its last step

    def train(config: ml_collections.ConfigDict, workdir: str) -> None:
        parallel.initialize_distributed()  # a no-op unless JAX_COORDINATOR_ADDRESS is set
        train_and_evaluate(config, workdir, stop_requested=stop, on_saved=stop.saved,
                           on_stopped=stopped.append)

    def run(argv: list[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        if note := cli.default_config_note():
            print(note, flush=True)
        workdir = flags.FLAGS.workdir
        cli.run(train, cli.loaded_config(), cli.user_path(workdir), entry_point=True)
        if stopped:  # stopped before its last step, with a checkpoint and its line
            if cli.output.stopped_by(stop.output_error, stopped[0]):  # (its line went there)
                cli.output.say_failure(stop.output_error, "stopped, with a checkpoint of the "
                                       "steps trained; rerun the same command to continue")
            cli.end_stopped(stopped[0])
        if parallel.is_main_process():
            evaluate = list(evaluate_command or installed_evaluate_command())
            print(f"evaluate it: {shlex.join([*evaluate, f'--workdir={workdir}'])}",
                  flush=True)  # quoted: a workdir with a space pastes as one argument

    cli.use_help_of(__doc__)
    app.run(run, flags_parser=cli.parse_flags)
