"""From a validated config to the objects a run is made of: data, model, objective, optimiser.

The library's functions take these objects, never the config; this module is where a config
section becomes one (the task, loss and likelihood come from `jaxae.config`).
"""

from __future__ import annotations

import functools
import math
import os
import shlex
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxae import config as config_lib
from jaxae import objectives, optimizers
from jaxae.data import DATASETS, Splits, make_splits
from jaxae.data.errors import MixedImageSizes
from jaxae.data.records import is_lazy
from jaxae.data.splits import SplitSizeError, first_images_note
from jaxae.messages import first_line, raised_at
from jaxae.models import build_model, declarations
from jaxae.models.declarations import shape_text
from jaxae.models.initializers import DEFAULT_SCHEME, SCHEMES
from jaxae.models.registry import MODELS, NeedsClasses
from jaxae.registry import MissingFields, RegistryError, build, display_name, parameters
from jaxae.tasks import TASKS, Task
from jaxae.training.workdir import (
    check_same_data,
    holds_run,
    recorded_data_fingerprint,
    recorded_data_path,
)


def load_data(config: ml_collections.ConfigDict, data_key: jax.Array,
              check_fingerprint: Callable[..., None] | None = None,
              new_run: bool = True, trained_fingerprint: str | None = None) -> Splits:
    """The config's data set, cut to its sizes, split and binarised as it asks.

    `check_fingerprint` (e.g. that a resumed run's images are those it trained on) is called
    with the images' fingerprint: by a loader that declares it, before it prepares anything
    (an image folder's preparation takes minutes), else once the data set is loaded, then
    with its content_sha256 too. For a `new_run`, first N images that miss classes are a
    warning (`first_images_note`): a run's data.subset is fixed once it has trained.
    `trained_fingerprint` (an evaluation's: the images its run trained on) goes to a loader
    that declares it, which may read those images where its source has changed since."""
    data = config.data
    loader = DATASETS.get(data.name)
    early = check_fingerprint is not None and "check_fingerprint" in parameters(loader)
    if early:
        loader = functools.partial(loader, check_fingerprint=check_fingerprint)
    if trained_fingerprint and "trained_fingerprint" in parameters(loader):
        loader = functools.partial(loader, trained_fingerprint=trained_fingerprint)
    try:
        dataset = build(loader, data)
    except MissingFields as e:
        raise config_lib.ConfigError(f"config.data.{e}") from None
    if check_fingerprint is not None and not early:
        check_fingerprint(dataset.fingerprint, dataset.content_sha256)
    if new_run and jax.process_index() == 0 and (note := first_images_note(
            dataset, data.train_size, data.test_size, data.subset)) is not None:
        print(note, file=sys.stderr, flush=True)
    try:
        return make_splits(dataset, data_key, train_size=data.train_size,
                           test_size=data.test_size, val_size=data.val_size,
                           binarize=data.binarize, subset=data.subset)
    except SplitSizeError as e:  # a size the config's fields ask for
        raise config_lib.ConfigError(f"config.data.{e}") from None


