"""The command-line layer: flags, one-line errors, and the process-wide policy that a library
must not impose on its users (signal handlers, exit codes, silencing Orbax's logs and the
leftovers of its failed reads).

`train.py` and `evaluate.py` call `run(fn, ...)`: a bad config, missing data, a busy or
unwritable workdir, a checkpoint that does not fit, a write that fails or a numerical fault
ends the process with one `error:` line and exit code 1, after any checkpoint still being
written is finished. A stop asked for before training started is one line and exit code 0,
like a stop during training; Ctrl-C where no stop is handled (evaluate.py) is exit code 130.

At the top this module imports only absl, ml_collections and jaxae modules that themselves
import only the standard library (`registry`, `messages`, `training.lock`), so that
`train.py` can install its signal handlers (`GracefulStop`) before the seconds spent
importing JAX.
"""

from __future__ import annotations

import contextlib
import difflib
import linecache
import logging as std_logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections
from absl import flags, logging
from ml_collections import config_flags
from ml_collections.config_flags.config_flags import ConfigFileFlagParser

from jaxae.messages import first_line
from jaxae.registry import line_in_file
from jaxae.training import lock
from jaxae.training.lock import MOVING_FILES, STAGING_FOLDERS

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130  # Ctrl-C where no graceful stop is handled (the shell's 128 + SIGINT)
EXIT_BROKEN_PIPE = 141  # the output's reader ended (the shell's 128 + SIGPIPE)
WRITER_GRACE_S = 5.0  # an error exit waits this long for Orbax's writer threads, no longer


def expected_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that are one `error:` line: the library's own, each with its fix."""
    from jaxae.config import ConfigError
    from jaxae.data import DataError
    from jaxae.registry import RegistryError
    from jaxae.training.checkpoints import CheckpointMismatch, CheckpointWriteError
    from jaxae.training.workdir import WriteError

    return (ConfigError, CheckpointMismatch, CheckpointWriteError, WriteError, DataError,
            RegistryError, FloatingPointError, FileNotFoundError)


def run(fn: Callable[..., Any], *args: Any, entry_point: bool = False, **kwargs: Any) -> Any:
    """Calls fn(*args, **kwargs) with the process-wide policy in place; an expected failure
    exits with one line. Whatever ends the call, a checkpoint being written is finished.

    entry_point: this process is train.py / evaluate.py, not a test or a notebook: after an
    error line, writer threads stuck in a hung file system do not keep it alive.
    """
    from jaxae.training.checkpoints import finish_pending_saves
    from jaxae.training.trainer import StopRequested

    logging.set_verbosity(logging.ERROR)  # Orbax logs routine notes at INFO and WARNING
    silence_orbax()
    try:
        result = fn(*args, **kwargs)
        if entry_point:
            _ignore_stop_signals()
        return result
    except StopRequested as e:
        _finish(finish_pending_saves)
        print(e, flush=True)
        if entry_point:
            _ignore_stop_signals()
        sys.exit(0)
    except BrokenPipeError:  # the reader of the output ended: `train.py | head`, say
        _finish(finish_pending_saves)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        with contextlib.suppress(OSError):  # (stderr may go down the same pipe)
            print("error: the output's reader ended (a pipe into `head`, say): stopped; rerun "
                  "the same command to continue from the newest checkpoint", file=sys.stderr,
                  flush=True)
        sys.exit(EXIT_BROKEN_PIPE)
    except expected_errors() as e:
        _finish(finish_pending_saves)
        print(f"error: {e}", file=sys.stderr, flush=True)
        if entry_point:
            exit_now_if_stuck(EXIT_ERROR)
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        _finish(finish_pending_saves)
        print("error: interrupted (Ctrl-C)", file=sys.stderr, flush=True)
        if entry_point:  # the interpreter's teardown can crash while XLA's threads still
            sys.stdout.flush()  # run the interrupted computation: nothing is left to save
            os._exit(EXIT_INTERRUPTED)
        sys.exit(EXIT_INTERRUPTED)
    except BaseException:
        _finish(finish_pending_saves)
        raise


