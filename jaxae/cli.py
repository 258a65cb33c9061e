"""What the entry points share: turning expected failures into one-line errors."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from absl import flags, logging

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
    except (AttributeError, KeyError) as e:  # KeyError("'modle'\nDid you mean ...?")
        key = e.args[0] if e.args and isinstance(e.args[0], KeyError) else e
        field, _, hint = str(key.args[0] if key.args else key).partition("\n")
        message = f"unknown config field {field}" + (f": {hint}" if hint else "")
    except OSError as e:
        message = f"--config: {str(e).strip().splitlines()[-1].strip()}"
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)
