"""Orbax checkpoints of any pytree (a train state, or params and an optimiser state of your
own, PRNG keys included) in a folder, with today's `args` API (`ocp.args.StandardSave` /
`StandardRestore`).

    manager = checkpoints.make_manager("runs/x/checkpoints")
    checkpoints.save(manager, step, {"params": params, "opt_state": opt_state})
    tree = checkpoints.restore(manager, like={"params": params, "opt_state": opt_state})
    checkpoints.close(manager)  # waits for the last save; raises CheckpointWriteError if it failed

Resume order for training: the newest intact step in the workdir is restored into the
structure of a freshly initialised state; with no checkpoint, training starts from that
fresh state. Three outcomes are told apart, each one line:

* a checkpoint whose tree (leaf names, shapes, dtypes, empty optimiser states) differs from
  the one asked for is a `CheckpointMismatch` naming the first such leaf, found from the
  metadata before any array is read: a config that does not fit, never "damage";
* a step deleted while it is read (a training run in the same folder keeps only its newest
  ones) is `CheckpointVanished`: the newest-intact search lists the steps again;
* only a step that is still there and cannot be read is damaged (`CheckpointDamaged`),
  and so is one whose arrays are not the bits that were saved: a dict tree is saved with
  the sha256 of its leaves (`CHECKSUM`), checked as it is restored (Orbax keeps none).

A save whose write fails (folder not writable, disk full) is a `CheckpointWriteError` naming
the step, the folder and the operating system's reason: raised by the next `check_saved`,
`save`, `restore` or `close`, never left for an exit that waits on Orbax's threads. A read
waits for this process's save in flight first; a script that ends without `close` still has
its last save finished (before Python shuts down the threads that write it).
"""

from __future__ import annotations

import contextlib
import gc
import glob
import hashlib
import logging
import operator
import os
import re
import shutil
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from flax.training import train_state

from jaxae.messages import causes, first_line
from jaxae.training.files import write_fix
from jaxae.training.steps import model_state_of

PyTree = Any
CHECKPOINTS = "checkpoints"
SAVE_TIMEOUT_S = 600  # a save's background writes that take longer fail (Orbax: 20 minutes)
LISTING_ATTEMPTS = 20  # Orbax lists then stats each step: a step deleted in between fails it
VANISH_SETTLE_S = 1.0  # Orbax deletes a step's files first, then its folder
CHECKSUM = "jaxae_sha256"  # a dict tree's entry for the sha256 of its other leaves


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), CHECKPOINTS)


# The step each manager is still writing in the background (absent: nothing in flight).
_pending: weakref.WeakKeyDictionary[ocp.CheckpointManager, int] = weakref.WeakKeyDictionary()
# The newest step each manager has seen complete on disk.
_confirmed: weakref.WeakKeyDictionary[ocp.CheckpointManager, int] = weakref.WeakKeyDictionary()


def _listing(list_steps: Callable[[], Any], attempts: int = LISTING_ATTEMPTS):
    """list_steps() (anything that makes Orbax list the steps: the manager's constructor,
    `reload`), again while it fails with FileNotFoundError: Orbax lists the folder, then
    stats each step it found, and a training run in the same folder may delete one between
    the two (keep_checkpoints)."""
    for attempt in range(attempts):
        try:
            return list_steps()
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05)


UNSAVEABLE_FIX = "no [...] in a folder's name and no backslash"


def unsaveable_path(directory: str) -> str | None:
    """Why checkpoints saved under `directory` could not be read back, though saved without
    an error; None where they can. Orbax finds a saved step's parts by globbing under its
    folder's path, where a folder name's '[1]' is a pattern (it finds none and merges
    nothing); TensorStore reads a backslash as a folder separator (it writes the arrays
    elsewhere)."""
    path = os.path.abspath(directory)
    if found := re.search(r"\[[^\]/]*\]", path):
        return (f"{found.group(0)!r} in it is a pattern to the glob by which Orbax finds a "
                "checkpoint's parts")
    if "\\" in path:
        return "a backslash in it is a folder separator to TensorStore, which writes the arrays"
    return None