def load_run_data(config: ml_collections.ConfigDict, data_key: jax.Array,
                  workdir: str, evaluation: bool = False) -> Splits:
    """`load_data` for the run in `workdir` (new, resumed or evaluated), whose images must be
    those it trained on (`check_same_data`); an `evaluation` at the run's own data.path
    reads them where the loader still has them prepared though they have changed there since
    (an image folder's). Images of
    several sizes where the run has trained at their own size are not its images: resizing
    them, the fix for a new run, would change the trained model, so the error says so. A
    data.path that is gone (a run's images moved) is named as the run's, with the fix."""
    given, trained = config.data.get("path"), holds_run(workdir)
    saved = recorded_data_path(workdir)
    here = bool(given) and os.path.abspath(os.path.expanduser(given)) == saved  # the run's
    if given and trained and not os.path.exists(os.path.expanduser(given)):
        if saved and not here and os.path.exists(saved):  # its images are still there
            raise config_lib.ConfigError(
                f"config.data.path={given!r} does not exist, and the run in {workdir!r} "
                f"trained on the images at {saved!r}: give "
                f"--config.data.path={shlex.quote(saved)}")
        where = (f" (where the run in {workdir!r} found its images)" if here else
                 f" (the run in {workdir!r} trained on those at {saved!r}, not there either)"
                 if saved else "")
        raise config_lib.ConfigError(
            f"config.data.path={given!r}{where} does not exist: point --config.data.path at "
            "where the run's images are now (they are checked to be the same images)")
    try:
        return load_data(config, data_key, check_fingerprint=functools.partial(
            check_same_data, workdir, config.data, evaluation=evaluation), new_run=not trained,
            trained_fingerprint=recorded_data_fingerprint(workdir)
            if evaluation and trained and here else None)  # its folder, changed since
    except MixedImageSizes as error:
        if not trained:
            raise  # a new run: --config.data.image_size is the fix
        back = (f"back at {saved!r}" if saved and not here else
                "at the images it trained on" + (", or restore them there" if here else ""))
        raise config_lib.ConfigError(
            f"{error.problem}, and the run in {workdir!r} trained on images of one size at "
            f"their own size: these are not its images; point --config.data.path {back}"
        ) from None


def make_model(config: ml_collections.ConfigDict, image_shape: tuple[int, int, int],
               num_classes: int, compute_dtype: str = "float32") -> nn.Module:
    """The config's model for images of `image_shape`; a size it cannot work at, or a field
    it does not take, is a ConfigError."""
    ignore = config_lib.base_config().model.keys()
    try:
        model = build_model(config.model, image_shape=image_shape, num_classes=num_classes,
                            compute_dtype=compute_dtype, ignore=ignore)
        try:
            getattr(model, "latent_shape", None)  # models check their sizes here
        except (ValueError, TypeError):
            raise
        except Exception:  # noqa: BLE001 (a declaration that fails: check_model names it)
            pass
    except NeedsClasses:
        raise _conditional_without_classes(config, num_classes) from None
    except RegistryError as e:
        raise config_lib.ConfigError(str(e)) from None
    except (ValueError, TypeError) as e:
        raise config_lib.ConfigError(f"config.model ({config.model.name}): {e}"
                                     f"{raised_at(e)}") from None
    except Exception as e:  # noqa: BLE001 (a user's model may raise anything as it is built)
        raise config_lib.ConfigError(f"config.model ({config.model.name}): "
                                     f"{type(e).__name__}: {e}{raised_at(e)}") from None
    conditional = getattr(model, "conditional", False)  # (undeclared: check_model)
    if conditional and num_classes < 2:
        raise _conditional_without_classes(config, num_classes)
    given = config.model.get("num_classes")  # the data's, unless the section sets it
    if conditional and isinstance(given, int) and given < num_classes:
        raise config_lib.ConfigError(
            f"config.model.num_classes={given} is fewer than the data's {num_classes} classes: "
            f"labels {given} to {num_classes - 1} would be no class to the model; leave "
            "num_classes out of the model section (the data gives it)")
    return model


def classes_note(config: ml_collections.ConfigDict, model: nn.Module, train_labels: Any,
                 class_names: tuple[str, ...]) -> str | None:
    """For a model that declares itself conditional: a ConfigError where the training images
    hold fewer than two classes (the data's class names may count more: it would learn no
    class's effect), and a warning naming the classes no training image has (their samples
    come from an untrained class input, and the class-sample figures count them). None for
    other models, and for labels left on disk (a streamed split's)."""
    if not getattr(model, "conditional", False) or is_lazy(train_labels):
        return None
    present = {int(c) for c in np.unique(np.asarray(train_labels))}
    named = lambda classes: ", ".join(  # noqa: E731
        class_names[c] if c < len(class_names) else str(c) for c in sorted(classes))
    if len(present) < 2:
        raise config_lib.ConfigError(
            f"config.model ({config.model.name}) is conditional on the class, but the training "
            f"images hold {len(present)} class ({named(present) or 'none'}) of the data's "
            f"{len(class_names)}: give training images of two classes or more, or choose a "
            "model that is not conditional")
    missing = set(range(len(class_names))) - present
    if not missing:
        return None
    return (f"warning: {len(missing)} of the data's {len(class_names)} classes have no "
            f"training image ({named(missing)}): config.model ({config.model.name})'s samples "
            "of them come from an untrained class input, and the figures over classes count "
            "them")


