"""The train state, and the jitted training and evaluation steps, for any model and task.

`train_step(state, batch, key)` derives its own key as fold_in(key, state.step), so the
corruption noise, z's samples and the model's own dropout of step n are the same whether
or not the run was interrupted before it. Steps take the objects they use (a model, a
task, an objective), never a config.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state
from jax.sharding import Mesh

from jaxae import losses
from jaxae.config import require_32_bits
from jaxae.data import batches
from jaxae.keys import DROPOUT_STREAM, check_key
from jaxae.models import declarations, initializers
from jaxae.models.base import (
    DROPOUT_RNG,
    ModelParams,
    Variables,
    check_label_values,
    state_collections,
    variables_of,
)
from jaxae.objectives import Objective
from jaxae.tasks import Task
from jaxae.training import parallel
from jaxae.training.compiler import compiler_options


class TrainState(train_state.TrainState):
    """Flax's train state, with the model's state (`model_state`: {collection: tree} of the
    collections it declares, `jaxae.models.base.state_collections`; empty for most models),
    which the training steps update beside the parameters."""

    model_state: Any = flax.struct.field(default_factory=dict)

    @property
    def variables(self) -> Variables:
        """The parameters with the model's state: what evaluation takes where it takes
        parameters (for a model without state, `params` does as well)."""
        return Variables(self.params, self.model_state)


Metrics = dict[str, jax.Array]
CHUNK_END_METRICS = ("grad_norm",)  # a chunk computes these only at its last step


def init_inputs(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[jax.Array, dict]:
    """A batch of one zero input, and the keyword arguments the model's call needs."""
    x = jnp.zeros((1, *input_shape), jnp.float32)
    labels = jnp.zeros((1,), jnp.int32) if getattr(model, "conditional", False) else None
    return x, {"labels": labels, "sample": False}


def init_variables(model: nn.Module, input_shape: tuple[int, ...], key: jax.Array,
                   scheme: str = "lecun") -> tuple[dict, dict]:
    """(fresh parameters, the model's initial state) for inputs of `input_shape` (one
    image); the parameters redrawn under `scheme` (`initializers.SCHEMES`; "lecun" keeps the
    modules' own initialisers, Flax's default, where a config's default is the material's
    "glorot"); the state, the collections the model declares (`state_collections`: a
    BatchNorm's running averages), as its layers make them.

    A scheme that redraws every leaf (`initializers.redraws_every_leaf`) of a model without
    state needs only the parameters' shapes (`jax.eval_shape` of Flax's init): the model's
    forward pass is then traced but never compiled, and the draws are a program kept for the
    tree's shapes (`initializers.apply_scheme`). Where some leaf keeps its module's value (a
    LayerNorm's scale, a user module's own parameter, a state), Flax's init computes the
    values, compiled.
    """
    initializers.check_scheme(scheme)
    init_key, scheme_key = jax.random.split(key)
    x, kwargs = init_inputs(model, input_shape)
    collections = ("params", *state_collections(model))
    init = lambda: {c: v for c, v in model.init(init_key, x, **kwargs).items()  # noqa: E731
                    if c in collections}
    variables = None
    if initializers.SCHEMES[scheme].redraws:  # the shapes suffice where every leaf is redrawn
        variables = jax.eval_shape(init)
        if len(variables) > 1 or not initializers.redraws_every_leaf(variables["params"]):
            variables = None
    if variables is None:
        variables = jax.jit(init)()
    params = variables.pop("params")
    return initializers.apply_scheme(params, scheme_key, scheme), variables


def init_params(model: nn.Module, input_shape: tuple[int, ...], key: jax.Array,
                scheme: str = "lecun") -> dict:
    """Fresh parameters for inputs of `input_shape` (one image), redrawn under `scheme`:
    `init_variables`' parameters, for a model without state (a loop of one's own, a test)."""
    return init_variables(model, input_shape, key, scheme)[0]


