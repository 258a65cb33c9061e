"""Checks that a model keeps the calling convention it declares, before anything compiles.

A model of the user's own (a registered name, a `file.py:Class`) is read by the objective,
the metrics and the pictures through what it declares: `variational`, `conditional`,
`latent_shape`, and logits shaped as the images. A model that declares these wrongly would
train and then fail in evaluation, or fail deep in a trace. `check_declarations` traces the
model on an abstract batch as the steps call it (`jax.eval_shape`: nothing is computed or
compiled) and says in one line which declaration does not hold.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator, Mapping

import flax.errors
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxae.messages import first_line, raised_at
from jaxae.models.base import (
    DROPOUT_RNG,
    Autoencoder,
    VariationalAutoencoder,
    channels_first,
    channels_first_error,
    state_collections,
)

DECLARED = ("variational", "conditional", "latent_shape")
VARIATIONAL_AUX = ("mean", "log_sigma", "z")  # what a variational model's aux must hold
BATCH = 2  # the abstract batch's size
# the base classes' own __call__: keyless at z = z_mean, they call encode and decode as with a
# key, so a model that keeps one needs no keyless call of its own checked
BASE_CALLS = (Autoencoder.__call__, VariationalAutoencoder.__call__)
STATE_FIX = ("a layer keeps state (BatchNorm's batch_stats): declare it in the model's "
             "state_collections (state_collections = ('batch_stats',)), and change it only "
             "while training: nn.BatchNorm(use_running_average=not "
             "jaxae.models.in_training(self))")
STATE_CHANGE_FIX = ("a layer changes its state outside training: change it only while "
                    "training: nn.BatchNorm(use_running_average=not "
                    "jaxae.models.in_training(self))")
# Flax's errors for the layers a model cannot hold (`jaxae.models.base`), and what to use
UNSUPPORTED_LAYERS = {
    flax.errors.ScopeCollectionNotFound: STATE_FIX,  # reads a collection the steps do not give
    flax.errors.ModifyScopeVariableError: STATE_FIX,  # or writes one
    flax.errors.InvalidRngError: "a model draws with the key its __call__ takes (a VAE's z) "
    f"and, while jaxae.models.in_training(self), from the stream '{DROPOUT_RNG}' "
    f"(nn.Dropout(rate, deterministic=not jaxae.models.in_training(self)), self.make_rng("
    f"'{DROPOUT_RNG}')): the steps give no other; or corrupt the input with a task "
    "(task.name=denoise)",
}

# Flax's errors where the parameters given to `apply` are not those the model makes
PARAMS_MISMATCH = (flax.errors.ScopeParamShapeError, flax.errors.ScopeParamNotFoundError)
# the same errors where encode or decode, called alone, finds other parameters than the whole
# model made: unnamed layers of @nn.compact methods are numbered per method
UNNAMED_LAYERS = PARAMS_MISMATCH
UNNAMED_LAYERS_FIX = ("encode or decode, called alone, finds other parameters than the whole "
                      "model made: name the layers of @nn.compact encode and decode "
                      "(name='...'; Flax numbers unnamed ones within each method), and use "
                      "each layer in one method, on inputs of one shape")


def check_images(shape: tuple[int, ...], where: str,
                 image_shape: tuple[int, ...] | None = None) -> None:
    """A ValueError naming the fix for a batch of images `shape` [B, H, W, C] that reads as
    channels first (`channels_first`), or that is not of the `image_shape` the model was
    built for (a convolutional model runs on other sizes, computing something else)."""
    shape = tuple(shape)
    if len(shape) == 4 and channels_first(shape[1:]):
        raise channels_first_error(shape, where)
    if image_shape is not None and len(shape) == 4 and shape[1:] != tuple(image_shape):
        size, built = ("x".join(map(str, s)) for s in (shape[1:], image_shape))
        raise ValueError(f"{where}'s images are {size}, but the model was built for {built} "
                         f"images: build it with image_shape={tuple(shape[1:])}, or give "
                         f"{built} images")


class DeclarationError(ValueError):
    """A model that does not do what it declares; the message names the declaration."""


def flax_text(error: BaseException) -> str:
    """The first line of a Flax error without the link to its documentation page."""
    return re.sub(r" \(https://flax\.readthedocs\.io[^)]*\)", "", first_line(error)).rstrip(".")


@contextlib.contextmanager
def matching_params(model: nn.Module, inputs: str = "") -> Iterator[None]:
    """Raises a DeclarationError naming the fix for parameters that another model made, or
    the same model on other inputs (`inputs`: the inputs' shape, for the message), where
    Flax would raise its own error from deep in the model."""
    name = type(model).__name__
    try:
        yield
    except PARAMS_MISMATCH as e:
        other = f" than these {inputs} ones" if inputs else ""
        raise DeclarationError(
            f"the parameters given to model {name} were made for another model "
            f"or for other inputs{other} ({flax_text(e)}): give the parameters of this "
            "model, initialised on inputs of the data's shape") from None
    except flax.errors.ApplyScopeInvalidVariablesStructureError:
        raise DeclarationError(
            f"the parameters given to model {name} hold a 'params' collection, as Flax's "
            "variables dict does: give the parameters themselves (variables['params']), or "
            "jaxae.models.Variables(params, state) for a model that keeps state") from None
    except flax.errors.ScopeCollectionNotFound as e:
        if not state_collections(model):
            raise
        raise DeclarationError(
            f"model {name} keeps state ({', '.join(state_collections(model))}), and was given "
            f"its parameters alone ({flax_text(e)}): give its Variables, state.variables "
            "(jaxae.models.Variables(params, state))") from None


def shape_text(shape: tuple[int, ...]) -> str:
    """'28x28x1' (an empty shape: 'a scalar'), as messages name shapes."""
    return "x".join(map(str, shape)) if shape else "a scalar"


def split_output(name: str, output, variational: bool) -> tuple:
    """A model call's (logits, aux) (aux None counts as {}), or DeclarationError where it
    returns something else (an array alone would unpack along its batch axis) or where a
    variational model's aux is not a mapping."""
    if isinstance(output, (tuple, list)) and len(output) == 2:
        logits, aux = output
        aux = {} if aux is None else aux
        if not variational or isinstance(aux, Mapping):
            return logits, aux
        raise DeclarationError(f"model {name} is variational but returns an aux of type "
                               f"{type(aux).__name__}: return (logits, {{'mean': ..., "
                               "'log_sigma': ..., 'z': ...}})")
    what = (f"an array of shape {shape_text(tuple(output.shape))}" if hasattr(output, "shape")
            else f"a {type(output).__name__}" + (f" of {len(output)}"
                                                 if isinstance(output, (tuple, list)) else ""))
    raise DeclarationError(f"model {name} returns {what} from __call__, not (logits, aux): "
                           "subclass jaxae.models.Autoencoder, whose __call__ returns them, or "
                           "return (logits, {}) (a VAE: aux with its mean, log_sigma and z)")


def check_logits(name: str, logits, batch: int, input_shape: tuple[int, ...],
                 image_shape: tuple[int, ...]) -> None:
    """Raises DeclarationError unless `logits` (of model `name`, for `batch` inputs of
    `input_shape`) are shaped [batch, *image_shape], as the targets are."""
    shape = getattr(logits, "shape", None)
    if shape == (batch, *image_shape):
        return
    if shape is None:
        raise DeclarationError(
            f"model {name} returns logits of type {type(logits).__name__}, not an array: its "
            f"decode must return one array [batch, {', '.join(map(str, image_shape))}]")
    if shape and len(shape) == 1 + len(image_shape) and shape[0] != batch:
        raise DeclarationError(
            f"model {name} returns logits of {shape[0]} images for a batch of {batch}: its "
            f"decode must return [batch, {', '.join(map(str, image_shape))}]")
    raise DeclarationError(
        f"model {name} returns logits of shape {shape_text(_per_image(logits))} per image for "
        f"{shape_text(tuple(image_shape))} images"
        + (f" (its inputs are {shape_text(tuple(input_shape))}, as the task gives them)"
           if tuple(input_shape) != tuple(image_shape) else "")
        + f": its decode must return [batch, {', '.join(map(str, image_shape))}]")


def check_codes(name: str, aux: dict, batch: int) -> None:
    """Raises DeclarationError unless a variational model's `aux` holds a mean and a
    log-sigma of shape [batch, d]: the ELBO's terms sum over one latent axis."""
    for what in ("mean", "log_sigma"):
        shape = getattr(aux.get(what), "shape", None)
        if shape is None:
            raise DeclarationError(f"model {name} is variational but returns no aux['{what}']"
                                   ": return the code's mean and log-sigma with the logits")
        if len(shape) != 2 or shape[0] != batch:
            raise DeclarationError(
                f"model {name} is variational with a {what} of shape {shape_text(tuple(shape))} "
                f"for a batch of {batch}: the ELBO's terms sum over one latent axis, so "
                f"flatten the code in encode (latent_shape ({_size(tuple(shape[1:]))},))")


def check_declarations(model: nn.Module, input_shape: tuple[int, ...],
                       image_shape: tuple[int, ...] | None = None) -> None:
    """Raises DeclarationError unless `model` declares `variational`, `conditional` and
    `latent_shape`, runs as the steps run it (on its parameters and the state it declares,
    `state_collections`; evaluated without an rng stream and with its state read-only,
    trained with "dropout" and its state updated), maps a batch of `input_shape` inputs
    to logits of `image_shape`, encodes to codes of `latent_shape` (a variational model: a
    mean and a log-sigma of that flat shape) and decodes a code back to the logits' shape.
    Without `image_shape` (a model that has none, given to `create_train_state`) the logits
    may have any per-image shape; the steps check it against their targets as they are
    traced."""
    name = type(model).__name__
    missing = [a for a in DECLARED if not _declares(model, a)]
    if missing:
        raise DeclarationError(
            f"model {name} does not declare {', '.join(missing)}: subclass "
            "jaxae.models.Autoencoder or VariationalAutoencoder, which give the calling "
            "convention, and give it a latent_shape property")
    try:
        latent_shape = model.latent_shape
    except NotImplementedError:
        raise DeclarationError(f"model {name} declares no latent_shape: give it a "
                               "latent_shape property, one image's code (e.g. "
                               "(latent_dim,))") from None
    except Exception as e:  # noqa: BLE001 (the user's property may raise anything)
        raise DeclarationError(f"model {name}'s latent_shape raises {type(e).__name__}: "
                               f"{first_line(e)}{raised_at(e)}") from None
    if latent_shape is not None and not (
            isinstance(latent_shape, (tuple, list))
            and all(isinstance(n, int) and n > 0 for n in latent_shape)):
        raise DeclarationError(f"model {name}'s latent_shape is {latent_shape!r}: give a tuple "
                               "of positive sizes, e.g. (latent_dim,), or None where the "
                               "model has no code")
    if model.variational and (latent_shape is None or len(latent_shape) != 1):
        raise DeclarationError(
            f"model {name} is variational with latent_shape {latent_shape}: the ELBO's terms "
            "sum over one latent axis, so flatten the code in encode (latent_shape "
            f"({_size(latent_shape)},))")
    key = jax.random.key(0)
    x = jax.ShapeDtypeStruct((BATCH, *input_shape), jnp.float32)
    labels = jax.ShapeDtypeStruct((BATCH,), jnp.int32) if model.conditional else None
    try:
        collections = state_collections(model)
    except TypeError as e:  # one string, not a tuple of them
        raise DeclarationError(str(e)) from None

    def run(x, labels):
        # initialised as `steps.init_variables` does, and called as the steps and the
        # pictures call it, on its parameters and declared state alone: evaluated (z sampled
        # with the key; keyless at z = z_mean; the state read-only) and trained (the
        # "dropout" stream; the state updated). Flax's init lends a missing rng stream the
        # params stream, so only these calls find a draw outside training, or a collection
        # (batch_stats) the steps lack or do not update.
        initial = model.init(key, x, labels=labels, sample=False)
        if lacks := [c for c in collections if c not in initial]:
            raise DeclarationError(
                f"model {name} declares state_collections {tuple(collections)} but its "
                f"layers keep no {', '.join(lacks)}: declare only the collections they "
                "keep (BatchNorm's batch_stats)")
        variables = {c: initial.get(c, {}) for c in ("params", *collections)}
        output = model.apply(variables, x, labels=labels, key=key)
        if type(model).__call__ not in BASE_CALLS:  # a base's call draws only with the key
            model.apply(variables, x, labels=labels, sample=False)
        model.apply(variables, x, labels=labels, key=key, rngs={DROPOUT_RNG: key},
                    **({"mutable": list(collections)} if collections else {}))
        logits, aux = split_output(name, output, model.variational)
        if model.variational and (lacks := [k for k in VARIATIONAL_AUX if k not in aux]):
            raise DeclarationError(
                f"model {name} declares variational = True but its aux lacks "
                f"{', '.join(lacks)}: return (logits, {{'mean': ..., 'log_sigma': ..., 'z': "
                "...}) (subclass VariationalAutoencoder), or declare variational = False")
        code = model.apply(variables, x, labels=labels, method="encode")
        z = aux["z"] if model.variational else code
        agrees = latent_shape is not None and _per_image(z) == tuple(latent_shape)
        decoded = model.apply(variables, z, labels=labels, method="decode") if agrees else None
        # (codes of another shape than latent_shape are named below, as the encoder's)
        return logits, aux, code, decoded

    try:
        logits, aux, code, decoded = jax.eval_shape(run, x, labels)
    except DeclarationError:
        raise
    except Exception as e:  # noqa: BLE001 (the user's code may raise anything)
        text = flax_text(e)
        text = text.replace("None needs PRNG", f"{name} needs PRNG")  # the top module, unnamed
        fixes = {**UNSUPPORTED_LAYERS, UNNAMED_LAYERS: UNNAMED_LAYERS_FIX}
        if collections:  # declared: what remains is to change it only while training
            fixes[flax.errors.ModifyScopeVariableError] = STATE_CHANGE_FIX
        fix = next((f": {fix}" for kind, fix in fixes.items() if isinstance(e, kind)), "")
        raise DeclarationError(f"model {name} fails on a batch of {shape_text(input_shape)} "
                               f"inputs: {type(e).__name__}: {text}{raised_at(e)}{fix}"
                               ) from None
    if image_shape is None:  # the logits' own shape, once they are an array of the batch
        image_shape = _per_image(logits) or tuple(input_shape)
    want = (BATCH, *image_shape)
    check_logits(name, logits, BATCH, input_shape, image_shape)
    codes = {"mean": aux.get("mean"), "log_sigma": aux.get("log_sigma")} \
        if model.variational else {"code": code}
    for what, value in codes.items():
        if latent_shape is not None and _per_image(value) != tuple(latent_shape):
            raise DeclarationError(
                f"model {name} declares latent_shape {tuple(latent_shape)} but its encoder "
                f"gives a {what} of shape {_per_image(value)} per image: make them agree")
    if decoded is not None and getattr(decoded, "shape", None) != want:
        raise DeclarationError(
            f"model {name}'s decode of a code of shape {tuple(latent_shape)} gives "
            f"{shape_text(_per_image(decoded))} per image, not {shape_text(tuple(image_shape))}")


def declares_any(model: nn.Module) -> bool:
    """Whether the model declares any part of the calling convention (DECLARED)."""
    return any(_declares(model, attribute) for attribute in DECLARED)


def _declares(model: nn.Module, attribute: str) -> bool:
    """Whether the model's class defines `attribute` (a property is not evaluated)."""
    return any(attribute in vars(klass) for klass in type(model).__mro__)


def _per_image(value) -> tuple[int, ...] | None:
    shape = getattr(value, "shape", None)
    return None if shape is None else tuple(shape[1:])


def _size(shape: tuple[int, ...] | None) -> str:
    return str(math.prod(shape)) if shape else "d"