def make_manager(directory: str, keep: int | None = 3, read_only: bool = False,
                 save_timeout_s: int = SAVE_TIMEOUT_S, sole_writer: bool = False
                 ) -> ocp.CheckpointManager:
    """A manager of the checkpoints in `directory` that keeps the newest `keep` (None: all);
    every `save` call writes (no save interval skips one).

    Each step's folder is created in the calling thread, so a folder that cannot be created
    fails the `save` call itself (with Orbax's default, asynchronous creation, the writer
    threads would wait 300 s for a folder that never comes, and the process could not exit
    until then); only the array writes run in the background.

    A writable manager removes the temporary folders of saves that were abandoned (a process
    killed mid-save): those untouched for longer than a save may take (`save_timeout_s`), or
    every one for the `sole_writer` (a training run, which holds its workdir's lock: no other
    process saves there). Orbax's own clean-up would remove every one always, the save
    another process is writing there too. Each removal is a warning line: the checkpoint it
    would have been is lost (a rerun continues from an older one, or starts again). To look
    at a folder a run is writing, pass read_only=True.
    """
    if not read_only:
        if why := unsaveable_path(directory):
            raise CheckpointWriteError(
                f"checkpoints saved in {os.path.abspath(directory)!r} could not be read back "
                f"({why}): use a folder whose path has {UNSAVEABLE_FIX}")
        for folder in remove_abandoned_saves(directory, None if sole_writer else save_timeout_s):
            step = os.path.basename(folder).split(".", 1)[0]
            print(f"warning: removed the unfinished save of step {step} in {directory}: the "
                  "save was cut short (a second stop signal, a kill, an interrupted "
                  "notebook run, or a write that failed), so that checkpoint is lost",
                  file=sys.stderr, flush=True)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None if read_only else keep, create=not read_only, read_only=read_only,
        cleanup_tmp_directories=False, save_interval_steps=0 if read_only else 1,
        enable_async_checkpointing=not read_only,
        async_options=ocp.AsyncOptions(timeout_secs=save_timeout_s,
                                       create_directories_asynchronously=False))
    # one item, handled by StandardCheckpointHandler: a manager that infers its items from
    # the folder would take a step deleted while read for a checkpoint of several items
    with _quiet_read_only_note() if read_only else contextlib.nullcontext():
        manager = _listing(lambda: ocp.CheckpointManager(
            os.path.abspath(directory), options=options,
            item_handlers=ocp.StandardCheckpointHandler()))
    return manager


class _ReadOnlyNote(logging.Filter):
    """Orbax's "Given directory is read only" warning: a manager that only reads (the
    evaluation's, `load_trained`'s) is asked for, not a problem to report. Dropped only
    while such a manager is made: the one exception to leaving Orbax's logs to the
    entry points (`jaxae.cli`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Given directory is read only")


@contextlib.contextmanager
def _quiet_read_only_note() -> Iterator[None]:
    """Drops that one warning while a manager is made, from absl's logger alone."""
    note, logger = _ReadOnlyNote(), logging.getLogger("absl")
    logger.addFilter(note)
    try:
        yield
    finally:
        logger.removeFilter(note)


# --- writes ------------------------------------------------------------------------------

def _newest_change(path: str) -> float:
    """The latest modification time of `path` or anything under it."""
    newest = os.stat(path).st_mtime
    for folder, _, files in os.walk(path):
        for name in [folder, *(os.path.join(folder, f) for f in files)]:
            try:
                newest = max(newest, os.stat(name).st_mtime)
            except FileNotFoundError:  # renamed or removed by its writer meanwhile
                pass
    return newest


def remove_abandoned_saves(directory: str, older_than_s: float | None) -> list[str]:
    """Removes the temporary folders of saves in `directory` (Orbax's `*.orbax-checkpoint-tmp*`)
    that nothing has written to for `older_than_s` (None: every one, for the only process
    that saves there): saves a killed process left behind. A save still being written (by
    this process or another) is younger than that, and stays. Returns the folders removed."""
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:  # no folder yet, or one this process cannot list: the manager says so
        return removed
    for entry in entries:
        try:
            if ".orbax-checkpoint-tmp" not in entry.name or not entry.is_dir():
                continue
            abandoned = older_than_s is None or \
                time.time() - _newest_change(entry.path) > older_than_s
        except OSError:  # its save finished (renamed) while we looked, or unreadable
            continue
        if abandoned:
            shutil.rmtree(entry.path, ignore_errors=True)
            if not os.path.exists(entry.path):
                removed.append(entry.path)
    return removed


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (folder not writable, disk full, ...); the message
    names the step, the folder, the operating system's reason and the newest intact step."""


