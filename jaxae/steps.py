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
from jax.sharding import Mesh

from jaxae import baselines, initializers, losses, parallel, pipeline, precision
from jaxae.objectives import is_variational, per_image_terms

TrainState = train_state.TrainState
Metrics = dict[str, jax.Array]
CHUNK_END_METRICS = ("grad_norm",)  # a chunk computes these only at its last step


def learning_rate_schedule(config: ml_collections.ConfigDict, total_steps: int | None
                           ) -> float | optax.Schedule:
    """The config's learning rate: constant, or cosine-decayed to 0 over the run's steps.

    total_steps is the run's length; None where the state only receives a checkpoint
    (the schedule's shape is then irrelevant, only the optimiser state's structure is).
    """
    if config.lr_schedule == "cosine":
        return optax.cosine_decay_schedule(config.learning_rate, max(1, total_steps or 1))
    return config.learning_rate


def make_optimizer(config: ml_collections.ConfigDict, total_steps: int | None = None
                   ) -> optax.GradientTransformation:
    """The Optax optimiser the config names, with its learning-rate schedule."""
    make = {"adam": optax.adam, "adamw": optax.adamw, "sgd": optax.sgd}[config.optimizer]
    return make(learning_rate_schedule(config, total_steps))


def input_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int, int]:
    """Shape of one model input (a batch of 1): low resolution for super-resolution."""
    side = 28 // config.superres_factor if config.model == "superres" else 28
    return (1, side, side, 1)


def create_train_state(config: ml_collections.ConfigDict, model: nn.Module,
                       init_key: jax.Array, total_steps: int | None = None) -> TrainState:
    """Initialises parameters from `init_key` and pairs them with the optimiser state
    (total_steps: the run's length, for a decaying learning rate)."""

    @jax.jit
    def init(key: jax.Array) -> TrainState:
        x = jnp.zeros(input_shape(config), jnp.float32)
        args = (x, None, jnp.zeros((1,), jnp.int32)) if is_variational(config) else (x,)
        init_key, scheme_key = jax.random.split(key)
        params = model.init(init_key, *args)["params"]
        params = initializers.apply_scheme(params, scheme_key, config.init)
        return TrainState.create(apply_fn=model.apply, params=params,
                                 tx=make_optimizer(config, total_steps))

    return init(init_key)


def flat_logits(config: ml_collections.ConfigDict, apply_fn: Callable) -> Callable:
    """apply_fn with its logits as [B, H*W*C] (`losses.flat_images`): every loss and metric
    then reduces flat arrays, which XLA's CPU backend does many times faster."""

    def apply_flat(variables: dict, *args) -> jax.Array | tuple[jax.Array, dict]:
        if is_variational(config):
            logits, latent = apply_fn(variables, *args)
            return losses.flat_images(logits), latent
        return losses.flat_images(apply_fn(variables, *args))

    return apply_flat


def gradient_norm(grads: dict, when: bool | jax.Array = True) -> jax.Array:
    """The gradients' global L2 norm; NaN where `when`, a traced bool, is false.

    Reading every gradient once more costs a memory-bound pass: 0.5 ms of a 6 ms DAE step
    (1.5 M parameters) on 2 Intel Xeon cores. So the chunked loop asks for it only at the
    step whose record the trainer writes. Each leaf's sum of squares has its own `lax.cond`:
    one cond over all of them would wait for the last gradient and hold back the optimiser's
    updates.
    """

    def sum_of_squares(leaf: jax.Array) -> jax.Array:
        if when is True:
            return jnp.sum(jnp.square(leaf))
        return jax.lax.cond(when, lambda g: jnp.sum(jnp.square(g)),
                            lambda g: jnp.full((), jnp.nan, g.dtype), leaf)

    return jnp.sqrt(sum(sum_of_squares(leaf) for leaf in jax.tree.leaves(grads)))


def train_step_fn(config: ml_collections.ConfigDict, mesh: Mesh | None = None
                  ) -> Callable[..., tuple[TrainState, Metrics]]:
    """One optimisation step as a pure function (not yet compiled).

    batch: {"image": uint8 [B, 28, 28], "label": int32 [B]}. The step's key,
    fold_in(key, step), drives corruption and binarisation and, for VAEs, z's sample.
    With a mesh, the batch is split over its "data" axis and the gradients are averaged
    across devices by the compiler (parameters stay replicated). The metric grad_norm is
    NaN where the optional `with_grad_norm` (a traced bool) is false (`gradient_norm`).
    """

    def train_step(state: TrainState, batch: dict, key: jax.Array,
                   with_grad_norm: bool | jax.Array = True) -> tuple[TrainState, Metrics]:
        if mesh is not None:
            batch = jax.lax.with_sharding_constraint(batch, parallel.batch_sharding(mesh))
        example_key, sample_key = jax.random.split(jax.random.fold_in(key, state.step))
        inputs, targets = pipeline.make_example(config, batch["image"], example_key)

        def objective(params):
            terms, _ = per_image_terms(config, flat_logits(config, state.apply_fn), params,
                                       inputs, losses.flat_images(targets), batch["label"],
                                       sample_key)
            means = {name: value.mean() for name, value in terms.items()}
            return means["loss"], means

        with precision.compute_dtype(config.compute_dtype):
            grads, metrics = jax.grad(objective, has_aux=True)(state.params)
        metrics["grad_norm"] = gradient_norm(grads, with_grad_norm)
        return state.apply_gradients(grads=grads), metrics

    return train_step


