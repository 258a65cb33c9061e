"""How the process ends: `run` turns the library's expected errors into one `error:` line and
an exit code (with JAXAE_DEBUG=1, the traceback behind it too), finishing any checkpoint
still being written, and keeps Orbax's writer threads from adding tracebacks (or keeping a
process alive in a hung file system) after that line."""

from __future__ import annotations

import contextlib
import gc
import inspect
import os
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from absl import logging
from tqdm import tqdm

from jaxae.cli import output
from jaxae.cli.arguments import flag_value, user_path
from jaxae.cli.quiet import silence_orbax
from jaxae.cli.signals import end_by_signal, ignore_stop_signals
from jaxae.messages import first_line, printable
from jaxae.training import lock

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130  # Ctrl-C where no graceful stop is handled (the shell's 128 + SIGINT)
EXIT_BROKEN_PIPE = 141  # the output's reader ended (the shell's 128 + SIGPIPE)
WRITER_GRACE_S = 5.0  # an error exit waits this long for Orbax's writer threads, no longer


def stopped_exit_code(reason: str | None) -> int:
    """The exit status of a process a stop request ended before its work was done (its
    checkpoint saved), as a shell reports it: for a signal, 128 + it (130 for SIGINT, 143 for
    SIGTERM; `end_stopped`); for another reason (a library caller's), 1."""
    signum = getattr(signal.Signals, reason, None) if reason else None
    return 128 + signum.value if signum is not None else EXIT_ERROR


def end_stopped(reason: str | None, entry_point: bool = True) -> NoReturn:
    """Ends a process that a stop request ended before its work was done: an entry point as
    the signal does (`end_by_signal`: a shell's loop, or `train.py ... && evaluate.py ...`,
    stops too rather than go on with the next command), else (a test, a notebook) with
    SystemExit(`stopped_exit_code`)."""
    code = stopped_exit_code(reason)
    if entry_point and code != EXIT_ERROR:  # a signal's: 128 + it
        end_by_signal(code - 128)
    sys.exit(code)


def expected_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that are one `error:` line: the library's own, each with its fix."""
    from jaxae.config import ConfigError
    from jaxae.data import DataError
    from jaxae.registry import RegistryError
    from jaxae.training.checkpoints import CheckpointMismatch, CheckpointWriteError
    from jaxae.training.files import WriteError

    return (ConfigError, CheckpointMismatch, CheckpointWriteError, WriteError, DataError,
            RegistryError, FloatingPointError, FileNotFoundError)


def thread_lock_for_progress_bars() -> None:
    """tqdm's bars lock a multiprocessing semaphore by default, which a process ended by a
    signal (`end_by_signal`) never releases: under the spawn start method (macOS's) Python's
    resource tracker then warns of it after the stop's line. jaxae runs no processes of its
    own, so a thread lock serves, where none was set before."""
    if not hasattr(tqdm, "_lock"):
        tqdm.set_lock(threading.RLock())


def run(fn: Callable[..., Any], *args: Any, entry_point: bool = False, **kwargs: Any) -> Any:
    """Calls fn(*args, **kwargs) with the process-wide policy in place; an expected failure
    exits with one line. Whatever ends the call, a checkpoint being written is finished.

    entry_point: this process is train.py / evaluate.py, not a test or a notebook: after an
    error line, writer threads stuck in a hung file system do not keep it alive.
    An output that cannot be written (BrokenPipeError; `output.OutputFailed`, evaluate.py's
    for any output error) ends the process with one line on stderr, exit status 141 for a
    reader that ended (a shell's 128 + SIGPIPE), else 1. (train.py's output is watched by
    its GracefulStop instead, which makes such a failure a stop with a checkpoint.)
    """
    from jaxae.training.checkpoints import finish_pending_saves
    from jaxae.training.trainer import StopRequested

    logging.set_verbosity(logging.ERROR)  # Orbax logs routine notes at INFO and WARNING
    silence_orbax()
    if entry_point:
        thread_lock_for_progress_bars()
    try:
        result = fn(*args, **kwargs)
        if entry_point:
            ignore_stop_signals()
        return result
    except StopRequested as e:
        _finish(finish_pending_saves)
        print(e, flush=True)
        failure = output.failure()
        if output.stopped_by(failure, e.signal_name):  # that line went to the failed output
            output.say_failure(failure, "stopped; rerun the same command to continue")
        if entry_point:
            ignore_stop_signals()
        end_stopped(e.signal_name, entry_point)
    except (BrokenPipeError, output.OutputFailed) as e:  # `evaluate.py | head`, say
        _finish(finish_pending_saves)
        error = e.error if isinstance(e, output.OutputFailed) else e
        with contextlib.suppress(OSError, ValueError):  # no flush error at exit
            output.discard(sys.stdout.fileno())
        output.say_failure(error, "stopped; rerun the same command to do it again")
        sys.exit(EXIT_BROKEN_PIPE if isinstance(error, BrokenPipeError) else EXIT_ERROR)
    except expected_errors() as e:
        _finish(finish_pending_saves)
        _exit_with_error(e, printable(str(e)), entry_point)
    except KeyboardInterrupt:
        _finish(finish_pending_saves)
        print("error: interrupted (Ctrl-C)", file=sys.stderr, flush=True)
        # an entry point ends at once: the interpreter's teardown can crash while XLA's
        # threads still run the interrupted computation, and nothing is left to save
        if entry_point:
            end_by_signal(signal.SIGINT)
        sys.exit(EXIT_INTERRUPTED)
    except BaseException as e:
        _finish(finish_pending_saves)
        if line := out_of_memory_line(e):  # XLA's, after compiling: no error of jaxae's
            _exit_with_error(e, line, entry_point)
        raise