def create_train_state(model: nn.Module, tx: optax.GradientTransformation,
                       input_shape: tuple[int, ...], init_key: jax.Array,
                       scheme: str = "lecun", check: bool = True) -> TrainState:
    """Initialised parameters and model state (`init_variables`) paired with the optimiser's
    state.

    With `check`, the model is first traced on an abstract batch of `input_shape`
    (`declarations.check_declarations`: nothing is computed), so a model that does not keep
    what it declares (its logits shaped as its `image_shape`, where it has one), or that Flax
    cannot run (unnamed layers of @nn.compact encode and decode, BatchNorm without its
    state declared), is one DeclarationError naming the fix. `check=False` skips it where
    `jaxae.build.check_model` has run (the trainer). The state holds the model's initial
    state (`model_state`) beside the parameters."""
    check_key(init_key, "create_train_state's init_key")
    require_32_bits()  # a 64-bit step counter fits no checkpoint of a 32-bit run
    initializers.check_scheme(scheme)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"create_train_state's input_shape={input_shape}: give one input's "
                         "shape, (height, width, channels) such as (28, 28, 1), not a batch's")
    if check:
        try:
            image_shape = getattr(model, "image_shape", None)  # the data's, as it was built
            declarations.check_declarations(
                model, input_shape, None if image_shape is None else tuple(image_shape))
        except declarations.DeclarationError as e:
            if declarations.declares_any(model):
                raise
            raise declarations.DeclarationError(  # a module of another convention altogether
                f"{e} (or, for a module of another convention in a loop of your own, called as "
                "module(x, labels=None, sample=False), pass check=False)") from None

    params, model_state = init_variables(model, input_shape, init_key, scheme)
    return jax.jit(lambda params, model_state: TrainState.create(
        apply_fn=model.apply, params=params, tx=tx, model_state=model_state))(params, model_state)


def model_state_of(state: train_state.TrainState) -> dict:
    """A train state's model state: none in Flax's own TrainState (a model without state)."""
    return getattr(state, "model_state", {})


def gradient_norm(grads: dict, when: bool | jax.Array = True) -> jax.Array:
    """The gradients' global L2 norm; NaN where `when`, a traced bool, is false.

    Reading every gradient once more is a memory-bound pass, so the chunked loop asks for it
    only at the step whose record the trainer writes. Each leaf's sum of squares has its own
    `lax.cond`: one cond over all of them would wait for the last gradient and hold back the
    optimiser's updates.
    """

    def sum_of_squares(leaf: jax.Array) -> jax.Array:
        if when is True:
            return jnp.sum(jnp.square(leaf))
        return jax.lax.cond(when, lambda g: jnp.sum(jnp.square(g)),
                            lambda g: jnp.full((), jnp.nan, g.dtype), leaf)

    return jnp.sqrt(sum(sum_of_squares(leaf) for leaf in jax.tree.leaves(grads)))


def per_image_terms(model: nn.Module, objective: Objective, params: ModelParams,
                    inputs: jax.Array, targets: jax.Array, labels: jax.Array | None,
                    key: jax.Array | None, sample: bool = True,
                    dropout_key: jax.Array | None = None
                    ) -> tuple[dict[str, jax.Array], jax.Array, dict]:
    """(the objective's per-image terms, flat logits [B, H*W*C], the model's new state) of
    one forward pass against `targets` [B, H, W, C]; logits of another shape are a
    DeclarationError, raised as the step is traced (what `jaxae.build.check_model` finds
    before a run compiles). A `dropout_key` marks a training pass: it is the model's
    "dropout" stream, and the model's state (`params`: its `Variables`) is updated there
    (elsewhere it is read, and returned as it was).

    Losses reduce flat arrays (`losses.flat_images`): XLA's CPU backend reduces those faster
    than [B, H, W, C] expressions (`python -m benchmarks.profile_epoch` lists the passes).
    """
    name = type(model).__name__
    if labels is None and model.conditional:
        raise ValueError(f'model {name} is conditional, but the batch has no "label": give '
                         '{"image": uint8 [B, H, W, C], "label": int [B]}')
    rngs = {} if dropout_key is None else {DROPOUT_RNG: dropout_key}
    variables = variables_of(params)
    state = {c: v for c, v in variables.items() if c != "params"}
    mutable = {"mutable": list(state)} if state and dropout_key is not None else {}
    with declarations.matching_params(model, "x".join(map(str, inputs.shape[1:]))):
        output = model.apply(variables, inputs, labels=labels, key=key, sample=sample,
                             rngs=rngs, **mutable)
    if mutable:
        output, state = output
    logits, aux = declarations.split_output(name, output, model.variational)
    declarations.check_logits(name, logits, inputs.shape[0], inputs.shape[1:],
                              targets.shape[1:])
    if model.variational:
        declarations.check_codes(name, aux, inputs.shape[0])
    flat_logits, flat_targets = losses.flat_images(logits), losses.flat_images(targets)
    return objective(flat_logits, flat_targets, aux), flat_logits, state


