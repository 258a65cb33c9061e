"""Mixed precision (`config.train.compute_dtype`): a training step and a run in bfloat16."""

import functools
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxae import build
from jaxae import config as config_lib
from jaxae.kernels import precision
from jaxae.training import steps
from jaxae.training.trainer import train_and_evaluate

MNIST = (28, 28, 1)


@pytest.mark.parametrize("model", [{"name": "dense_ae", "latent_dim": 16},
                                   {"name": "vae", "latent_dim": 16},
                                   {"name": "conv_ae", "conv": "patches"},
                                   {"name": "conv_ae", "conv": "xla"}])
def test_a_bfloat16_step_follows_the_float32_step(tiny_config, model):
    """One step from the same state: same loss to bfloat16's precision, same update
    direction, and different bits (the matmuls did run in bfloat16)."""
    config = tiny_config(model=model)
    task = config_lib.make_task(config)
    states, metrics = {}, {}
    batch = {"image": np.random.default_rng(0).integers(0, 256, (32, *MNIST), np.uint8),
             "label": np.zeros(32, np.int32)}
    for dtype in precision.COMPUTE_DTYPES:
        net = build.make_model(config, MNIST, 10, dtype)
        state = steps.create_train_state(net, build.make_optimizer(config), MNIST,
                                         jax.random.key(0), build.init_scheme(config))
        step = steps.make_train_step(net, task, build.make_objective(config, net))
        states[dtype], metrics[dtype] = step(state, batch, jax.random.key(1))
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
    config = tiny_config(**{"train.compute_dtype": "bfloat16"})
    first = train_and_evaluate(config, str(tmp_path / "a"))
    again = train_and_evaluate(config, str(tmp_path / "b"))
    for a, b in zip(jax.tree.leaves(first.params), jax.tree.leaves(again.params), strict=True):
        np.testing.assert_array_equal(a, b)
    config.train.compute_dtype = "float32"
    train_and_evaluate(config, str(tmp_path / "c"))
    mixed, plain = _test_mse(tmp_path / "a"), _test_mse(tmp_path / "c")
    assert mixed[-1] < mixed[0]
    assert mixed[-1] == pytest.approx(plain[-1], rel=0.05)
    assert mixed != plain  # the training step did run in bfloat16


def test_bfloat16_for_a_model_without_dense_or_conv_fields_is_said_to_change_nothing(capsys):
    from jaxae.models import Autoencoder, build_model, register_model

    @register_model("precision_test_identity")
    class Identity(Autoencoder):
        image_shape: tuple

        @property
        def latent_shape(self):
            return self.image_shape

        def encode(self, x, *, labels=None):
            return x

        def decode(self, z, *, labels=None):
            return z

    build_model({"name": "precision_test_identity"}, image_shape=MNIST, compute_dtype="bfloat16")
    assert "warning: model 'precision_test_identity' builds no layer with jaxae's `dense` or " \
        "`conv`" in capsys.readouterr().err
    for name in ("conv_ae", "vae"):
        build_model({"name": name}, image_shape=MNIST, compute_dtype="bfloat16")
    assert capsys.readouterr().err == ""


def test_a_conv_field_defaulting_to_another_layer_is_the_model_s_own_and_kept(capsys):
    """jaxae's Conv (stride 1) replaces only a `conv` field that defaults to it: a model's
    strided nn.Conv stays, and model.conv has nothing to choose for it."""
    from jaxae.kernels.conv import Conv
    from jaxae.models import Autoencoder, build_model, register_model
    from jaxae.models.base import ModuleDef
    from jaxae.registry import RegistryError

    class Strided(Autoencoder):
        image_shape: tuple
        conv: ModuleDef = nn.Conv

        def setup(self):
            self.down = self.conv(4, (3, 3), strides=(2, 2))

        @property
        def latent_shape(self):
            return (14, 14, 4)

        def encode(self, x, *, labels=None):
            return self.down(x)

        def decode(self, z, *, labels=None):
            return jnp.repeat(jnp.repeat(z[..., :1], 2, 1), 2, 2)

    class Ours(Strided):  # built, not run: jaxae's Conv has no strides
        conv: ModuleDef = Conv

    register_model("precision_test_strided")(Strided)
    register_model("precision_test_ours")(Ours)
    model = build_model({"name": "precision_test_strided"}, image_shape=MNIST)
    assert model.conv is nn.Conv
    x = jnp.ones((2, *MNIST))
    logits, _ = model.apply(model.init(jax.random.key(0), x), x)
    assert logits.shape == (2, *MNIST)
    with pytest.raises(RegistryError, match=r"^model 'precision_test_strided' builds its "
                                            r"convolutions with its own `conv` default, so "
                                            r"model.conv='xla' has nothing to choose"):
        build_model({"name": "precision_test_strided", "conv": "xla"}, image_shape=MNIST)
    ours = build_model({"name": "precision_test_ours", "conv": "xla"}, image_shape=MNIST)
    assert ours.conv.func is Conv and ours.conv.keywords["implementation"] == "xla"

    class NoBias(Strided):  # a partial of nn.Dense: its keywords stay with the injected layer
        dense: ModuleDef = functools.partial(nn.Dense, use_bias=False)

    register_model("precision_test_no_bias")(NoBias)
    model = build_model({"name": "precision_test_no_bias"}, image_shape=MNIST,
                        compute_dtype="bfloat16")
    assert model.dense.func is nn.Dense and model.dense.keywords["use_bias"] is False
    assert model.dense.keywords["dot_general"] is precision.bfloat16_dot_general
    # a model without a conv field takes no notice of model.conv (a config's leftover)
    assert build_model({"name": "dense_ae", "conv": "xla"}, image_shape=MNIST).latent_dim == 10
