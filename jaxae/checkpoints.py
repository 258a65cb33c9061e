"""Orbax checkpoints of the train state in `<workdir>/checkpoints`, with today's `args` API.

Resume order: the newest step in the workdir is restored into the shape of a freshly
initialised state; with no checkpoint, training starts from that fresh state.
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from jaxae.steps import TrainState


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints")


def make_manager(workdir: str, keep: int = 3, read_only: bool = False
                 ) -> ocp.CheckpointManager:
    """A manager that keeps the newest `keep` checkpoints; every `save` call is honoured."""
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only,
                                           read_only=read_only,
                                           cleanup_tmp_directories=not read_only)
    return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


def save(manager: ocp.CheckpointManager, state: TrainState) -> None:
    """Saves `state` under its step number (asynchronously: call `wait_until_finished`).

    Refuses non-finite parameters, so a numerical fault never overwrites a good checkpoint.
    """
    if not all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(state.params)):
        raise FloatingPointError(
            f"the parameters are not finite at step {int(state.step)}: no checkpoint was "
            "written; the newest one on disk is the last good state")
    manager.save(int(state.step), args=ocp.args.StandardSave(_saved_tree(state)), force=True)


class CheckpointMismatch(ValueError):
    """A checkpoint's parameters do not have the shapes the config's model needs."""


def saved_param_shapes(manager: ocp.CheckpointManager, step: int) -> dict[str, tuple]:
    """{'encoder/code/kernel': shape, ...} as written in the checkpoint's metadata."""
    path = os.path.join(str(manager.directory), str(step), "default")
    metadata = ocp.StandardCheckpointer().metadata(path)
    tree = getattr(metadata, "item_metadata", metadata)
    return _shapes(dict(getattr(tree, "tree", tree))["params"])


def _shapes(params) -> dict[str, tuple]:
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return {"/".join(str(getattr(k, "key", k)) for k in path): tuple(leaf.shape)
            for path, leaf in flat}


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
    for step in saved:
        try:
            return restore(manager, like, step)
        except CheckpointMismatch:
            raise
        except Exception as e:  # noqa: BLE001 (any failure to read is damage)
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            print(f"warning: the checkpoint at step {step} is damaged ({reason}); trying an "
                  "older one", file=sys.stderr, flush=True)
    if saved:
        raise NoIntactCheckpoint(
            f"no checkpoint in {manager.directory} restores (steps {saved} are damaged): move "
            "that folder away to train from scratch")
    return None


def _saved_tree(state: TrainState) -> dict:
    """What a checkpoint holds: everything in the state that is data, not code."""
    return {"step": state.step, "params": state.params, "opt_state": state.opt_state}
