"""What the entry points share: turning expected failures into one-line errors."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from absl import logging

from jaxae.checkpoints import CheckpointMismatch
from jaxae.config import ConfigError
from jaxae.data import DataError


def run(fn: Callable[..., Any], *args: Any) -> Any:
    """Calls fn(*args); a bad config, missing data or a numerical fault exits with one line."""
    logging.set_verbosity(logging.WARNING)  # Orbax logs every file it writes at INFO
    try:
        return fn(*args)
    except (ConfigError, CheckpointMismatch, DataError, FloatingPointError,
            FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