def _ignore_stop_signals() -> None:
    """Once the work is done and saved: Ctrl-C or SIGTERM during the interpreter's teardown
    has nothing left to stop. (Python's teardown puts a signal with a handler of ours back
    to the default action, which would kill the process, exit code -2, without a word; an
    ignored one it leaves ignored.)"""
    if threading.current_thread() is threading.main_thread():
        for sig in GracefulStop.SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


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


class GracefulStop:
    """While installed, the first SIGTERM / SIGINT only records its name (`requested`, polled
    by the training loop, which checkpoints and returns); a second one ends the process at
    once with one line and exit code 128 + the signal, without a checkpoint of the last
    steps (those on disk are complete: Orbax renames a step's folder only once it is
    written, and a half-written one is a temporary folder the next start removes)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested: str | None = None
        self._previous = {}

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self.requested is None:
            self.requested = name
            return
        # asked twice: stop now. Not by raising: an exception would surface anywhere in the
        # main thread (inside Orbax's wait for a save, say) as a traceback.
        twice = f"{name} received twice" if name == self.requested else \
            f"{self.requested} then {name} received"
        os.write(2, f"error: {twice}: stopped at once, without a checkpoint of the last "
                    "steps; rerun the same command to continue from the newest "
                    "checkpoint\n".encode())
        os._exit(128 + signum)

    def __call__(self) -> str | None:
        return self.requested

    def saved(self) -> None:
        """The run's work is on disk: a signal from now on has nothing left to stop, and is
        ignored (not the second signal's "without a checkpoint" exit)."""
        _ignore_stop_signals()

    def install(self) -> GracefulStop:
        """Handles both signals from now on (in the main thread: Python's rule). A signal
        arriving between the two handlers going in (Ctrl-C as train.py starts) is a stop
        too: blocked meanwhile in this thread, it waits for its handler; taken by another
        thread (a process that has started JAX's), it met Python's default handler, whose
        KeyboardInterrupt is taken for the stop it asked for."""
        if threading.current_thread() is not threading.main_thread():
            return self
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, self.SIGNALS)
        try:
            for sig in self.SIGNALS:
                self._previous.setdefault(sig, signal.signal(sig, self._handle))
        except KeyboardInterrupt:
            for sig in self.SIGNALS:
                self._previous.setdefault(sig, signal.signal(sig, self._handle))
            self.requested = self.requested or signal.SIGINT.name
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def __enter__(self) -> GracefulStop:
        return self.install()

    def __exit__(self, *exc) -> None:
        self.uninstall()


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


def stop_at_once_on_signal(what: str = "evaluation",
                           signals: Sequence[signal.Signals] = (signal.SIGINT, signal.SIGTERM)
                           ) -> None:
    """For a process with nothing to save on a stop (evaluate.py): Ctrl-C or SIGTERM ends it
    at once with one line and exit code 128 + the signal, also while the main thread waits
    in a long computation (a Python signal handler would run only once that returns, after
    minutes for a large IWAE bound) and during the imports.

    The signals are blocked in this thread, and so in every thread started after it (call it
    first, before JAX starts its own); one thread of ours waits for them. A signal the
    process was started ignoring (SIGINT in a shell script's background job) stays ignored.
    """
    signals = [s for s in signals if signal.getsignal(s) is not signal.SIG_IGN]
    if not signals or threading.current_thread() is not threading.main_thread():
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)

    def wait() -> None:
        signum = signal.sigwait(signals)
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        with MOVING_FILES:  # a set of files moving into place finishes first
            if STAGING_FOLDERS:  # and the files not moved go, once this process is gone
                _remove_after_exit(sorted(STAGING_FOLDERS))
            os.write(2, f"error: interrupted ({name}): {what} stopped before it finished; "
                        "rerun the same command to do it again\n".encode())
            os._exit(128 + signum)

    threading.Thread(target=wait, name="jaxae-stop-on-signal", daemon=True).start()