def check_batch(batch: Mapping[str, jax.Array], step: str,
                image_shape: tuple[int, ...] | None = None) -> None:
    """A TypeError naming the fix unless `batch` is a mapping holding the images under
    "image" (an array alone would be indexed by the string and fail inside JAX); a
    ValueError for images that read as channels first (`jaxae.models.base.channels_first`), or
    that are not of the `image_shape` the model was built for
    (`declarations.check_images`)."""
    if not isinstance(batch, Mapping):
        what = "an array" if hasattr(batch, "shape") else f"a {type(batch).__name__}"
        raise TypeError(f"{step}'s batch is {what}: give a dict "
                        '{"image": uint8 [B, H, W, C], "label": int [B]} (labels for '
                        "conditional models only)")
    if "image" not in batch:
        held = ", ".join(map(repr, batch)) or "nothing"
        raise TypeError(f'{step}\'s batch has no "image" (it holds {held}): give '
                        '{"image": uint8 [B, H, W, C], "label": int [B]}')
    declarations.check_images(getattr(batch["image"], "shape", ()), step, image_shape)


def _check_train_args(model: nn.Module, state: TrainState, batch: Mapping[str, jax.Array],
                      key: jax.Array) -> None:
    collections = state_collections(model)
    image_shape = getattr(model, "image_shape", None)
    if not isinstance(state, train_state.TrainState):
        raise TypeError(f"train_step's state is a {type(state).__name__}, not a TrainState: "
                        "make it with jaxae.training.steps.create_train_state(model, tx, "
                        "input_shape, key)")
    if collections and not hasattr(state, "model_state"):
        raise TypeError(f"model {type(model).__name__} keeps state ({', '.join(collections)}), "
                        "which Flax's TrainState has no place for: make the state with "
                        "jaxae.training.steps.create_train_state(model, tx, input_shape, key) "
                        "(a jaxae.training.steps.TrainState, with model_state)")
    check_batch(batch, "train_step", image_shape)
    check_key(key, "train_step's key")


def train_step_fn(model: nn.Module, task: Task, objective: Objective, mesh: Mesh | None = None
                  ) -> Callable[..., tuple[TrainState, Metrics]]:
    """One optimisation step as a pure function (not yet compiled).

    batch: {"image": uint8 [B, H, W, C], "label": int32 [B]}. The step's key, fold_in(key,
    step), drives the task's corruption and binarisation, for VAEs z's sample, and the
    model's own "dropout" stream (`jaxae.models.in_training`). The objective is the one its
    `at_step` gives for the state's step (a KL warm-up's beta). With a mesh, the batch is
    split over its "data" axis and the gradients are averaged across devices by the
    compiler (parameters stay replicated). The metric grad_norm is NaN where the
    optional `with_grad_norm` (a traced bool) is false.
    """

    def train_step(state: TrainState, batch: dict, key: jax.Array,
                   with_grad_norm: bool | jax.Array = True) -> tuple[TrainState, Metrics]:
        _check_train_args(model, state, batch, key)
        if mesh is not None:
            batch = jax.lax.with_sharding_constraint(batch, parallel.batch_sharding(mesh))
        step_key = jax.random.fold_in(key, state.step)
        example_key, sample_key = jax.random.split(step_key)
        dropout_key = jax.random.fold_in(step_key, DROPOUT_STREAM)
        inputs, targets = task.make_example(batch["image"], example_key)
        now = objective.at_step(state.step) if hasattr(objective, "at_step") else objective

        def loss_fn(params):
            terms, _, model_state = per_image_terms(
                model, now, Variables(params, model_state_of(state)), inputs, targets,
                batch.get("label"), sample_key, dropout_key=dropout_key)
            means = {name: value.mean() for name, value in terms.items()}
            return means["loss"], (means, model_state)

        grads, (metrics, model_state) = jax.grad(loss_fn, has_aux=True)(state.params)
        metrics["grad_norm"] = gradient_norm(grads, with_grad_norm)
        state = state.apply_gradients(grads=grads)
        return (state.replace(model_state=model_state) if model_state else state), metrics

    return train_step