def make_train_step(config: ml_collections.ConfigDict, mesh: Mesh | None = None
                    ) -> Callable[..., tuple[TrainState, Metrics]]:
    """Compiles one optimisation step; the state is donated, so it is updated in place."""
    return jax.jit(train_step_fn(config, mesh), donate_argnums=0)


def make_train_chunk(config: ml_collections.ConfigDict, mesh: Mesh | None = None, *,
                     max_steps: int) -> Callable[..., tuple[TrainState, Metrics]]:
    """Compiles up to `max_steps` consecutive steps as one loop: the host dispatches once.

    f(state, arrays, order, first_index, key, num_steps) runs the steps whose batches are
    numbers first_index .. first_index + num_steps - 1 of the epoch ordered by `order`,
    gathered on the device from the resident `arrays`; it returns the new state and each
    step's metrics in arrays of `max_steps` rows, of which the first num_steps are filled.
    num_steps (at most max_steps) is an argument, not a constant: one program serves
    every chunk length, so a run compiles its training loop once. Same step function as
    `make_train_step`, but the CHUNK_END_METRICS are computed only at the chunk's last step
    (the one the trainer records) and are NaN in the other rows.
    """
    step = train_step_fn(config, mesh)

    def train_chunk(state: TrainState, arrays: dict, order: jax.Array, first_index: jax.Array,
                    key: jax.Array, num_steps: jax.Array) -> tuple[TrainState, Metrics]:
        def run_step(state: TrainState, offset: jax.Array) -> tuple[TrainState, Metrics]:
            batch = pipeline.gather_batch(arrays, order, first_index + offset, config.batch_size)
            return step(state, batch, key, offset == num_steps - 1)

        def body(offset: jax.Array, carry: tuple[TrainState, Metrics]
                 ) -> tuple[TrainState, Metrics]:
            state, metrics = run_step(carry[0], offset)
            rows = jax.tree.map(lambda row, value: row.at[offset].set(value), carry[1], metrics)
            return state, rows

        shapes = jax.eval_shape(run_step, state, 0)[1]  # the metrics' shapes; computes nothing
        rows = jax.tree.map(lambda s: jnp.zeros((max_steps, *s.shape), s.dtype), shapes)
        return jax.lax.fori_loop(0, num_steps, body, (state, rows))

    return jax.jit(train_chunk, donate_argnums=0)


def make_eval_step(config: ml_collections.ConfigDict, model: nn.Module
                   ) -> Callable[[dict, dict, jax.Array], Metrics]:
    """Compiles a step that returns metric sums over the unmasked images of a batch.

    Metrics: the training objective and, for VAEs, the ELBO and its terms (z sampled with
    the key); MSE, BCE and PSNR of the reconstruction against the clean image (VAEs: from
    z = z_mean); for denoisers and super-resolution, the PSNR of the input and of a classical
    baseline (`jaxae.baselines`), the floors to beat.
    """
    shows_input = config.model == "superres" or config.corruption != "none"
    flat = losses.flat_images
    apply_flat = flat_logits(config, model.apply)

    @jax.jit
    def eval_step(params: dict, batch: dict, key: jax.Array) -> Metrics:
        example_key, sample_key = jax.random.split(key)
        inputs, targets = pipeline.make_example(config, batch["image"], example_key)
        flat_targets, labels = flat(targets), batch["label"]
        per_image, logits = per_image_terms(config, apply_flat, params, inputs, flat_targets,
                                            labels, sample_key)
        if is_variational(config):  # reconstructions from z = z_mean
            _, logits = per_image_terms(config, apply_flat, params, inputs, flat_targets,
                                        labels, None)
        recon = jax.nn.sigmoid(logits)
        per_image |= {
            "mse": losses.mse(logits, flat_targets),
            "bce": losses.bce_with_logits(logits, flat_targets),
            "psnr": losses.psnr(recon, flat_targets),
        }
        if shows_input:
            per_image["input_psnr"] = losses.psnr(
                flat(baselines.input_as_image(config, inputs)), flat_targets)
            per_image["baseline_psnr"] = losses.psnr(
                flat(baselines.classical_baseline(config, inputs)), flat_targets)
        mask = batch["mask"]
        sums = {name: jnp.sum(value * mask) for name, value in per_image.items()}
        return {**sums, "count": jnp.sum(mask)}

    return eval_step

