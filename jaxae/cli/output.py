"""A command's output that cannot be written is a stop, not a crash: `train.py | head` closes
the pipe early, a scheduler's SIGTERM to the whole job (`train.py 2>&1 | tee log`) ends tee
with train.py, and a log's disk fills up. A print then raises (BrokenPipeError, OSError)
wherever it is (a progress line between two chunks of steps), which would end a run without
the checkpoint of the steps trained since the last one. `ReaderWatch` takes the error
instead: the stream writes nowhere from then on, and the command decides what the failure
means (train.py: a stop, `GracefulStop.output_failed`; after the work is written: nothing).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO


class ReaderWatch:
    """`stream` (sys.stdout, sys.stderr), whose first write or flush that fails (its reader
    ended, its disk is full) points the stream's file descriptor at os.devnull, so that
    later lines, and the flush at exit, go nowhere, keeps the error (`failure`) and then calls
    `on_failed(error)` (which may raise: the bench's stop). Watches may nest (a command's
    around a run's): the one next to the stream takes the error, then each around it in turn;
    one put in place after the failure hears nothing of it (`failure()` tells). Anything
    else is the stream's own (isatty, fileno)."""

    def __init__(self, stream: TextIO, on_failed: Callable[[OSError], None]):
        self.stream = stream
        self.failure: OSError | None = None
        self._on_failed = on_failed

    def write(self, text: str) -> int:
        return self._watching(lambda: self.stream.write(text), len(text))

    def flush(self) -> None:
        self._watching(self.stream.flush, None)

    def _watching(self, call: Callable[[], Any], failed_value: Any) -> Any:
        if self.failure is not None:  # written nowhere from now on
            return failed_value
        before = self._inner_failure()
        try:
            value = call()
        except OSError as error:
            self._failed(error)
            return failed_value
        if self.failure is None and (error := self._inner_failure()) is not before:
            self._failed(error)  # taken by a watch inside this one, just now
        return value

    def _inner_failure(self) -> OSError | None:
        stream = self.stream
        while isinstance(stream, ReaderWatch):
            if stream.failure is not None:
                return stream.failure
            stream = stream.stream
        return None

    def _failed(self, error: OSError) -> None:
        self.failure = self.failure or error
        with contextlib.suppress(OSError, ValueError, AttributeError):  # (no descriptor)
            discard(self.stream.fileno())
        with contextlib.suppress(OSError, ValueError, AttributeError):  # the buffer's too
            self.stream.flush()
        self._on_failed(error)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


class OutputFailed(Exception):
    """Raised by an `on_failed` to end the command (`cli.run`: one line, exit status 141 for
    a reader that ended, else 1); `error` is the output's OSError."""

    def __init__(self, error: OSError):
        super().__init__(str(error))
        self.error = error


def raised(error: OSError) -> None:
    """`on_failed` for output that ends the command: `OutputFailed`."""
    raise OutputFailed(error)


def failure() -> OSError | None:
    """The error of sys.stdout's or sys.stderr's ReaderWatch that failed, if one did (the
    streams write nowhere since)."""
    return next((stream.failure for stream in (sys.stdout, sys.stderr)
                 if isinstance(stream, ReaderWatch) and stream.failure), None)


def dropped(error: OSError) -> None:
    """`on_failed` for lines nobody needs any more (those after the work is written)."""


@contextlib.contextmanager
def watched(on_failed: Callable[[OSError], None]) -> Iterator[None]:
    """sys.stdout and sys.stderr, each in a ReaderWatch, while the block runs."""
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = (ReaderWatch(stream, on_failed) for stream in streams)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = streams


def stop_reason(error: OSError) -> str:
    """The name a failed output stops a run under: SIGPIPE for a reader that ended (the
    signal Python ignores, and a shell's 141 when the process ends by it), else the error's
    (ENOSPC: a full disk; a process ends with exit status 1 for it)."""
    if isinstance(error, BrokenPipeError):
        return signal.SIGPIPE.name
    return errno.errorcode.get(error.errno or 0, "EIO")


def stopped_by(error: OSError | None, reason: str | None) -> bool:
    """Whether a stop under `reason` was the failed output's (`error`'s, if any), not a
    signal's that came first (SIGTERM to a job whose `| tee` ended with it)."""
    return error is not None and reason == stop_reason(error)


def failure_line(error: OSError) -> str:
    """What a failed output is, for the line that says a run stops for it."""
    if isinstance(error, BrokenPipeError):
        return "the output's reader ended (a pipe into `head`, say)"
    return f"error: the output cannot be written ({error.strerror or error})"


def say_failure(error: OSError, then: str) -> None:
    """One line on stderr, where it can still be written: the failure, and `then`."""
    with contextlib.suppress(OSError):
        os.write(2, f"{failure_line(error)}: {then}\n".encode())


def usable_streams() -> None:
    """Called first by each command: a closed stdout or stderr (`>&-`) becomes os.devnull
    (Python leaves it None, which printing skips but tqdm and the metric writer do not, and
    a file the command opens would take its descriptor), and a text the stream's encoding
    cannot hold (a path in another script under PYTHONIOENCODING=ascii) is written
    escaped, rather than failing the command after its work."""
    for name, fd in (("stdout", 1), ("stderr", 2)):
        stream = getattr(sys, name)
        if stream is not None:
            with contextlib.suppress(AttributeError, ValueError):  # (not a TextIOWrapper)
                stream.reconfigure(errors="backslashreplace")
        elif _is_open(fd):  # taken since by a file of the process's: left to it
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115
        else:
            discard(fd)
            setattr(sys, name, open(fd, "w", encoding="utf-8", closefd=False))  # noqa: SIM115


def discard(fd: int) -> None:
    """Points file descriptor `fd` at os.devnull: what is written there goes nowhere."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    if devnull != fd:
        os.dup2(devnull, fd)
        os.close(devnull)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True
