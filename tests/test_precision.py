"""Mixed precision (`config.compute_dtype`): the bfloat16 matmul, where it applies, training."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxae import precision, steps
from jaxae.trainer import model_from_config, train_and_evaluate


def _rounded(x: jax.Array) -> jax.Array:
    return x.astype(jnp.bfloat16).astype(jnp.float32)


def test_bfloat16_matmul_and_its_gradients_are_float32_matmuls_of_rounded_operands():
    """Products of bfloat16 values are exact in float32, so only the order of the float32
    sums may differ from a float32 matmul of the rounded operands."""
    x = jax.random.normal(jax.random.key(0), (16, 40))
    w = jax.random.normal(jax.random.key(1), (40, 24))
    g = jax.random.normal(jax.random.key(2), (16, 24))
    y, pullback = jax.vjp(precision.bfloat16_matmul, x, w)
    dx, dw = pullback(g)
    assert y.dtype == dx.dtype == dw.dtype == jnp.float32
    np.testing.assert_allclose(y, _rounded(x) @ _rounded(w), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, _rounded(g) @ _rounded(w).T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw, _rounded(x).T @ _rounded(g), rtol=1e-5, atol=1e-5)
    assert not np.allclose(y, x @ w, rtol=1e-5, atol=1e-5)  # the rounding is real


def test_bfloat16_applies_to_dense_layers_inside_the_context_only():
    model = nn.Dense(8)
    x = jax.random.normal(jax.random.key(0), (4, 30))
    params = model.init(jax.random.key(1), x)
    plain = model.apply(params, x)
    with precision.compute_dtype("bfloat16"):
        mixed = model.apply(params, x)
    with precision.compute_dtype("float32"):
        unchanged = model.apply(params, x)
    np.testing.assert_array_equal(unchanged, plain)
    expected = _rounded(x) @ _rounded(params["params"]["kernel"]) + params["params"]["bias"]
    np.testing.assert_allclose(mixed, expected, rtol=1e-5, atol=1e-5)
    assert not np.array_equal(mixed, plain)
    np.testing.assert_array_equal(model.apply(params, x), plain)  # nothing left behind


def test_an_unknown_compute_dtype_is_refused():
    with pytest.raises(ValueError, match="compute dtype 'float16': choose one of float32"):
        with precision.compute_dtype("float16"):
            pass


@pytest.mark.parametrize("model", ["dense_ae", "vae"])
def test_a_bfloat16_step_follows_the_float32_step(tiny_config, model):
    """One step from the same state: same loss to bfloat16's precision, same update
    direction, and different bits (the matmuls did run in bfloat16)."""
    config = tiny_config(model=model, latent_dim=16)
    states, metrics = {}, {}
    for dtype in precision.COMPUTE_DTYPES:
        config.compute_dtype = dtype
        frozen = ml_collections.FrozenConfigDict(config)
        state = steps.create_train_state(frozen, model_from_config(frozen), jax.random.key(0))
        batch = {"image": np.random.default_rng(0).integers(0, 256, (32, 28, 28), np.uint8),
                 "label": np.zeros(32, np.int32)}
        states[dtype], metrics[dtype] = steps.make_train_step(frozen)(state, batch,
                                                                      jax.random.key(1))
    np.testing.assert_allclose(metrics["bfloat16"]["loss"], metrics["float32"]["loss"],
                               rtol=1e-2)
    assert metrics["bfloat16"]["loss"] != metrics["float32"]["loss"]
    for mixed, plain in zip(jax.tree.leaves(states["bfloat16"].params),
                            jax.tree.leaves(states["float32"].params), strict=True):
        assert mixed.dtype == jnp.float32
        np.testing.assert_allclose(mixed, plain, atol=2e-3)  # Adam's first step is +-lr


def _test_mse(workdir) -> list[float]:
    with open(workdir / "metrics.jsonl") as f:
        return [record["test_mse"] for record in map(json.loads, f) if "test_mse" in record]


def test_a_bfloat16_run_repeats_bit_for_bit_and_learns_like_float32(tiny_config, tmp_path):
    config = tiny_config(num_epochs=2, compute_dtype="bfloat16")
    first = train_and_evaluate(config, str(tmp_path / "a"))
    again = train_and_evaluate(config, str(tmp_path / "b"))
    for a, b in zip(jax.tree.leaves(first.params), jax.tree.leaves(again.params), strict=True):
        np.testing.assert_array_equal(a, b)
    config.compute_dtype = "float32"
    train_and_evaluate(config, str(tmp_path / "c"))
    mixed, plain = _test_mse(tmp_path / "a"), _test_mse(tmp_path / "c")
    assert mixed[-1] < mixed[0]
    assert mixed[-1] == pytest.approx(plain[-1], rel=0.05)