def _exit_with_error(error: BaseException, line: str, entry_point: bool) -> NoReturn:
    """Ends the process with its one `error:` line (after the traceback, with JAXAE_DEBUG)
    and exit code 1."""
    if os.environ.get("JAXAE_DEBUG"):
        print_traceback(error)
    print(f"error: {line}", file=sys.stderr, flush=True)
    if entry_point:
        exit_now_if_stuck(EXIT_ERROR)
        close_unstarted_coroutines()  # the process ends: nothing will start them
    sys.exit(EXIT_ERROR)


def out_of_memory_line(error: BaseException) -> str | None:
    """One line for XLA's out-of-memory error (a RESOURCE_EXHAUSTED status: a batch, an
    image size or a model larger than the device's or host's memory, which jaxae's own
    check, counting the state and the data but not the activations, let through); None for
    any other error."""
    errors = sys.modules.get("jax.errors")  # JAX imported: only then can the error be its
    if errors is None or not isinstance(error, errors.JaxRuntimeError):
        return None
    text = str(error)
    if "RESOURCE_EXHAUSTED" not in text and "Out of memory" not in text:
        return None
    asked = re.search(r"allocating (\d+) bytes", text)
    size = f" ({int(asked.group(1)) / 2**30:.1f} GiB asked for at once)" if asked else ""
    return (f"out of memory{size}: lower --config.train.batch_size, or data.image_size or "
            "the model's size, to train; --config.eval.batch_size or eval.iwae_chunk to "
            "evaluate (the checkpoints on disk are kept; JAXAE_DEBUG=1 shows XLA's message)")


def print_traceback(error: BaseException) -> None:
    """The traceback behind an error line (JAXAE_DEBUG=1): that of the exception the line
    replaced (raised `from None`), where the problem is, else the error's own."""
    while error.__suppress_context__ and error.__cause__ is None and error.__context__:
        error = error.__context__
    traceback.print_exception(error, file=sys.stderr)
    sys.stderr.flush()


def _finish(finish_pending_saves: Callable[[], list]) -> None:
    """Waits for the saves in flight; one that failed is a warning (the exit's own error
    line comes next)."""
    for failed in finish_pending_saves():
        print(f"warning: {failed}", file=sys.stderr, flush=True)


def _is_orbax_writer(thread: threading.Thread | None) -> bool:
    return thread is not None and (type(thread).__module__.startswith("orbax")
                                   or "orbax" in thread.name.lower()
                                   or thread.name in ("async_save", "save_finalize"))


def _orbax_writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate()
            if t.is_alive() and not t.daemon and t is not threading.current_thread()
            and _is_orbax_writer(t)]


_EXCEPTHOOK_LOCK = threading.Lock()


def _quiet_writer_errors(args: threading.ExceptHookArgs) -> None:
    """threading.excepthook once the run's error line is out: a writer thread's own failure
    (the same full disk, say) is one line more, not a second traceback. One thread reports
    at a time: Python writes another thread's traceback in pieces, which a line printed
    meanwhile would split."""
    with _EXCEPTHOOK_LOCK:
        if not _is_orbax_writer(args.thread):
            threading.__excepthook__(args)
            sys.stderr.flush()
            return
        first = first_line(args.exc_value, 200)
        print(f"warning: a checkpoint writer failed too: {args.exc_type.__name__}: {first}",
              file=sys.stderr, flush=True)


def exit_now_if_stuck(code: int, grace_s: float = WRITER_GRACE_S) -> None:
    """Exits at once (os._exit) if Orbax writer threads are still alive after `grace_s`:
    Python would otherwise wait for them at exit (a write blocked in a hung file system).
    The error line is printed and flushed first, so a writer thread failing meanwhile
    prints one line more, not a traceback; the checkpoints on disk are complete (a
    half-written one is a temporary folder the next start removes)."""
    threading.excepthook = _quiet_writer_errors
    deadline = time.monotonic() + grace_s
    for thread in _orbax_writer_threads():
        thread.join(max(0.0, deadline - time.monotonic()))
    if _orbax_writer_threads():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def close_unstarted_coroutines() -> None:
    """Closes the coroutines created but never started (a failed save's other writes, which
    Orbax abandoned), as an entry point ends after its error line (its writer threads
    finished): Python would warn of each, two lines at 'sys:1', as the ending interpreter
    drops it."""
    for thing in gc.get_objects():
        if inspect.iscoroutine(thing) and \
                inspect.getcoroutinestate(thing) == inspect.CORO_CREATED:
            thing.close()


def refuse_busy_workdir(argv: Sequence[str] | None = None) -> None:
    """Exits with the one-line error when --workdir names a workdir that another training
    run holds, before train.py imports JAX: the refusal is then immediate. The trainer still
    takes the lock itself (this is only the early answer); a multi-process run (JAX's
    coordinator set) leaves it to the trainer, whose process 0 holds the lock for all."""
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        return
    workdir = user_path(flag_value(sys.argv if argv is None else argv, "workdir"))
    if workdir and (message := lock.busy(workdir)) is not None:
        print(f"error: {message}", file=sys.stderr, flush=True)
        sys.exit(EXIT_ERROR)
