"""Mixed precision for training: the Dense layers' matmuls in bfloat16, accumulated in float32.

`config.compute_dtype = "bfloat16"` runs every `nn.Dense` of the training step as a matmul of
bfloat16 copies of its input and kernel with float32 accumulation and a float32 result, in the
forward pass and in both matmuls of the backward pass (`bfloat16_matmul`). Parameters, the
optimiser state, activations outside the matmuls, losses and evaluation stay float32. On CPUs
with AMX or AVX512-BF16 units XLA runs such matmuls several times faster than float32 ones
(`python -m jaxae.bench --compute-dtype float32,bfloat16` prints both peaks: 1,094 against
253 GFLOP/s at 2048 x 2048 on the development machine); elsewhere the casts can cost more
than they save. The default, "float32", changes nothing.

Applied by intercepting `nn.Dense.__call__` (`flax.linen.intercept_methods`), so the models
need no precision field; convolutions are left in float32 (the conv models are bound by
memory traffic, not arithmetic).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp

COMPUTE_DTYPES = ("float32", "bfloat16")


def _matmul(a: jax.Array, b: jax.Array, contract_a: int, contract_b: int) -> jax.Array:
    """a . b over one axis each, bfloat16 operands, float32 accumulation and result."""
    return jax.lax.dot_general(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16),
                               (((contract_a,), (contract_b,)), ((), ())),
                               preferred_element_type=jnp.float32)


@jax.custom_vjp
def bfloat16_matmul(x_BxK: jax.Array, w_KxN: jax.Array) -> jax.Array:
    """x @ w with bfloat16 operands and float32 accumulation, in both passes: JAX's own
    transpose would run the backward matmuls on float32 operands."""
    return _matmul(x_BxK, w_KxN, 1, 0)


def _forward(x_BxK: jax.Array, w_KxN: jax.Array) -> tuple[jax.Array, tuple]:
    x16, w16 = x_BxK.astype(jnp.bfloat16), w_KxN.astype(jnp.bfloat16)
    return _matmul(x16, w16, 1, 0), (x16, w16)


def _backward(saved: tuple, grad_BxN: jax.Array) -> tuple[jax.Array, jax.Array]:
    x16, w16 = saved
    return _matmul(grad_BxN, w16, 1, 1), _matmul(x16, grad_BxN, 0, 0)


bfloat16_matmul.defvjp(_forward, _backward)


def _dense_in_bfloat16(next_fun, args, kwargs, context):
    """Runs an initialised `nn.Dense` on a [B, K] input as `bfloat16_matmul` plus its bias."""
    module = context.module
    if (type(module) is not nn.Dense or context.method_name != "__call__"
            or module.is_initializing() or kwargs or args[0].ndim != 2):
        return next_fun(*args, **kwargs)
    y = bfloat16_matmul(args[0], module.get_variable("params", "kernel"))
    if module.use_bias:
        y = y + module.get_variable("params", "bias")
    return y


@contextlib.contextmanager
def compute_dtype(name: str) -> Iterator[None]:
    """Within it, traced `nn.Dense` calls compute in `name` ("float32": unchanged)."""
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"compute dtype {name!r}: choose one of {', '.join(COMPUTE_DTYPES)}")
    if name == "float32":
        yield
        return
    with nn.intercept_methods(_dense_in_bfloat16):
        yield
