"""The independent PRNG streams of a run, all split once from the config's seed.

Step n's randomness is fold_in(train, n) inside the jitted step, and epoch e's order is a
permutation drawn from fold_in(data, e), so a resumed run draws exactly what an
uninterrupted one does.
"""

from __future__ import annotations

import functools
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

SEED_RANGE = (0, 2**32 - 1)  # jax.random.key takes the seed modulo 2^32: larger ones alias


class Keys(NamedTuple):
    init: jax.Array  # parameter initialisation
    train: jax.Array  # per-step corruption, dynamic binarisation, z's samples, a model's
    # own dropout (step n's key is fold_in(train, n): its two split halves, and DROPOUT_STREAM)
    eval: jax.Array  # evaluation-time corruption: every evaluation at the same
    # eval.batch_size sees the same (batch i draws with fold_in(eval, i))
    sample: jax.Array  # generation from the trained model
    data: jax.Array  # epoch permutations, validation split, static binarisation


# Streams of the eval key besides its batches' draws (fold_in(eval, i) for batch i): numbers
# no batch count reaches, so no two uses draw the same bits (the data key's are in
# jaxae.data.batches).
IWAE_STREAM = 2**31 - 1  # the IWAE bounds' samples
BLUR_FIT_STREAM = 2**31 - 2  # the corruption of the training images a blur width is fit on
VALIDATION_EVAL_STREAM = 2**31 - 3  # the validation split's batches: fold_in of this stream's key
ENCODER_PROBE_STREAM = 2**31 - 4  # a classifier probe's initialisation and batch order, trained
# on a run's codes (`jaxae.experiments.encoder_probe`): a key none of the run's draws use

# The stream of a training step's key (fold_in(train, n)) that a model's own Dropout draws
# from (`jaxae.models.in_training`): the step splits its key in two for everything else, and
# fold_in(k, i) is split(k)[i], so any i past 1 is a stream of its own. A model that draws
# none leaves it unused, and its program is unchanged.
DROPOUT_STREAM = 0x64726F70

# Streams of the sample key: nothing draws from the key itself, so that no draw is tied to
# a key derived from it (JAX's fold_in(k, i) is split(k)[i], whose words bits(k) reuses).
PICTURES_STREAM = 0  # the samples drawn for samples.png
RECOGNITION_STREAM = 1  # a conditional model's samples that a pixel classifier recognises


@functools.cache
def _raw_key_shape(impl: str) -> tuple[int, ...]:
    """The shape of a raw key (`jax.random.PRNGKey`'s) of the PRNG implementation `impl`,
    the default one, read without running anything."""
    return tuple(jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0))).shape)


def check_key(key: Any, what: str = "key") -> None:
    """A TypeError naming the fix unless `key` is one PRNG key: a typed key
    (`jax.random.key(seed)`) or a raw uint32 one (`jax.random.PRNGKey(seed)`). An int where
    a key belongs would otherwise fail deep inside JAX's random functions."""
    dtype, shape = getattr(key, "dtype", None), getattr(key, "shape", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if shape == ():
            return
    elif dtype == jnp.uint32 and shape == _raw_key_shape(jax.config.jax_default_prng_impl):
        return  # a raw key's words (2 for threefry)
    given = (f"{dtype}[{','.join(map(str, shape))}]" if shape is not None
             else type(key).__name__)
    raise TypeError(f"{what} must be one PRNG key, not {given}: pass jax.random.key(seed) "
                    "(or one key of a split)")


def derive_keys(seed: int | jax.Array) -> Keys:
    """Splits the seed once into the named streams of `Keys`; a PRNG key may stand for it
    (jax.random.key(seed) gives the seed's streams). An integer outside SEED_RANGE is a
    ValueError: jax.random.key (32-bit) takes it modulo 2^32, another seed's streams."""
    if isinstance(seed, numbers.Integral):
        if not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
            raise ValueError(f"derive_keys' seed {seed} is outside [{SEED_RANGE[0]}, "
                             f"{SEED_RANGE[1]}], config.seed's range, whose seeds have streams "
                             "of their own (jax.random.key takes a seed modulo 2^32): give a "
                             "seed in that range")
        key = jax.random.key(seed)
    else:
        check_key(seed, "derive_keys' seed")
        key = seed
    return Keys(*jax.random.split(key, len(Keys._fields)))


def eval_example_key(eval_key: jax.Array, batch_index: int) -> jax.Array:
    """The key of the task's corruption in evaluation batch `batch_index`: that batch's key is
    fold_in(eval, index), and its first split half makes the inputs (`steps.eval_example`).
    Pictures that show or encode test inputs corrupt them with batch 0's key: as evaluation
    did where they show the first test images (`pictures.picture_indices`), with the same
    noise at other positions where they pick images of each class further on."""
    return jax.random.split(jax.random.fold_in(eval_key, batch_index))[0]
