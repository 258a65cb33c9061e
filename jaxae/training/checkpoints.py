"""Orbax checkpoints of any pytree (a train state, or params and an optimiser state of your
own) in a folder, with today's `args` API (`ocp.args.StandardSave` / `StandardRestore`).

    manager = checkpoints.make_manager("runs/x/checkpoints")
    checkpoints.save(manager, step, {"params": params, "opt_state": opt_state})
    tree = checkpoints.restore(manager, like={"params": params, "opt_state": opt_state})

Resume order for training: the newest intact step in the workdir is restored into the
structure of a freshly initialised state; with no checkpoint, training starts from that
fresh state. A checkpoint whose leaves do not have the shapes asked for is a
CheckpointMismatch naming the first such leaf, never "damage".
"""

from __future__ import annotations

import gc
import os
import sys
import weakref
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from flax.training import train_state

PyTree = Any
CHECKPOINTS = "checkpoints"


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), CHECKPOINTS)


# The steps each open manager has saved in this process: a second save of a step is the same
# state again, and the keys are the managers whose pending saves an error exit waits for.
_saved_steps: weakref.WeakKeyDictionary[ocp.CheckpointManager, set[int]] = (
    weakref.WeakKeyDictionary())


def make_manager(directory: str, keep: int | None = 3, read_only: bool = False
                 ) -> ocp.CheckpointManager:
    """A manager of the checkpoints in `directory` that keeps the newest `keep` (None: all);
    every `save` call is honoured."""
    options = ocp.CheckpointManagerOptions(max_to_keep=None if read_only else keep,
                                           create=not read_only, read_only=read_only,
                                           cleanup_tmp_directories=not read_only,
                                           save_interval_steps=0 if read_only else 1)
    manager = ocp.CheckpointManager(os.path.abspath(directory), options=options)
    _saved_steps[manager] = set()
    return manager


def finish_pending_saves() -> None:
    """Waits for every asynchronous save still in flight in this process.

    An exit on an error must not abandon a save half-written: its checkpoint would be lost
    and Orbax's writer threads would fail noisily at interpreter shutdown.
    """
    for manager in list(_saved_steps.keys()):
        try:
            manager.wait_until_finished()
        except Exception:  # noqa: BLE001 (Orbax has logged it; the exit's own error comes next)
            pass


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


def _first_non_finite(tree: PyTree) -> str | None:
    """The name of the first floating-point leaf holding a NaN or an infinity, or None.
    Checked on the host, where the checkpoint goes anyway."""
    for name, leaf in leaves_by_name(tree).items():
        array = np.asarray(leaf)
        if np.issubdtype(array.dtype, np.inexact) and not np.isfinite(array).all():
            return name
    return None


def save(manager: ocp.CheckpointManager, step: int, tree: PyTree) -> None:
    """Saves `tree` under `step` (asynchronously: `manager.wait_until_finished()` waits).

    Refuses non-finite values, so a numerical fault never overwrites a good checkpoint.
    A step saved already by this process is skipped (it holds this very tree); a step left
    on disk by an earlier process is one that resuming passed over as damaged: replaced.
    """
    bad = _first_non_finite(tree)
    if bad is not None:
        manager.wait_until_finished()  # the previous, finite checkpoint is complete on disk
        latest = manager.latest_step()
        kept = "" if latest is None else f"; the newest on disk, step {latest}, is intact"
        raise FloatingPointError(
            f"{bad} is not finite at step {step}: no checkpoint was written for it{kept}")
    saved = _saved_steps.setdefault(manager, set())
    if step in saved:
        return
    if step in manager.all_steps():
        manager.wait_until_finished()
        manager.delete(step)
    manager.save(step, args=ocp.args.StandardSave(tree), force=True)
    saved.add(step)


class CheckpointMismatch(ValueError):
    """A checkpoint's leaves do not have the shapes the caller's tree has."""


def saved_shapes(manager: ocp.CheckpointManager, step: int) -> dict[str, tuple]:
    """{'params/encoder/code/kernel': shape, ...} as written in the checkpoint's metadata."""
    path = epath.Path(manager.directory) / str(step) / "default"
    metadata = ocp.StandardCheckpointHandler().metadata(path)
    tree = getattr(metadata, "tree", metadata)
    return {name: tuple(leaf.shape) for name, leaf in leaves_by_name(dict(tree)).items()}


def check_fits(manager: ocp.CheckpointManager, step: int, like: PyTree, hint: str = "") -> None:
    """Raises CheckpointMismatch naming the first leaf whose shape (or presence) differs."""
    saved = saved_shapes(manager, step)
    wanted = {name: tuple(np.shape(leaf)) for name, leaf in leaves_by_name(like).items()}
    # parameters first: a model that changed is named by its parameter, not its Adam moments
    for name in sorted(saved.keys() | wanted.keys(), key=lambda n: (
            not n.startswith("params/"), n)):
        if saved.get(name) != wanted.get(name):
            raise CheckpointMismatch(
                f"the checkpoint at step {step} in {manager.directory} does not fit: {name} is "
                f"{saved.get(name, 'absent')} there, {wanted.get(name, 'absent')} here"
                + (f" ({hint})" if hint else ""))


def restore(manager: ocp.CheckpointManager, like: PyTree, step: int | None = None,
            hint: str = "") -> PyTree:
    """The tree saved at `step` (default: the newest), in the structure and dtypes of `like`."""
    step = manager.latest_step() if step is None else step
    check_fits(manager, step, like, hint)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    return manager.restore(step, args=ocp.args.StandardRestore(abstract))


def state_tree(state: train_state.TrainState) -> dict:
    """What a checkpoint of a TrainState holds: everything that is data, not code."""
    return {"step": state.step, "params": state.params, "opt_state": state.opt_state}


def save_state(manager: ocp.CheckpointManager, state: train_state.TrainState) -> None:
    save(manager, int(state.step), state_tree(state))


STATE_HINT = ("check the model section, the optimiser and task.factor against the run that "
              "wrote it")


def restore_state(manager: ocp.CheckpointManager, like: train_state.TrainState,
                  step: int | None = None) -> train_state.TrainState:
    """The TrainState saved at `step` (default: the newest), in the structure of `like`."""
    tree = restore(manager, state_tree(like), step, STATE_HINT)
    return like.replace(step=tree["step"], params=tree["params"], opt_state=tree["opt_state"])


class NoIntactCheckpoint(FileNotFoundError):
    """Every checkpoint in the workdir failed to restore."""


def restore_newest_intact(manager: ocp.CheckpointManager, like: train_state.TrainState
                          ) -> train_state.TrainState | None:
    """The newest checkpoint that restores; damaged ones are passed over with a one-line
    warning. None when there is no checkpoint at all.

    A checkpoint that restores but does not fit raises CheckpointMismatch: that is a wrong
    config, not damage, and older checkpoints would not fit either.
    """
    saved = sorted(manager.all_steps(), reverse=True)
    for step in saved:
        try:
            return restore_state(manager, like, step)
        except CheckpointMismatch:
            raise
        except Exception as e:  # noqa: BLE001 (any failure to read is damage)
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
            reason = reason.split(" See full TensorStore details")[0][:200]
        gc.collect()  # the dropped read coroutines, collected now rather than mid-training
        print(f"warning: the checkpoint at step {step} is damaged ({reason}); trying an "
              "older one", file=sys.stderr, flush=True)
    if saved:
        raise NoIntactCheckpoint(
            f"no checkpoint in {manager.directory} restores (steps {saved} are damaged): move "
            "that folder away to train from scratch")
    return None
