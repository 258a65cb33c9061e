"""Files written whole: one file at a time (`write_whole`, `write_json`), or a set of files
written into a staging folder and moved into place together (`staging_folder`,
`move_files`), so that a process killed meanwhile leaves the previous files, never a file
cut short or two sets mixed."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import resource
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable

from jaxae.training import lock
from jaxae.training.lock import MOVING_FILES, STAGING_FOLDERS


class WriteError(OSError):
    """A file of the run could not be written: the message names it, the operating
    system's reason and the fix."""


def write_error(path: str, error: OSError) -> WriteError:
    reason = error.strerror or type(error).__name__
    fix = write_fix(error.errno, "it and its folder")
    return WriteError(f"could not write {path} ({reason}): {fix}, then rerun the same command")


def write_fix(code: int | None, what: str) -> str:
    """The fix of a failed write by its errno: too many open files, a file larger than the
    limit, a full disk or quota, or (any other) a folder to make writable or a disk to
    free."""
    if code == errno.EMFILE:  # this process's limit (ENFILE, the system's, is no setting)
        return "raise the limit on open files (`ulimit -n`, now " \
            f"{resource.getrlimit(resource.RLIMIT_NOFILE)[0]})"
    if code == errno.EFBIG:
        return "raise the limit on a file's size (`ulimit -f`)"
    if code in (errno.ENOSPC, errno.EDQUOT):
        return "free space on its disk (or raise the quota)"
    return f"make {what} writable or free space on its disk"


def write_whole(path: str, text: str) -> None:
    """Writes a file whole or not at all: a run killed meanwhile, or a write that fails,
    leaves the previous one (WriteError on failure)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise write_error(path, e) from None


STAGING_PREFIX = ".writing-"  # a staging folder's name: this, then "<pid>@<host>."
STAGING_IDLE_S = 60  # a staging folder of this host's, its process gone, idle this long
STAGING_STALE_S = 24 * 3600  # another host's staging folder untouched this long is left over


def staging_folder(folder: str) -> str:
    """A new, empty folder inside `folder` (made if missing) to write a set of files into
    before they move into place together (`move_files`). Those a killed process left are
    removed first: this host's whose process is gone and that sat idle STAGING_IDLE_S
    (another machine of the same name may share the file system), another host's
    untouched for STAGING_STALE_S."""
    os.makedirs(folder, exist_ok=True)
    host = socket.gethostname()
    for entry in os.scandir(folder):
        if not entry.name.startswith(STAGING_PREFIX) or "@" not in entry.name:
            continue
        pid, _, rest = entry.name[len(STAGING_PREFIX):].partition("@")
        with contextlib.suppress(OSError, OverflowError):
            idle = time.time() - entry.stat().st_mtime
            if rest.rpartition(".")[0] == host:
                left = idle > STAGING_IDLE_S and pid.isascii() and pid.isdigit() and \
                    not _alive(int(pid))
            else:
                left = idle > STAGING_STALE_S
            if left:
                shutil.rmtree(entry.path, ignore_errors=True)
    staging = os.path.abspath(
        tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}@{host}.", dir=folder))
    STAGING_FOLDERS.add(staging)
    return staging


def remove_staging_folder(staging: str) -> None:
    """Removes a `staging_folder` once its files have moved (or the work failed)."""
    shutil.rmtree(staging, ignore_errors=True)
    STAGING_FOLDERS.discard(staging)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: alive
        return True
    return True


@contextlib.contextmanager
def _stops_held():
    """Ctrl-C and SIGTERM held back for the duration, then delivered (the first received),
    where this is the main thread. (In evaluate.py both are blocked and its stop thread
    waits on MOVING_FILES; a signal whose handler was set outside Python is left alone.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous: dict[int, object] = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(sig) is not None:
                previous[sig] = signal.signal(sig, lambda signum, _: held.append(signum))
        yield
    finally:
        for sig in reversed(list(previous)):  # SIGINT's put back last: it may raise at once
            signal.signal(sig, previous[sig])
        for signum in held[:1]:
            signal.raise_signal(signum)


def move_files(source: str, target: str, last: str | None = None,
               stale: Iterable[str] | Callable[[], Iterable[str]] = ()) -> None:
    """Moves every file of `source` into `target`, each whole (a rename), `last` after the
    others, then removes (as far as it can) the `stale` files of `target` the set no longer
    has (a callable: asked once the move has its turn, so it sees what another process
    moved in before). Two processes moving into one folder take turns
    (`lock.files_moving_into`; a stop while waiting for the turn is not held back); then,
    while `lock.MOVING_FILES` is held and stop signals are held back, a stop waits for the
    set to be in place."""
    names = sorted(os.listdir(source), key=lambda name: (name == last, name))
    with lock.files_moving_into(target), MOVING_FILES, _stops_held():
        stale_names = set(stale() if callable(stale) else stale)
        for name in names:
            os.replace(os.path.join(source, name), os.path.join(target, name))
        for name in stale_names - set(names):
            if name == os.path.basename(name) and name not in ("", ".", ".."):
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(target, name))


def write_json(path: str, tree: object) -> None:
    """A JSON file written whole or not at all (WriteError on failure); a non-finite float
    is written as null, so that the file is strict JSON (NaN is no JSON token)."""
    write_whole(path, json.dumps(finite_or_null(tree), indent=2, allow_nan=False) + "\n")


def finite_or_null(tree: object) -> object:
    """`tree` (dicts, lists, tuples, numbers) with each non-finite float replaced by None."""
    if isinstance(tree, float):
        return tree if math.isfinite(tree) else None
    if isinstance(tree, dict):
        return {key: finite_or_null(value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [finite_or_null(value) for value in tree]
    return tree
