"""Graceful stop: SIGTERM or Ctrl-C asks the training loop to checkpoint and exit cleanly."""

from __future__ import annotations

import signal
import threading


class GracefulStop:
    """While active, the first SIGTERM / SIGINT only sets `requested`; a second one aborts."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested: str | None = None  # the name of the signal received
        self._previous = {}

    def _handle(self, signum: int, frame) -> None:
        if self.requested is not None:  # asked twice: stop now, without a checkpoint
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
