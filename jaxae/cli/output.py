"""An output whose reader ends is a stop, not a crash: `train.py | head` closes the pipe
early, and a scheduler's SIGTERM to the whole job (`train.py 2>&1 | tee log`) ends tee with
train.py. A print then raises BrokenPipeError wherever it is (a progress line between two
chunks of steps), which would end the run without the checkpoint of the steps trained since
the last one. `ReaderWatch` takes the error instead: the stream writes nowhere from then on,
and the stop it stands for is asked for (`GracefulStop.reader_ended`)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any, TextIO


class ReaderWatch:
    """`stream` (sys.stdout, sys.stderr), whose first write or flush to a reader that has
    ended calls `on_ended()` and points the stream's file descriptor at os.devnull, so that
    later lines, and the flush at exit, go nowhere instead of raising. Anything else is
    the stream's own (isatty, fileno, encoding)."""

    def __init__(self, stream: TextIO, on_ended: Callable[[], None]):
        self.stream = stream
        self._on_ended = on_ended

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            self._ended()
            return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            self._ended()

    def _ended(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # (a stream without a descriptor)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)
        self._on_ended()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)