def checking_labels(step: Callable, model: nn.Module, name: str) -> Callable:
    """`step` (a compiled f(first, batch, ...)) behind a check of the batch's host labels
    against a conditional model's classes (`check_label_values`), which the compiled
    program cannot make: one-hot encoding makes a label out of range no class at all. A
    model that reads no labels gets `step` itself."""
    classes = getattr(model, "num_classes", None)
    if not (model.conditional and classes):
        return step

    @functools.wraps(step)
    def checked(*args, **kwargs):
        batch = kwargs["batch"] if "batch" in kwargs else args[1] if len(args) > 1 else None
        if isinstance(batch, Mapping):
            check_label_values(f"{name} of model {type(model).__name__}", batch.get("label"),
                               classes)
        return step(*args, **kwargs)

    for method in ("lower", "trace", "eval_shape"):  # what a compiled function offers
        if hasattr(step, method):
            setattr(checked, method, getattr(step, method))
    return checked


def make_train_step(model: nn.Module, task: Task, objective: Objective,
                    mesh: Mesh | None = None) -> Callable[..., tuple[TrainState, Metrics]]:
    """One optimisation step, jitted (compiled at its first call): f(state, batch, key) ->
    (state, metrics); `batch` is {"image": uint8 [B, H, W, C], "label": int [B] (read by
    conditional models only, which refuse host labels outside their classes)}. The state is
    donated, so it is updated in place: the state passed in is deleted (to keep one, e.g. the
    best so far, keep a copy: jax.tree.map(jnp.copy, state)). Refused in 64-bit JAX, as
    `create_train_state` is (a state of its own, Flax's TrainState.create, would step in
    int64 and correct Adam's bias in float64)."""
    require_32_bits()
    return checking_labels(jax.jit(train_step_fn(model, task, objective, mesh),
                                   donate_argnums=0, compiler_options=compiler_options()),
                           model, "train_step")


def make_train_chunk(model: nn.Module, task: Task, objective: Objective, *, batch_size: int,
                     max_steps: int, mesh: Mesh | None = None
                     ) -> Callable[..., tuple[TrainState, Metrics]]:
    """Up to `max_steps` consecutive steps as one jitted loop: the host dispatches once.

    f(state, arrays, order, first_index, key, num_steps) runs the steps whose batches are
    numbers first_index .. first_index + num_steps - 1 of the epoch ordered by `order`,
    gathered on the device from the resident `arrays`; it returns the new state and each
    step's metrics in arrays of `max_steps` rows, of which the first num_steps are filled.
    num_steps (at most max_steps) is an argument, not a constant: one program serves
    every chunk length, so a run compiles its training loop once. Same step function as
    `make_train_step`, but the CHUNK_END_METRICS are computed only at the chunk's last step
    (the one the trainer records) and are NaN in the other rows. Refused in 64-bit JAX, as
    `make_train_step` is.
    """
    require_32_bits()
    step = train_step_fn(model, task, objective, mesh)

    def train_chunk(state: TrainState, arrays: dict, order: jax.Array, first_index: jax.Array,
                    key: jax.Array, num_steps: jax.Array) -> tuple[TrainState, Metrics]:
        def run_step(state: TrainState, offset: jax.Array) -> tuple[TrainState, Metrics]:
            batch = batches.gather_batch(arrays, order, first_index + offset, batch_size)
            return step(state, batch, key, offset == num_steps - 1)

        def body(offset: jax.Array, carry: tuple[TrainState, Metrics]
                 ) -> tuple[TrainState, Metrics]:
            state, metrics = run_step(carry[0], offset)
            rows = jax.tree.map(lambda row, value: row.at[offset].set(value), carry[1], metrics)
            return state, rows

        shapes = jax.eval_shape(run_step, state, 0)[1]  # the metrics' shapes; computes nothing
        rows = jax.tree.map(lambda s: jnp.zeros((max_steps, *s.shape), s.dtype), shapes)
        return jax.lax.fori_loop(0, num_steps, body, (state, rows))

    return jax.jit(train_chunk, donate_argnums=0, compiler_options=compiler_options())