def _conditional_without_classes(config: ml_collections.ConfigDict, num_classes: int
                                 ) -> config_lib.ConfigError:
    return config_lib.ConfigError(
        f"config.model ({config.model.name}) is conditional on the class, but the data "
        f"has {num_classes} class{'' if num_classes == 1 else 'es'}: give labelled data of "
        "two classes or more, or choose a model that is not conditional")


def check_size_before_data(config: ml_collections.ConfigDict) -> None:
    """A model that cannot work at the config's data.image_size is a ConfigError before the
    data are read (preparing a large image folder takes minutes): its own size check and
    one abstract trace that it returns what it declares (a user's model may fail only
    there), at data.channels, or where that is unset at 1 and at 3 (refused only if both
    fail). Without image_size, the size comes from the data and is checked once they are
    loaded."""
    size, channels = config.data.get("image_size"), config.data.get("channels")
    if not size:
        return
    task = config_lib.make_task(config)
    errors = []
    for depth in [channels] if channels else [1, 3]:  # unset: grey or RGB, as stored
        shape = (size, size, depth)
        try:  # two classes stand in for any number
            check_task(task, shape)
            check_model(make_model(config, shape, num_classes=2), task, shape)
            return
        except config_lib.ConfigError as error:
            errors.append(error)
    raise errors[-1]  # fails whatever the data's channels: named at RGB where unset


def check_model(model: nn.Module, task: Task, image_shape: tuple[int, int, int]) -> None:
    """A model that does not keep what it declares (logits shaped as the images, codes of
    its latent_shape) is a ConfigError naming the declaration, found by tracing it on an
    abstract batch as the steps call it, before anything compiles. A task that cannot run at
    `image_shape` is named first (its inputs are what the model is traced on)."""
    try:
        task.check(image_shape)
    except ValueError as e:
        raise config_lib.ConfigError(f"task {type(task).__name__}: {e}") from None
    try:
        declarations.check_declarations(model, task.input_shape(image_shape), image_shape)
    except declarations.DeclarationError as e:
        raise config_lib.ConfigError(str(e)) from None


def check_task(task: Task, image_shape: tuple[int, int, int]) -> None:
    """A task that cannot run at `image_shape`, as a ConfigError naming its config field
    (`check_model` names the task itself, for a task built outside a config); then a task of
    one's own that does not keep its contract (`check_task_example`)."""
    try:
        task.check(image_shape)
    except ValueError as e:
        raise config_lib.ConfigError(f"config.task.{e}") from None
    check_task_example(task, image_shape)


TRACED_BATCH = 5  # the batch size a task and an objective are traced at (an odd one)