# --- Orbax's logs and the leftovers of a failed restore ----------------------------------

_chained_unraisablehook = None


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


# --- flags -------------------------------------------------------------------------------

def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(EXIT_ERROR)


def _field_hint(path: str) -> str:
    from jaxae.config import field_hint

    return field_hint(path)


def _unknown_field(error: AttributeError | KeyError, argv: Sequence[str] | None = None) -> str:
    """ml_collections' KeyError("'modle'\\nDid you mean ...?") or a locked config's
    AttributeError, as 'unknown config field config.X: <where it moved / closest field>'."""
    key = error.args[0] if error.args and isinstance(error.args[0], KeyError) else error
    text = str(key.args[0] if key.args else key)
    field = text.partition("\n")[0].strip("'\"")
    if text.startswith("Key \""):  # 'Key "latnt_dim" does not exist and cannot be added...'
        field = text.split('"')[1]
    path = _override_path(field, argv)
    hint = _field_hint(path)
    return f"unknown config field config.{path}" + (f": {hint}" if hint else "")


def _override_path(field: str, argv: Sequence[str] | None = None) -> str:
    """The dotted path of the --config.X override that names `field`, if there is one."""
    for arg in (sys.argv if argv is None else argv)[1:]:
        if arg.startswith("--config.") and "=" in arg:
            path = arg[len("--config."):].split("=", 1)[0]
            if field in path.split("."):
                return path
    return field


_DEFAULT_CONFIG: list[str] = []  # the entry point's default config file, once defined


def default_config_note(argv: Sequence[str] | None = None) -> str | None:
    """The line an entry point prints when it runs its default config because no --config
    was given (a user may not know it has one); None when --config was given."""
    if _flag_value(sys.argv if argv is None else argv, "config") is not None or \
            not _DEFAULT_CONFIG:
        return None
    return f"no --config given: the default, --config={_DEFAULT_CONFIG[-1]}"


def _config_argument(argv: Sequence[str], flag_values: flags.FlagValues) -> str:
    """The --config file named on the command line (the flag's default otherwise, also
    where the flag failed to load it), without a ':argument' for get_config."""
    named = _flag_value(argv, "config")
    if named is not None:
        return named.split(":", 1)[0]
    if "config" not in flag_values:  # its default failed to load as it was defined
        return _DEFAULT_CONFIG[-1] if _DEFAULT_CONFIG else "the default config"
    return str(flag_values["config"].default_as_str).strip("'\"")


def _in_file(path: str, error: BaseException) -> int | None:
    """The line of `path` where `error` was raised (its deepest frame in that file, or a
    SyntaxError's own line), or None if it was not raised by that file."""
    line = line_in_file(path, error)
    if line is None:  # rewrapped by ml_collections: the traceback survives as text
        real = os.path.realpath(path)
        found = re.findall(rf'File "{re.escape(path)}", line (\d+)', str(error)) or \
            re.findall(rf'File "{re.escape(real)}", line (\d+)', str(error))
        line = int(found[-1]) if found else None
    return line


def _locked_field(error: BaseException, path: str, line: int) -> str | None:
    """For a config file that sets a field no section has (`c.train.batch_sise = 3`): the
    field's dotted path, from the file's line; None for any other error."""
    text = str(error.args[0] if error.args else error)
    found = re.search(r'Key "(\w+)" does not exist and cannot be added since the config is '
                      r'locked', text)
    if not found:
        return None
    field = found.group(1)
    source = linecache.getline(path, line)
    section = re.search(rf"\.(\w+)\s*(?:\.|\[['\"]){field}\b", source)
    from jaxae.config import SECTIONS

    return f"{section.group(1)}.{field}" if section and section.group(1) in SECTIONS else field


