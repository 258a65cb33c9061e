"""The one calling convention of every jaxae model, and the base classes that give it.

Every model is a Flax module with

    logits, aux = model.apply(variables, x, labels=None, key=None, sample=True)
    code = model.apply(variables, x, labels=None, method="encode")  # a VAE: (mean, log_sigma)
    logits = model.apply(variables, z, labels=None, method="decode")

`logits` has the shape of the images the model reconstructs (the pixel values are their
sigmoid: losses take logits, in their numerically stable forms); `aux` is a dict, empty for
plain autoencoders and {"mean", "log_sigma", "z"} for variational ones. What a model is, it
declares: `variational` (its encoder gives q(z | x)), `conditional` (it reads `labels`)
and `latent_shape` (one image's code, None where it has no bottleneck; a VAE's is flat);
`jaxae.models.declarations` checks these before anything compiles.
Conditional models need `labels`; the others ignore them. A variational model draws z with
`key` (or a Flax rng stream named "sample"); a missing one is an error, and
`sample=False` asks for z = z_mean explicitly.

A model's variables are its `params`, and the collections it declares as its state in
`state_collections` (BatchNorm's "batch_stats"): the training steps update those (`apply`
with them mutable) and everything else reads them, from a train state's `model_state`;
evaluation takes `Variables(params, state)` where it takes parameters (`state.variables`).
Layers that act only while training ask `in_training(self)`: `nn.Dropout(rate,
deterministic=not in_training(self))` drops units while training and is the identity in
evaluation, `encode` and `decode`; `nn.BatchNorm(use_running_average=not
in_training(self))` normalises by the batch while training and by its running averages
elsewhere. The training steps give the rng stream "dropout" (from the step's key) and
nothing else does (a loop of your own passes `rngs={"dropout": key}` to `apply` while
training, and `mutable=["batch_stats"]`). Corruption of the input belongs to the task
(`jaxae.tasks`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxae.kernels import random
from jaxae.keys import check_key

ModuleDef = Any  # a module class, or a functools.partial of one (the layer to build with)
Aux = dict[str, jax.Array]
SAMPLE_RNG = "sample"
DROPOUT_RNG = "dropout"  # the stream the training steps give a model's own layers
BATCH_STATS = "batch_stats"  # Flax BatchNorm's collection of running averages


def in_training(module: nn.Module) -> bool:
    """Whether `module` runs inside a training step: only those give the "dropout" stream
    (and make BatchNorm's running averages, "batch_stats", mutable; a loop of one's own
    that passes either is training), and `model.init`, whose collections are all mutable
    (a layer's training-only variables are made there). Layers that act only while
    training read it:
    `nn.Dropout(rate, deterministic=not in_training(self))`,
    `nn.BatchNorm(use_running_average=not in_training(self))`. A layer inside a lifted
    transform (`nn.scan`, `nn.vmap`) sees the stream only where the transform's split_rngs
    names it: split_rngs={"params": True, "dropout": True}."""
    return module.has_rng(DROPOUT_RNG) or module.is_mutable_collection(BATCH_STATS)


def state_collections(model: nn.Module) -> tuple[str, ...]:
    """The Flax collections besides "params" that a model declares as its state (its
    `state_collections`, e.g. ("batch_stats",) for BatchNorm): none unless declared; a
    TypeError naming the fix for one string, which would read as its letters."""
    declared = getattr(model, "state_collections", ())
    if isinstance(declared, str):
        raise TypeError(f"model {type(model).__name__}'s state_collections is the string "
                        f"{declared!r}: give a tuple of collections, ({declared!r},)")
    return tuple(declared)


@flax.struct.dataclass
class Variables:
    """A model's parameters with its state ({collection: tree}; `state_collections`): what
    evaluation takes where it takes parameters, for a model that keeps state
    (`TrainState.variables`). `variables_of` makes `apply`'s dict of it."""

    params: Any
    state: Any = flax.struct.field(default_factory=dict)


ModelParams = dict | Variables  # what evaluation takes: the parameters, or with the state


def variables_of(params: ModelParams) -> dict[str, Any]:
    """The variables `model.apply` takes, of a model's parameters alone or of its
    `Variables` (the parameters with the model's state)."""
    if isinstance(params, Variables):
        return {"params": params.params, **params.state}
    return {"params": params}


def _not_given(module: nn.Module, method: str, argument: str, returns: str
               ) -> NotImplementedError:
    """The error of a model that leaves `method` to its base class."""
    return NotImplementedError(f"{type(module).__name__} gives no {method}: define "
                               f"{method}(self, {argument}, *, labels=None) returning {returns}")


def _is_array(value: Any) -> bool:
    """A JAX or NumPy array (an encoder given NumPy inputs may return one)."""
    return isinstance(value, (jax.Array, np.ndarray))


def _described(value: Any) -> str:
    """What an encoder returned, in words: "one array", "a tuple of 3", "a pair of ..."."""
    if _is_array(value):
        return "one array"
    if not isinstance(value, (tuple, list)):
        return f"a {type(value).__name__}"
    if len(value) != 2:
        return f"a {type(value).__name__} of {len(value)}"
    return "a pair of " + " and ".join(f"a {type(part).__name__}" for part in value)


def _check_pixels(module: nn.Module, x: Any) -> None:
    """A TypeError for integer pixels: a model takes floats in [0, 1], and uint8 ones
    (0..255) would run, giving meaningless logits and losses."""
    dtype = getattr(x, "dtype", None)
    if dtype is not None and jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(f"{type(module).__name__} takes pixels as floats in [0, 1], not "
                        f"{dtype} ones: scale them (x / 255.0 for 8-bit pixels, as "
                        "jaxae.data.batches.to_float does)")


def channels_first(image_shape: tuple[int, ...]) -> bool:
    """Whether one image's shape reads as channels first, [C, H, W] with a square H x W and
    1, 3 or 4 channels, where jaxae's images are [H, W, C]: (1, 28, 28), (3, 32, 32). A
    channels-last shape is never square in its first two axes and 1-4 wide in its first."""
    if len(image_shape) != 3:
        return False
    depth, height, width = image_shape
    return depth in (1, 3, 4) and height == width and width not in (1, 3, 4)


def channels_first_error(shape: tuple[int, ...], where: str) -> ValueError:
    """The error for a batch of images `shape` that reads as channels first."""
    return ValueError(f"{where}'s images are [{', '.join(map(str, shape))}], channels first: "
                      "jaxae takes [B, H, W, C]: transpose them, e.g. "
                      "np.transpose(images, (0, 2, 3, 1))")


def _method_name(method: Any) -> str | None:
    """The name of the method `apply` or `init` is asked to run (None: a function of one's
    own, e.g. a lambda, which is not checked)."""
    if method is None:
        return "__call__"
    return method if isinstance(method, str) else getattr(method, "__name__", None)


def _check_inputs(module: nn.Module, method: Any, args: tuple) -> None:
    """Errors naming the fix for what `apply` or `init` would run on silently, or fail on
    deep in the model: images given to `__call__` or `encode` that are integers or not
    [B, H, W, C] (one image without its batch axis, as under `jax.vmap`; channels first),
    and codes given to `decode` that are not [B, *latent_shape]."""
    name, x = _method_name(method), (args[0] if args else None)
    shape, owner = getattr(x, "shape", None), type(module).__name__
    if shape is None:
        return
    if name in ("__call__", "encode"):
        _check_pixels(module, x)
        if len(shape) != 4:
            one = (": one image without its batch axis? give x[None] (under jax.vmap, "
                   "apply the model to x[None] inside the mapped function)"
                   if len(shape) == 3 else "")
            raise ValueError(f"{owner}.{name} takes images [B, H, W, C], not "
                             f"[{', '.join(map(str, shape))}]{one}")
        if channels_first(shape[1:]):
            raise channels_first_error(shape, f"{owner}.{name}")
    elif name == "decode":
        try:
            latent = module.latent_shape
        except (NotImplementedError, ValueError, TypeError, AttributeError):
            return  # a model that declares none (its checks are check_declarations')
        if latent is not None and tuple(shape[1:]) != tuple(latent):
            wanted = ", ".join(map(str, ("B", *latent)))
            raise ValueError(f"{owner}.decode takes codes [{wanted}], not "
                             f"[{', '.join(map(str, shape))}]"
                             + (": give z[None] for one code" if shape == tuple(latent) else ""))


class CheckedInputs(nn.Module):
    """`apply` and `init` that check the images or codes they are given (`_check_inputs`)
    before the model runs: the base of both kinds of model."""

    @nn.nowrap
    def apply(self, variables: Any, *args: Any, method: Any = None, **kwargs: Any) -> Any:
        _check_inputs(self, method, args)
        return super().apply(variables, *args, method=method, **kwargs)

    @nn.nowrap
    def init_with_output(self, rngs: Any, *args: Any, method: Any = None, **kwargs: Any
                         ) -> Any:
        _check_inputs(self, method, args)
        return super().init_with_output(rngs, *args, method=method, **kwargs)


class Autoencoder(CheckedInputs):
    """Base of plain autoencoders: subclasses give `encode` and `decode`."""

    variational: ClassVar[bool] = False
    state_collections: ClassVar[tuple[str, ...]] = ()  # ("batch_stats",) with BatchNorm

    @property
    def conditional(self) -> bool:
        """Whether encode and decode read the class `labels` [B] (int); False here."""
        return False

    @property
    def latent_shape(self) -> tuple[int, ...] | None:
        """The shape of one image's code (e.g. (10,), or (4, 4, 8) for the conv AE)."""
        raise NotImplementedError

    def encode(self, x: jax.Array, *, labels: jax.Array | None = None) -> jax.Array:
        """The code [B, *latent_shape] of images `x` [B, H, W, C] (floats in [0, 1])."""
        raise _not_given(self, "encode", "x", "the code [B, *latent_shape]")

    def decode(self, z: jax.Array, *, labels: jax.Array | None = None) -> jax.Array:
        """Logits [B, H, W, C] of the images that codes `z` [B, *latent_shape] stand for
        (their sigmoid is the picture)."""
        raise _not_given(self, "decode", "z", "logits [B, H, W, C]")

    def __call__(self, x: jax.Array, *, labels: jax.Array | None = None,
                 key: jax.Array | None = None, sample: bool = True) -> tuple[jax.Array, Aux]:
        del key, sample  # nothing to draw
        _check_pixels(self, x)
        code = self.encode(x, labels=labels)
        if not _is_array(code):
            raise TypeError(f"{type(self).__name__}.encode must return one array, the code "
                            f"[B, *latent_shape], not a {type(code).__name__}")
        return self.decode(code, labels=labels), {}


def reparameterize(key: jax.Array, mean: jax.Array, log_sigma: jax.Array) -> jax.Array:
    """z = mean + exp(log_sigma) * eps, eps ~ N(0, I): log_sigma is the log of the std."""
    return sample_with_noise(key, mean, log_sigma)[0]


def sample_with_noise(key: jax.Array, mean: jax.Array, log_sigma: jax.Array
                      ) -> tuple[jax.Array, jax.Array]:
    """(z, eps) of `reparameterize`: the standard normal draw beside z, from which
    log q(z | x) = log N(eps; 0, I) - sum(log_sigma) holds where exp(log_sigma) underflows
    (z is the mean there, and (z - mean) / sigma would be 0 * inf)."""
    eps = random.normal(key, mean.shape, mean.dtype)
    return mean + jnp.exp(log_sigma) * eps, eps


class VariationalAutoencoder(CheckedInputs):
    """Base of VAEs: `encode` gives (z_mean, z_log_sigma), `decode` maps z to logits.

    z_log_sigma is the log of the standard deviation. `__call__` samples z by
    `reparameterize` with the given key, or z = z_mean when `sample=False`.
    """

    variational: ClassVar[bool] = True
    state_collections: ClassVar[tuple[str, ...]] = ()  # ("batch_stats",) with BatchNorm

    @property
    def conditional(self) -> bool:
        """Whether encode and decode read the class `labels` [B] (int); False here."""
        return False

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """The shape of one image's z, e.g. (latent_dim,)."""
        raise NotImplementedError

    def encode(self, x: jax.Array, *, labels: jax.Array | None = None
               ) -> tuple[jax.Array, jax.Array]:
        """(z_mean, z_log_sigma), each [B, *latent_shape], of images `x` [B, H, W, C]
        (floats in [0, 1]); z_log_sigma is the log of q(z | x)'s standard deviation."""
        raise _not_given(self, "encode", "x", "(z_mean, z_log_sigma), each [B, latent_dim]")

    def decode(self, z: jax.Array, *, labels: jax.Array | None = None) -> jax.Array:
        """Logits [B, H, W, C] of p(x | z) for codes `z` [B, *latent_shape]."""
        raise _not_given(self, "decode", "z", "logits [B, H, W, C]")

    def __call__(self, x: jax.Array, *, labels: jax.Array | None = None,
                 key: jax.Array | None = None, sample: bool = True) -> tuple[jax.Array, Aux]:
        _check_pixels(self, x)
        encoded = self.encode(x, labels=labels)
        if not (isinstance(encoded, (tuple, list)) and len(encoded) == 2
                and all(_is_array(part) for part in encoded)):
            raise TypeError(f"{type(self).__name__}.encode must return two arrays, (z_mean, "
                            f"z_log_sigma), each [B, latent_dim], not {_described(encoded)}")
        mean, log_sigma = encoded
        if not sample:
            z = mean
        else:
            if key is None:
                if not self.has_rng(SAMPLE_RNG):
                    raise ValueError(
                        f"{type(self).__name__} samples z ~ q(z | x): pass key=<PRNG key> (or "
                        f"rngs={{'{SAMPLE_RNG}': key}}), or sample=False for z = z_mean")
                key = self.make_rng(SAMPLE_RNG)
            else:
                check_key(key, f"{type(self).__name__}'s key")
            z = reparameterize(key, mean, log_sigma)
        return self.decode(z, labels=labels), {"mean": mean, "log_sigma": log_sigma, "z": z}


def one_hot_condition(h_BxF: jax.Array, labels_B: jax.Array | None, num_classes: int,
                      owner: str) -> jax.Array:
    """h with the one-hot label appended (a conditional model's input to a layer); labels
    held on the host outside 0 .. num_classes - 1 are a ValueError (`check_label_values`)."""
    if labels_B is None:
        raise ValueError(f"{owner} with num_classes={num_classes} is conditional on the class: "
                         "pass labels=<int array [B]>")
    check_label_values(owner, labels_B, num_classes)  # host labels: a model.apply of one's own
    labels_B = jnp.asarray(labels_B)  # a list of ints too
    dtype, shape = labels_B.dtype, labels_B.shape
    if not jnp.issubdtype(dtype, jnp.integer) or shape != h_BxF.shape[:1]:
        raise ValueError(f"{owner}'s labels are {dtype} [{', '.join(map(str, shape))}] for "
                         f"{h_BxF.shape[0]} images: give int labels [{h_BxF.shape[0]}], the "
                         f"class of each image, 0 .. {num_classes - 1} (one-hot encoding "
                         "makes any other value no class at all)")
    one_hot = jax.nn.one_hot(labels_B, num_classes, dtype=h_BxF.dtype)
    return jnp.concatenate([h_BxF, one_hot], axis=-1)


def check_label_values(owner: str, labels: Any, num_classes: int | None) -> None:
    """A ValueError naming the fix for labels held on the host (NumPy, lists) outside
    0 .. num_classes - 1, which `one_hot_condition` would encode as no class at all. Traced
    labels have no values to read, and labels on a device are not read back (that would
    wait for them): those are the caller's to keep in range."""
    if not num_classes or labels is None or any(
            isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(labels)):  # (a list too)
        return
    values = np.asarray(labels)
    if (values.size and np.issubdtype(values.dtype, np.integer)
            and not (0 <= values.min() and values.max() < num_classes)):
        raise ValueError(f"{owner} was given labels {values.min()} .. {values.max()}, outside "
                         f"its {num_classes} classes: give classes 0 .. {num_classes - 1}")


def flatten(x_BxHxWxC: jax.Array) -> jax.Array:
    return x_BxHxWxC.reshape(x_BxHxWxC.shape[0], -1)