def _os_reason(error: BaseException | None) -> tuple[str, int] | None:
    """The operating system's reason for a failed write and its errno, from the error or
    the ones it came from: an OSError's, or TensorStore's '...: File too large
    [os_error_code=27]'."""
    for cause in causes(error):
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror, cause.errno
        found = re.search(r":\s*([^:\[\]]+?)\s*\[os_error_code='?(\d+)", str(cause))
        if found:
            return f"{found.group(1).strip()}, errno {found.group(2)}", int(found.group(2))
    return None


def _reason(error: BaseException, limit: int = 200) -> str:
    """An exception's first line (TensorStore's long spec cut off), or its type's name."""
    text = first_line(error).split(" See full TensorStore details")[0]
    return text[:limit] or type(error).__name__


def _write_error(manager: ocp.CheckpointManager, step: int, error: BaseException
                 ) -> CheckpointWriteError:
    """What failed as the checkpoint at `step` was saved: its own write, or (the step on
    disk, complete: then confirmed, so the run's files describe it) the removal of older
    steps that keeps train.keep_checkpoints."""
    reason, code = _os_reason(error) or (_reason(error, 160), None)
    if "Barrier timed out" in reason:  # multi-process: the write failed in another process
        reason = "another process did not finish its part in time: see its error"
    try:
        listed = _listing(lambda: (manager.reload(), manager.all_steps())[1])
    except Exception:  # noqa: BLE001 (the folder itself may be gone)
        listed = []
    if step in listed:
        _confirmed[manager] = step
        return CheckpointWriteError(
            f"the checkpoint at step {step} is written to {manager.directory}, but older ones "
            f"could not be removed ({reason}) to keep train.keep_checkpoints: make that "
            f"folder writable, then rerun the same command (it resumes from step {step})")
    intact = [s for s in listed if s != step]
    kept = (f"the newest checkpoint on disk is step {max(intact)}" if intact
            else "no checkpoint is on disk yet")
    for folder in glob.glob(os.path.join(glob.escape(str(manager.directory)),
                                         f"{step}.orbax-checkpoint-tmp*")):
        shutil.rmtree(folder, ignore_errors=True)  # its part written: space a full disk needs
    return CheckpointWriteError(
        f"could not write the checkpoint at step {step} to {manager.directory} ({reason}): "
        f"{kept}; {write_fix(code, 'that folder')}, then rerun the same command")


def check_saved(manager: ocp.CheckpointManager, block: bool = True) -> None:
    """Raises CheckpointWriteError if the save in flight failed.

    block=False returns at once while the save is still being written: the training loop
    calls it at every chunk end, so a failed save stops training within a chunk. (Orbax's
    own `check_for_errors` must not be polled instead: it takes the error away from its
    finalize thread, which would then count the failed step as saved and delete an older,
    intact checkpoint to keep `keep`.)
    """
    step = _pending.get(manager)
    if step is None or (not block and manager.is_saving_in_progress()):
        return
    del _pending[manager]
    try:
        manager.wait_until_finished()
    except Exception as e:  # noqa: BLE001 (any failure of the write)
        raise _write_error(manager, step, e) from e
    _confirmed[manager] = step


def confirmed_step(manager: ocp.CheckpointManager) -> int | None:
    """The newest step this process saved with `manager` and saw complete on disk."""
    return _confirmed.get(manager)


def close(manager: ocp.CheckpointManager) -> None:
    """Waits for the save in flight (CheckpointWriteError if it failed), then releases
    Orbax's threads; they are released also when the save failed."""
    try:
        check_saved(manager)
    finally:
        try:
            manager.close()
        except Exception:  # noqa: BLE001 (its error was raised by check_saved already)
            pass


def finish_pending_saves() -> list[CheckpointWriteError]:
    """Waits for every asynchronous save still in flight in this process and returns the
    errors of those that failed.

    An exit on an error must not abandon a save half-written: its checkpoint would be lost
    and Orbax's writer threads would fail noisily at interpreter shutdown.
    """
    failed = []
    for manager in list(_pending.keys()):
        try:
            check_saved(manager)
        except CheckpointWriteError as e:
            failed.append(e)
    return failed