def check_task_example(task: Task, image_shape: tuple[int, int, int]) -> None:
    """Traces `task.make_example` on an abstract batch, twice (nothing is computed): inputs
    of another shape than its `input_shape` declares, targets not shaped as the images, or
    two traces that differ (a draw with NumPy or Python's random rather than with the key:
    fixed when the step is traced, the same at every step, out of the seed's reach) are a
    ConfigError naming the task, before anything compiles."""
    name = f"task {type(task).__name__}"
    images = jax.ShapeDtypeStruct((TRACED_BATCH, *image_shape), jnp.uint8)
    try:
        traced, again = (jax.make_jaxpr(task.make_example)(images, jax.random.key(0))
                         for _ in range(2))
    except Exception as e:  # noqa: BLE001 (a task of one's own may raise anything)
        raise config_lib.ConfigError(f"{name} fails on a batch of {shape_text(image_shape)} "
                                     f"images: {type(e).__name__}: {first_line(e)}"
                                     f"{raised_at(e)}") from None
    inputs, targets = (tuple(out.shape) for out in traced.out_avals[:2])
    declared = tuple(task.input_shape(image_shape))
    if inputs[1:] != declared:
        raise config_lib.ConfigError(
            f"{name} makes inputs of {shape_text(inputs[1:])} from {shape_text(image_shape)} "
            f"images, but its input_shape says {shape_text(declared)}: make input_shape "
            "return the shape corrupt returns")
    if targets != (TRACED_BATCH, *image_shape):
        raise config_lib.ConfigError(
            f"{name} makes targets of {shape_text(targets[1:])} from "
            f"{shape_text(image_shape)} images: make_example returns (inputs, the images as "
            "floats in [0, 1]) and only corrupt changes the inputs")
    if not _same_trace(traced, again):
        raise config_lib.ConfigError(
            f"{name} makes other inputs each time it is traced (a draw with NumPy or "
            "Python's random?): the step would fix one when it compiles, the same at every "
            "step, and no seed reaches it: draw in corrupt with jax.random and the key "
            "corrupt is given")


def _same_trace(one: Any, other: Any) -> bool:
    """Whether two jaxprs of the same function are the same program with the same
    constants (NaN equal to NaN)."""
    return str(one.jaxpr) == str(other.jaxpr) and len(one.consts) == len(other.consts) and \
        all(np.array_equal(np.asarray(a), np.asarray(b),
                           equal_nan=np.issubdtype(np.asarray(a).dtype, np.inexact))
            for a, b in zip(one.consts, other.consts, strict=True))


def check_objective(objective: objectives.Objective, model: nn.Module,
                    image_shape: tuple[int, int, int], field: str) -> None:
    """Traces `objective` as training calls it, on abstract flat logits and targets [B,
    pixels] and the model's aux (nothing is computed): one that fails there (a loss or a
    likelihood of one's own written for [B, H, W, C] arrays, say) or does not give one
    "loss" per image is a ConfigError naming config.`field`, before anything compiles."""
    pixels = math.prod(image_shape)
    flat = jax.ShapeDtypeStruct((TRACED_BATCH, pixels), jnp.float32)
    aux = {}
    if model.variational:  # what NegativeELBO reads of a variational model's aux
        latent = jax.ShapeDtypeStruct((TRACED_BATCH, *model.latent_shape), jnp.float32)
        aux = {"mean": latent, "log_sigma": latent}
    likelihood = getattr(objective, "likelihood", None)  # its log p(x | z) on its own first:
    if likelihood is not None:  # a scalar or per-pixel one would broadcast against the KL
        _check_per_image(lambda: jax.eval_shape(likelihood.log_prob, flat, flat), field,
                         pixels, "log_prob")
    _check_per_image(lambda: jax.eval_shape(objective, flat, flat, aux), field, pixels, "loss")


def _check_per_image(trace: Callable[[], Any], field: str, pixels: int, what: str) -> None:
    """`check_objective`'s check of one traced function (`trace`): it runs on flat [B,
    pixels] arrays and gives one number per image, as "loss" of a dict of terms or alone."""
    try:
        out = trace()
    except Exception as e:  # noqa: BLE001 (a loss of one's own may raise anything)
        raise config_lib.ConfigError(
            f"config.{field} fails on flat logits and targets [batch, {pixels}] (each image's "
            f"pixels in one row, as training gives them): {type(e).__name__}: "
            f"{first_line(e)}{raised_at(e)}") from None
    value = out.get(what) if isinstance(out, dict) else out
    if getattr(value, "shape", None) != (TRACED_BATCH,):
        given = (f"an array of shape {list(value.shape)}" if hasattr(value, "shape") else
                 f"no {what!r}" if isinstance(out, dict) else f"a {type(out).__name__}")
        raise config_lib.ConfigError(
            f"config.{field} gives {'its ' + what + ' as ' if what == 'log_prob' else ''}"
            f"{given} for a batch of {TRACED_BATCH} flat images [{TRACED_BATCH}, {pixels}], "
            f"not one per image [{TRACED_BATCH}]: reduce over the pixels (axis -1)")


