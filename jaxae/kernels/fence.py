"""A value XLA's CPU fusion computes once, where its fusions would each recompute it.

XLA's CPU fusion copies a cheap elementwise producer into every fusion that reads it. Where
several fusions read one, each redoes its work and re-reads its inputs: a pooling's
first-maximum index read by the four corner selects of the backward pass, a tap
convolution's sum of nine shifted slices read by the loss, its exponential and its gradient
(`python -m benchmarks.profile_epoch --model conv_ae`). `computed_once` writes such a value
to memory and has its readers read it back.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

_BITS = {2: jnp.int16, 4: jnp.int32, 8: jnp.int64}  # float itemsize -> same-width integer


def computed_once(x: jax.Array) -> jax.Array:
    """`x`, written to memory where it is computed and read back by every reader.

    A conditional is a boundary fusion does not cross (XLA's CPU pipeline drops
    `lax.optimization_barrier` before fusing). Both branches return `x` bit for bit, written
    differently (XLA turns a conditional with identical branches into a select), so the
    result never depends on the predicate. Off the CPU, where a conditional waits for its
    predicate on the host, and for an empty array, `x` is returned as is.
    """
    if jax.default_backend() != "cpu" or x.size == 0:
        return x
    return _fenced(x)


@jax.custom_jvp
def _fenced(x: jax.Array) -> jax.Array:
    """The conditional; its derivative is the identity's (a bitcast's would be zero)."""
    return lax.cond(x.reshape(-1)[0] == 0, lambda v: v, _plus_zero_bits, x)


@_fenced.defjvp
def _fenced_jvp(primals: tuple[jax.Array], tangents: tuple[jax.Array]
                ) -> tuple[jax.Array, jax.Array]:
    return _fenced(primals[0]), tangents[0]


def _plus_zero_bits(x: jax.Array) -> jax.Array:
    """x + 0 on its bit pattern: the same bits for every value, -0.0 and NaNs included
    (float x + 0.0 would turn -0.0 into 0.0)."""
    if jnp.issubdtype(x.dtype, jnp.floating):
        bits = lax.bitcast_convert_type(x, _BITS[x.dtype.itemsize])
        return lax.bitcast_convert_type(bits + 0, x.dtype)
    return x ^ False if x.dtype == jnp.bool_ else x + 0