def _config_file_error(error: BaseException, path: str) -> str | None:
    """'--config=FILE:LINE: <what went wrong>' for an error the config file's own code
    raised (a syntax or import error, a misspelt field, get_config raising); None if the
    error did not come from the file."""
    line = _in_file(path, error)
    if line is None:
        return None
    where = f"--config={path}:{line}"
    field = _locked_field(error, path, line)
    if field is not None:
        hint = _field_hint(field)
        return f"{where}: unknown config field config.{field}" + (f": {hint}" if hint else "")
    if isinstance(error, SyntaxError):
        return f"{where}: SyntaxError: {error.msg}"
    text = str(error).strip()
    if "Error whilst parsing config file:" in text:  # ml_collections: the traceback as text
        text = text.rsplit("\n", 1)[-1].strip()
        return f"{where}: {text}"
    first = first_line(text)
    return f"{where}: {type(error).__name__}: {first}"


def define_config_flag(default: str | None, flag_values: flags.FlagValues = flags.FLAGS,
                       argv: list[str] | None = None) -> None:
    """`--config=FILE` with `--config.FIELD=VALUE` overrides (ml_collections), locked.

    A misspelt override, or a config file that does not load, is one error line (file and
    line for the file's own mistakes). The config file's own folder goes on the import path
    (as a script's does), then the current directory (as with `python -m`), so a config
    imports the module that sits beside it from anywhere; a folder that is a package (it has
    an __init__.py, as jaxae's configs/) is left to imports that name the package.
    """
    if os.getcwd() not in sys.path:
        sys.path.insert(1, os.getcwd())
    if default is not None:
        _DEFAULT_CONFIG.append(default)
    named = _flag_value(sys.argv if argv is None else argv, "config") or default
    folder = os.path.dirname(os.path.abspath(named.split(":", 1)[0])) if named else None
    if folder and folder not in sys.path and \
            not os.path.isfile(os.path.join(folder, "__init__.py")):
        sys.path.insert(1, folder)
    try:
        config_flags.DEFINE_config_file("config", default, "Experiment config file.",
                                        flag_values=flag_values, lock_config=True,
                                        sys_argv=argv)
    except Exception as e:  # noqa: BLE001 (ml_collections loads the file here for overrides)
        _fail(_config_error(e, sys.argv if argv is None else argv, flag_values))
    parser = flag_values["config"].parser
    load = parser.parse

    def load_with_model_fields(path: str) -> Any:
        config = load(path)
        if isinstance(config, ml_collections.ConfigDict) and "model" in config:
            _add_overridden_model_fields(config, sys.argv if argv is None else argv,
                                         path.split(":", 1)[0])
        return config

    parser.parse = load_with_model_fields


def _override_paths(argv: Sequence[str]) -> list[str]:
    """The fields that --config.X=V (or --config.X V) overrides name, e.g. 'model.width'."""
    return [arg.lstrip("-")[len("config."):].split("=", 1)[0] for arg in argv[1:]
            if arg.lstrip("-").startswith("config.")]


def _add_overridden_model_fields(config: ml_collections.ConfigDict, argv: Sequence[str],
                                 path: str) -> None:
    """Adds to the loaded config's model section, at the model's default, each field that a
    --config.model.FIELD override names and the config file left unset, so that every field
    the model declares can be overridden; a field the model does not declare is one line
    naming the fields it does."""
    fields = [p.split(".", 1)[1] for p in _override_paths(argv)
              if p.startswith("model.") and p.count(".") == 1]
    missing = [f for f in fields if f not in config.model]
    if not missing:
        return
    from jaxae.kernels import conv
    from jaxae.models import MODELS
    from jaxae.models.initializers import DEFAULT_SCHEME
    from jaxae.models.registry import settable_fields
    from jaxae.registry import RegistryError, parameters

    name = _flag_value(argv, "config.model.name") or config.model.name
    where, _, attribute = name.rpartition(":")
    if where.endswith(".py") and not os.path.isabs(where):  # found as loaded_config finds it
        name = f"{_code_file(where, os.path.dirname(os.path.abspath(path)), 'model')}:" \
            f"{attribute}"
    try:
        entry = MODELS.get(name)
    except (RegistryError, ImportError, OSError):
        return  # the name's own error comes with the rest of the config's checks
    declared = parameters(entry)
    builder = {"init": DEFAULT_SCHEME,
               **({"conv": conv.DEFAULT_IMPLEMENTATION} if "conv" in declared else {})}
    for field in missing:
        kind = _declared_type(entry, field)
        if field in builder:  # options the builder reads, at the builder's defaults
            default = builder[field]
        elif field not in declared:
            settable = settable_fields(entry)
            close = difflib.get_close_matches(field, settable, n=1)
            _fail(f"--config.model.{field}: model {name!r} has no field {field!r}; "
                  + (f"did you mean {close[0]!r}? " if close else "")
                  + f"its fields are {', '.join(settable) or 'none'}")
        elif (default := declared[field].default) is None and kind is not None:
            default = ml_collections.config_dict.placeholder(kind)  # None, of that type
        elif default is declared[field].empty or default is None or callable(default):
            _fail(f"--config.model.{field}: {path} does not set config.model.{field} and "
                  f"model {name!r} gives it no default to override: set it in the config "
                  "file")
        elif kind is float and isinstance(default, int) and not isinstance(default, bool):
            default = float(default)  # `beta: float = 1` takes 0.5
        with config.unlocked():
            config.model[field] = default