class RunObjects(NamedTuple):
    """What a config's run is made of, besides its data and optimiser."""

    task: Task
    model: nn.Module  # float32: evaluation, pictures and checkpoints
    train_model: nn.Module  # in config.train.compute_dtype: the training steps (or `model`)
    objective: objectives.Objective


def run_objects(config: ml_collections.ConfigDict, image_shape: tuple[int, int, int],
                num_classes: int, train: bool = False, check: bool = True) -> RunObjects:
    """The config's task, models and objective for images of `image_shape`, the task and
    the model checked against them (`check_task`, `check_model`) before anything compiles.
    `train`: also the model in config.train.compute_dtype (else `model` stands for it: only
    training computes in that dtype, and only it warns of a dtype a model ignores).
    `check=False` skips the checks (they trace the task, the model and the objective) where
    this process has just built and checked the same objects (an experiment's runs, read
    back after training)."""
    task = config_lib.make_task(config)
    if check:
        check_task(task, image_shape)
    model = make_model(config, image_shape, num_classes)
    train_model = make_model(config, image_shape, num_classes, config.train.compute_dtype) \
        if train else model
    if check:
        check_model(model, task, image_shape)
    objective = make_objective(config, model)
    if check:
        check_objective(objective, model, image_shape,
                        "objective.likelihood" if model.variational else "objective.loss")
    return RunObjects(task, model, train_model, objective)


def make_objective(config: ml_collections.ConfigDict, model: nn.Module
                   ) -> objectives.Objective:
    """The negative ELBO for a model that declares itself variational, else its loss."""
    return objectives.objective_for(
        model.variational, loss=config_lib.make_loss(config),
        likelihood=config_lib.make_likelihood(config), beta=config.objective.beta,
        warmup_steps=config.objective.beta_warmup_steps)


def variational_before_data(config: ml_collections.ConfigDict) -> bool | None:
    """Whether the config's model declares itself variational, from the model built (not
    traced) at a stand-in size: data.image_size and channels where set, else 28x28x1, with
    10 classes. None where it cannot be built there (a model of one's own for other
    images): the data's own size decides, once they are loaded."""
    size = config.data.get("image_size") or 28
    try:
        model = make_model(config, (size, size, config.data.get("channels") or 1), 10)
        return bool(model.variational)
    except Exception:  # noqa: BLE001 (any failure here is the data's size to settle)
        return None


def check_unread_fields(config: ml_collections.ConfigDict, variational: bool, task: Task
                        ) -> None:
    """A new run's task or objective field that the run does not read, set to other than
    the base config's value, is a ConfigError: the run would train another task or
    objective than the one asked for. Unread: a task's fields it does not take (and those a
    task declares `unread_fields`: a denoising task's other corruption); a plain
    autoencoder's likelihood fields and beta; a `variational` model's loss and the fields
    its likelihood does not take. (A trained run's config.json stands as recorded.)"""
    base = config_lib.base_config()
    taken = parameters(TASKS.get(config.task.name))
    unread = {f: f"it takes no {f}" for f in base.task.keys() if f != "name" and f not in taken}
    for field, why in {**unread, **getattr(task, "unread_fields", {})}.items():
        if field in config.task and (value := config.task[field]) != base.task[field]:
            raise config_lib.ConfigError(
                f"config.task.{field}={value!r} is set, but task {config.task.name!r} does not "
                f"read it ({why}), so the run would ignore it: leave task.{field} unset")
    if variational:
        likelihood = parameters(objectives.LIKELIHOODS.get(config.objective.likelihood))
        unread = ["loss", *(f for f in base.objective.keys()
                            if f not in config_lib.ELBO_FIELDS and f not in likelihood)]
        why = (f"minimises -ELBO under objective.likelihood={config.objective.likelihood!r} "
               "and beta")
    else:
        unread = [f for f in base.objective.keys() if f != "loss"]
        why = "minimises objective.loss"
    for field in unread:
        if field in config.objective and (value := config.objective[field]) != \
                base.objective[field]:
            raise config_lib.ConfigError(
                f"config.objective.{field}={value!r} is set, but model {config.model.name!r} "
                f"{why}, so the run would ignore it: leave objective.{field} unset"
                + ("" if variational else ", or train a variational model"))


