"""Signals: a graceful stop for training (the first Ctrl-C, SIGTERM or SIGUSR1 checkpoints,
then ends the process as the signal would: `end_by_signal`), and an immediate one for a
process with nothing to save (evaluate.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

from jaxae.cli import output
from jaxae.training.lock import MOVING_FILES, STAGING_FOLDERS


def end_by_signal(signum: int) -> NoReturn:
    """Ends the process as the signal's default action does, its work done (output flushed):
    killed by it, which a shell reports as 128 + the signal (130 for Ctrl-C, 143 for SIGTERM).
    An exit with that code would not do: a shell waiting for its child in a loop, or in
    `a && b`, takes a child that exited normally to have handled the Ctrl-C, and goes on. The
    signal's handler must be its default here: in the main thread it is set so; another
    thread calls this only for a signal set so before (`stop_at_once_on_signal`)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum])
    signal.pthread_kill(threading.get_ident(), signum)
    os._exit(128 + signum)  # (reached only where the signal could not end the process)


class GracefulStop:
    """While installed, the first SIGTERM / SIGINT / SIGUSR1 only records its name
    (`requested`, polled by the training loop, which checkpoints and returns); a second one
    ends the process at once with one line, as the signal does (`end_by_signal`), without a
    checkpoint of the last steps, nor one still being written (those on disk are complete:
    Orbax renames a step's folder only once it is written, and a half-written one is a
    temporary folder the next start removes, saying so).

    An output that cannot be written (its reader ended: `| head`, or `| tee log` ended by
    the same SIGTERM; its disk full) is a stop too (`output_failed`), under the name
    `output.stop_reason` gives it (SIGPIPE, ENOSPC); a signal after it is still a first one.

    In a notebook, `GracefulStop(end_process=False)`: the second signal raises
    KeyboardInterrupt instead, as an interrupt does without it, the kernel lives on, and its
    output is left as it is:

        with cli.GracefulStop(end_process=False) as stop:  # Interrupt: a checkpoint, a return
            train_and_evaluate(config, workdir, stop_requested=stop)
    """

    # SIGUSR1: a scheduler's warning before its time limit (SLURM's --signal=USR1@120)
    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)

    def __init__(self, end_process: bool = True):
        self.requested: str | None = None
        self.end_process = end_process
        self.output_error: OSError | None = None
        self._previous = {}
        self._watch: contextlib.AbstractContextManager | None = None  # `output.watched`

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self.requested is None:
            self.requested = name
            with contextlib.suppress(OSError):  # said now: the stop waits for the steps
                os.write(2, f"{name} received: stopping, with a checkpoint of any steps "
                            f"trained (a second {name} stops at once, without it)\n"
                            .encode())  # the steps running, a log said nothing meanwhile
            return
        if not self.end_process:
            raise KeyboardInterrupt(f"{name} received twice: stopped without a checkpoint of "
                                    "the last steps")
        # asked twice: stop now. Not by raising: an exception would surface anywhere in the
        # main thread (inside Orbax's wait for a save, say) as a traceback.
        twice = f"{name} received twice" if name == self.requested else \
            f"{self.requested} then {name} received"
        os.write(2, f"error: {twice}: stopped at once, without a checkpoint of the last "
                    "steps (a save still being written is lost too); rerun the same command "
                    "to continue from the newest complete checkpoint\n".encode())
        end_by_signal(signum)

    def __call__(self) -> str | None:
        if self.requested or self.output_error is None:
            return self.requested
        return output.stop_reason(self.output_error)

    def output_failed(self, error: OSError) -> None:
        """The output cannot be written (`output.ReaderWatch`): a stop (said on stderr by
        the command, once the run has ended by it: the trainer's own line is lost)."""
        self.output_error = self.output_error or error

    def saved(self) -> None:
        """The run's work is on disk: a signal from now on has nothing left to stop, and is
        ignored (not the second signal's "without a checkpoint" exit)."""
        ignore_stop_signals()

    def install(self) -> GracefulStop:
        """Handles the stop signals from now on (in the main thread: Python's rule). A signal
        arriving between the two handlers going in (Ctrl-C as train.py starts) is a stop
        too: blocked meanwhile in this thread, it waits for its handler; taken by another
        thread (a process that has started JAX's), it met Python's default handler, whose
        KeyboardInterrupt is taken for the stop it asked for. A signal the process was
        started ignoring (Ctrl-C in a shell script's background job, `cmd &`) stays ignored,
        as Python and evaluate.py leave it."""
        if threading.current_thread() is not threading.main_thread():
            return self
        signals = not_ignored(self.SIGNALS)
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        try:
            for sig in signals:
                self._previous.setdefault(sig, signal.signal(sig, self._handle))
        except KeyboardInterrupt:
            for sig in signals:
                self._previous.setdefault(sig, signal.signal(sig, self._handle))
            self.requested = self.requested or signal.SIGINT.name
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        if self.end_process and self._watch is None:
            self.output_error = self.output_error or output.failure()  # (between two runs)
            self._watch = output.watched(self.output_failed)
            self._watch.__enter__()
        return self

    def uninstall(self) -> None:
        """Puts back the handlers and the output streams in place before `install`."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        if self._watch is not None:
            self._watch.__exit__(None, None, None)
            self._watch = None

    def __enter__(self) -> GracefulStop:
        return self.install()

    def __exit__(self, *exc) -> None:
        self.uninstall()


def not_ignored(signals: Sequence[signal.Signals]) -> list[signal.Signals]:
    """The signals the process was not started ignoring (Ctrl-C in a shell script's
    background job is): an inherited ignore is left alone, as Python leaves it."""
    return [sig for sig in signals if signal.getsignal(sig) is not signal.SIG_IGN]


def ignore_stop_signals() -> None:
    """Once the work is done and saved: a stop signal during the interpreter's teardown
    has nothing left to stop. (Python's teardown puts a signal with a handler of ours back
    to the default action, which would kill the process, exit code -2, without a word; an
    ignored one it leaves ignored.)"""
    if threading.current_thread() is threading.main_thread():
        for sig in GracefulStop.SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


_REMOVE_AFTER_EXIT = """
import os, shutil, sys, time
pid, deadline = int(sys.argv[1]), time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        break
    except PermissionError:
        pass
    time.sleep(0.02)