def _declared_type(entry: Any, field: str) -> type | None:
    """The plain type (tuple, int, float, str or bool) that `entry` annotates `field` with,
    `X | None` read as X; None when it annotates none of these."""
    import types
    import typing

    try:
        kind = typing.get_type_hints(entry).get(field)
    except Exception:  # noqa: BLE001 (annotations that do not resolve: no type to offer)
        return None
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        kind = options[0] if len(options) == 1 else None
    kind = typing.get_origin(kind) or kind
    if kind is list:
        return tuple
    return kind if kind in (tuple, int, float, str, bool) else None


def _config_error(error: BaseException, argv: Sequence[str], flag_values: flags.FlagValues
                  ) -> str:
    """One line for an error while loading --config: the file's own mistake (with its line),
    a misspelt --config.X override, or the file not loading at all."""
    path = _config_argument(argv, flag_values)
    for cause in (error, error.__cause__, error.__context__):
        if cause is not None and (message := _config_file_error(cause, path)):
            return message
    if "has no attribute 'get_config'" in str(error):
        return f"--config={path}: it defines no get_config() returning the config"
    if isinstance(error, (AttributeError, KeyError)):
        return _unknown_field(error, argv)
    if isinstance(error, OSError):
        text = str(error).strip().splitlines()
        return f"--config: {text[-1].strip() if text else error}{_config_path_hint(path)}"
    if isinstance(error, flags.Error):
        first = first_line(error)
        if found := re.match(r"flag --config\.([\w.]+)=(.*?): Failed to parse .* as a ConfigDict",
                             first):
            section, value = found.groups()
            try:
                fields = list(flag_values.config.get(section, {}).keys())
            except Exception:  # noqa: BLE001 (no config loaded: no fields to name)
                fields = []
            example = (f"e.g. --config.{section}.name={value}" if "name" in fields else
                       f"config.{section} has {', '.join(fields)}" if fields else
                       f"--config.{section}.FIELD=VALUE")
            return (f"--config.{section}={value} gives a value to a whole section: give one "
                    f"of its fields, {example}")
        if found := re.match(r"Unknown command line flag '(\w+)'", first):
            return first + _field_flag_hint(found.group(1), flag_values)
        if "Overriding config is not allowed" in first:
            return ("evaluate.py takes no --config file: it evaluates with the run's own "
                    "config.json; change what it measures with --config.eval.FIELD=VALUE")
        return first
    return f"--config={path}: {type(error).__name__}: {first_line(error)}"


def shortest_path(path: str) -> str:
    """`path` relative to the current folder where it lies inside it, else absolute: how a
    command to copy names a file."""
    relative = os.path.relpath(path)
    return os.path.abspath(path) if relative.startswith("..") else relative


