"""Trains a model: python train.py --config=configs/default.py --workdir=runs/default

Any config field can be overridden, e.g. --config.model.latent_dim=2
--config.train.num_epochs=5. Rerunning the same command on the same workdir resumes from its
newest checkpoint (config.RESUMABLE_FIELDS lists what a resumed run may change); a second
train.py on a workdir in use is refused. SIGTERM or Ctrl-C checkpoints, then ends the process
as the signal does (a shell reports 143 or 130, and its loop, or `&&`, stops too), also during
start-up (nothing to save then); a second signal stops at once, without that checkpoint
(and without a save still being written, which the rerun says it removed).
Several hosts: start one process per host with JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES
and JAX_PROCESS_ID set; training runs data-parallel over every device of every process.
"""

from jaxae import cli  # first, and light: a signal during the imports below is a stop too

STOP = cli.GracefulStop().install()
cli.refuse_busy_workdir()  # a workdir in use: refused before JAX is imported

import os  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402

import ml_collections  # noqa: E402
from absl import app, flags  # noqa: E402

from jaxae.training import parallel  # noqa: E402
from jaxae.training.trainer import train_and_evaluate  # noqa: E402

FLAGS = flags.FLAGS
cli.define_config_flag("configs/default.py")
flags.declare_key_flag("config")  # --help lists it (it is defined in jaxae.cli)
flags.DEFINE_string("workdir", None, "Folder for checkpoints, metrics and pictures.")
flags.mark_flags_as_required(["workdir"])


STOPPED: list[str] = []  # the stop request that ended the run before its last step, if any


def train(config: ml_collections.ConfigDict, workdir: str) -> None:
    parallel.initialize_distributed()  # a no-op unless JAX_COORDINATOR_ADDRESS is set
    train_and_evaluate(config, workdir, stop_requested=STOP, on_saved=STOP.saved,
                       on_stopped=STOPPED.append)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if note := cli.default_config_note():
        print(note, flush=True)
    cli.run(train, cli.loaded_config(), cli.user_path(FLAGS.workdir), entry_point=True,
            pending_stop=STOP)
    if STOPPED:  # stopped before its last step, with a checkpoint and its line
        cli.end_stopped(STOPPED[0])
    if parallel.is_main_process():  # the same Python, and the evaluate.py beside this file
        python, script = (cli.shortest_path(path) for path in (
            sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                         "evaluate.py")))
        print(f"evaluate it: {shlex.join([python, script, f'--workdir={FLAGS.workdir}'])}",
              flush=True)  # quoted: a workdir with a space pastes as one argument


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
