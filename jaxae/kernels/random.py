"""Random bits from Threefry-2x32 as one elementwise expression: the bits `jax.random.bits`
gives, without its CPU lowering's loop.

On CPU, JAX lowers the Threefry hash as a rolled loop of five iterations (to keep compile
times down), so XLA runs each iteration as separate passes over the counters, with the
loop's bookkeeping between them. Written out here, the 20 rounds are one expression that XLA
fuses into a single pass. The values are those of `jax.random.bits(key, shape, jnp.uint32)`
under JAX's default partitionable Threefry (`tests/test_kernels.py` checks them bit for
bit); with `jax_threefry_partitionable` off, or a key of another implementation,
`bits32` calls `jax.random.bits` itself. The DAE's dropout mask is the main user
(`python -m benchmarks.profile_epoch --model dae` lists its passes). `normal` and `uniform`
draw JAX's own values over the flattened shape, which XLA's CPU compiler builds faster than
a 3-D or 4-D draw.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotate_left(x: jax.Array, bits: int) -> jax.Array:
    return (x << np.uint32(bits)) | (x >> np.uint32(32 - bits))


def threefry2x32(k1: jax.Array, k2: jax.Array, x1: jax.Array, x2: jax.Array
                 ) -> tuple[jax.Array, jax.Array]:
    """The Threefry-2x32 hash of counter pairs (x1, x2) under the key (k1, k2), unrolled:
    the same additions, rotations and key injections as JAX's `threefry2x32` primitive."""
    ks = (k1, k2, k1 ^ k2 ^ _PARITY)
    x = [x1 + ks[0], x2 + ks[1]]
    for block in range(5):
        for rotation in _ROTATIONS[block % 2]:
            x[0] = x[0] + x[1]
            x[1] = x[0] ^ _rotate_left(x[1], rotation)
        x[0] = x[0] + ks[(block + 1) % 3]
        x[1] = x[1] + ks[(block + 2) % 3] + np.uint32(block + 1)
    return x[0], x[1]


def _is_partitionable_threefry(key: jax.Array) -> bool:
    if not jax.config.jax_threefry_partitionable:
        return False
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):  # one key: jax.random.bits refuses
        return key.shape == () and \
            jax.random.key_impl(key) == jax.random.key_impl(jax.random.key(0))  # a batch
    return key.shape == (2,) and key.dtype == jnp.uint32  # a raw threefry key


def normal(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype = jnp.float32
           ) -> jax.Array:
    """`jax.random.normal(key, shape, dtype)`, value for value (JAX's Threefry numbers the
    elements in row-major order: `tests/test_initializers.py` checks it), drawn flat."""
    return jax.random.normal(key, (math.prod(shape),), dtype).reshape(shape)


def uniform(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype = jnp.float32,
            low: float = 0.0, high: float = 1.0) -> jax.Array:
    """`jax.random.uniform(key, shape, dtype, low, high)`, value for value, drawn flat."""
    return jax.random.uniform(key, (math.prod(shape),), dtype, low, high).reshape(shape)


def bits32(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """uint32 random bits of `shape`: bit for bit `jax.random.bits(key, shape, jnp.uint32)`,
    computed as one fused pass (falls back to `jax.random.bits` where the key's
    implementation is not JAX's partitionable Threefry, or for 2^32 values or more)."""
    size = math.prod(shape)
    if not _is_partitionable_threefry(key) or size >= 2**32:
        return jax.random.bits(key, shape, jnp.uint32)
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) \
        else key
    counts = jax.lax.iota(jnp.uint32, size).reshape(shape)  # the high words are all 0
    high, low = threefry2x32(data[0], data[1], jnp.zeros_like(counts), counts)
    return high ^ low