def _config_path_hint(path: str) -> str:
    """For a --config that names no file: the shipped config of that name ('default' ->
    ': did you mean --config=configs/default.py?'), else ''."""
    import jaxae.configs  # the shipped configs' folder (configs/ of a clone)

    stem = os.path.splitext(os.path.basename(path))[0]
    shipped = os.path.join(jaxae.configs.__path__[0], f"{stem}.py")
    if os.path.isfile(path) or not stem or not os.path.isfile(shipped):
        return ""
    return f": did you mean --config={shortest_path(shipped)}?"


def _field_flag_hint(name: str, flag_values: flags.FlagValues) -> str:
    """For a flag that is no flag but a config field's name (--num_epochs): the override
    that sets it (': did you mean --config.train.num_epochs?'), else ''."""
    from jaxae.config import base_config

    config = flag_values["config"].value if "config" in flag_values else None
    if not isinstance(config, ml_collections.ConfigDict):  # not loaded: the base config's
        config = base_config()
    paths = [key for key in config.keys() if key == name and
             not isinstance(config[key], ml_collections.ConfigDict)]
    paths += [f"{section}.{name}" for section in config.keys()
              if isinstance(config[section], ml_collections.ConfigDict)
              and name in config[section]]
    return f": did you mean {' or '.join(f'--config.{p}' for p in paths)}?" if paths else ""


def loaded_config(flag_values: flags.FlagValues = flags.FLAGS) -> ml_collections.ConfigDict:
    """The --config flag's config, with each model or task name made findable from anywhere,
    so that the workdir's config.json names the same code: a relative `file.py:Name` made
    absolute (beside the config file, else in the current directory; a file in both places is
    an error), and a name registered by the user's own module made `its_file.py:name`. A
    data path's leading `~` is made the home folder (`config.expand_home`)."""
    from jaxae.config import expand_home
    from jaxae.models import MODELS
    from jaxae.registry import locatable_name
    from jaxae.tasks import TASKS

    config = flag_values.config
    expand_home(config)
    config_file = config_flags.get_config_filename(flag_values["config"])
    beside = os.path.dirname(os.path.abspath(config_file)) if config_file else os.getcwd()
    for section, registry in (("model", MODELS), ("task", TASKS)):
        if "name" not in config[section]:
            _fail(f"config.{section} has no name: set config.{section}.name to one of "
                  f"{', '.join(registry.names())}, or to 'path/to/file.py:Class'")
        name = config[section].name
        where, _, attribute = name.rpartition(":")
        if where.endswith(".py") and not os.path.isabs(where):
            name = f"{_code_file(where, beside, section)}:{attribute}"
        name = locatable_name(registry, name)
        if name != config[section].name:
            with config.unlocked():
                config[section].name = name
    return config


def _code_file(where: str, beside: str, section: str) -> str:
    """The absolute path of the relative `where` named by config.SECTION.name: beside the
    config file, else in the current directory; refused when both hold a different file, or
    neither holds one."""
    from jaxae.registry import close_file

    near, here = os.path.join(beside, where), os.path.abspath(where)
    if os.path.isfile(near) and os.path.isfile(here) and \
            os.path.realpath(near) != os.path.realpath(here):
        _fail(f"config.{section}.name: {where!r} is both {near} (beside the config) and "
              f"{here} (in the current directory): name the one you mean by its absolute "
              "path")
    if not os.path.isfile(near) and not os.path.isfile(here):
        _fail(f"config.{section}.name: {where!r} is neither beside the config ({near}) nor in "
              f"the current directory ({here}): give its path from one of them, or an "
              "absolute one" + next((f"; did you mean {close!r}?" for path in (near, here)
                                    if (close := close_file(path))), ""))
    return os.path.abspath(near if os.path.isfile(near) else here)


def _check_config_type(config: object, path: str) -> None:
    """A config file's get_config() must return the ConfigDict of jaxae.config.base_config()
    (changed), not a dict or None."""
    from jaxae.config import SECTIONS

    if isinstance(config, ml_collections.ConfigDict) and all(s in config for s in SECTIONS):
        return
    what = (f"a {type(config).__name__}" if not isinstance(config, ml_collections.ConfigDict)
            else "a ConfigDict without the sections " + ", ".join(
                s for s in SECTIONS if s not in config))
    _fail(f"--config={path}: get_config() returned {what}, not a jaxae config: start from "
          "jaxae.config.base_config() (or a shipped config's get_config()) and change its "
          "fields")


