"""Orbax checkpoints of the train state in `<workdir>/checkpoints`, with today's `args` API.

Resume order: the newest step in the workdir is restored into the shape of a freshly
initialised state; with no checkpoint, training starts from that fresh state.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp

from jaxae.steps import TrainState


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints")


def make_manager(workdir: str, keep: int = 3, read_only: bool = False
                 ) -> ocp.CheckpointManager:
    """A manager that keeps the newest `keep` checkpoints; every `save` call is honoured."""
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only,
                                           read_only=read_only)
    return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


def save(manager: ocp.CheckpointManager, state: TrainState) -> None:
    """Saves `state` under its step number (asynchronously: call `wait_until_finished`)."""
    manager.save(int(state.step), args=ocp.args.StandardSave(_saved_tree(state)), force=True)


def restore(manager: ocp.CheckpointManager, like: TrainState, step: int | None = None
            ) -> TrainState:
    """The state saved at `step` (default: the newest), in the structure of `like`."""
    step = manager.latest_step() if step is None else step
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _saved_tree(like))
    tree = manager.restore(step, args=ocp.args.StandardRestore(abstract))
    return like.replace(step=tree["step"], params=tree["params"], opt_state=tree["opt_state"])


def _saved_tree(state: TrainState) -> dict:
    """What a checkpoint holds: everything in the state that is data, not code."""
    return {"step": state.step, "params": state.params, "opt_state": state.opt_state}
