"""A workdir's writer lock: advisory `flock`s on <workdir>/train.lock and on the workdir
folder itself (a train.lock deleted while its run lives does not let a second run in), held
by the training run for as long as it lives; and, while a set of files moves into a folder,
MOVING_FILES in the process and `files_moving_into` (a `flock` on the folder) across
processes.

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


def folder_busy_message(workdir: str) -> str:
    """The one line for a workdir whose folder is locked while its lock file is free: a run
    whose train.lock was deleted, or a lock of another program's (`flock DIR command`)."""
    return (f"workdir {workdir!r} is locked by another process: a training run whose "
            "train.lock was deleted (that file never goes stale: leave it be), or a `flock` "
            "on the folder; wait for it to end, or pass another --workdir")


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
    """`busy_message` when a training run holds the workdir's lock now, else None (free, or
    nothing that can be read). Probes the lock file, then the folder (whose lock outlives a
    deleted lock file), each with a shared lock, released at once."""
    probes = ((os.path.join(workdir, LOCK_FILE), os.O_RDONLY),
              (workdir, os.O_RDONLY | os.O_DIRECTORY))
    for path, flags in probes:
        try:
            fd = os.open(path, flags | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in BUSY:
                return (busy_message(workdir, holder_of(fd)) if path != workdir else
                        folder_busy_message(workdir))
        finally:
            os.close(fd)
    return None


def holder_in(workdir: str) -> str:
    """What the workdir's lock file says of its holder, or '' (none, or unreadable)."""
    try:
        fd = os.open(os.path.join(workdir, LOCK_FILE), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        return holder_of(fd)
    finally:
        os.close(fd)


def lock_folder(workdir: str) -> int | None:
    """An exclusive `flock` on the workdir folder, for its writer: the descriptor that holds
    it, or None where the file system cannot lock a folder (NFS: the lock file's alone
    holds). Raises BlockingIOError where another process holds it."""
    try:
        fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in BUSY:
            raise BlockingIOError(e.errno, e.strerror) from None
        return None
    return fd


@contextlib.contextmanager
def files_moving_into(folder: str):
    """Held while a set of files moves into `folder`: an exclusive `flock` on the folder
    itself, so that two processes moving sets there (two evaluate.py runs on one workdir)
    take turns and the folder ends with one whole set, never a mix. Waits for the other.
    Where the file system cannot lock a folder (NFS emulates `flock` with write locks,
    which a folder opened read-only cannot take), the move goes ahead without a turn; so it
    does into a workdir itself (--eval_dir=WORKDIR), whose folder lock is its training run's
    (`lock_folder`), held for hours."""
    if os.path.exists(os.path.join(folder, LOCK_FILE)):
        yield
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # EBADF, ENOLCK, EOPNOTSUPP: no turns to take here
            pass
        yield
    finally:
        os.close(fd)  # releases the lock