def _is_config_file_flag(flag: flags.Flag) -> bool:
    """Whether --config names a file (train.py), not a dict of fields (evaluate.py)."""
    return isinstance(flag.parser, ConfigFileFlagParser)


def _flag_value(argv: Sequence[str], name: str) -> str | None:
    """The value of --name in argv (--name=V or --name V), or None: a look ahead of absl."""
    for index, arg in enumerate(argv):
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
        if arg == f"--{name}" and index + 1 < len(argv):
            return argv[index + 1]
    return None


def user_path(path: str | None) -> str | None:
    """A path flag with a leading `~` made the user's home folder: the shell leaves the `~`
    of `--workdir=~/runs` as it is."""
    return os.path.expanduser(path) if path else path


def refuse_busy_workdir(argv: Sequence[str] | None = None) -> None:
    """Exits with the one-line error when --workdir names a workdir that another training
    run holds, before train.py imports JAX: the refusal is then immediate. The trainer still
    takes the lock itself (this is only the early answer); a multi-process run (JAX's
    coordinator set) leaves it to the trainer, whose process 0 holds the lock for all."""
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        return
    workdir = user_path(_flag_value(sys.argv if argv is None else argv, "workdir"))
    if workdir and (message := lock.busy(workdir)) is not None:
        print(f"error: {message}", file=sys.stderr, flush=True)
        sys.exit(EXIT_ERROR)


