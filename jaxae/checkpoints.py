"""Orbax checkpoints of the train state in `<workdir>/checkpoints`, with today's `args` API.

Resume order: the newest step in the workdir is restored into the shape of a freshly
initialised state; with no checkpoint, training starts from that fresh state.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import weakref

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from jaxae.steps import TrainState


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints")


# The steps each open manager has saved in this process: a second save of a step is the same
# state again, and the keys are the managers whose pending saves an error exit waits for.
_saved_steps: weakref.WeakKeyDictionary[ocp.CheckpointManager, set[int]] = (
    weakref.WeakKeyDictionary())


def make_manager(workdir: str, keep: int = 3, read_only: bool = False
                 ) -> ocp.CheckpointManager:
    """A manager that keeps the newest `keep` checkpoints; every `save` call is honoured."""
    options = ocp.CheckpointManagerOptions(max_to_keep=None if read_only else keep,
                                           create=not read_only, read_only=read_only,
                                           cleanup_tmp_directories=not read_only,
                                           save_interval_steps=0 if read_only else 1)
    manager = ocp.CheckpointManager(checkpoint_dir(workdir), options=options)
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


def _first_non_finite(params) -> str | None:
    """The name of the first parameter holding a NaN or an infinity, or None. Checked on the
    host, where the checkpoint goes anyway: no program to compile per parameter shape."""
    for name, leaf in _leaves(params).items():
        if not np.isfinite(np.asarray(leaf)).all():
            return name
    return None


def save(manager: ocp.CheckpointManager, state: TrainState) -> None:
    """Saves `state` under its step number (asynchronously: call `wait_until_finished`).

    Refuses non-finite parameters, so a numerical fault never overwrites a good checkpoint.
    A step saved already by this process is skipped (it holds this very state); a step left
    on disk by an earlier process is one that resuming passed over as damaged: replaced.
    """
    step = int(state.step)
    bad = _first_non_finite(state.params)
    if bad is not None:
        manager.wait_until_finished()  # the previous, finite checkpoint is complete on disk
        latest = manager.latest_step()
        kept = "" if latest is None else f"; the newest on disk, step {latest}, is intact"
        raise FloatingPointError(
            f"parameter {bad} is not finite at step {step}: no checkpoint was written for it"
            f"{kept}; lower --config.learning_rate")
    saved = _saved_steps.setdefault(manager, set())
    if step in saved:
        return
    if step in manager.all_steps():
        manager.wait_until_finished()
        manager.delete(step)
    manager.save(step, args=ocp.args.StandardSave(_saved_tree(state)), force=True)
    saved.add(step)


class CheckpointMismatch(ValueError):
    """A checkpoint's parameters do not have the shapes the config's model needs."""


def saved_param_shapes(manager: ocp.CheckpointManager, step: int) -> dict[str, tuple]:
    """{'encoder/code/kernel': shape, ...} as written in the checkpoint's metadata."""
    path = epath.Path(manager.directory) / str(step) / "default"
    metadata = ocp.StandardCheckpointHandler().metadata(path)
    return _shapes(dict(getattr(metadata, "tree", metadata))["params"])


def _leaves(params) -> dict[str, object]:
    """{'encoder/code/kernel': leaf, ...}: the parameters by their path names."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return {"/".join(str(getattr(k, "key", k)) for k in path): leaf for path, leaf in flat}


def _shapes(params) -> dict[str, tuple]:
    return {name: tuple(leaf.shape) for name, leaf in _leaves(params).items()}


def check_fits(manager: ocp.CheckpointManager, step: int, like: TrainState) -> None:
    """Raises CheckpointMismatch naming the first parameter whose shape differs."""
    saved, wanted = saved_param_shapes(manager, step), _shapes(like.params)
    for name in sorted(saved.keys() | wanted.keys()):
        if saved.get(name) != wanted.get(name):
            raise CheckpointMismatch(
                f"the checkpoint at step {step} in {manager.directory} does not fit the "
                f"config: parameter {name} is {saved.get(name, 'absent')} there, "
                f"{wanted.get(name, 'absent')} for this config (check model, latent_dim and "
                "superres_factor against the run that wrote it)")


def restore(manager: ocp.CheckpointManager, like: TrainState, step: int | None = None
            ) -> TrainState:
    """The state saved at `step` (default: the newest), in the structure of `like`."""
    step = manager.latest_step() if step is None else step
    check_fits(manager, step, like)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _saved_tree(like))
    tree = manager.restore(step, args=ocp.args.StandardRestore(abstract))
    return like.replace(step=tree["step"], params=tree["params"], opt_state=tree["opt_state"])


class NoIntactCheckpoint(FileNotFoundError):
    """Every checkpoint in the workdir failed to restore."""


def restore_newest_intact(manager: ocp.CheckpointManager, like: TrainState
                          ) -> TrainState | None:
    """The newest checkpoint that restores; damaged ones are passed over with a one-line
    warning. None when there is no checkpoint at all.

    A checkpoint that restores but does not fit the config raises CheckpointMismatch: that
    is a wrong config, not damage, and older checkpoints would not fit either.
    """
    saved = sorted(manager.all_steps(), reverse=True)
    _silence_abandoned_reads()  # before any read: a failed one's leftovers come at any time
    for step in saved:
        try:
            return restore(manager, like, step)
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


def _is_not_abandoned_read_task(record: logging.LogRecord) -> bool:
    """logging filter for asyncio's logger: drops its report of an Orbax read task whose
    error nobody retrieved (the read of a restore that already failed)."""
    message = record.getMessage()
    return not (message.startswith("Task exception was never retrieved") and "orbax" in message)


def _silence_abandoned_reads() -> None:
    """Installs _ignore_abandoned_reads and the asyncio log filter (once each).

    Orbax reads arrays concurrently; when one fails, the others are abandoned, and Python
    would print each one's error (many lines of TensorStore spec or asyncio traceback),
    now or later, from other threads. The damage is reported once, by the caller's warning.
    """
    global _chained_unraisablehook
    if sys.unraisablehook is not _ignore_abandoned_reads:
        _chained_unraisablehook, sys.unraisablehook = sys.unraisablehook, _ignore_abandoned_reads
    asyncio_logger = logging.getLogger("asyncio")
    if _is_not_abandoned_read_task not in asyncio_logger.filters:
        asyncio_logger.addFilter(_is_not_abandoned_read_task)


def _saved_tree(state: TrainState) -> dict:
    """What a checkpoint holds: everything in the state that is data, not code."""
    return {"step": state.step, "params": state.params, "opt_state": state.opt_state}
