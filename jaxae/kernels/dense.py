"""Dense matmuls whose kernel gradient XLA's CPU backend computes faster transposed.

A Dense layer with few outputs (a code layer, a VAE's mean and log-sigma heads: a kernel
[K, N] with N <= NARROW_OUTPUTS < K) has the kernel gradient x.T @ g, a [K, N] product
that contracts the batch. XLA's CPU backend runs that product several times slower than
the same sums computed as g.T @ x, [N, K], and transposed (a few kilobytes). Written as
`(g.T @ x).T`, XLA folds the transpose back into the product, so the product is kept
behind `lax.optimization_barrier` (`kernel_gradient`). `narrow_matmul` is a float32 layer's
matmul whose reverse mode computes that (forward mode works as for any matmul), and
`dot_general` gives it to nn.Dense (`precision.dense_layer`); the bfloat16 matmul's backward
pass uses `kernel_gradient` too. `python -m benchmarks.narrow_gradient` times both layouts.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

NARROW_OUTPUTS = 16  # up to here the transposed product is the faster one (see above)
DENSE_CONTRACTION = (((1,), (0,)), ((), ()))  # what nn.Dense asks of a [B, K] input


def contract(a: jax.Array, b: jax.Array, axis_a: int, axis_b: int) -> jax.Array:
    """a . b over one axis each (2-D operands), in their dtype."""
    return lax.dot_general(a, b, (((axis_a,), (axis_b,)), ((), ())))


def is_narrow(kernel_shape: tuple[int, ...]) -> bool:
    """Whether a [K, N] kernel has N <= NARROW_OUTPUTS < K and runs on the CPU: the layers
    whose kernel gradient `kernel_gradient` computes transposed."""
    return (len(kernel_shape) == 2 and kernel_shape[1] <= NARROW_OUTPUTS < kernel_shape[0]
            and jax.default_backend() == "cpu")


def kernel_gradient(x_BxK: jax.Array, grad_BxN: jax.Array,
                    dot: Callable[[jax.Array, jax.Array, int, int], jax.Array] = contract
                    ) -> jax.Array:
    """x.T @ g, the [K, N] kernel gradient of x @ w, with `dot` (a . b over axes); for a
    narrow kernel (`is_narrow`) computed as (g.T @ x).T, the transposed product kept apart
    from the transpose so that XLA cannot fold them back together."""
    if is_narrow((x_BxK.shape[1], grad_BxN.shape[1])):
        return lax.optimization_barrier(dot(grad_BxN, x_BxK, 0, 0)).T
    return dot(x_BxK, grad_BxN, 0, 0)


@jax.custom_jvp
def narrow_matmul(x_BxK: jax.Array, w_KxN: jax.Array) -> jax.Array:
    """x @ w, whose kernel gradient in reverse mode is `kernel_gradient`'s. A custom JVP, so
    forward mode (`jax.jvp`, `jax.jacfwd`, `jax.hessian`) and `jax.vmap` work as for x @ w."""
    return contract(x_BxK, w_KxN, 1, 0)


@narrow_matmul.defjvp
def _tangent(primals: tuple, tangents: tuple) -> tuple[jax.Array, jax.Array]:
    x_BxK, w_KxN = primals
    dx_BxK, dw_KxN = tangents
    return (narrow_matmul(x_BxK, w_KxN),
            contract(dx_BxK, w_KxN, 1, 0) + _kernel_tangent(x_BxK, dw_KxN))


def _kernel_tangent(x_BxK: jax.Array, dw_KxN: jax.Array) -> jax.Array:
    """x @ dw, written as x . (dw.T behind a barrier) so that JAX's transpose of it, the
    kernel gradient of reverse mode, is `kernel_gradient`'s (g.T @ x behind the barrier, then
    transposed): the transpose of x . u over K is g.T @ x, and a barrier's is a barrier."""
    return contract(x_BxK, lax.optimization_barrier(dw_KxN.T), 1, 1)


def dot_general(lhs: jax.Array, rhs: jax.Array, dimension_numbers, precision=None,
                preferred_element_type=None) -> jax.Array:
    """`lax.dot_general`'s signature: a float32 [B, K] x [K, N] matmul of a narrow kernel
    (`is_narrow`) runs as `narrow_matmul`; any other is `lax.dot_general` itself."""
    if (lhs.ndim == 2 and dimension_numbers == DENSE_CONTRACTION and is_narrow(rhs.shape)
            and lhs.dtype == rhs.dtype == jnp.float32 and precision is None
            and preferred_element_type is None):
        return narrow_matmul(lhs, rhs)
    return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                           preferred_element_type=preferred_element_type)
