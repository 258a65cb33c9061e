"""Batches of uint8 images held in memory, in an order that is a function of the key alone.

The order of the training images is a permutation drawn from (data key, epoch), so any
step's batch can be recomputed from the step number alone, which makes a resumed run see
exactly the same batches.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

# Streams of the data key besides the epochs' permutations (fold_in(data_key, epoch)):
# numbers no epoch count reaches.
VALIDATION_STREAM = 2**31 - 1
STATIC_BINARIZATION_STREAM = 2**31 - 2
SUBSET_STREAMS = {"train": 2**31 - 3, "test": 2**31 - 4}  # data.subset="random"


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Full batches per epoch; the remainder is left out so every step has one shape."""
    return num_examples // batch_size


SHUFFLE_EXPONENT = 3  # jax.random.permutation's: its rounds grow as 3 log N / log 2^32


@functools.partial(jax.jit, static_argnums=2)
def sorted_by_xla(data_key: jax.Array, epoch: int, num_examples: int) -> jax.Array:
    """`epoch_permutation`, drawn and sorted in one XLA program (any backend's path but
    the CPU's)."""
    return jax.random.permutation(jax.random.fold_in(data_key, epoch), num_examples)


@functools.partial(jax.jit, static_argnums=2)
def shuffle_sort_keys(data_key: jax.Array, epoch: int, num_examples: int) -> jax.Array:
    """uint32 [rounds, num_examples]: the random keys that jax.random.permutation of
    fold_in(data_key, epoch) sorts range(num_examples) by, one row a round."""
    key = jax.random.fold_in(data_key, epoch)
    rounds = math.ceil(SHUFFLE_EXPONENT * math.log(max(1, num_examples))
                       / math.log(np.iinfo(np.uint32).max))
    rows = []
    for _ in range(rounds):
        key, subkey = jax.random.split(key)
        rows.append(jax.random.bits(subkey, (num_examples,), jnp.uint32))
    return jnp.stack(rows) if rows else jnp.zeros((0, num_examples), jnp.uint32)


def sort_by_rounds(sort_keys: np.ndarray) -> np.ndarray:
    """range(N) stably sorted by each row of `sort_keys` [rounds, N] in turn, as
    `lax.sort_key_val` sorts it, ties kept in their order."""
    order = np.arange(sort_keys.shape[1], dtype=np.int32)
    for row in sort_keys:
        order = order[np.argsort(row, kind="stable")]
    return order


def epoch_permutation(data_key: jax.Array, epoch: int, num_examples: int
                      ) -> np.ndarray | jax.Array:
    """The training order of `epoch` (0-based): a permutation of range(num_examples), the
    one jax.random.permutation(fold_in(data_key, epoch), num_examples) draws. On the CPU its
    sort keys are drawn by JAX and sorted by NumPy, whose stable sort runs faster there
    than XLA's (`python -m benchmarks.permutation`)."""
    return finish_permutation(start_permutation(data_key, epoch, num_examples))


def start_permutation(data_key: jax.Array, epoch: int, num_examples: int) -> jax.Array:
    """`epoch_permutation`'s JAX part, dispatched (it runs asynchronously), under the calling
    thread's JAX settings: the order itself off a CPU, its sort keys [rounds, N] on one."""
    if jax.default_backend() != "cpu":
        return sorted_by_xla(data_key, epoch, num_examples)
    return shuffle_sort_keys(data_key, epoch, num_examples)


def finish_permutation(started: jax.Array) -> np.ndarray | jax.Array:
    """`epoch_permutation` from what `start_permutation` gave: sort keys sorted by NumPy, an
    order as it is. Host work alone, so another thread may do it."""
    return sort_by_rounds(np.asarray(started)) if started.ndim == 2 else started


def gather_batch(arrays: dict[str, jax.Array], order: jax.Array, index: jax.Array,
                 batch_size: int) -> dict[str, jax.Array]:
    """Batch number `index` of an epoch whose order is `order`, gathered from every array of
    `arrays` (e.g. {"image": uint8 [N, H, W, C], "label": int32 [N]}), inside a traced
    function."""
    idx = jax.lax.dynamic_slice_in_dim(order, index * batch_size, batch_size)
    return jax.tree.map(lambda a: take_rows(a, idx), arrays)


def take_rows(array: jax.Array, indices: jax.Array) -> jax.Array:
    """`jnp.take(array, indices, axis=0)`, the same values, gathered as flat [N, H*W*C] rows,
    which XLA's CPU backend gathers several times faster than [N, H, W, C] slices
    (`python -m benchmarks.profile_epoch` lists a step's gathers)."""
    rows = array.reshape(array.shape[0], math.prod(array.shape[1:]))
    return jnp.take(rows, indices, axis=0).reshape(indices.shape + array.shape[1:])


take_batch = jax.jit(gather_batch, static_argnums=3)  # the same, as its own dispatch


def validation_indices(num_examples: int, val_size: int, data_key: jax.Array
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(training, validation) indices, each sorted: `val_size` examples carved from the
    training split with a fixed permutation of the data key."""
    key = jax.random.fold_in(data_key, VALIDATION_STREAM)
    order = np.asarray(jax.random.permutation(key, num_examples))
    return np.sort(order[val_size:]), np.sort(order[:val_size])


def subset_indices(num_examples: int, size: int, data_key: jax.Array, split: str
                   ) -> np.ndarray:
    """`size` of a split's `num_examples` indices, sorted, drawn with a fixed permutation of
    the data key (its own stream for each split)."""
    key = jax.random.fold_in(data_key, SUBSET_STREAMS[split])
    return np.sort(np.asarray(jax.random.permutation(key, num_examples))[:size])


def split_validation(images: np.ndarray, labels: np.ndarray, val_size: int,
                     data_key: jax.Array) -> tuple[tuple[np.ndarray, np.ndarray],
                                                   tuple[np.ndarray, np.ndarray]]:
    """Carves `val_size` examples from the training split with a fixed permutation."""
    train_idx, val_idx = validation_indices(len(images), val_size, data_key)
    return (images[train_idx], labels[train_idx]), (images[val_idx], labels[val_idx])


def binarize_static(images_u8: np.ndarray, data_key: jax.Array) -> np.ndarray:
    """One fixed Bernoulli draw per pixel (p = intensity), stored as uint8 in {0, 255}."""
    probs = jnp.asarray(images_u8, jnp.float32) / 255.0
    key = jax.random.fold_in(data_key, STATIC_BINARIZATION_STREAM)
    draw = jax.random.bernoulli(key, probs)
    return np.asarray(draw, np.uint8) * np.uint8(255)


def to_float(images_u8_BxHxWxC: jax.Array) -> jax.Array:
    """uint8 images -> float32 in [0, 1], on the device. Other dtypes are refused (a
    TypeError while tracing): images already scaled would be divided by 255 again."""
    if images_u8_BxHxWxC.dtype != jnp.uint8:
        raise TypeError(f"images must be uint8 (0..255), as the data sets give them, not "
                        f"{images_u8_BxHxWxC.dtype}: jaxae's tasks, steps and evaluation scale "
                        "them to [0, 1] themselves")
    return images_u8_BxHxWxC.astype(jnp.float32) / 255.0
