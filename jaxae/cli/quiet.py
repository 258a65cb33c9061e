"""Orbax's logs and the leftovers of a failed restore or save: one line reports the damage,
not hundreds of lines of TensorStore and asyncio tracebacks from other threads."""

from __future__ import annotations

import logging as std_logging
import os
import re
import sys

from absl import logging

_chained_unraisablehook = None  # the hook ours replaced: any other error goes on to it


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


_UNRETRIEVED = re.compile(r"\w+ exception was never retrieved|Task was destroyed but it is "
                          r"pending")


def _from_orbax(record: std_logging.LogRecord, message: str) -> bool:
    """Whether an asyncio record is about Orbax's work: named in its text (a Task's coroutine)
    or in its traceback (a _GatheringFuture's text names only the TensorStore array)."""
    if "orbax" in message:
        return True
    tb = record.exc_info[2] if record.exc_info else None
    while tb is not None:
        if f"{os.sep}orbax{os.sep}" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


def _is_not_abandoned_read_task(record: std_logging.LogRecord) -> bool:
    """logging filter for asyncio's logger: drops its report of an Orbax task or gathering
    future whose error nobody retrieved, or that was dropped pending (the reads of a restore
    that already failed, the writes of a save that already failed)."""
    message = record.getMessage()
    return not (_UNRETRIEVED.match(message) and _from_orbax(record, message))


def _is_not_from_orbax(record: std_logging.LogRecord) -> bool:
    """logging filter for absl's logger: drops Orbax's own error logs. Orbax logs, with
    tracebacks, the errors it raises to jaxae (hundreds of lines for one failed save);
    jaxae reports each as one line. JAXAE_DEBUG=1 keeps them."""
    return f"{os.sep}orbax{os.sep}" not in record.pathname


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


def silence_orbax() -> None:
    """silence_abandoned_reads, and Orbax's error logs (unless JAXAE_DEBUG is set)."""
    silence_abandoned_reads()
    absl_logger = logging.get_absl_logger()
    if not os.environ.get("JAXAE_DEBUG") and _is_not_from_orbax not in absl_logger.filters:
        absl_logger.addFilter(_is_not_from_orbax)