def eval_example(task: Task, batch: dict, key: jax.Array
                 ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(inputs, targets, the key for z's samples) of an evaluation batch: the same split of
    the batch's key in every evaluation program, so they all see the same corruption."""
    example_key, sample_key = jax.random.split(key)
    inputs, targets = task.make_example(batch["image"], example_key)
    return inputs, targets, sample_key


def _floor_terms(task: Task, inputs: jax.Array, targets: jax.Array) -> Metrics:
    """Per image: the PSNR of the task's input and of its classical baseline (where it has
    one), the floors to beat (tasks whose input differs from the target; none otherwise)."""
    if not task.shows_input:
        return {}
    flat, image_shape = losses.flat_images, targets.shape[1:]
    floors = {"input_psnr": losses.psnr(flat(task.input_as_image(inputs, image_shape)),
                                        flat(targets))}
    if task.baseline_name is not None:
        floors["baseline_psnr"] = losses.psnr(flat(task.baseline(inputs, image_shape)),
                                              flat(targets))
    return floors


def masked_sum(values: jax.Array, batch: dict) -> jax.Array:
    """The sum of per-image `values` over the batch's images whose "mask" is 1 (every image
    where it has no mask). A padded image's value is left out, not multiplied by 0: an
    infinite one would make the sum NaN."""
    mask = batch.get("mask")
    return jnp.sum(values if mask is None else jnp.where(mask > 0, values, 0.0))


def _masked_sums(per_image: Metrics, batch: dict) -> Metrics:
    """`masked_sum` of each per-image metric, and the images summed ("count")."""
    mask = batch.get("mask")
    count = jnp.sum(mask) if mask is not None else jnp.float32(batch["image"].shape[0])
    return {**{name: masked_sum(value, batch) for name, value in per_image.items()},
            "count": count}


def make_eval_step(model: nn.Module, task: Task, objective: Objective, floors: bool = True
                   ) -> Callable[[ModelParams, dict, jax.Array], Metrics]:
    """The jitted f(params, batch, key) -> metric sums over the unmasked images of a batch
    (`params`: the parameters, or the `Variables` of a model that keeps state).

    `batch` is {"image": uint8 [B, H, W, C], "label": int [B] (conditional models; host
    labels outside their classes are refused),
    "mask": [B], optional: 1 for an image to count, 0 for padding that fills the last
    batch to the compiled shape}. The sums come with their "count": a split's means are
    the sums over its batches divided by the count (`jaxae.evaluation.metrics.split_means`).

    Metrics: the training objective and, for VAEs, the ELBO and its terms (z sampled with
    the key); MSE, BCE and PSNR of the reconstruction against the target (VAEs: from
    z = z_mean): the clean image, or under dynamic binarisation the batch's Bernoulli draw
    of it, which the model was also given; with `floors`, where the task's input differs
    from the target, the PSNR of the input and (where the task has one) of its classical
    baseline, the floors to beat.
    The floors do not depend on the parameters: a run that evaluates again and again
    computes them once (`make_floor_step`, `jaxae.evaluation.metrics.evaluate_splits`).
    """
    flat = losses.flat_images

    @jax.jit
    def eval_step(params: ModelParams, batch: dict, key: jax.Array) -> Metrics:
        if isinstance(params, train_state.TrainState):
            raise TypeError("eval_step takes the parameters, not the TrainState: pass "
                            "state.params (state.variables for a model that keeps state)")
        check_batch(batch, "eval_step", getattr(model, "image_shape", None))
        check_key(key, "eval_step's key")
        inputs, targets, sample_key = eval_example(task, batch, key)
        flat_targets, labels = flat(targets), batch.get("label")
        per_image, logits, _ = per_image_terms(model, objective, params, inputs, targets,
                                               labels, sample_key)
        if model.variational:  # reconstructions from z = z_mean
            _, logits, _ = per_image_terms(model, objective, params, inputs, targets,
                                           labels, None, sample=False)
        per_image |= {
            "mse": losses.mse(logits, flat_targets),
            "bce": losses.bce_with_logits(logits, flat_targets),
            "psnr": losses.psnr(losses.sigmoid(logits), flat_targets),
        }
        if floors:
            per_image |= _floor_terms(task, inputs, targets)
        return _masked_sums(per_image, batch)

    return checking_labels(eval_step, model, "eval_step")


def make_floor_step(task: Task) -> Callable[[dict, jax.Array], Metrics] | None:
    """A jitted step that returns the sums of the task's floors over the unmasked images
    of a batch (`make_eval_step`'s input_psnr and baseline_psnr, from the same key), or None
    for a task that has none."""
    if not task.shows_input:
        return None

    @jax.jit
    def floor_step(batch: dict, key: jax.Array) -> Metrics:
        inputs, targets, _ = eval_example(task, batch, key)
        return _masked_sums(_floor_terms(task, inputs, targets), batch)

    return floor_step
