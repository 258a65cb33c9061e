"""The model registry, and `build_model`: a config's model section -> a Flax module.

`@register_model("name")` adds a class or factory; `build_model` calls it with the section's
options, fills its required `image_shape` / `num_classes` from the data, and injects the
layers it declares: `conv` (the config's implementation of `jaxae.kernels.conv.Conv`) and
`dense` (`nn.Dense`), both in the compute dtype asked for (bfloat16 for training:
`jaxae.kernels.precision`).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import flax.linen as nn

from jaxae.kernels import conv as conv_lib
from jaxae.kernels import precision
from jaxae.registry import Registry, build, check_options, parameters

MODELS = Registry("model")
register_model = MODELS.register
# Options of a model section that the builder consumes rather than the model: its name, the
# initialisation scheme (`jaxae.models.initializers`) and the convolution implementation.
BUILDER_OPTIONS = ("name", "init", "conv")


def conv_layer(implementation: str, compute_dtype: str = "float32") -> functools.partial:
    """`Conv` computed as `implementation` ("patches" or "xla"), its matmuls in
    `compute_dtype` (bfloat16: bfloat16 operands, float32 accumulation)."""
    if implementation not in conv_lib.IMPLEMENTATIONS:
        raise ValueError(f"conv={implementation!r}: choose one of "
                         f"{', '.join(conv_lib.IMPLEMENTATIONS)}")
    return functools.partial(conv_lib.Conv, implementation=implementation,
                             compute_dtype=compute_dtype)


def build_model(spec: Mapping[str, Any], *, image_shape: tuple[int, int, int],
                num_classes: int = 0, compute_dtype: str = "float32",
                ignore: Iterable[str] = ()) -> nn.Module:
    """The module `spec["name"]` names, built from the other options of `spec`.

    Options the model does not declare raise a RegistryError, except those in `ignore`
    (fields every model section has, such as a default latent_dim a conv model has no use
    for). `compute_dtype` is the precision of its Dense and Conv matmuls (training may ask
    for bfloat16; evaluation builds the float32 model, whose parameters are the same).
    """
    name = spec["name"]
    entry = MODELS.get(name)
    options = {k: v for k, v in spec.items() if k not in BUILDER_OPTIONS}
    check_options(entry, options, (*BUILDER_OPTIONS, *ignore), "model", f"model {name!r}")
    declared = parameters(entry)
    layers = {}
    if "conv" in declared:
        layers["conv"] = conv_layer(spec.get("conv", "patches"), compute_dtype)
    if "dense" in declared:
        layers["dense"] = precision.dense_layer(compute_dtype)
    if not layers and compute_dtype != "float32":
        print(f"warning: model {name!r} takes no `dense` or `conv` field (`dense: ModuleDef = "
              "nn.Dense`, which its layers are built with), so compute_dtype="
              f"{compute_dtype} changes none of its layers: it computes in float32",
              file=sys.stderr, flush=True)
    return build(entry, {**options, **layers},
                 {"image_shape": tuple(image_shape), "num_classes": num_classes})
