"""Initialisation schemes, applied to a freshly initialised parameter tree.

Flax's own default is LeCun-normal kernels with zero biases. Keras (the material) uses
Glorot-uniform kernels with zero biases; PyTorch draws kernels and biases from
U(-1/sqrt(fan_in), 1/sqrt(fan_in)). Which trains best depends on the model (measured figures
in the configs), so the scheme is a config field, not a property of the modules.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxae.kernels import random


def check_scheme(scheme: str) -> None:
    """ValueError for a scheme not in SCHEMES (one line, naming them), before any drawing."""
    if scheme not in SCHEMES:
        raise ValueError(f"init scheme {scheme!r} is not a scheme: use one of "
                         f"{', '.join(SCHEMES)} (lecun keeps the modules' own initialisers)")


def _fan_in(kernel_shape: tuple[int, ...]) -> int:
    """Inputs per output unit: in_features for Dense, kh * kw * in_channels for Conv."""
    return math.prod(kernel_shape[:-1])


def _torch_uniform(key: jax.Array, shape: tuple[int, ...], fan_in: int) -> jax.Array:
    bound = 1.0 / math.sqrt(fan_in)
    return random.uniform(key, shape, jnp.float32, -bound, bound)


def glorot_uniform(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype = jnp.float32
                   ) -> jax.Array:
    """Flax's `glorot_uniform()` (U(-a, a), a = sqrt(6 / (fan_in + fan_out)), fans of a
    [..., in, out] kernel times its receptive field), value for value, drawn flat."""
    receptive_field = math.prod(shape[:-2])
    fan_in, fan_out = shape[-2] * receptive_field, shape[-1] * receptive_field
    variance = jnp.array(1.0 / ((fan_in + fan_out) / 2), dtype=dtype)
    return random.uniform(key, shape, dtype, -1, 1) * jnp.sqrt(3 * variance)


# draws a leaf from (key, shape, dtype, the fan-in of its module's kernel)
Draw = Callable[[jax.Array, tuple[int, ...], jnp.dtype, int], jax.Array]


@dataclasses.dataclass(frozen=True)
class Scheme:
    """How a scheme draws each Dense/Conv kernel and the bias beside it; a scheme without
    draws keeps the modules' own initialisers."""

    kernel: Draw | None = None
    bias: Draw | None = None

    def __post_init__(self) -> None:
        if (self.kernel is None) != (self.bias is None):
            raise ValueError("a scheme draws both a kernel and its bias, or neither")

    @property
    def redraws(self) -> bool:
        return self.kernel is not None


SCHEMES: dict[str, Scheme] = {  # config.model.init's values
    "glorot": Scheme(kernel=lambda key, shape, dtype, fan_in: glorot_uniform(key, shape, dtype),
                     bias=lambda key, shape, dtype, fan_in: jnp.zeros(shape, dtype)),
    "torch": Scheme(kernel=lambda key, shape, dtype, fan_in: _torch_uniform(key, shape, fan_in),
                    bias=lambda key, shape, dtype, fan_in: _torch_uniform(key, shape, fan_in)),
    "lecun": Scheme()}
DEFAULT_SCHEME = "glorot"  # the material's (Keras)


def _kernel_paths(params: dict) -> dict[tuple, tuple[int, ...]]:
    """{the path of each module with a `kernel`: that kernel's shape}."""
    return {path[:-1]: leaf.shape for path, leaf in
            jax.tree_util.tree_flatten_with_path(params)[0] if path[-1].key == "kernel"}


def _is_redrawn(path: tuple, kernels: dict[tuple, tuple[int, ...]]) -> bool:
    """Whether a scheme redraws the leaf at `path`: a kernel, or the bias beside one."""
    return path[-1].key in ("kernel", "bias") and path[:-1] in kernels


def redraws_every_leaf(params: dict) -> bool:
    """Whether a scheme that redraws (not "lecun") redraws every leaf of `params` (shapes suffice):
    then the module's own initial values are never read, and need not be computed."""
    kernels = _kernel_paths(params)
    return all(_is_redrawn(path, kernels)
               for path, _ in jax.tree_util.tree_flatten_with_path(params)[0])


def apply_scheme(params: dict, key: jax.Array, scheme: str) -> dict:
    """Params with every Dense/Conv kernel and bias (a module's `kernel`, and the `bias`
    beside it) redrawn under `scheme` (a key of SCHEMES; "lecun": as is); any other
    parameter (a LayerNorm's scale, a user module's own) keeps the value its module gave it.
    Of the redrawn leaves only the shapes and dtypes are read: they may be
    `jax.ShapeDtypeStruct`s (the others are kept as they are: arrays, Python numbers). A
    scheme not in SCHEMES is a ValueError."""
    check_scheme(scheme)
    if not SCHEMES[scheme].redraws:
        return params
    leaves, tree = jax.tree_util.tree_flatten(params)
    drawn = _redrawn_leaves(key, scheme=scheme, tree=tree, shapes=tuple(
        (tuple(jnp.shape(leaf)), jnp.result_type(leaf)) for leaf in leaves))
    return jax.tree_util.tree_unflatten(
        tree, [leaf if new is None else new for leaf, new in zip(leaves, drawn, strict=True)])


@functools.partial(jax.jit, static_argnames=("scheme", "tree", "shapes"))
def _redrawn_leaves(key: jax.Array, *, scheme: str, tree: jax.tree_util.PyTreeDef,
                    shapes: tuple[tuple[tuple[int, ...], jnp.dtype], ...]
                    ) -> list[jax.Array | None]:
    """The leaves a scheme redraws, in `tree`'s order (None for the others): leaf i from
    fold_in(key, i). One program per tree of shapes, kept for the process, so that a model
    drawn again (a sweep's runs, a notebook's cell run again, the tests' small models) compiles
    nothing again."""
    chosen = SCHEMES[scheme]
    params = jax.tree_util.tree_unflatten(
        tree, [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in shapes])
    kernels = _kernel_paths(params)
    drawn = []
    for index, (path, leaf) in enumerate(jax.tree_util.tree_flatten_with_path(params)[0]):
        if not _is_redrawn(path, kernels):
            drawn.append(None)
            continue
        draw = chosen.kernel if path[-1].key == "kernel" else chosen.bias
        drawn.append(draw(jax.random.fold_in(key, index), leaf.shape, leaf.dtype,
                          _fan_in(kernels[path[:-1]])))
    return drawn
