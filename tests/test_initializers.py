"""Initialisation schemes: the ranges each framework's defaults draw from."""

import math

import flax.linen
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxae.kernels import random
from jaxae.models import initializers
from jaxae.training import steps


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


def test_parameters_of_other_modules_keep_their_own_values():
    tree = {**params(), "norm": {"scale": jnp.full(10, 2.0), "bias": jnp.full(10, 3.0)},
            "temperature": jnp.array(0.5), "offset": 1.5}  # a Python number, kept as it is
    for scheme in ("glorot", "torch"):
        out = initializers.apply_scheme(tree, jax.random.key(0), scheme)
        np.testing.assert_array_equal(out["norm"]["scale"], tree["norm"]["scale"])
        np.testing.assert_array_equal(out["norm"]["bias"], tree["norm"]["bias"])
        assert float(out["temperature"]) == 0.5 and out["offset"] == 1.5
        assert not np.array_equal(out["dense"]["kernel"], tree["dense"]["kernel"])


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


def test_flat_draws_equal_flax_and_jax_draws_value_for_value():
    # The schemes, a VAE's eps and the noise draw over flattened shapes (a faster compile);
    # a checkpoint or a recorded figure depends on these values being exactly those of the
    # shaped draws.
    key = jax.random.key(7)
    for shape in [(784, 10), (3, 3, 16, 8), (3, 3, 1, 16), (5, 4, 3, 2, 6)]:
        np.testing.assert_array_equal(
            initializers.glorot_uniform(key, shape),
            flax.linen.initializers.glorot_uniform()(key, shape, jnp.float32))
        np.testing.assert_array_equal(
            initializers._torch_uniform(key, shape, 144),
            jax.random.uniform(key, shape, jnp.float32, -1 / 12, 1 / 12))
        np.testing.assert_array_equal(random.normal(key, shape, jnp.float32),
                                      jax.random.normal(key, shape, jnp.float32))
    np.testing.assert_array_equal(random.normal(key, (2, 3), jnp.bfloat16),
                                  jax.random.normal(key, (2, 3), jnp.bfloat16))


class _Normed(flax.linen.Module):
    """A user's model with parameters no scheme redraws: a LayerNorm's, and its own."""

    conditional = False  # no labels: what `steps.init_inputs` reads

    @flax.linen.compact
    def __call__(self, x, labels=None, sample=False):
        gain = self.param("gain", flax.linen.initializers.constant(2.0), (1,))
        h = flax.linen.LayerNorm(name="norm")(x.reshape(x.shape[0], -1))
        return flax.linen.Dense(4, name="dense")(h) * gain, {}


def test_every_scheme_initialises_a_model_whose_other_parameters_keep_their_values():
    model = _Normed()
    assert initializers.redraws_every_leaf(params())
    for scheme in initializers.SCHEMES:
        state = steps.create_train_state(model, optax.sgd(0.1), (2, 3, 1), jax.random.key(0),
                                         scheme, check=False)  # declares no convention
        assert not initializers.redraws_every_leaf(state.params)
        assert float(state.params["gain"][0]) == 2.0  # the module's own value, kept
        np.testing.assert_array_equal(state.params["norm"]["scale"], np.ones(6))
        assert np.abs(np.asarray(state.params["dense"]["kernel"])).max() > 0


def test_an_unknown_scheme_is_refused_not_drawn_as_glorot():
    """"xavier" once fell through to Glorot; every entry point names the schemes instead."""
    params = {"dense": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones((2,))}}
    with pytest.raises(ValueError, match="^init scheme 'xavier' is not a scheme: use one of "
                                         "glorot, torch, lecun "):
        initializers.apply_scheme(params, jax.random.key(0), "xavier")
    model = flax.linen.Dense(2)
    with pytest.raises(ValueError, match="'xavier' is not a scheme"):
        steps.init_params(model, (1, 1, 3), jax.random.key(0), "xavier")
    with pytest.raises(ValueError, match="'xavier' is not a scheme"):
        steps.create_train_state(model, optax.sgd(0.1), (1, 1, 3), jax.random.key(0),
                                 scheme="xavier", check=False)


def test_a_scheme_draws_a_kernel_and_its_bias_or_neither():
    draw = initializers.SCHEMES["glorot"].kernel
    with pytest.raises(ValueError, match="a scheme draws both a kernel and its bias, or neither"):
        initializers.Scheme(kernel=draw)
    assert not initializers.Scheme().redraws and initializers.SCHEMES["torch"].redraws


def test_a_model_built_again_compiles_no_draw_and_gets_the_values_one_program_gives(
        monkeypatch):
    """create_train_state draws outside a program of its own, through a program kept for
    the parameters' shapes: a second model of the same shapes (built again: a sweep's next
    run) compiles only its optimiser's state, and draws what one traced program draws."""
    states = [steps.create_train_state(_Dense(), optax.adam(0.1), (1, 1, 13), jax.random.key(3),
                                       "torch", check=False)]
    keys, compiled = [], []
    draw = initializers.apply_scheme
    monkeypatch.setattr(initializers, "apply_scheme", lambda params, key, scheme: (
        keys.append(key), draw(params, key, scheme))[1])

    def listen(event: str, seconds: float, **_) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            compiled.append(event)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        states.append(steps.create_train_state(_Dense(), optax.adam(0.1), (1, 1, 13),
                                               jax.random.key(3), "torch", check=False))
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert len(keys) == 1 and not isinstance(keys[0], jax.core.Tracer)  # drawn, not traced
    assert len(compiled) == 1  # the optimiser's state
    monkeypatch.undo()
    traced = jax.jit(lambda key: steps.init_params(_Dense(), (1, 1, 13), key, "torch"))(
        jax.random.key(3))
    for state in states:
        for leaf in ("kernel", "bias"):
            np.testing.assert_array_equal(state.params["dense"][leaf], traced["dense"][leaf])


class _Dense(flax.linen.Module):
    """A user's model whose every parameter a scheme redraws."""

    conditional = False

    @flax.linen.compact
    def __call__(self, x, labels=None, sample=False):
        return flax.linen.Dense(7, name="dense")(x.reshape(x.shape[0], -1)), {}
