"""Initialisation schemes: the ranges each framework's defaults draw from."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxae.models import initializers


def params():
    return {"dense": {"kernel": jnp.ones((784, 10)), "bias": jnp.ones(10)},
            "conv": {"kernel": jnp.ones((3, 3, 16, 8)), "bias": jnp.ones(8)}}


def test_glorot_kernels_and_zero_biases():
    out = initializers.apply_scheme(params(), jax.random.key(0), "glorot")
    bound = math.sqrt(6 / (784 + 10))
    kernel = np.asarray(out["dense"]["kernel"])
    assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.95 * bound
    np.testing.assert_allclose(kernel.std(), bound / math.sqrt(3), rtol=0.03)
    assert not np.any(out["dense"]["bias"]) and not np.any(out["conv"]["bias"])


def test_torch_draws_kernels_and_biases_from_the_fan_in():
    out = initializers.apply_scheme(params(), jax.random.key(0), "torch")
    conv_bound = 1 / math.sqrt(3 * 3 * 16)  # fan-in of a 3x3 conv over 16 channels
    for name, bound in (("dense", 1 / math.sqrt(784)), ("conv", conv_bound)):
        for leaf in ("kernel", "bias"):
            values = np.asarray(out[name][leaf])
            assert np.abs(values).max() <= bound and np.abs(values).max() > 0.5 * bound


def test_lecun_keeps_flax_values_and_schemes_depend_on_the_key():
    p = params()
    assert initializers.apply_scheme(p, jax.random.key(0), "lecun") is p
    a = initializers.apply_scheme(p, jax.random.key(0), "torch")
    b = initializers.apply_scheme(p, jax.random.key(1), "torch")
    assert not np.array_equal(a["dense"]["kernel"], b["dense"]["kernel"])