def warmup_note(config: ml_collections.ConfigDict, variational: bool, total_steps: int
                ) -> str | None:
    """The line a new run of a VAE with a KL warm-up prints: beta's ramp, and where the run
    ends before the ramp does, the beta it ends at (warned: the run never trains the ELBO
    it reports); None without a warm-up."""
    steps, beta = config.objective.get("beta_warmup_steps", 0), config.objective.beta
    if not (variational and steps):
        return None
    if steps > total_steps:
        return (f"warning: objective.beta_warmup_steps={steps} is more than the run's "
                f"{total_steps} steps: its last step trains with beta "
                f"{beta * (total_steps - 1) / steps:.3g} of {beta:g}")
    return f"note: beta rises from 0 to {beta:g} over the first {steps} of {total_steps} steps"


def init_scheme(config: ml_collections.ConfigDict) -> str:
    """The model section's initialisation scheme (Keras' Glorot when it names none)."""
    return config.model.get("init", DEFAULT_SCHEME)


def init_scheme_note(config: ml_collections.ConfigDict) -> str | None:
    """The line a fresh run of a model of the user's own prints where the scheme redraws its
    Dense/Conv weights, so initialisers its modules give (a VAE's log-sigma head at zero,
    say) are not replaced unnoticed; None for jaxae's models (made for the scheme) and for
    "lecun", which keeps the modules' own."""
    scheme, name = init_scheme(config), config.model.name
    if not SCHEMES[scheme].redraws or MODELS.defined_by_jaxae(MODELS.get(name)):
        return None
    return (f"note: model.init={scheme!r} redraws every Dense/Conv kernel and bias of "
            f"{display_name(name)}, replacing any initialisers its modules give; "
            "--config.model.init=lecun keeps them")


def replaced_defaults_note(config: ml_collections.ConfigDict) -> str | None:
    """The line a fresh run of a model of the user's own prints where a field every config
    carries (model.latent_dim), left at the base config's value, replaces another default
    the model's class declares: the class's default would otherwise be lost unnoticed. None
    for jaxae's models (made for the config's defaults) and where the values agree."""
    name, base = config.model.name, config_lib.base_config().model
    entry = MODELS.get(name)
    if MODELS.defined_by_jaxae(entry):
        return None
    declared = parameters(entry)
    replaced = [(field, config.model[field], declared[field].default)  # ("name": the module's)
                for field in base if field != "name" and field in declared
                and declared[field].default is not declared[field].empty
                and config.model.get(field) == base[field] != declared[field].default]
    if not replaced:
        return None
    says = ", ".join(f"model.{field}={value!r} (the base config's default) replaces "
                     f"{display_name(name)}'s own {default!r}"
                     for field, value, default in replaced)
    keep = " ".join(f"--config.model.{field}={default!r}" for field, _, default in replaced)
    return f"note: {says}; {keep} keeps {'it' if len(replaced) == 1 else 'them'}"


def make_optimizer(config: ml_collections.ConfigDict, total_steps: int | None = None
                   ) -> optax.GradientTransformation:
    optim = config.optim
    return optimizers.make_optimizer(optim.name, optim.learning_rate, optim.schedule,
                                     total_steps, optim.get("weight_decay"))