def parse_flags(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
    """absl's flag parsing (app.run's flags_parser), with a wrong flag as one error line.

    ml_collections reports a misspelt --config.FIELD as a bare AttributeError, and runs the
    config file as the flags are parsed: its syntax errors, import errors, misspelt fields
    and exceptions, and a get_config() that returns something else than a config, become
    one `error: --config=FILE:LINE: ...` line.
    """
    parsed, unset = none_overrides(argv)
    files = [arg.partition("=")[2] or (argv[i + 1] if i + 1 < len(argv) else "")
             for i, arg in enumerate(argv[1:], 1)
             if arg.partition("=")[0] in ("--config", "-config")]
    if "config" in flag_values and _is_config_file_flag(flag_values["config"]) and \
            len(files) > 1:
        _fail(f"--config is given {len(files)} times ({', '.join(files)}): give one config "
              "file, and change its fields with --config.SECTION.FIELD=VALUE")
    try:
        rest = flag_values(parsed)
        if "config" in flag_values and _is_config_file_flag(flag_values["config"]):
            config = flag_values.config
            if hasattr(config, "_ReportError"):  # ml_collections' stand-in for a failed load
                config.get("seed")
            _check_config_type(config, _config_argument(argv, flag_values))
        if unset and "config" in flag_values:
            _set_to_none(flag_values.config, unset)
        return rest
    except Exception as e:  # noqa: BLE001 (any error of the config file is one line)
        message = _config_error(e, argv, flag_values) if "config" in flag_values else str(e)
    _fail(message)


def none_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """argv without its `--config.X=None` (or `--config.X None`) overrides, and those X.

    ml_collections parses an override by the type of the field's value, so `None` cannot
    unset a field that the config file set (`--config.data.train_size=None` would be "invalid
    literal for int()"); parse_flags sets these fields itself, after the rest. As with
    absl, the last override of a field wins: a None followed by a value is dropped."""
    kept, unset, skip = [], {}, False
    for index, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == "--":  # what follows is not a flag
            kept.extend(argv[index:])
            break
        name, equals, value = arg.partition("=")
        flag = name.lstrip("-")
        path = flag[len("config."):] if flag != name and flag.startswith("config.") else None
        if index and path:
            unset.pop(path, None)
            if (equals and value == "None") or (
                    not equals and index + 1 < len(argv) and argv[index + 1] == "None"):
                unset[path] = True
                skip = not equals
                continue
        kept.append(arg)
    return kept, list(unset)


def _may_be_unset(config: ml_collections.ConfigDict, path: str) -> bool:
    """Whether the field at `path` may be None: its default is None, in the base config
    (data.train_size, train.stop_after_steps, ...) or, for a field of a model or a task,
    in what the entry declares (`features: tuple | None = None`)."""
    from jaxae.config import base_config
    from jaxae.models import MODELS
    from jaxae.registry import parameters
    from jaxae.tasks import TASKS

    section, _, field = path.partition(".")
    base = base_config()
    if section in base and isinstance(base[section], ml_collections.ConfigDict) and \
            field in base[section]:
        return base[section][field] is None
    registries = {"model": MODELS, "task": TASKS}
    if section not in registries or "." in field:
        return False
    try:
        declared = parameters(registries[section].get(config[section].name)).get(field)
    except Exception:  # noqa: BLE001 (a name that does not resolve: its own error follows)
        return False
    return declared is not None and declared.default is None


def _set_to_none(config: ml_collections.ConfigDict, paths: Sequence[str]) -> None:
    """Sets each field to None, as `--config.X=None` asks; one error line for a field that
    does not exist or does not take None (one whose default is None: its None means "not
    set", e.g. data.train_size, every image)."""
    for path in paths:
        *parents, leaf = path.split(".")
        section = config
        for name in parents:
            section = section.get(name) if isinstance(section, ml_collections.ConfigDict) \
                else None
        if not isinstance(section, ml_collections.ConfigDict) or leaf not in section:
            hint = _field_hint(path)
            _fail(f"unknown config field config.{path}" + (f": {hint}" if hint else ""))
        if not _may_be_unset(config, path):
            _fail(f"--config.{path}=None: config.{path} needs a value (it is "
                  f"{section[leaf]!r}); None unsets only the fields whose default is None, "
                  "such as config.data.train_size")
        with config.unlocked():
            section[leaf] = None


# --- evaluate.py's overrides -------------------------------------------------------------

def define_eval_overrides(flag_values: flags.FlagValues = flags.FLAGS,
                          argv: list[str] | None = None) -> None:
    """`--config.eval.FIELD=VALUE` (and the data's location) for evaluate.py: the fields
    that change what is measured, not the trained model (jaxae.evaluation.evaluate.
    OVERRIDABLE). Any other field is one error line."""
    from jaxae.evaluation.evaluate import OVERRIDABLE, overridable_config, overridable_text

    try:
        config_flags.DEFINE_config_dict("config", overridable_config(), "Evaluation fields to "
                                        "change: --config.eval.FIELD=VALUE.",
                                        flag_values=flag_values, lock_config=True,
                                        sys_argv=argv)
    except (AttributeError, KeyError) as e:
        unknown = _unknown_field(e, argv)
        field = unknown.removeprefix("unknown config field config.").split(":")[0]
        section = field.split(".")[0]
        if section in OVERRIDABLE:  # a misspelt field of a section it takes (eval.iwae_sampl)
            fields = ", ".join(overridable_config()[section].keys())
            _fail(unknown if ":" in unknown else f"{unknown}: config.{section} has {fields}")
        _fail(f"evaluate.py cannot change config.{field}: it takes only "
              f"{overridable_text()} (e.g. --config.eval."
              "iwae_samples='(1, 50)'); the rest is the trained run's (its config.json), "
              "so train another run to change it")


def eval_overrides(argv: Sequence[str], flag_values: flags.FlagValues = flags.FLAGS
                   ) -> dict[str, Any]:
    """{'eval.iwae_samples': (1, 50), ...}: the fields given as --config.X on the command
    line (`--config.X=V` or `--config.X V`), with the values ml_collections parsed."""
    return {**config_flags.get_override_values(flag_values["config"]),
            **dict.fromkeys(none_overrides(argv)[1])}  # ml_collections keeps what it parsed
