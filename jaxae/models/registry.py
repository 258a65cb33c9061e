"""The model registry, and `build_model`: a config's model section -> a Flax module.

`@register_model("name")` adds a class or factory; `build_model` calls it with the section's
options, gives it the data's `image_shape` / `num_classes` (where it declares them, over any
default it gives them, unless the section sets them: `num_classes: 0` keeps a model that is
conditional only when given classes unconditional), and injects the layers it declares:
`conv` (the config's implementation of `jaxae.kernels.conv.Conv`) and `dense` (`nn.Dense`),
both in the compute dtype asked for (bfloat16 for training: `jaxae.kernels.precision`). A
field that defaults to another layer (a strided `nn.Conv`) is the model's own choice and
stays.
"""

from __future__ import annotations

import functools
import inspect
import numbers
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import flax.linen as nn
import numpy as np

from jaxae.kernels import conv as conv_lib
from jaxae.kernels import precision
from jaxae.models import initializers
from jaxae.models.base import channels_first
from jaxae.registry import Entry, Registry, RegistryError, build, check_options, parameters

if TYPE_CHECKING:
    from ml_collections import ConfigDict

MODELS = Registry("model")
register_model = MODELS.register
# Options of a model section that the builder consumes rather than the model: its name, the
# initialisation scheme (`jaxae.models.initializers`) and the convolution implementation.
BUILDER_OPTIONS = ("name", "init", "conv")
# What a model is given rather than configured with: the data's shape and classes, and the
# Dense layer that follows train.compute_dtype.
FROM_DATA = ("image_shape", "num_classes")
PROVIDED = (*FROM_DATA, "dense")


def settable_fields(entry: Entry) -> list[str]:
    """The fields a config's model section may set for the model `entry`: those it declares,
    less what it is given (PROVIDED), and the builder's initialisation scheme."""
    return sorted((set(parameters(entry)) | {"init"}) - set(PROVIDED))


def conv_layer(implementation: str, compute_dtype: str = "float32") -> functools.partial:
    """`Conv` computed as `implementation` ("patches" or "xla"), its matmuls in
    `compute_dtype` (bfloat16: bfloat16 operands, float32 accumulation)."""
    if implementation not in conv_lib.IMPLEMENTATIONS:
        raise ValueError(f"conv={implementation!r}: choose one of "
                         f"{', '.join(conv_lib.IMPLEMENTATIONS)}")
    return functools.partial(conv_lib.Conv, implementation=implementation,
                             compute_dtype=compute_dtype)


def _layer_default(field: inspect.Parameter | None, layer: type) -> dict[str, Any] | None:
    """The keywords of a model's `dense` or `conv` field when it takes the layer jaxae
    injects: it defaults to that layer, a partial of it (whose keywords are kept), None or
    nothing. None where it defaults to another layer (`conv: ModuleDef = nn.Conv`, strided):
    the model's own choice, kept."""
    if field is None:
        return None
    default, keywords = field.default, {}
    while isinstance(default, functools.partial):
        default, keywords = default.func, {**default.keywords, **keywords}
    if default is field.empty or default is None or default is layer:
        return keywords
    return None


class NeedsClasses(RegistryError):
    """A conditional model's factory given fewer than 2 classes, which would otherwise build
    it unconditional, ignoring the labels (the `cvae`'s; a user's factory may raise it)."""

    def __init__(self, name: str, num_classes: int):
        super().__init__(
            f"model {name!r} is conditional on the class and was given num_classes="
            f"{num_classes}: build it for labelled data of 2 classes or more (num_classes=N, "
            "the data's class count), or choose a model that is not conditional")


def checked_image_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    """`image_shape` as (height, width, channels) of Python ints, or a RegistryError naming
    the fix (a 2-D shape, a channels-first one, a size below 1)."""
    shape = tuple(np.asarray(image_shape).tolist()) if np.ndim(image_shape) == 1 else None
    if shape is None or len(shape) != 3 or not all(
            isinstance(n, numbers.Integral) and n > 0 for n in shape):
        raise RegistryError(f"image_shape={image_shape!r}: give (height, width, channels) "
                            "of one image, e.g. (28, 28, 1)")
    shape = tuple(int(n) for n in shape)
    if channels_first(shape):
        raise RegistryError(f"image_shape={shape} is channels first: jaxae's images are "
                            f"(height, width, channels): give {(*shape[1:], shape[0])}")
    return shape


def build_model(spec: Mapping[str, Any] | ConfigDict, *,
                image_shape: tuple[int, int, int], num_classes: int = 0,
                compute_dtype: str = "float32", ignore: Iterable[str] = ()) -> nn.Module:
    """The module `spec["name"]` names, built from the other options of `spec`.

    Options the model does not declare raise a RegistryError, except those in `ignore`
    (fields every model section has, such as a default latent_dim a conv model has no use
    for). `compute_dtype` is the precision of its Dense and Conv matmuls (training may ask
    for bfloat16; evaluation builds the float32 model, whose parameters are the same).
    `spec["init"]`, a scheme of `jaxae.models.initializers.SCHEMES`, is checked but not
    applied here: parameters are drawn under it by `jaxae.training.steps.init_variables` (or
    `create_train_state`) with scheme=; the module's own `model.init` draws Flax's.
    """
    if "name" not in spec:
        raise RegistryError(f"the model section {dict(spec)} has no name: give it one, a "
                            f"registered model ({', '.join(MODELS.names())}) or "
                            "'path/to/file.py:Class'")
    name = spec["name"]
    image_shape = checked_image_shape(image_shape)
    if "init" in spec and spec["init"] not in initializers.SCHEMES:
        raise RegistryError(f"model init {spec['init']!r} is not a scheme: use one of "
                            f"{', '.join(initializers.SCHEMES)}")
    entry = MODELS.get(name)
    options = {k: v for k, v in spec.items() if k not in BUILDER_OPTIONS}
    check_options(entry, options, (*BUILDER_OPTIONS, *ignore), "model", f"model {name!r}",
                  listed=settable_fields(entry))
    declared = parameters(entry)
    layers = {}
    if (keywords := _layer_default(declared.get("conv"), conv_lib.Conv)) is not None:
        implementation = spec.get("conv", conv_lib.DEFAULT_IMPLEMENTATION)
        layers["conv"] = functools.partial(conv_layer(implementation, compute_dtype), **keywords)
    elif "conv" in spec and "conv" in declared:
        raise RegistryError(
            f"model {name!r} builds its convolutions with its own `conv` default, so "
            f"model.conv={spec['conv']!r} has nothing to choose: leave it out, or default the "
            "field to jaxae.kernels.conv.Conv")
    if (keywords := _layer_default(declared.get("dense"), nn.Dense)) is not None:
        layers["dense"] = functools.partial(precision.dense_layer(compute_dtype), **keywords)
    if not layers and compute_dtype != "float32":
        print(f"warning: model {name!r} builds no layer with jaxae's `dense` or `conv` "
              "(`dense: ModuleDef = nn.Dense`, `conv: ModuleDef = jaxae.kernels.conv.Conv`), "
              f"so compute_dtype={compute_dtype} changes none of its layers: it computes in "
              "float32", file=sys.stderr, flush=True)
    given = {field: value for field, value in
             (("image_shape", image_shape), ("num_classes", num_classes)) if field in declared}
    return build(entry, {**given, **options, **layers})  # the data's, unless the section sets it