def _first_non_finite_leaf(host: dict[str, np.ndarray]) -> str | None:
    """The name of the first floating-point leaf holding a NaN or an infinity, or None, of a
    tree's `host_leaves` (checked on the host, where the checkpoint goes anyway)."""
    for name, array in host.items():
        if np.issubdtype(array.dtype, np.inexact) and not np.isfinite(array).all():
            return name
    return None


class NonFinite(FloatingPointError):
    """A tree to be saved holds a NaN or an infinity (in `leaf`, at `step`)."""

    def __init__(self, message: str, leaf: str, step: int):
        super().__init__(message)
        self.leaf, self.step = leaf, step


class CheckpointExists(FileExistsError):
    """A save under a step that the folder holds already, without `replace`."""


def save(manager: ocp.CheckpointManager, step: int, tree: PyTree, *,
         replace: bool = False) -> None:
    """Saves `tree` under `step` (asynchronously: `check_saved` or `close` waits).

    Refuses non-finite values, so a numerical fault never overwrites a good checkpoint. A
    step the folder holds already is a CheckpointExists naming it, unless `replace`: then
    that checkpoint is written over (the trainer's case: a step left on disk that resuming
    passed over as damaged). The previous save's failure is raised here as that step's
    CheckpointWriteError. A TrainState is `save_state`'s (a WrongTarget says so).
    """
    if isinstance(tree, train_state.TrainState):  # its checkpoint is state_tree's layout
        raise WrongTarget("save takes a tree of arrays: a TrainState saves with "
                          "save_state(manager, state), and restore_state reads it back")
    try:
        number = operator.index(step)  # an int, or a 0-d integer array such as state.step
    except TypeError:
        number = -1
    if number < 0:
        raise ValueError(f"checkpoint step {step!r}: give an integer 0 or more (Orbax lists "
                         "only those, and keeps the newest by their order)")
    step = number
    check_saved(manager)  # the previous checkpoint is complete on disk, or its error raised
    tree = keys_as_data(tree)
    host = host_leaves(tree)
    bad = _first_non_finite_leaf(host)
    if bad is not None:
        latest = manager.latest_step()
        kept = "" if latest is None else f"; the newest on disk, step {latest}, is intact"
        raise NonFinite(
            f"{bad} is not finite at step {step}: no checkpoint was written for it{kept}",
            bad, step)
    exists = step in manager.all_steps() or _step_dir(manager, step).exists()
    if exists and not replace:
        raise CheckpointExists(
            f"step {step} is saved already in {manager.directory}: save under another step, "
            "or pass replace=True to write over it")
    if isinstance(tree, Mapping) and CHECKSUM not in tree:
        tree = {**tree, CHECKSUM: checksum(tree, host)}
    try:
        if exists:
            manager.delete(step)
        manager.save(step, args=ocp.args.StandardSave(tree), force=True)
    except Exception as e:  # noqa: BLE001 (creating the step folder, or the blocking copy)
        raise _write_error(manager, step, e) from e
    _pending[manager] = step
    _finish_at_exit()


_exit_hook: list[bool] = []  # registered once


def _finish_at_exit() -> None:
    """Makes the end of the interpreter finish the saves still in flight (a script that
    never calls `close`), each failure one line on stderr. The hook runs where Python joins
    threads at exit, before it shuts down the thread pools Orbax writes with (an `atexit`
    function would run after, and the save would be lost)."""
    if _exit_hook:
        return
    _exit_hook.append(True)

    def finish() -> None:
        for failed in finish_pending_saves():
            print(f"warning: {failed}", file=sys.stderr, flush=True)

    register = getattr(threading, "_register_atexit", None)  # CPython 3.9+
    if register is not None:
        register(finish)


# --- fit ---------------------------------------------------------------------------------

class CheckpointMismatch(ValueError):
    """A checkpoint holds another tree than the caller's: a leaf absent on one side, or of
    another shape or dtype. The message names the first such leaf; `fact` is that naming
    alone, without the hint after it, for a caller that knows a better one."""

    def __init__(self, message: str, fact: str | None = None):
        super().__init__(message)
        self.fact = fact or message


