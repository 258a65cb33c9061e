"""Mixed precision for training: Dense and Conv matmuls in bfloat16, accumulated in float32.

`config.train.compute_dtype = "bfloat16"` gives every model's `nn.Dense` layers
`dot_general=bfloat16_dot_general` (`dense_layer`): the matmul of bfloat16 copies of the input
and kernel with float32 accumulation and a float32 result, in the forward pass and in both
matmuls of the backward pass; its `jaxae.kernels.conv.Conv` layers multiply the same way
(`Conv(compute_dtype=...)`). Parameters, the optimiser state, activations outside the
matmuls, losses and evaluation stay float32. On CPUs with AMX or AVX512-BF16 units XLA runs
such matmuls several times faster than float32 ones; elsewhere, and in the small conv
models bound by memory traffic, the casts can cost more than they save
(`python -m benchmarks.bench --compute-dtype float32,bfloat16` measures both).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxae.kernels import dense

COMPUTE_DTYPES = ("float32", "bfloat16")


def bfloat16_dot(a: jax.Array, b: jax.Array, contract_a: int, contract_b: int) -> jax.Array:
    """a . b over one axis each, bfloat16 operands, float32 accumulation and result."""
    return jax.lax.dot_general(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16),
                               (((contract_a,), (contract_b,)), ((), ())),
                               preferred_element_type=jnp.float32)


def bfloat16_matmul(x_BxK: jax.Array, w_KxN: jax.Array) -> jax.Array:
    """x @ w with bfloat16 operands and float32 accumulation, in both passes: JAX's own
    transpose would run the backward matmuls on float32 operands. Each gradient has its
    operand's dtype."""
    return _bfloat16_matmul(jnp.dtype(x_BxK.dtype), jnp.dtype(w_KxN.dtype), x_BxK, w_KxN)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _bfloat16_matmul(x_dtype: jnp.dtype, w_dtype: jnp.dtype, x_BxK: jax.Array,
                     w_KxN: jax.Array) -> jax.Array:
    return bfloat16_dot(x_BxK, w_KxN, 1, 0)


def _forward(x_dtype: jnp.dtype, w_dtype: jnp.dtype, x_BxK: jax.Array, w_KxN: jax.Array
             ) -> tuple[jax.Array, tuple]:
    x16, w16 = x_BxK.astype(jnp.bfloat16), w_KxN.astype(jnp.bfloat16)
    return bfloat16_dot(x16, w16, 1, 0), (x16, w16)


def _backward(x_dtype: jnp.dtype, w_dtype: jnp.dtype, saved: tuple, grad_BxN: jax.Array
              ) -> tuple[jax.Array, jax.Array]:
    x16, w16 = saved
    return (bfloat16_dot(grad_BxN, w16, 1, 1).astype(x_dtype),
            dense.kernel_gradient(x16, grad_BxN, bfloat16_dot).astype(w_dtype))


_bfloat16_matmul.defvjp(_forward, _backward)


def bfloat16_dot_general(lhs: jax.Array, rhs: jax.Array, dimension_numbers,
                         precision=None, preferred_element_type=None) -> jax.Array:
    """`lax.dot_general`'s signature: a [B, K] x [K, N] matmul runs as `bfloat16_matmul`;
    any other contraction is left to XLA in the operands' dtype."""
    if lhs.ndim == 2 and rhs.ndim == 2 and dimension_numbers == dense.DENSE_CONTRACTION:
        return bfloat16_matmul(lhs, rhs)
    return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                               preferred_element_type=preferred_element_type)


def dense_layer(compute_dtype: str) -> functools.partial:
    """The Dense layer a model is built with: `nn.Dense` whose matmul is
    `dense.dot_general` (float32: a narrow kernel's gradient computed transposed) or
    `bfloat16_dot_general`."""
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"compute dtype {compute_dtype!r}: choose one of "
                         f"{', '.join(COMPUTE_DTYPES)}")
    if compute_dtype == "float32":
        return functools.partial(nn.Dense, dot_general=dense.dot_general)
    return functools.partial(nn.Dense, dot_general=bfloat16_dot_general)