for path in sys.argv[2:]:
    shutil.rmtree(path, ignore_errors=True)
"""


def _remove_after_exit(folders: list[str]) -> None:
    """Removes `folders` from a process of its own once this one has exited (or after a
    minute): while this one lives, its main thread may still be writing there, and removing
    them under it would turn a stop into a write error."""
    with contextlib.suppress(OSError):
        subprocess.Popen([sys.executable, "-c", _REMOVE_AFTER_EXIT, str(os.getpid()), *folders],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)


WORK_DONE = threading.Event()  # set once a process's work is written (evaluate.py's files)


def work_done() -> None:
    """Says the process's work is written: a signal from now on says so, not that it
    stopped the work (it still ends the process, so that a shell's loop stops)."""
    WORK_DONE.set()


def stop_at_once_on_signal(what: str = "evaluation",
                           signals: Sequence[signal.Signals] = GracefulStop.SIGNALS) -> None:
    """For a process with nothing to save on a stop (evaluate.py): Ctrl-C, SIGTERM or
    SIGUSR1 (a scheduler's warning) ends it at once with one line, as the signal does
    (`end_by_signal`), also while the main thread waits in a long computation (a Python
    signal handler would run only once that returns, after minutes for a large IWAE bound)
    and during the imports.

    The signals are blocked in this thread, and so in every thread started after it (call it
    first, before JAX starts its own); one thread of ours waits for them. A signal the
    process was started ignoring (SIGINT in a shell script's background job) stays ignored.
    """
    signals = not_ignored(signals)
    if not signals or threading.current_thread() is not threading.main_thread():
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    for sig in signals:  # blocked, they wait for sigwait; unblocked by end_by_signal, they end
        signal.signal(sig, signal.SIG_DFL)  # the process (only the main thread may set this)

    def wait() -> None:
        signum = signal.sigwait(signals)
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        with MOVING_FILES:  # a set of files moving into place finishes first
            if STAGING_FOLDERS:  # and the files not moved go, once this process is gone
                _remove_after_exit(sorted(STAGING_FOLDERS))
            os.write(2, (f"{name} received after the {what} was written whole: stopping\n"
                         if WORK_DONE.is_set() else
                         f"error: interrupted ({name}): {what} stopped before it finished; "
                         "rerun the same command to do it again\n").encode())
            end_by_signal(signum)

    threading.Thread(target=wait, name="jaxae-stop-on-signal", daemon=True).start()
