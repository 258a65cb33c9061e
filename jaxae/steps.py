"""The train state, and the jitted training and evaluation steps.

`train_step(state, batch, key)` derives its own key as fold_in(key, state.step), so the
corruption noise of step n is the same whether or not the run was interrupted before it.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax.training import train_state

from jaxae import losses, pipeline

TrainState = train_state.TrainState
Metrics = dict[str, jax.Array]


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """The Optax optimiser the config names, at its constant learning rate."""
    make = {"adam": optax.adam, "adamw": optax.adamw, "sgd": optax.sgd}[config.optimizer]
    return make(config.learning_rate)


def input_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int, int]:
    """Shape of one model input (a batch of 1): low resolution for super-resolution."""
    side = 28 // config.superres_factor if config.model == "superres" else 28
    return (1, side, side, 1)


def create_train_state(config: ml_collections.ConfigDict, model: nn.Module,
                       init_key: jax.Array) -> TrainState:
    """Initialises parameters from `init_key` and pairs them with the optimiser state."""

    @jax.jit
    def init(key: jax.Array) -> TrainState:
        params = model.init(key, jnp.zeros(input_shape(config), jnp.float32))["params"]
        return TrainState.create(apply_fn=model.apply, params=params,
                                 tx=make_optimizer(config))

    return init(init_key)


def make_train_step(config: ml_collections.ConfigDict
                    ) -> Callable[[TrainState, dict, jax.Array], tuple[TrainState, Metrics]]:
    """Compiles one optimisation step; the state is donated, so it is updated in place."""
    loss_fn = losses.LOSSES[config.loss]

    def train_step(state: TrainState, batch: dict, key: jax.Array
                   ) -> tuple[TrainState, Metrics]:
        step_key = jax.random.fold_in(key, state.step)
        inputs, targets = pipeline.make_example(config, batch["image"], step_key)

        def objective(params):
            logits = state.apply_fn({"params": params}, inputs)
            return loss_fn(logits, targets).mean()

        loss, grads = jax.value_and_grad(objective)(state.params)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads)}
        return state.apply_gradients(grads=grads), metrics

    return jax.jit(train_step, donate_argnums=0)


def make_eval_step(config: ml_collections.ConfigDict, model: nn.Module
                   ) -> Callable[[dict, dict, jax.Array], Metrics]:
    """Compiles a step that returns metric sums over the unmasked images of a batch.

    Metrics: the training loss, MSE, BCE and PSNR of the reconstruction against the clean
    image, and for denoisers the PSNR of the corrupted input (the floor to beat).
    """
    loss_fn = losses.LOSSES[config.loss]
    corrupts = config.corruption != "none" and config.model != "superres"

    @jax.jit
    def eval_step(params: dict, batch: dict, key: jax.Array) -> Metrics:
        inputs, targets = pipeline.make_example(config, batch["image"], key)
        logits = model.apply({"params": params}, inputs)
        recon = jax.nn.sigmoid(logits)
        per_image = {
            "loss": loss_fn(logits, targets),
            "mse": losses.mse(logits, targets),
            "bce": losses.bce_with_logits(logits, targets),
            "psnr": losses.psnr(recon, targets),
        }
        if corrupts:
            per_image["input_psnr"] = losses.psnr(jnp.clip(inputs, 0, 1), targets)
        mask = batch["mask"]
        sums = {name: jnp.sum(value * mask) for name, value in per_image.items()}
        return {**sums, "count": jnp.sum(mask)}

    return eval_step
