"""The command-line layer: flags, one-line errors, and the process-wide policy that a library
must not impose on its users (signal handlers, silencing Orbax's leftover errors).

`train.py` and `evaluate.py` call `run(fn, ...)`: a bad config, missing data, a checkpoint
that does not fit or a numerical fault ends the process with one `error:` line, after any
checkpoint still being written is finished.
"""

from __future__ import annotations

import logging as std_logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import ml_collections
from absl import flags, logging
from ml_collections import config_flags

from jaxae.config import ConfigError, field_hint
from jaxae.data import DataError
from jaxae.registry import RegistryError
from jaxae.training.checkpoints import CheckpointMismatch, finish_pending_saves

EXPECTED_ERRORS = (ConfigError, CheckpointMismatch, DataError, RegistryError,
                   FloatingPointError, FileNotFoundError)
CODE_SECTIONS = ("model", "task")  # sections whose `name` may point at a user's file


def run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Calls fn(*args, **kwargs) with the process-wide policy in place; an expected failure
    exits with one line. Whatever ends the call, a checkpoint being written is finished."""
    logging.set_verbosity(logging.ERROR)  # Orbax logs routine notes at INFO and WARNING
    silence_abandoned_reads()
    try:
        return fn(*args, **kwargs)
    except EXPECTED_ERRORS as e:
        finish_pending_saves()
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except BaseException:
        finish_pending_saves()
        raise


class GracefulStop:
    """While active, the first SIGTERM / SIGINT only records its name (`requested`, polled by
    the training loop, which checkpoints and returns); a second one aborts at once."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested: str | None = None
        self._previous = {}

    def _handle(self, signum: int, frame) -> None:
        if self.requested is not None:  # asked twice: stop now, without a checkpoint
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def __call__(self) -> str | None:
        return self.requested

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# --- Orbax's leftovers after a failed restore -------------------------------------------

_chained_unraisablehook = None


def _is_abandoned_read(unraisable) -> bool:
    """Whether an unraisable error comes from the reads of a restore that already failed:
    an Orbax read coroutine dropped unfinished, or a TensorStore read finishing after
    Orbax's event loop closed (its callback finds the loop gone)."""
    code = getattr(unraisable.object, "cr_code", None)
    if code is not None and "orbax" in code.co_filename:
        return True
    return (unraisable.object is None and unraisable.exc_type is RuntimeError
            and str(unraisable.exc_value) == "Event loop is closed")


def _ignore_abandoned_reads(unraisable) -> None:
    """sys.unraisablehook that drops the errors of a failed restore's abandoned reads."""
    if not _is_abandoned_read(unraisable):
        (_chained_unraisablehook or sys.__unraisablehook__)(unraisable)


def _is_not_abandoned_read_task(record: std_logging.LogRecord) -> bool:
    """logging filter for asyncio's logger: drops its report of an Orbax read task whose
    error nobody retrieved (the read of a restore that already failed)."""
    message = record.getMessage()
    return not (message.startswith("Task exception was never retrieved") and "orbax" in message)


def silence_abandoned_reads() -> None:
    """Installs _ignore_abandoned_reads and the asyncio log filter (once each).

    Orbax reads arrays concurrently; when one fails, the others are abandoned, and Python
    would print each one's error (many lines of TensorStore spec or asyncio traceback),
    now or later, from other threads. The damage is reported once, by the caller's warning.
    """
    global _chained_unraisablehook
    if sys.unraisablehook is not _ignore_abandoned_reads:
        _chained_unraisablehook, sys.unraisablehook = sys.unraisablehook, _ignore_abandoned_reads
    asyncio_logger = std_logging.getLogger("asyncio")
    if _is_not_abandoned_read_task not in asyncio_logger.filters:
        asyncio_logger.addFilter(_is_not_abandoned_read_task)


# --- flags -------------------------------------------------------------------------------

def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def _unknown_field(error: AttributeError | KeyError) -> str:
    """ml_collections' KeyError("'modle'\\nDid you mean ...?") or a locked config's
    AttributeError, as 'unknown config field config.X: <where it moved / closest field>'."""
    key = error.args[0] if error.args and isinstance(error.args[0], KeyError) else error
    text = str(key.args[0] if key.args else key)
    field = text.partition("\n")[0].strip("'\"")
    if text.startswith("Key \""):  # 'Key "latnt_dim" does not exist and cannot be added...'
        field = text.split('"')[1]
    path = _override_path(field)
    hint = field_hint(path)
    return f"unknown config field config.{path}" + (f": {hint}" if hint else "")


def _override_path(field: str) -> str:
    """The dotted path of the --config.X override that names `field`, if there is one."""
    for arg in sys.argv[1:]:
        if arg.startswith("--config.") and "=" in arg:
            path = arg[len("--config."):].split("=", 1)[0]
            if field in path.split("."):
                return path
    return field


def define_config_flag(default: str | None) -> None:
    """`--config=FILE` with `--config.FIELD=VALUE` overrides (ml_collections), locked.

    ml_collections resolves the overrides on the command line as the flag is defined, so a
    misspelt field fails here, before absl parses anything: it is one error line too. The
    current directory goes on the import path (as with `python -m`), so a config may name a
    model in a module beside it.
    """
    if os.getcwd() not in sys.path:
        sys.path.insert(1, os.getcwd())
    try:
        config_flags.DEFINE_config_file("config", default, "Experiment config file.",
                                        lock_config=True)
    except (AttributeError, KeyError) as e:
        _fail(_unknown_field(e))


def loaded_config() -> ml_collections.ConfigDict:
    """The --config flag's config, with a relative `file.py:Name` in a model or task name made
    absolute (found from the current directory, else beside the config file), so that the
    workdir's config.json finds the same code from anywhere."""
    config = flags.FLAGS.config
    config_file = config_flags.get_config_filename(flags.FLAGS["config"])
    beside = os.path.dirname(os.path.abspath(config_file)) if config_file else os.getcwd()
    for section in CODE_SECTIONS:
        name = config[section].name
        where, _, attribute = name.rpartition(":")
        if where.endswith(".py") and not os.path.isabs(where):
            path = where if os.path.isfile(where) else os.path.join(beside, where)
            with config.unlocked():
                config[section].name = f"{os.path.abspath(path)}:{attribute}"
    return config


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing (app.run's flags_parser), with a wrong flag as one error line.

    ml_collections reports a misspelt --config.FIELD as a bare AttributeError, and a config
    file that does not load only when the config is first read: both become `error:` lines.
    """
    try:
        rest = flags.FLAGS(argv)
        if "config" in flags.FLAGS:
            flags.FLAGS.config.get("seed")  # raises here if the config file did not load
        return rest
    except flags.Error as e:
        message = str(e)
    except (AttributeError, KeyError) as e:
        message = _unknown_field(e)
    except OSError as e:
        message = f"--config: {str(e).strip().splitlines()[-1].strip()}"
    _fail(message)
