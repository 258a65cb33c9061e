"""A workdir's writer lock: an advisory `flock` on <workdir>/train.lock, held by the training
run for as long as it lives; and, while a set of files moves into a folder, MOVING_FILES in
the process and `files_moving_into` (a `flock` on the folder) across processes.

Imports nothing heavier than the standard library, so train.py can refuse a workdir in use
before it imports JAX (`cli.refuse_busy_workdir`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import threading

LOCK_FILE = "train.lock"
BUSY = (errno.EWOULDBLOCK, errno.EAGAIN)
# Held while a set of files moves into place (`jaxae.training.files.move_files`): a stop
# that ends the process at once (evaluate.py's, `jaxae.cli.stop_at_once_on_signal`) waits
# for it, so that the set is all old or all new.
MOVING_FILES = threading.Lock()
STAGING_FOLDERS: set[str] = set()  # this process's, in use: such a stop removes them first


def busy_message(workdir: str, holder: str) -> str:
    """The one line for a workdir another run holds; `holder`: its pid and host, if known."""
    return (f"workdir {workdir!r} is in use by another training run"
            + (f" ({holder})" if holder else "") + ": wait for it to end or stop it "
            "(SIGTERM saves a checkpoint), or pass another --workdir")


def holder_of(fd: int) -> str:
    """What the lock file open as `fd` says of its holder ('pid N on HOST'), or ''."""
    return os.pread(fd, 200, 0).decode(errors="replace").strip()


def write_holder(fd: int) -> None:
    """Records this process as the holder, for the message of a run that finds it busy."""
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    except OSError:  # a full disk: the lock holds all the same
        pass


def busy(workdir: str) -> str | None:
    """`busy_message` when a training run holds the workdir's lock now, else None (free, no
    lock file, or one that cannot be read). Probes with a shared lock, released at once."""
    try:
        fd = os.open(os.path.join(workdir, LOCK_FILE), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except OSError as e:
        return busy_message(workdir, holder_of(fd)) if e.errno in BUSY else None
    finally:
        os.close(fd)


@contextlib.contextmanager
def files_moving_into(folder: str):
    """Held while a set of files moves into `folder`: an exclusive `flock` on the folder
    itself, so that two processes moving sets there (two evaluate.py runs on one workdir)
    take turns and the folder ends with one whole set, never a mix. Waits for the other.
    Where the file system cannot lock a folder (NFS emulates `flock` with write locks,
    which a folder opened read-only cannot take), the move goes ahead without a turn."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # EBADF, ENOLCK, EOPNOTSUPP: no turns to take here
            pass
        yield
    finally:
        os.close(fd)  # releases the lock
