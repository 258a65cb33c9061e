"""Progress on long work: a tqdm bar on a terminal; off one (a log file: nohup, a cluster
job), where tqdm draws nothing, a line on stderr at most every OFF_TERMINAL_EVERY_S."""

from __future__ import annotations

import time

OFF_TERMINAL_EVERY_S = 60.0  # off a terminal (no bar): a progress line at most this often


def duration(seconds: float) -> str:
    """3 h 05 min, 12 min 40 s, 45 s: a time left, to a reader's precision."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return (f"{hours} h {minutes:02d} min" if hours else
            f"{minutes} min {secs:02d} s" if minutes else f"{secs} s")


class LogLines:
    """When a line is due in place of a bar that does not draw: OFF_TERMINAL_EVERY_S after
    the work began, then after the last line. `now`: a time.perf_counter() reading the
    caller has taken already (default: one read here)."""

    def __init__(self, now: float | None = None) -> None:
        self.started = self.said = time.perf_counter() if now is None else now

    def due(self, now: float | None = None) -> float | None:
        """The seconds since the work began where a line is due now (it counts as said),
        else None."""
        now = time.perf_counter() if now is None else now
        if now - self.said < OFF_TERMINAL_EVERY_S:
            return None
        self.said = now
        return now - self.started