def _key_name(key) -> str:
    """One path entry's name: a dict key, a sequence index or a named-tuple field."""
    for attribute in ("key", "idx", "name"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def leaves_by_name(tree: PyTree) -> dict[str, Any]:
    """{'params/encoder/code/kernel': leaf, ...}: a tree's leaves by their path names (Orbax
    writes a named tuple's fields as dict keys, so both spell 'opt_state/0/mu/...')."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(_key_name(k) for k in path): leaf for path, leaf in flat}


EMPTY = "empty"  # an empty node: optax's EmptyState (None in a checkpoint's metadata)


def _is_empty(node) -> bool:
    return node is None or (isinstance(node, (tuple, list, dict)) and len(node) == 0)


def outline(tree: PyTree) -> dict[str, tuple | str]:
    """{'opt_state/0/mu/encoder/kernel': ((784, 10), 'float32'), 'opt_state/1': 'empty', ...}:
    every array's shape and dtype, and every empty node (an optimiser's stateless parts:
    adam and adamw differ only there), by path name."""
    def spec(leaf) -> tuple | str:
        if _is_empty(leaf):
            return EMPTY
        dtype = leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
        return tuple(np.shape(leaf)), str(np.dtype(dtype))

    flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_empty)[0]
    return {"/".join(_key_name(k) for k in path): spec(leaf) for path, leaf in flat}


def _is_typed_key(leaf: Any) -> bool:
    dtype = getattr(leaf, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def keys_as_data(tree: PyTree) -> PyTree:
    """`tree` with its typed PRNG keys (`jax.random.key`) as their uint32 key data, which a
    checkpoint holds (abstract leaves, as `jax.eval_shape` gives, stay abstract), and its
    NumPy scalars (np.int32(3)) as 0-d arrays, which Orbax restores (it saves a scalar
    and then refuses its type)."""
    def data(leaf):
        if isinstance(leaf, np.generic):
            return np.asarray(leaf)
        if not _is_typed_key(leaf):
            return leaf
        return jax.random.key_data(leaf) if isinstance(leaf, jax.Array) else \
            jax.eval_shape(jax.random.key_data, leaf)
    return jax.tree.map(data, tree)


def _key_impl(leaf: Any):
    """The PRNG implementation of a typed key, concrete or abstract."""
    if isinstance(leaf, jax.Array):
        return jax.random.key_impl(leaf)
    found = []
    jax.eval_shape(lambda key: found.append(jax.random.key_impl(key)), leaf)
    return found[0]


def _data_as_keys(tree: PyTree, like: PyTree) -> PyTree:
    """Undoes `keys_as_data`: the leaves that are typed keys in `like` wrapped back, in the
    implementation and placement `like` gives (a checkpoint holds the key data alone, so
    `like` decides between implementations of one data shape, such as rbg and unsafe_rbg)."""
    if not any(_is_typed_key(leaf) for leaf in jax.tree.leaves(like)):
        return tree

    def wrap(data, model):
        if not _is_typed_key(model):
            return data
        key = jax.random.wrap_key_data(data, impl=_key_impl(model))
        sharding = getattr(model, "sharding", None)
        return key if sharding is None else jax.device_put(key, sharding)
    return jax.tree.map(wrap, tree, type(tree)(like) if isinstance(like, Mapping) else like)


def host_leaves(tree: PyTree) -> dict[str, np.ndarray]:
    """`leaves_by_name` with every leaf copied to the host (once, for all checks); typed
    PRNG keys as their key data."""
    return {name: np.asarray(leaf) for name, leaf in leaves_by_name(keys_as_data(tree)).items()}


def checksum(tree: PyTree, host: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """The sha256 (32 uint8) of every leaf's name, dtype, shape and bytes, in path order
    (`host`: the tree's `host_leaves`, if already made)."""
    digest = hashlib.sha256()
    for name, array in (host_leaves(tree) if host is None else host).items():
        array = np.ascontiguousarray(array)
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    return np.frombuffer(digest.digest(), np.uint8).copy()


def _step_dir(manager: ocp.CheckpointManager, step: int) -> epath.Path:
    return epath.Path(manager.directory) / str(step)


def saved_outline(manager: ocp.CheckpointManager, step: int) -> dict[str, tuple | str]:
    """`outline` of the tree saved at `step`, from its metadata file (no array is read)."""
    metadata = ocp.StandardCheckpointHandler().metadata(_step_dir(manager, step) / "default")
    return outline(getattr(metadata, "tree", metadata))  # a tuple saved is a list there


def _describe(spec, other) -> str:
    """A leaf's spec for a message: its shape when only shapes differ, else dtype[shape]."""
    if spec is None:
        return "absent"
    if spec == EMPTY:
        return "an empty state"
    if other not in (None, EMPTY) and other[1] == spec[1]:
        return str(spec[0])
    return f"{spec[1]}[{', '.join(map(str, spec[0]))}]"


def _node(specs: dict[str, tuple | str], name: str) -> str:
    """What a tree holds at `name`, which is no leaf of it: a node of named parts (an Adam
    state's count, mu and nu where the other side has an empty state), or nothing."""
    parts = sorted({n[len(name) + 1:].split("/")[0] for n in specs if n.startswith(name + "/")})
    if not parts:
        return "absent"
    shown = ", ".join(parts[:4]) + (f" and {len(parts) - 4} more" if len(parts) > 4 else "")
    return f"a node holding {shown}"


Hint = str | Mapping[str, str]  # one hint, or hints by the first part of a leaf's name


def check_fits(manager: ocp.CheckpointManager, step: int, like: PyTree, hint: Hint = "",
               saved: dict[str, tuple | str] | None = None) -> None:
    """Raises CheckpointMismatch naming the first leaf whose shape, dtype or presence
    differs, from the checkpoint's metadata (`saved`: its `saved_outline`, if already read):
    nothing is read if the tree does not fit."""
    saved = saved_outline(manager, step) if saved is None else saved
    wanted = outline(keys_as_data(like))
    # parameters first: a model that changed is named by its parameter, not its Adam moments
    for name in sorted(saved.keys() | wanted.keys(), key=lambda n: (
            not n.startswith("params/"), n)):
        have, want = saved.get(name), wanted.get(name)
        if have != want:
            why = hint if isinstance(hint, str) else hint.get(name.split("/")[0], "")
            there = _node(saved, name) if have is None else _describe(have, want)
            here = _node(wanted, name) if want is None else _describe(want, have)
            fact = (f"the checkpoint at step {step} in {manager.directory} does not fit: {name} "
                    f"is {there} there, {here} here")
            raise CheckpointMismatch(fact + (f" ({why})" if why else ""), fact)


def _existing_step(manager: ocp.CheckpointManager, step: int | None) -> int:
    """`step`, or the newest when None, once this process's save in flight is on disk; a
    FileNotFoundError naming the steps the folder has when it holds no checkpoint, or none
    at that step."""
    check_saved(manager)
    step = manager.latest_step() if step is None else step
    if step is None or not _step_dir(manager, step).exists():
        steps = sorted(manager.all_steps())
        has = f"it has steps {', '.join(map(str, steps))}" if steps else "it holds none"
        raise FileNotFoundError(f"no checkpoint {'' if step is None else f'at step {step} '}"
                                f"in {manager.directory}: {has}")
    return step


class WrongTarget(TypeError):
    """A restore given a target of the wrong kind: the caller's error, not the checkpoint's
    (a damaged checkpoint is not what it says)."""


class ChecksumMismatch(ValueError):
    """A restored tree whose sha256 is not the one saved with it: the files were changed."""


def _restore_target(leaf: Any) -> Any:
    """A device leaf's shape, dtype and placement to restore it to: its own sharding where it
    has one, else this process's first device. Without one, Orbax places an array as it was
    saved, and a checkpoint of a run over several devices would not restore on one
    (`evaluate.py` restores into `jax.eval_shape`'s unplaced shapes)."""
    struct = ocp.utils.to_shape_dtype_struct(leaf)
    if isinstance(leaf, np.ndarray):  # host arrays (a checksum, a data position) stay so
        return struct
    if isinstance(struct, jax.ShapeDtypeStruct) and struct.sharding is None:
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        struct = jax.ShapeDtypeStruct(struct.shape, struct.dtype, sharding=device)
    return struct


def restore(manager: ocp.CheckpointManager, like: PyTree, step: int | None = None,
            hint: Hint = "", saved: dict[str, tuple | str] | None = None) -> PyTree:
    """The tree saved at `step` (default: the newest), placed as `like`, whose structure,
    shapes and dtypes must be the saved tree's (a CheckpointMismatch names the first that
    differs; `saved`: the step's `saved_outline`, if already read). A folder without checkpoints, or
    without that step, is a FileNotFoundError naming the steps it has; a dict tree saved with
    its sha256 whose arrays do not match it, a ChecksumMismatch."""
    if isinstance(like, train_state.TrainState):
        raise WrongTarget("restore takes a tree like the one saved: a TrainState saved with "
                        "save_state restores with restore_state(manager, state)")
    step = _existing_step(manager, step)
    saved = saved_outline(manager, step) if saved is None else saved
    keys_like, like = like, keys_as_data(like)
    summed = CHECKSUM in saved and isinstance(like, Mapping) and CHECKSUM not in like
    if summed:
        like = {**like, CHECKSUM: np.zeros(32, np.uint8)}
    check_fits(manager, step, like, hint, saved)
    abstract = jax.tree.map(_restore_target, like)
    tree = manager.restore(step, args=ocp.args.StandardRestore(abstract))
    if summed:  # (not: saved before checksums, or not a dict)
        tree = dict(tree)
        recorded = np.asarray(tree.pop(CHECKSUM))
        if not np.array_equal(recorded, checksum(tree)):
            raise ChecksumMismatch(f"its arrays are not the bits that were saved at step "
                                   f"{step}: their sha256 differs from the one saved with them")
    return _data_as_keys(tree, keys_like)


DATA = "data"  # a train state's checkpoint entry for the data stream's position
MODEL_STATE = "model_state"  # its entry for the model's state, where it keeps one


def state_tree(state: train_state.TrainState, data: PyTree | None = None) -> dict:
    """What a checkpoint of a TrainState holds: everything that is data, not code (the
    model's state too, where it keeps one), and the position of the stream of training
    batches when one is given (`data`, e.g. `jaxae.data.streaming.BatchIterator.state()`)."""
    tree = {"step": state.step, "params": state.params, "opt_state": state.opt_state}
    if model_state := model_state_of(state):  # a model that keeps state (BatchNorm's)
        tree[MODEL_STATE] = model_state
    if data is not None:
        tree[DATA] = data
    return tree


def save_state(manager: ocp.CheckpointManager, state: train_state.TrainState,
               data: PyTree | None = None, *, replace: bool = False) -> None:
    """`save` of the state's `state_tree` under its step."""
    save(manager, int(state.step), state_tree(state, data), replace=replace)


STATE_HINT = {
    "params": "build the model as the saved one was: a run's config.json gives its model "
              "section and task.factor",
    "opt_state": "make the optimiser as the saved one was: a run's config.json gives its "
                 "optim.name and optim.schedule",
    MODEL_STATE: "build the model as the saved one was: its state_collections and layers",
    "step": "it was not written by this jaxae",
    DATA: "it was not written by this jaxae"}


def _saved_data_like(saved: dict[str, tuple | str]) -> dict | None:
    """The data position's structure in a checkpoint's `saved_outline` (host arrays), or None
    if the checkpoint holds none."""
    prefix = f"{DATA}/"
    specs = {name[len(prefix):]: spec for name, spec in saved.items()
             if name.startswith(prefix) and spec != EMPTY}
    if not specs:
        return None
    return {name: np.zeros(shape, dtype) for name, (shape, dtype) in specs.items()}


# What the restores give with_data=True: the state, and the data position saved beside it
# (None for a checkpoint saved without one).
Restored = tuple[train_state.TrainState, dict[str, np.ndarray] | None]


def restore_state(manager: ocp.CheckpointManager, like: train_state.TrainState,
                  step: int | None = None, with_data: bool = False
                  ) -> train_state.TrainState | Restored:
    """The TrainState saved at `step` (default: the newest), in the structure of `like`;
    with_data: (state, the saved data position or None)."""
    step = _existing_step(manager, step)
    saved = saved_outline(manager, step)
    if not hasattr(like, MODEL_STATE) and any(n.startswith(f"{MODEL_STATE}/") for n in saved):
        raise WrongTarget(f"the checkpoint at step {step} in {manager.directory} holds a model's "
                        "state (model_state), which Flax's TrainState has no place for: "
                        "restore into a jaxae.training.steps.TrainState (create_train_state "
                        "makes one)")
    tree = restore(manager, state_tree(like, _saved_data_like(saved)), step, STATE_HINT,
                   saved)
    state = like.replace(step=tree["step"], params=tree["params"], opt_state=tree["opt_state"],
                         **({MODEL_STATE: tree[MODEL_STATE]} if MODEL_STATE in tree else {}))
    if not with_data:
        return state
    data = tree.get(DATA)
    return state, (None if data is None else {k: np.asarray(v) for k, v in data.items()})


# --- damage ------------------------------------------------------------------------------

class NoIntactCheckpoint(FileNotFoundError):
    """Every checkpoint in the folder failed to restore."""


class CheckpointVanished(FileNotFoundError):
    """The checkpoint was deleted while it was being read (a training run keeps only its
    newest ones)."""


class CheckpointDamaged(FileNotFoundError):
    """A checkpoint that is there but cannot be read; `reason` is the reader's first line."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason


def _vanished(manager: ocp.CheckpointManager, step: int, settle_s: float = VANISH_SETTLE_S
              ) -> bool:
    """Whether the step's folder is gone, or goes within `settle_s` (Orbax deletes a step's
    files first, then its folder: a read can fail while the folder is still there)."""
    deadline = time.monotonic() + settle_s
    while _step_dir(manager, step).exists():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def restore_step(manager: ocp.CheckpointManager, like: train_state.TrainState, step: int,
                 settle_s: float = VANISH_SETTLE_S, with_data: bool = False
                 ) -> train_state.TrainState | Restored:
    """restore_state at one step: CheckpointMismatch if it does not fit, WrongTarget if
    `like` is not a state it can restore into, CheckpointVanished
    if it is deleted while read, CheckpointDamaged if it is there and cannot be read.
    settle_s: how long a folder being deleted may take to go (0 where nothing else can
    delete checkpoints in the folder, e.g. no training run holds its workdir).
    with_data: as for `restore_state`."""
    try:
        return restore_state(manager, like, step, with_data)
    except (CheckpointMismatch, WrongTarget):
        raise
    except Exception as e:  # noqa: BLE001 (any failure to read)
        if _vanished(manager, step, settle_s):
            raise CheckpointVanished(
                f"the checkpoint at step {step} in {manager.directory} was deleted while it "
                "was read (a training run there keeps only its newest ones): evaluate a newer "
                "step, or the newest without --step") from None
        gc.collect()  # the dropped read coroutines, collected now rather than mid-training
        reason = _reason(e)
        raise CheckpointDamaged(
            f"the checkpoint at step {step} in {manager.directory} is damaged ({reason}): "
            "evaluate another step, or the newest intact one without --step", reason) from None


def restore_newest_intact(manager: ocp.CheckpointManager, like: train_state.TrainState,
                          attempts: int = 5, settle_s: float = VANISH_SETTLE_S,
                          with_data: bool = False, listed: bool = False
                          ) -> train_state.TrainState | Restored | None:
    """The newest checkpoint that restores; damaged ones are passed over with a one-line
    warning. None when there is no checkpoint at all.

    The steps are listed when the search starts, not when the manager was made; a step
    deleted while it is read (a training run in the same folder) is not damage: the steps
    are listed again, up to `attempts` times. A checkpoint that does not fit raises
    CheckpointMismatch: a wrong config, not damage, and older checkpoints would not fit
    either. settle_s, with_data: as for `restore_step`. listed: the steps the manager
    listed when it was made are still current (nothing else writes in its folder, e.g. a
    training run holding its workdir's lock), so the first search takes them as they are.
    """
    check_saved(manager)  # this process's save in flight is among the steps
    damaged: dict[int, str] = {}
    for attempt in range(attempts):
        if attempt or not listed:
            _listing(manager.reload)
        candidates = sorted((s for s in manager.all_steps() if s not in damaged), reverse=True)
        for step in candidates:
            try:
                return restore_step(manager, like, step, settle_s, with_data)
            except CheckpointVanished:
                break  # list again: newer checkpoints were written meanwhile
            except CheckpointDamaged as e:
                damaged[step] = e.reason
            print(f"warning: the checkpoint at step {step} is damaged ({damaged[step]}); "
                  "trying an older one", file=sys.stderr, flush=True)
        else:
            break  # every listed step was tried
    if damaged:
        raise NoIntactCheckpoint(
            f"no checkpoint in {manager.directory} restores (steps "
            f"{sorted(damaged, reverse=True)} are damaged): move that folder away (keep it if "
            "you want to inspect it) to train from scratch")
    if manager.all_steps():
        raise NoIntactCheckpoint(
            f"the checkpoints in {manager.directory} were deleted while they were read "
            f"({attempts} times): the training run there saves faster than they can be read; "
            "evaluate after it ends, or give it a larger train.keep_checkpoints")
    return None
