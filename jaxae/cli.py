"""What the entry points share: turning expected failures into one-line errors."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from absl import flags, logging
from ml_collections import config_flags

from jaxae.checkpoints import CheckpointMismatch, finish_pending_saves
from jaxae.config import ConfigError
from jaxae.data import DataError


def run(fn: Callable[..., Any], *args: Any) -> Any:
    """Calls fn(*args); a bad config, missing data or a numerical fault exits with one line.

    Whatever ends the call, a checkpoint still being written is finished first.
    """
    logging.set_verbosity(logging.ERROR)  # Orbax logs routine notes at INFO and WARNING
    try:
        return fn(*args)
    except (ConfigError, CheckpointMismatch, DataError, FloatingPointError,
            FileNotFoundError) as e:
        finish_pending_saves()
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except BaseException:
        finish_pending_saves()
        raise


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def _unknown_field(error: AttributeError | KeyError) -> str:
    """ml_collections' KeyError("'modle'\nDid you mean ...?"), possibly wrapped in an
    AttributeError, as 'unknown config field 'modle': Did you mean ...?'."""
    key = error.args[0] if error.args and isinstance(error.args[0], KeyError) else error
    field, _, hint = str(key.args[0] if key.args else key).partition("\n")
    return f"unknown config field {field}" + (f": {hint}" if hint else "")


def define_config_flag(default: str) -> None:
    """`--config=FILE` with `--config.FIELD=VALUE` overrides (ml_collections), locked.

    ml_collections resolves the overrides on the command line as the flag is defined, so a
    misspelt field fails here, before absl parses anything: it is one error line too.
    """
    try:
        config_flags.DEFINE_config_file("config", default, "Experiment config file.",
                                        lock_config=True)
    except (AttributeError, KeyError) as e:
        _fail(_unknown_field(e))


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing (app.run's flags_parser), with a wrong flag as one error line.

    ml_collections reports a misspelt --config.FIELD as a bare AttributeError, and a config
    file that does not load only when the config is first read: both become `error:` lines.
    """
    try:
        rest = flags.FLAGS(argv)
        if "config" in flags.FLAGS:
            flags.FLAGS.config.get("model")  # raises here if the config file did not load
        return rest
    except flags.Error as e:
        message = str(e)
    except (AttributeError, KeyError) as e:
        message = _unknown_field(e)
    except OSError as e:
        message = f"--config: {str(e).strip().splitlines()[-1].strip()}"
    _fail(message)
