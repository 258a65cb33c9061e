"""The command-line layer: flags, one-line errors, and the process-wide policy that a library
must not impose on its users (signal handlers, exit codes, silencing Orbax's logs and the
leftovers of its failed reads).

`train.py` and `evaluate.py` call `run(fn, ...)`: a bad config, missing data, a busy or
unwritable workdir, a checkpoint that does not fit, a write that fails or a numerical fault
ends the process with one `error:` line and exit code 1, after any checkpoint still being
written is finished. A stop (Ctrl-C, SIGTERM, SIGUSR1) checkpoints and then ends the process
as the signal does (`end_stopped`; a shell reports 128 + its number, and its loop or `&&`
stops too), also
one asked for before training started (one line, nothing to save); where no stop is handled
(evaluate.py) the signal ends the process at once, with one line.

Its parts: `train_command` and `evaluate_command` (the commands `jaxae-train` and
`jaxae-evaluate`, which a clone's train.py and evaluate.py call), `exits` (how the process
ends: `run`, the exit codes, Orbax's writer threads), `signals` (a graceful stop, or an
immediate one), `determinism` (XLA's deterministic GPU kernels: a seeded run repeats on a
GPU too), `output` (an output whose reader ended is a stop too), `quiet` (Orbax's logs
and leftovers), `arguments` (the command line read ahead of absl), `config_flag` (`--config`
and its overrides) and `config_errors` (one line for each way a config fails to load).

This package imports only absl, ml_collections and jaxae modules that themselves import only
the standard library (`registry`, `messages`, `training.lock`), so that a command can
install its signal handlers (`GracefulStop`) before the seconds spent importing JAX (the
commands import the rest inside `main`).
"""

from jaxae.cli import output
from jaxae.cli.arguments import shortest_path, user_path
from jaxae.cli.config_flag import (
    default_config_note,
    define_config_flag,
    define_eval_overrides,
    eval_overrides,
    loaded_config,
    parse_flags,
    use_help_of,
)
from jaxae.cli.determinism import use_deterministic_gpu_ops
from jaxae.cli.exits import end_stopped, refuse_busy_workdir, run
from jaxae.cli.signals import GracefulStop, stop_at_once_on_signal, work_done

__all__ = ["GracefulStop", "default_config_note", "define_config_flag",
           "define_eval_overrides", "end_stopped", "eval_overrides", "loaded_config", "output",
           "parse_flags", "refuse_busy_workdir", "run", "shortest_path",
           "stop_at_once_on_signal", "use_deterministic_gpu_ops", "use_help_of", "user_path",
           "work_done"]
