"""Models: the material's layer sizes and parameter trees, the one calling convention, what
models declare, shapes derived from the data, and the registry open to user code."""

import gc
import json
import math
import os
import re
import sys
import textwrap
import weakref

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxae.configs import conv_vae, cvae, deep_ae, superres, vae_fashion_2d
from jaxae.configs import default as default_config

from jaxae import build as build_lib
from jaxae import config as config_lib
from jaxae import models
from jaxae.evaluation import generation
from jaxae.models.autoencoders import conv_plan
from jaxae.registry import RegistryError
from jaxae.tasks import Reconstruct
from jaxae.training import compiler, steps

MNIST = (28, 28, 1)
GOLDEN = os.path.join(os.path.dirname(__file__), "golden_param_trees.json")
CONV_AE_GRADIENT_SHAPE = (2, *MNIST)


def build(spec, image_shape=MNIST, num_classes=10, **kwargs):
    return models.build_model(spec, image_shape=image_shape, num_classes=num_classes,
                              **kwargs)


def init(model, input_shape=MNIST, batch=2, abstract=False):
    """(params, zero inputs, zero labels); abstract: shapes only (jax.eval_shape: nothing is
    compiled, which is most of a small model's time on a CPU)."""
    x = jnp.zeros((batch, *input_shape))
    labels = jnp.zeros((batch,), jnp.int32)
    run = jax.eval_shape if abstract else lambda f, k: jax.jit(f)(k)
    params = run(lambda k: model.init(k, x, labels=labels, sample=False),
                 jax.random.key(0))["params"]
    return params, x, labels


def output_shapes(model, params, *args, **kwargs):
    return jax.eval_shape(lambda p: model.apply({"params": p}, *args, **kwargs), params)


def paths(params) -> dict[str, list[int]]:
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return {"/".join(k.key for k in path): list(leaf.shape) for path, leaf in flat}


LESSON_MODELS = {  # golden key -> (model section, input shape)
    "dense_ae": ({"name": "dense_ae", "latent_dim": 10}, MNIST),
    "deep_ae": ({"name": "deep_ae", "latent_dim": 30}, MNIST),
    "conv_ae": ({"name": "conv_ae"}, MNIST),
    "vae": ({"name": "vae", "latent_dim": 2}, MNIST),
    "conv_vae": ({"name": "conv_vae", "latent_dim": 16}, MNIST),
    "cvae": ({"name": "cvae", "latent_dim": 2}, MNIST),
    "superres_x2": ({"name": "superres"}, (14, 14, 1)),
    "superres_x4": ({"name": "superres"}, (7, 7, 1)),
}


@pytest.mark.parametrize("key", list(LESSON_MODELS))
def test_the_lesson_models_keep_their_parameter_trees(key):
    """Every parameter path and shape as jaxae 0.1 made them (tests/golden_param_trees.json,
    written by that release): initialisation and checkpoints see the same tree."""
    with open(GOLDEN) as f:
        golden = json.load(f)[key]
    spec, input_shape = LESSON_MODELS[key]
    assert paths(init(build(spec), input_shape, abstract=True)[0]) == golden


@pytest.mark.parametrize("spec, num_params", [
    ({"name": "dense_ae", "latent_dim": 10}, 784 * 10 + 10 + 10 * 784 + 784),  # the peer's
    ({"name": "conv_ae"}, 4385),  # the PyTorch peer's count for the same layers
])
def test_parameter_counts_match_the_peer(spec, num_params):
    params, _, _ = init(build(spec), abstract=True)
    assert sum(leaf.size for leaf in jax.tree.leaves(params)) == num_params


@pytest.mark.parametrize("spec, variational, conditional, latent_shape", [
    ({"name": "dense_ae", "latent_dim": 7}, False, False, (7,)),
    ({"name": "deep_ae", "latent_dim": 3}, False, False, (3,)),
    ({"name": "conv_ae"}, False, False, (4, 4, 8)),
    ({"name": "vae", "latent_dim": 2}, True, False, (2,)),
    ({"name": "conv_vae", "latent_dim": 16}, True, False, (16,)),
    ({"name": "cvae", "latent_dim": 2}, True, True, (2,)),
    ({"name": "superres"}, False, False, None),
])
def test_models_declare_what_they_are(spec, variational, conditional, latent_shape):
    model = build(spec)
    assert (model.variational, model.conditional, model.latent_shape) == \
        (variational, conditional, latent_shape)


@pytest.mark.parametrize("spec", [{"name": "dense_ae", "latent_dim": 7}, {"name": "conv_ae"},
                                  {"name": "vae", "latent_dim": 3}, {"name": "cvae"}])
def test_one_calling_convention_and_encode_decode_for_every_model(spec):
    model = build(spec)
    params, x, labels = init(model, batch=3, abstract=True)
    logits, aux = output_shapes(model, params, x, labels=labels, key=jax.random.key(1))
    assert logits.shape == (3, *MNIST)
    assert set(aux) == ({"mean", "log_sigma", "z"} if model.variational else set())
    code = output_shapes(model, params, x, labels=labels, method="encode")
    mean = code[0] if model.variational else code
    assert mean.shape == (3, *model.latent_shape)
    decoded = output_shapes(model, params, jnp.zeros(mean.shape), labels=labels,
                            method="decode")
    assert decoded.shape == (3, *MNIST)


def test_a_vae_without_a_key_refuses_rather_than_using_the_mean():
    model = build({"name": "vae", "latent_dim": 2})
    params, x, _ = init(model)
    with pytest.raises(ValueError, match="pass key=<PRNG key>.*or sample=False"):
        model.apply({"params": params}, x)
    mean_logits, aux = model.apply({"params": params}, x, sample=False)
    np.testing.assert_array_equal(aux["z"], aux["mean"])
    by_rngs, _ = model.apply({"params": params}, x, rngs={"sample": jax.random.key(3)})
    assert not np.allclose(by_rngs, mean_logits)


def test_z_is_the_reparameterised_sample_of_the_key():
    model = build({"name": "vae", "latent_dim": 2})
    params, x, _ = init(model)
    key = jax.random.key(5)
    _, aux = model.apply({"params": params}, x, key=key)
    eps = jax.random.normal(key, aux["mean"].shape)  # z = mean + sigma * eps, by hand
    np.testing.assert_allclose(aux["z"], aux["mean"] + jnp.exp(aux["log_sigma"]) * eps,
                               rtol=1e-6)


def test_a_conditional_model_needs_labels():
    model = build({"name": "cvae"})
    params, x, _ = init(model)
    with pytest.raises(ValueError, match="VAE with num_classes=10 is conditional on the "
                                         "class: pass labels"):
        model.apply({"params": params}, x, sample=False)


@pytest.mark.parametrize("image_shape", [(32, 32, 3), (64, 64, 1), (20, 36, 3)])
@pytest.mark.parametrize("spec", [{"name": "conv_ae"}, {"name": "conv_vae", "latent_dim": 8},
                                  {"name": "dense_ae"}, {"name": "vae"}])
def test_models_take_their_shapes_from_the_data(spec, image_shape):
    model = build(spec, image_shape)
    params, x, labels = init(model, image_shape, abstract=True)
    logits, _ = output_shapes(model, params, x, labels=labels, key=jax.random.key(0))
    assert logits.shape == (2, *image_shape)


def test_conv_stages_follow_the_resolution():
    assert conv_plan(MNIST, None, 1, "conv_ae") == ((16, 8, 8), (4, 4, 8),
                                                    ("SAME", "VALID", "SAME"))
    assert conv_plan((32, 32, 3), None, 2, "conv_ae") == ((32, 16, 16), (4, 4, 16),
                                                          ("SAME",) * 3)
    assert conv_plan((64, 64, 3), None, 1, "conv_ae")[1] == (4, 4, 8)  # four stages
    assert conv_plan((128, 128, 3), (32, 64, 64, 128, 128), 1, "x")[1] == (4, 4, 128)


@pytest.mark.parametrize("image_shape, message", [
    ((4, 4, 1), "needs images larger than 4x4; these are 4x4: use a larger size that "
                "decodes, the smallest being 6x6"),
    ((30, 28, 1), "cannot decode 3 2x stages back to 30x28: resize the images to a size "
                  r"that decodes \(28x28 or 30x30: data.image_size\) or change the number of "
                  r"stages \(model.features, one count per stage, each times model.width; 1 "
                  r"stage decodes 30x28: model.features='\(16,\)'\)"),
    ((40, 48, 3), r"cannot decode 4 2x stages back to 40x48: .* 3 stages decode 40x48: "
                  r"model.features='\(16, 8, 8\)'\)$"),
    ((33, 33, 3), r"back to 33x33: resize the images to a size that decodes \(32x32 or 34x34"),
])
def test_a_size_the_conv_models_cannot_work_at_is_a_clear_error(image_shape, message):
    with pytest.raises(ValueError, match=message):
        _ = build({"name": "conv_ae"}, image_shape).latent_shape


def test_conv_features_without_a_stage_are_a_clear_error():
    with pytest.raises(ValueError, match=r"^conv_ae: features=\(\) has no stage: give each "
                                         r"stage's feature count \(e\.g\. \(16, 8, 8\)\)"):
        conv_plan(MNIST, (), 1, "conv_ae")


def test_a_size_the_model_cannot_work_at_is_refused_before_the_data_are_read(tmp_path):
    """An image folder is prepared only for a size the model can work at."""
    from jaxae.configs import conv_ae_folder

    from jaxae.training.trainer import train_and_evaluate

    (tmp_path / "photos").mkdir()  # empty: reading it would be an error of its own
    config = conv_ae_folder.get_config()
    config.data.path, config.data.image_size = str(tmp_path / "photos"), 33
    with pytest.raises(config_lib.ConfigError, match=r"cannot decode 4 2x stages back to "
                                                     r"33x33: resize the images to a size that "
                                                     r"decodes \(32x32"):
        train_and_evaluate(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
    config.data.image_size = None  # the size then comes from the data, checked once read
    build_lib.check_size_before_data(config)


class _Blocks(models.Autoencoder):
    """A user's model that averages 4x4 blocks: it gives back only sizes divisible by 4,
    and, with `rgb`, three channels whatever it was given."""

    image_shape: tuple
    rgb: bool = False

    @property
    def latent_shape(self):
        return (4,)

    @nn.compact
    def encode(self, x, *, labels=None):
        x = nn.avg_pool(x, (4, 4), (4, 4))
        return nn.Dense(4, name="encoder")(x.reshape(x.shape[0], -1))

    @nn.compact
    def decode(self, z, *, labels=None):
        h, w, c = self.image_shape
        c = 3 if self.rgb else c
        y = nn.Dense((h // 4) * (w // 4) * c, name="decoder")(z)
        y = y.reshape(z.shape[0], h // 4, w // 4, c)
        return jnp.repeat(jnp.repeat(y, 4, 1), 4, 2)


models.register_model("test_blocks")(_Blocks)


def test_a_user_model_unfit_for_the_size_is_refused_before_the_data_are_read(tmp_path):
    """A model whose only size check is what it returns is traced once, abstractly, before
    an image folder is prepared; with data.channels unset, only a model that fails for grey
    and for RGB images alike is refused."""
    from jaxae.configs import conv_ae_folder

    from jaxae.training.trainer import train_and_evaluate

    (tmp_path / "photos").mkdir()  # empty: reading it would be an error of its own
    config = conv_ae_folder.get_config()
    config.model = {"name": "test_blocks"}
    config.data.path, config.data.image_size = str(tmp_path / "photos"), 30
    with pytest.raises(config_lib.ConfigError, match=r"returns logits of shape 28x28x3 per "
                                                     r"image for 30x30x3 images"):
        train_and_evaluate(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
    config.data.channels = 1
    with pytest.raises(config_lib.ConfigError, match="28x28x1 per image for 30x30x1 images"):
        build_lib.check_size_before_data(config)
    config.data.image_size, config.data.channels = 32, None
    build_lib.check_size_before_data(config)
    config.model = {"name": "test_blocks", "rgb": True}  # fits RGB images, not grey ones
    build_lib.check_size_before_data(config)
    config.data.channels = 1
    with pytest.raises(config_lib.ConfigError, match="32x32x3 per image for 32x32x1 images"):
        build_lib.check_size_before_data(config)


@pytest.mark.parametrize("factor", [2, 4, 7])
def test_superres_scales_by_the_ratio_of_its_input(factor):
    model = build({"name": "superres"})
    params, x, _ = init(model, (28 // factor, 28 // factor, 1), abstract=True)
    logits, _ = output_shapes(model, params, x)
    assert logits.shape == (2, *MNIST)
    assert params["pixels"]["kernel"].shape[-1] == factor ** 2


def test_unknown_names_and_fields_are_refused_with_a_hint():
    with pytest.raises(RegistryError, match="unknown model 'conv_vea': did you mean 'conv_vae'"):
        build({"name": "conv_vea"})
    with pytest.raises(RegistryError, match="config.model.latnt_dim is not a field of model "
                                            "'vae': did you mean 'latent_dim'"):
        build({"name": "vae", "latnt_dim": 3})


def test_a_model_from_a_users_file_and_one_registered_by_decorator(tmp_path):
    (tmp_path / "my_models.py").write_text(textwrap.dedent("""
        import math
        import flax.linen as nn
        from jaxae import models

        @models.register_model("tiny_test_ae")
        class TinyAE(models.Autoencoder):
            image_shape: tuple
            width: int = 3

            @property
            def latent_shape(self):
                return (self.width,)

            def setup(self):
                self.down = nn.Dense(self.width)
                self.up = nn.Dense(math.prod(self.image_shape))

            def encode(self, x, *, labels=None):
                return self.down(x.reshape(x.shape[0], -1))

            def decode(self, z, *, labels=None):
                return self.up(z).reshape(z.shape[0], *self.image_shape)
    """))
    model = build({"name": f"{tmp_path}/my_models.py:TinyAE", "width": 4}, (8, 8, 1))
    assert model.width == 4 and not model.variational
    params, x, _ = init(model, (8, 8, 1))
    assert model.apply({"params": params}, x)[0].shape == (2, 8, 8, 1)
    assert type(build({"name": "tiny_test_ae"}, (8, 8, 1))) is type(model)
    with pytest.raises(RegistryError, match="defines no 'Missing'"):
        build({"name": f"{tmp_path}/my_models.py:Missing"})
    with pytest.raises(RegistryError) as caught:  # a misspelt file: the one beside it named
        build({"name": f"{tmp_path}/my_model.py:TinyAE"})
    assert str(caught.value) == (f"model file '{tmp_path}/my_model.py' does not exist: did you "
                                 f"mean '{tmp_path}/my_models.py'?")
    with pytest.raises(RegistryError, match="does not exist"):
        build({"name": f"{tmp_path}/nowhere.py:TinyAE"})


def test_a_model_file_imports_the_module_beside_it(tmp_path, monkeypatch):
    """As a script would: evaluate.py names the file from anywhere, not from its folder."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "base_of_mine.py").write_text(textwrap.dedent("""
        from jaxae.models import registry


        class Narrow(registry.MODELS.get("dense_ae")):
            pass
    """))
    (project / "derived_of_mine.py").write_text("from base_of_mine import Narrow\n\n"
                                                 "class Derived(Narrow):\n    pass\n")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(project))])
    monkeypatch.chdir("/")
    model = build({"name": f"{project}/derived_of_mine.py:Derived", "latent_dim": 3}, (8, 8, 1))
    assert type(model).__mro__[1].__name__ == "Narrow" and model.latent_dim == 3


def test_conv_models_have_the_same_parameters_with_either_implementation():
    trees = [paths(init(build({"name": "conv_vae", "latent_dim": 16, "conv": c}),
                        abstract=True)[0])
             for c in ("patches", "xla")]
    assert trees[0] == trees[1]


def test_conv_ae_gradients_agree_between_patches_and_xla():
    """The whole conv AE (taps, patches, sub-pixel layers, pooling) against XLA's convolutions
    with the same parameters: the hand-written backward passes inside it, end to end."""
    x = jax.random.uniform(jax.random.key(0), CONV_AE_GRADIENT_SHAPE)
    patches, xla = (build({"name": "conv_ae", "conv": c}) for c in ("patches", "xla"))
    params, _, _ = init(patches)

    def grads(model):  # one compiled program (op by op, every operation compiles on its own)
        return jax.jit(jax.grad(lambda p: jnp.sin(model.apply({"params": p}, x)[0]).sum()))(
            params)

    for ours, reference in zip(jax.tree.leaves(grads(patches)), jax.tree.leaves(grads(xla)),
                               strict=True):
        np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("spec", [{"name": "dense_ae", "latent_dim": 10},
                                  {"name": "vae", "latent_dim": 2},
                                  {"name": "conv_ae", "conv": "xla"}])
def test_forward_and_reverse_mode_agree_through_a_model(spec):
    """<u, J v> from `jax.jvp` equals <J^T u, v> from `jax.vjp` for the whole model (its
    narrow Dense layers and pooling have custom derivatives that must serve both modes)."""
    model = build(spec)
    keys = jax.random.split(jax.random.key(0), 4)
    x = jax.random.uniform(keys[0], (3, 28, 28, 1))
    params = jax.jit(lambda key: model.init(key, x, sample=False))(keys[1])
    v = jax.random.normal(keys[2], x.shape)

    @jax.jit  # one compiled program (op by op, every operation compiles on its own)
    def both_modes(params, x, u, v):
        f = lambda x: model.apply(params, x, sample=False)[0]  # noqa: E731
        return (jnp.vdot(u, jax.jvp(f, (x,), (v,))[1]),
                jnp.vdot(jax.vjp(f, x)[1](u)[0], v))

    logits = jax.eval_shape(lambda x: model.apply(params, x, sample=False)[0], x)
    u = jax.random.normal(keys[3], logits.shape)
    forward, reverse = both_modes(params, x, u, v)
    assert abs(float(forward)) > 1e-3
    np.testing.assert_allclose(forward, reverse, rtol=1e-4)


def test_the_dense_decoder_reshapes_to_any_image():
    model = build({"name": "dense_ae", "latent_dim": 5}, (6, 10, 3))
    params, _, _ = init(model, (6, 10, 3), abstract=True)
    assert params["decoder"]["pixels"]["kernel"].shape == (5, math.prod((6, 10, 3)))


# ------------------------------------------------------------------ declarations, checked

class _Dense(models.Autoencoder):
    """A plain AE of the user's whose declarations the cases below break one at a time."""
    image_shape: tuple
    latent_dim: int = 4
    pixels: int = 784

    @property
    def latent_shape(self):
        return (self.latent_dim,)

    @nn.compact
    def encode(self, x, *, labels=None):
        return nn.Dense(4, name="encoder")(x.reshape(x.shape[0], -1))

    @nn.compact
    def decode(self, z, *, labels=None):
        return nn.Dense(self.pixels, name="decoder")(z).reshape(z.shape[0], -1, 28, 1)


class _FlatLogits(_Dense):
    @nn.compact
    def decode(self, z, *, labels=None):
        return nn.Dense(784, name="decoder")(z)


class _NoLatentShape(models.Autoencoder):
    image_shape: tuple

    def encode(self, x, *, labels=None):
        return x

    def decode(self, z, *, labels=None):
        return z


class _NotAnAutoencoder(nn.Module):
    image_shape: tuple

    def __call__(self, x, **kwargs):
        return x, {}


class _VAE(models.VariationalAutoencoder):
    image_shape: tuple
    declared: tuple = (3,)

    @property
    def latent_shape(self):
        return self.declared

    @nn.compact
    def encode(self, x, *, labels=None):
        h = x.reshape(x.shape[0], -1)
        return nn.Dense(4, name="mean")(h), nn.Dense(4, name="log_sigma")(h)

    @nn.compact
    def decode(self, z, *, labels=None):
        return nn.Dense(784, name="decoder")(z).reshape(z.shape[0], 28, 28, 1)


class _NoDecode(models.Autoencoder):
    image_shape: tuple

    @property
    def latent_shape(self):
        return (784,)

    def encode(self, x, *, labels=None):
        return x.reshape(x.shape[0], -1)


class _TupleCode(_Dense):
    def encode(self, x, *, labels=None):
        code = super().encode(x)
        return code, code


class _OneArrayVAE(_VAE):
    @nn.compact
    def encode(self, x, *, labels=None):
        return nn.Dense(6, name="both")(x.reshape(x.shape[0], -1))


class _CallOnlyLogits(_Dense):
    def __call__(self, x, *, labels=None, key=None, sample=True):
        return self.decode(self.encode(x))


class _DecodeTuple(_Dense):
    def decode(self, z, *, labels=None):
        logits = super().decode(z)
        return logits, logits


class _AuxNone(_Dense):
    """A plain AE returning (logits, None): its objective reads no aux."""
    def __call__(self, x, *, labels=None, key=None, sample=True):
        return self.decode(self.encode(x)), None


class _Unnamed(_Dense):
    @nn.compact
    def encode(self, x, *, labels=None):
        return nn.Dense(4)(x.reshape(x.shape[0], -1))

    @nn.compact
    def decode(self, z, *, labels=None):
        return nn.Dense(784)(z).reshape(z.shape[0], 28, 28, 1)


@pytest.mark.parametrize("model, words", [
    (_Dense(MNIST), None),
    (_AuxNone(MNIST), None),
    (_CallOnlyLogits(MNIST), "returns an array of shape 2x28x28x1 from __call__, not (logits, "
                             "aux): subclass jaxae.models.Autoencoder"),
    (_DecodeTuple(MNIST), "returns logits of type tuple, not an array: its decode must "
                          "return one array [batch, 28, 28, 1]"),
    (_Unnamed(MNIST), "ScopeParamShapeError"),
    (_Unnamed(MNIST), "name the layers of @nn.compact encode and decode (name='...'"),
    (_NoDecode(MNIST), "fails on a batch of 28x28x1 inputs: NotImplementedError: _NoDecode "
                       "gives no decode: define decode(self, z, *, labels=None) returning "
                       "logits [B, H, W, C]"),
    (_TupleCode(MNIST), "_TupleCode.encode must return one array, the code [B, "
                        "*latent_shape], not a tuple"),
    (_OneArrayVAE(MNIST, declared=(6,)), "_OneArrayVAE.encode must return two arrays, "
                                         "(z_mean, z_log_sigma), each [B, latent_dim], not "
                                         "one array"),
    (_Dense(MNIST, latent_dim=5), "declares latent_shape (5,) but its encoder gives a code "
                                  "of shape (4,) per image"),
    (_Dense(MNIST, pixels=392), "returns logits of shape 14x28x1 per image for 28x28x1 "
                                "images: its decode must return [batch, 28, 28, 1]"),
    (_FlatLogits(MNIST), "returns logits of shape 784 per image"),
    (_NoLatentShape(MNIST), "declares no latent_shape: give it a latent_shape property"),
    (_NotAnAutoencoder(MNIST), "does not declare variational, conditional, latent_shape: "
                               "subclass jaxae.models.Autoencoder"),
    (_VAE(MNIST), "declares latent_shape (3,) but its encoder gives a mean of shape (4,)"),
    (_VAE(MNIST, declared=(2, 2)), "is variational with latent_shape (2, 2): the ELBO's terms "
                                   "sum over one latent axis, so flatten the code in encode "
                                   "(latent_shape (4,))"),
])
def test_a_model_that_breaks_what_it_declares_is_named_before_anything_compiles(model, words):
    if words is None:
        build_lib.check_model(model, Reconstruct(), MNIST)
        return
    with pytest.raises(config_lib.ConfigError) as caught:
        build_lib.check_model(model, Reconstruct(), MNIST)
    message = str(caught.value)
    assert message.startswith(f"model {type(model).__name__} ") and words in message, message
    assert "\n" not in message


def test_a_model_that_ignores_a_task_s_smaller_inputs_is_told_what_they_are():
    from jaxae.tasks.tasks import SuperResolve

    class SameSize(_Dense):  # decodes to its input's size: 14x14 under 2x super-resolution
        @nn.compact
        def decode(self, z, *, labels=None):
            return nn.Dense(196, name="decoder")(z).reshape(-1, 14, 14, 1)

    with pytest.raises(config_lib.ConfigError) as caught:
        build_lib.check_model(SameSize(MNIST), SuperResolve(factor=2), MNIST)
    assert str(caught.value) == (
        "model SameSize returns logits of shape 14x14x1 per image for 28x28x1 images (its "
        "inputs are 14x14x1, as the task gives them): its decode must return [batch, 28, 28, 1]")


def test_a_model_whose_code_fails_on_a_batch_is_one_line_naming_the_error():
    class Mismatched(_Dense):
        @nn.compact
        def decode(self, z, *, labels=None):
            return nn.Dense(196, name="decoder")(z).reshape(-1, 14, 14, 1) + jnp.ones(
                (1, 28, 28, 1))

    with pytest.raises(config_lib.ConfigError, match=r"^model Mismatched fails on a batch of "
                       r"28x28x1 inputs: TypeError: add got incompatible shapes") as caught:
        build_lib.check_model(Mismatched(MNIST), Reconstruct(), MNIST)
    where = re.search(r" \(at (.+):(\d+), in decode\)$", str(caught.value))  # the user's line
    assert where is not None, caught.value
    assert os.path.samefile(where[1], __file__)
    assert "nn.Dense(196" in open(__file__).read().splitlines()[int(where[2]) - 1]


class _BatchNormed(_Dense):
    @nn.compact
    def encode(self, x, *, labels=None):
        return nn.BatchNorm(use_running_average=False)(nn.Dense(4, name="encoder")(
            x.reshape(x.shape[0], -1)))


class _BatchNormedAsEvaluated(_Dense):
    """BatchNorm on its running averages, as a ported model's train=False builds it."""

    @nn.compact
    def encode(self, x, *, labels=None):
        return nn.BatchNorm(use_running_average=True)(nn.Dense(4, name="encoder")(
            x.reshape(x.shape[0], -1)))


class _BatchNormedAlways(_BatchNormed):
    """Declares its state, but changes it in evaluation too (use_running_average=False)."""

    state_collections = ("batch_stats",)


class _DeclaresStateItLacks(_Dense):
    state_collections = ("batch_stats",)


class _DropsTheCodeAlways(_Dense):
    """Drops its code between encode and decode, in evaluation too: only __call__ draws."""

    def __call__(self, x, *, labels=None, key=None, sample=True):
        code = self.encode(x)
        kept = jax.random.bernoulli(self.make_rng("dropout"), 0.9, code.shape)
        return self.decode(jnp.where(kept, code / 0.9, 0.0)), {}


class _DroppedOut(_Dense):
    stream: str = "dropout"

    @nn.compact
    def encode(self, x, *, labels=None):
        return nn.Dropout(0.5, deterministic=False, rng_collection=self.stream)(
            nn.Dense(4, name="encoder")(x.reshape(x.shape[0], -1)))


_OWN_RANDOMNESS = ("a model draws with the key its __call__ takes (a VAE's z) and, while "
                   "jaxae.models.in_training(self), from the stream 'dropout' "
                   "(nn.Dropout(rate, deterministic=not jaxae.models.in_training(self)), "
                   "self.make_rng('dropout')): the steps give no other; or corrupt the input "
                   "with a task (task.name=denoise)")
_STATE = ("a layer keeps state (BatchNorm's batch_stats): declare it in the model's "
          "state_collections (state_collections = ('batch_stats',)), and change it only while "
          "training: nn.BatchNorm(use_running_average=not jaxae.models.in_training(self))")


class _SamplesFromItsOwnStream(_VAE):
    """Draws z from the rng stream "sample" itself, not with the key __call__ takes."""
    declared: tuple = (4,)

    def __call__(self, x, *, labels=None, key=None, sample=True):
        mean, log_sigma = self.encode(x)
        z = models.reparameterize(self.make_rng("sample"), mean, log_sigma) if sample else mean
        return self.decode(z), {"mean": mean, "log_sigma": log_sigma, "z": z}


class _DrawsWithoutAKey(_SamplesFromItsOwnStream):
    """Draws from the stream "sample" when called keyless, even for z = z_mean: the eval
    step and the pictures call it so, with no stream."""

    def __call__(self, x, *, labels=None, key=None, sample=True):
        mean, log_sigma = self.encode(x)
        key = self.make_rng("sample") if key is None else key
        z = models.reparameterize(key, mean, log_sigma) if sample else mean
        return self.decode(z), {"mean": mean, "log_sigma": log_sigma, "z": z}


class _NeedsAKeyForTheMean(_SamplesFromItsOwnStream):
    """Reads its key even for z = z_mean (sample=False), which the steps ask for keyless."""

    def __call__(self, x, *, labels=None, key=None, sample=True):
        mean, log_sigma = self.encode(x)
        noise = jax.random.normal(key, mean.shape)
        z = mean + (jnp.exp(log_sigma) * noise if sample else 0.0)
        return self.decode(z), {"mean": mean, "log_sigma": log_sigma, "z": z}


class _NoisyInTraining(_Dense):
    """Draws from a stream of its own while training: the steps give only "dropout"."""

    @nn.compact
    def encode(self, x, *, labels=None):
        h = nn.Dense(4, name="encoder")(x.reshape(x.shape[0], -1))
        if models.in_training(self):
            h = h + jax.random.normal(self.make_rng("noise"), h.shape)
        return h


@pytest.mark.parametrize("model, error, fix", [
    (_BatchNormed(MNIST), 'ScopeCollectionNotFound: Tried to access "mean" from collection '
     '"batch_stats"', _STATE),
    (_BatchNormedAsEvaluated(MNIST), 'ScopeCollectionNotFound: Tried to access "mean" from '
     'collection "batch_stats"', _STATE),  # undeclared: the steps give it no batch_stats
    (_BatchNormedAlways(MNIST), 'ModifyScopeVariableError: Cannot update variable "mean" in '
     '"/BatchNorm_0" because collection "batch_stats" is immutable', "a layer changes its "
     "state outside training: change it only while training: nn.BatchNorm("
     "use_running_average=not jaxae.models.in_training(self))"),
    (_DeclaresStateItLacks(MNIST), "declares state_collections ('batch_stats',) but its layers "
     "keep no batch_stats: declare only the collections they keep", ""),
    (_DropsTheCodeAlways(MNIST), 'InvalidRngError: _DropsTheCodeAlways needs PRNG for '
     '"dropout"', _OWN_RANDOMNESS),  # Flax's init lends its draw the params stream
    # Dropout that draws in evaluation too (deterministic=False)
    (_DroppedOut(MNIST), 'InvalidRngError: Dropout_0 needs PRNG for "dropout"', _OWN_RANDOMNESS),
    (_DroppedOut(MNIST, stream="sample"), 'InvalidRngError: Dropout_0 needs PRNG for "sample"',
     _OWN_RANDOMNESS),  # the stream a VAE's z may come from: no Dropout's either
    (_NoisyInTraining(MNIST), 'needs PRNG for "noise"', _OWN_RANDOMNESS),
    (_SamplesFromItsOwnStream(MNIST), 'InvalidRngError: _SamplesFromItsOwnStream needs PRNG '
     'for "sample"', _OWN_RANDOMNESS),  # the fix names the key
    (_NeedsAKeyForTheMean(MNIST), "TypeError: ", ""),  # init_params calls it keyless
    (_DrawsWithoutAKey(MNIST), 'InvalidRngError: _DrawsWithoutAKey needs PRNG for "sample"',
     _OWN_RANDOMNESS),  # Flax's init lends it the params stream: the keyless apply finds it
])
def test_a_layer_with_state_or_its_own_randomness_is_refused_naming_what_to_use(model, error,
                                                                                fix):
    with pytest.raises(config_lib.ConfigError) as caught:
        build_lib.check_model(model, Reconstruct(), MNIST)
    message = str(caught.value)
    assert error in message and message.endswith(f": {fix}" if fix else "") and \
        "\n" not in message, message
    assert "https://" not in message  # Flax's link to its error's page is left out


class _SowsAndPerturbs(_Dense):
    """Collections the steps leave alone: sown values and perturbations."""

    @nn.compact
    def encode(self, x, *, labels=None):
        h = nn.Dense(4, name="encoder")(x.reshape(x.shape[0], -1))
        self.sow("intermediates", "code_norm", jnp.linalg.norm(h))
        return self.perturb("code", h)


def test_a_model_that_sows_or_perturbs_is_accepted_and_trains():
    import optax

    from jaxae import losses, objectives
    from jaxae.training import steps
    model = _SowsAndPerturbs(image_shape=MNIST)
    build_lib.check_model(model, Reconstruct(), MNIST)
    state = steps.create_train_state(model, optax.sgd(0.1), MNIST, jax.random.key(0))
    step = steps.make_train_step(model, Reconstruct(), objectives.Reconstruction(losses.mse))
    state, metrics = step(state, {"image": np.zeros((2, *MNIST), np.uint8)}, jax.random.key(1))
    assert int(state.step) == 1 and np.isfinite(float(metrics["loss"]))


class _BatchNormedWhileTraining(_Dense):
    """A user's AE with BatchNorm, as Flax models write it, declaring its state."""

    state_collections = ("batch_stats",)

    @nn.compact
    def encode(self, x, *, labels=None):
        h = nn.Dense(4, name="encoder")(x.reshape(x.shape[0], -1))
        return nn.BatchNorm(use_running_average=not models.in_training(self), name="norm")(h)


def test_a_model_s_batchnorm_normalises_by_the_batch_in_training_by_its_averages_elsewhere(
        tmp_path):
    """The training steps update the state a model declares (its running averages);
    evaluation, encode and the checkpoints read and keep it; its parameters alone are
    named as not enough."""
    import optax
    from flax.training import train_state

    from jaxae import losses, objectives
    from jaxae.data import Split
    from jaxae.evaluation import generation, pictures
    from jaxae.models.base import variables_of
    from jaxae.models.declarations import DeclarationError
    from jaxae.training import checkpoints, steps
    model = _BatchNormedWhileTraining(image_shape=MNIST)
    build_lib.check_model(model, Reconstruct(), MNIST)  # refused before state was supported
    objective = objectives.Reconstruction(losses.mse)
    images = np.random.default_rng(0).integers(0, 256, (16, *MNIST), dtype=np.uint8)
    state = steps.create_train_state(model, optax.sgd(0.1), MNIST, jax.random.key(0))
    stats = state.model_state["batch_stats"]["norm"]
    np.testing.assert_array_equal(stats["mean"], np.zeros(4))  # Flax's starting averages
    np.testing.assert_array_equal(stats["var"], np.ones(4))
    step = steps.make_train_step(model, Reconstruct(), objective)
    for k in range(3):
        state, metrics = step(state, {"image": images}, jax.random.key(k))
    assert int(state.step) == 3 and np.isfinite(float(metrics["loss"]))
    stats = jax.device_get(state.model_state["batch_stats"]["norm"])
    assert np.abs(stats["mean"]).max() > 0 and not np.allclose(stats["var"], 1.0)  # updated
    x = images / 255.0
    h = x.reshape(16, -1) @ state.params["encoder"]["kernel"] + state.params["encoder"]["bias"]
    by_averages = ((h - stats["mean"]) / np.sqrt(stats["var"] + 1e-5)
                   * state.params["norm"]["scale"] + state.params["norm"]["bias"])
    codes = generation.encode(model, state.variables, images)
    np.testing.assert_allclose(codes, by_averages, rtol=1e-5, atol=1e-5)
    by_batch = (h - h.mean(0)) / np.sqrt(h.var(0) + 1e-5)  # what training normalises by
    assert not np.allclose(codes, by_batch * state.params["norm"]["scale"]
                           + state.params["norm"]["bias"], atol=1e-3)
    evaluate = steps.make_eval_step(model, Reconstruct(), objective)
    evaluated = [float(evaluate(state.variables, {"image": images}, jax.random.key(k))["loss"])
                 for k in (1, 2)]
    assert evaluated[0] == evaluated[1]  # the running averages: no batch, no key, matter
    flat = losses.flat_images
    for mode, expected in (({}, True), ({"mutable": ["batch_stats"]}, False)):  # as trained
        output = model.apply(variables_of(state.variables), x, **mode)
        logits = output[0][0] if mode else output[0]
        by_hand = float(objective(flat(logits), flat(x), {})["loss"].sum())  # eval's: sums
        assert np.isclose(evaluated[0], by_hand, rtol=1e-5) == expected, mode
    alone = (r"^model _BatchNormedWhileTraining keeps state \(batch_stats\), and was given its "
             r"parameters alone .*: give its Variables, state.variables")
    split = Split(images, np.zeros(16, np.int32))
    for call in (lambda: evaluate(state.params, {"image": images}, jax.random.key(1)),
                 lambda: generation.encode(model, state.params, images),
                 lambda: pictures.reconstruction_rows(model, Reconstruct(), state.params, split,
                                                      jax.random.key(1), 4)):
        with pytest.raises(DeclarationError, match=alone):
            call()
    flax_state = train_state.TrainState.create(apply_fn=model.apply, params=state.params,
                                               tx=optax.sgd(0.1))
    with pytest.raises(TypeError, match=r"^model _BatchNormedWhileTraining keeps state "
                                        r"\(batch_stats\), which Flax's TrainState has no "
                                        r"place for: make the state with jaxae.training.steps"
                                        r".create_train_state"):
        step(flax_state, {"image": images}, jax.random.key(1))
    manager = checkpoints.make_manager(str(tmp_path / "checkpoints"))
    checkpoints.save_state(manager, state)
    fresh = steps.create_train_state(model, optax.sgd(0.1), MNIST, jax.random.key(9))
    restored = checkpoints.restore_state(manager, fresh)
    with pytest.raises(TypeError, match=r"holds a model's state \(model_state\), which Flax's "
                                        r"TrainState has no place for: restore into a "
                                        r"jaxae.training.steps.TrainState"):
        checkpoints.restore_state(manager, flax_state)
    with pytest.raises(TypeError, match=r"holds a model's state"):  # the caller's: no damage
        checkpoints.restore_newest_intact(manager, flax_state, settle_s=0)
    checkpoints.close(manager)
    for a, b in zip(jax.tree.leaves(state.model_state), jax.tree.leaves(restored.model_state),
                    strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_loop_of_ones_own_that_makes_the_running_averages_mutable_is_training():
    """Without the dropout stream, a loop that passes mutable=["batch_stats"] trains its
    BatchNorm (it ran on its starting averages, which never moved)."""
    from jaxae.models.base import variables_of
    from jaxae.training import steps
    model = _BatchNormedWhileTraining(image_shape=MNIST)
    params, state = steps.init_variables(model, MNIST, jax.random.key(0))
    x = np.random.default_rng(0).random((8, *MNIST), np.float32)
    _, moved = model.apply({"params": params, **state}, x, mutable=["batch_stats"])
    assert np.abs(np.asarray(moved["batch_stats"]["norm"]["mean"])).max() > 0
    evaluated = model.apply(variables_of(models.Variables(params, state)), x)
    assert isinstance(evaluated, tuple) and len(evaluated) == 2  # (logits, aux): read-only


class _DeclaresOneString(_BatchNormedWhileTraining):
    state_collections = "batch_stats"  # a forgotten comma


def test_state_collections_given_as_one_string_are_named_not_read_letter_by_letter():
    with pytest.raises(config_lib.ConfigError, match=r"state_collections is the string "
                                                     r"'batch_stats': give a tuple of "
                                                     r"collections, \('batch_stats',\)"):
        build_lib.check_model(_DeclaresOneString(MNIST), Reconstruct(), MNIST)


class _DropsWhileTraining(_Dense):
    """A user's AE with its own Dropout, as Flax models write it."""

    @nn.compact
    def encode(self, x, *, labels=None):
        h = nn.Dropout(0.5, deterministic=not models.in_training(self))(x.reshape(x.shape[0], -1))
        return nn.Dense(4, name="encoder")(h)


def test_a_model_s_own_dropout_draws_from_the_step_s_key_in_training_and_never_elsewhere():
    """The training steps give the "dropout" stream from the step's key: the same key drops
    the same pixels (same bits), another key others; evaluation, encode and decode drop
    none."""
    import optax

    from jaxae import losses, objectives
    from jaxae.training import steps
    model = _DropsWhileTraining(image_shape=MNIST)
    build_lib.check_model(model, Reconstruct(), MNIST)  # refused before dropout had a stream
    objective = objectives.Reconstruction(losses.mse)
    images = np.random.default_rng(0).integers(0, 256, (8, *MNIST), dtype=np.uint8)
    batch = {"image": images, "mask": np.ones(8, np.float32)}
    state = steps.create_train_state(model, optax.sgd(0.1), MNIST, jax.random.key(0))
    step = jax.jit(steps.train_step_fn(model, Reconstruct(), objective))
    losses_by_key = {k: [float(step(state, {"image": images}, jax.random.key(k))[1]["loss"])
                         for _ in range(2)] for k in (1, 2)}
    assert losses_by_key[1][0] == losses_by_key[1][1]  # the same key: the same bits
    assert losses_by_key[1][0] != losses_by_key[2][0]  # another key: other pixels dropped
    later = float(step(state.replace(step=state.step + 1), {"image": images},
                       jax.random.key(1))[1]["loss"])
    assert later != losses_by_key[1][0]  # the next step's key: other pixels, not the same mask
    evaluate = steps.make_eval_step(model, Reconstruct(), objective)
    evaluated = [float(evaluate(state.params, batch, jax.random.key(k))["loss"]) / 8
                 for k in (1, 2)]
    assert evaluated[0] == evaluated[1]  # no dropout: the key changes nothing
    kept = model.apply({"params": state.params}, images / 255.0)[0]  # the identity, by hand
    by_hand = float(losses.mse(losses.flat_images(kept),
                               losses.flat_images(images / 255.0)).mean())
    assert evaluated[0] == pytest.approx(by_hand, rel=1e-5)
    assert abs(losses_by_key[1][0] - evaluated[0]) > 1e-3  # training dropped pixels
    dense = state.params["encoder"]  # encode alone drops nothing either: the layer by hand
    np.testing.assert_allclose(
        model.apply({"params": state.params}, images / 255.0, method="encode"),
        images.reshape(8, -1) / 255.0 @ dense["kernel"] + dense["bias"], rtol=1e-5, atol=1e-6)


class _DropBlock(nn.Module):
    @nn.compact
    def __call__(self, h, _):
        return nn.Dropout(0.5, deterministic=not models.in_training(self))(nn.Dense(16)(h)), None


class _ScannedDropout(_Dense):
    """Dropout inside nn.scan: a lifted layer sees the stream where split_rngs names it."""

    @nn.compact
    def encode(self, x, *, labels=None):
        blocks = nn.scan(_DropBlock, variable_axes={"params": 0}, length=2,
                         split_rngs={"params": True, "dropout": True})
        h, _ = blocks(name="blocks")(nn.Dense(16, name="stem")(x.reshape(x.shape[0], -1)),
                                     None)
        return nn.Dense(4, name="encoder")(h)


def test_dropout_inside_a_scan_drops_in_training_where_split_rngs_names_the_stream():
    """in_training's recipe for lifted layers (its docstring): split_rngs names "dropout"."""
    model = _ScannedDropout(image_shape=MNIST)
    build_lib.check_model(model, Reconstruct(), MNIST)
    x = np.random.default_rng(0).random((4, *MNIST), np.float32)
    params = jax.jit(lambda key: model.init(key, x, sample=False))(jax.random.key(0))["params"]
    # each compiled once (op by op, every operation compiles on its own)
    train = jax.jit(lambda p, x, key: model.apply({"params": p}, x, rngs={"dropout": key})[0])
    evaluate = jax.jit(lambda p, x: model.apply({"params": p}, x)[0])
    trained = [train(params, x, jax.random.key(k)) for k in (1, 2)]
    evaluated = evaluate(params, x)
    assert not np.array_equal(trained[0], trained[1])  # each key drops other units
    assert not np.array_equal(trained[0], evaluated)
    np.testing.assert_array_equal(evaluated, evaluate(params, x))


def test_every_shipped_config_s_model_keeps_its_declarations():
    for module in (default_config, deep_ae, superres, vae_fashion_2d, conv_vae, cvae):
        config = module.get_config()
        for shape in (MNIST, (32, 32, 3)):
            model = build_lib.make_model(config, shape, 10)
            build_lib.check_model(model, config_lib.make_task(config), shape)


def test_a_conditional_model_on_data_of_one_class_is_refused():
    """A CVAE given unlabelled images (every image class 0) would learn no condition."""
    with pytest.raises(config_lib.ConfigError) as caught:
        build_lib.make_model(cvae.get_config(), MNIST, 1)
    assert str(caught.value) == (
        "config.model (cvae) is conditional on the class, but the data has 1 class: give "
        "labelled data of two classes or more, or choose a model that is not conditional")
    assert build_lib.make_model(default_config.get_config(), MNIST, 1).latent_dim == 10


def test_a_users_model_file_that_fails_to_run_or_lacks_the_name_is_one_line(tmp_path):
    broken = tmp_path / "broken_models.py"
    broken.write_text("import math\n\n\ndef helper(:\n    pass\n")
    with pytest.raises(RegistryError) as caught:
        models.MODELS.get(f"{broken}:Model")
    assert str(caught.value) == f"{broken}:4: SyntaxError: invalid syntax"
    missing = tmp_path / "importing_models.py"
    missing.write_text("import math\nimport no_such_module_of_ours\n")
    with pytest.raises(RegistryError) as caught:
        models.MODELS.get(f"{missing}:Model")
    assert str(caught.value) == (f"{missing}:2: ModuleNotFoundError: No module named "
                                 "'no_such_module_of_ours'")
    fine = tmp_path / "fine_models.py"
    fine.write_text("class Deeper:\n    pass\n\n\ndef make():\n    return Deeper()\n")
    with pytest.raises(RegistryError) as caught:
        models.MODELS.get(f"{fine}:Deep")
    assert str(caught.value).endswith(f"{fine} defines no 'Deep'; it defines Deeper, make")


def test_a_name_registered_by_a_users_package_module_is_recorded_as_its_file(tmp_path):
    """The module that registers the name is recorded, by its file; a file of a package is
    imported as the package's module (its relative imports work) from any folder."""
    import subprocess
    import sys

    from jaxae.registry import locatable_name

    package = tmp_path / "proj" / "mypkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sizes.py").write_text("WIDTH = 3\n")
    (package / "mods.py").write_text(textwrap.dedent('''
        import functools

        from jaxae import models
        from jaxae.models.autoencoders import DenseAE

        from .sizes import WIDTH

        models.register_model("pkg_dense_for_test")(functools.partial(DenseAE,
                                                                      latent_dim=WIDTH))
    '''))
    sys.path.insert(0, str(tmp_path / "proj"))
    try:
        import mypkg.mods  # noqa: F401 (as a config would: it registers the name)
    finally:
        sys.path.remove(str(tmp_path / "proj"))
    name = locatable_name(models.MODELS, "pkg_dense_for_test")
    assert name == f"{package}/mods.py:pkg_dense_for_test"
    assert locatable_name(models.MODELS, "conv_vae") == "conv_vae"  # jaxae's own
    found = subprocess.run(
        [sys.executable, "-c", "from jaxae.models import MODELS, build_model; "
         f"m = build_model({{'name': {name!r}}}, image_shape=(28, 28, 1)); print(m.latent_dim)"],
        cwd="/", capture_output=True, text=True, timeout=120)
    assert found.stdout.strip() == "3", found.stderr[-1500:]


class _TypoInLatentShape(_Dense):
    @property
    def latent_shape(self):
        return (self.latnt_dim,)


class _IntLatentShape(_Dense):
    @property
    def latent_shape(self):
        return 4


@pytest.mark.parametrize("model, words", [
    (_TypoInLatentShape(MNIST), "model _TypoInLatentShape's latent_shape raises "),
    (_IntLatentShape(MNIST), "model _IntLatentShape's latent_shape is 4: give a tuple of "
                             "positive sizes"),
])
def test_a_latent_shape_that_fails_is_named(model, words):
    with pytest.raises(config_lib.ConfigError) as caught:
        build_lib.check_model(model, Reconstruct(), MNIST)
    assert str(caught.value).startswith(words), str(caught.value)


def test_a_definition_run_again_replaces_its_entry_and_another_is_refused():
    from jaxae.registry import Registry

    registry = Registry("model")
    defined = []
    for width in (1, 2):  # a notebook cell run twice: the same module and qualified name
        @registry.register("cell_ae")
        class CellAE(_Dense):
            latent_dim: int = width
        defined.append(CellAE)
    assert registry.get("cell_ae") is defined[1] and defined[0] is not defined[1]
    with pytest.raises(RegistryError, match=r"a model named 'cell_ae' is registered already "
                                            r"\(.*\): register yours under another name, or "
                                            r"name it by its file"):
        registry.register("cell_ae")(_VAE)


def test_a_plain_autoencoder_has_no_prior_samples_or_iwae_bounds_and_needs_no_labels():
    from jaxae import losses, objectives
    from jaxae.evaluation import generation, iwae
    from jaxae.training import steps

    model = build({"name": "dense_ae", "latent_dim": 4})
    params, _, _ = init(model)
    with pytest.raises(ValueError, match="DenseAE is not a variational model, so N"):
        generation.prior_samples(model, params, jax.random.key(0), 4)
    batch = {"image": np.zeros((2, *MNIST), np.uint8), "mask": np.ones(2, np.float32)}
    with pytest.raises(ValueError, match="IWAE bounds weigh samples of q"):
        iwae.iwae_bounds(model, Reconstruct(), objectives.Bernoulli(), params, [batch],
                         jax.random.key(0), (1,))
    import optax

    state = steps.create_train_state(model, optax.adam(1e-3), MNIST, jax.random.key(0))
    step = steps.make_train_step(model, Reconstruct(), objectives.Reconstruction(losses.mse))
    state, metrics = step(state, {"image": batch["image"]}, jax.random.key(1))  # no "label"
    assert int(state.step) == 1 and np.isfinite(float(metrics["loss"]))


class _TwoPerCode(_Dense):
    @nn.compact
    def decode(self, z, *, labels=None):  # two images per code: twice the batch
        return nn.Dense(2 * 784, name="decoder")(z).reshape(-1, 28, 28, 1)


def test_the_library_steps_refuse_logits_not_shaped_as_the_images_as_they_are_traced():
    """A user's own loop, without train.py's check: flat logits (which the flat losses would
    take without complaint) and logits of another size are one line as the step traces."""
    import optax

    from jaxae import losses, objectives
    from jaxae.models.declarations import DeclarationError
    from jaxae.training import steps
    batch = {"image": np.zeros((2, *MNIST), np.uint8), "mask": np.ones(2, np.float32)}
    objective = objectives.Reconstruction(losses.mse)
    for model, shape in ((_FlatLogits(image_shape=MNIST), "of shape 784 per image"),
                         (_Dense(image_shape=MNIST, pixels=28 * 27), "of shape 27x28x1 per image"),
                         (_TwoPerCode(image_shape=MNIST), "of 4 images")):
        for_what = "for 28x28x1 images" if "per image" in shape else "for a batch of 2"
        message = (f"model {type(model).__name__} returns logits {shape} {for_what}: its "
                   "decode must return [batch, 28, 28, 1]")
        # create_train_state checks the logits against the model's own image_shape
        with pytest.raises(DeclarationError) as caught:
            steps.create_train_state(model, optax.sgd(0.1), MNIST, jax.random.key(0))
        assert str(caught.value) == message
        state = steps.create_train_state(model, optax.sgd(0.1), MNIST, jax.random.key(0),
                                         check=False)
        with pytest.raises(DeclarationError) as caught:
            steps.make_train_step(model, Reconstruct(), objective)(state, batch,
                                                                  jax.random.key(1))
        assert str(caught.value) == message
        with pytest.raises(DeclarationError) as caught:
            steps.make_eval_step(model, Reconstruct(), objective)(state.params, batch,
                                                                 jax.random.key(1))
        assert str(caught.value) == message


class _SpatialVAE(models.VariationalAutoencoder):
    """A VAE whose code keeps a spatial layout, 7x7x1: not a flat one."""
    image_shape: tuple

    @property
    def latent_shape(self):
        return (7, 7, 1)

    @nn.compact
    def encode(self, x, *, labels=None):
        h = x.reshape(x.shape[0], -1)
        return (nn.Dense(49, name="mean")(h).reshape(-1, 7, 7, 1),
                nn.Dense(49, name="log_sigma")(h).reshape(-1, 7, 7, 1))

    @nn.compact
    def decode(self, z, *, labels=None):
        return nn.Dense(784, name="decoder")(z.reshape(z.shape[0], -1)).reshape(-1, 28, 28, 1)


def test_the_library_steps_refuse_a_vae_code_not_flat_a_lone_image_and_foreign_params():
    """Three mistakes of a user's own loop, each one line as the step traces: a VAE's code of
    several axes (its KL would broadcast against the reconstruction term), one image without
    its batch axis, and parameters initialised for inputs of another shape."""
    import optax

    from jaxae import losses, objectives
    from jaxae.models.declarations import DeclarationError
    from jaxae.training import steps
    batch = {"image": np.zeros((2, *MNIST), np.uint8)}
    elbo = objectives.NegativeELBO(objectives.Bernoulli())
    spatial = _SpatialVAE(image_shape=MNIST)
    with pytest.raises(DeclarationError, match=r"^model _SpatialVAE is variational with "
                                               r"latent_shape \(7, 7, 1\): the ELBO's terms"):
        steps.create_train_state(spatial, optax.sgd(0.1), MNIST, jax.random.key(0))
    state = steps.create_train_state(spatial, optax.sgd(0.1), MNIST, jax.random.key(0),
                                     check=False)  # the steps refuse it too, as they trace
    for run in (lambda: steps.make_train_step(spatial, Reconstruct(), elbo)(
                    state, batch, jax.random.key(1)),
                lambda: steps.make_eval_step(spatial, Reconstruct(), elbo)(
                    state.params, batch, jax.random.key(1))):
        with pytest.raises(DeclarationError) as caught:
            run()
        assert str(caught.value) == (
            "model _SpatialVAE is variational with a mean of shape 2x7x7x1 for a batch of 2: "
            "the ELBO's terms sum over one latent axis, so flatten the code in encode "
            "(latent_shape (49,))")
    mse = objectives.Reconstruction(losses.mse)
    dense = _Dense(image_shape=MNIST)
    state = steps.create_train_state(dense, optax.sgd(0.1), MNIST, jax.random.key(0))
    with pytest.raises(ValueError, match=r"images of shape \[28, 28, 1\]: give a batch of "
                                         r"images \[B, H, W, C\] \(one image: image\[None\]; "
                                         r"grey images without their channel axis"):
        steps.make_train_step(dense, Reconstruct(), mse)(
            state, {"image": np.zeros(MNIST, np.uint8)}, jax.random.key(1))
    small = steps.create_train_state(dense, optax.sgd(0.1), (14, 14, 1), jax.random.key(0))
    with pytest.raises(DeclarationError, match="the parameters given to model _Dense were made "
                                               "for another model or for other inputs than "
                                               "these 28x28x1 ones"):
        steps.make_eval_step(dense, Reconstruct(), mse)(small.params, batch, jax.random.key(1))


def test_two_files_of_one_name_registering_one_name_are_refused(tmp_path):
    source = textwrap.dedent("""
        from jaxae import models
        from tests.test_models import _Dense

        @models.register_model("two_files_ae")
        class TwoFilesAE(_Dense):
            pass
    """)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "mymodels.py").write_text(source)
    first = models.MODELS.get(f"{tmp_path}/a/mymodels.py:TwoFilesAE")
    with pytest.raises(RegistryError, match="a model named 'two_files_ae' is registered "
                                            "already"):
        models.MODELS.get(f"{tmp_path}/b/mymodels.py:TwoFilesAE")
    assert models.MODELS.get("two_files_ae") is first


def test_pictures_from_a_users_own_loop_take_a_seed_and_make_their_folder(tmp_path):
    import optax

    from jaxae.data.splits import Split, Splits
    from jaxae.evaluation import pictures
    from jaxae.keys import derive_keys
    from jaxae.training import steps
    model = build({"name": "dense_ae", "latent_dim": 2})
    state = steps.create_train_state(model, optax.sgd(0.1), MNIST, jax.random.key(0))
    rng = np.random.default_rng(0)
    split = Split(rng.integers(0, 256, (12, *MNIST), np.uint8), np.arange(12) % 3)
    data = Splits(split, None, split, ("a", "b", "c"), "random")
    out_dir = tmp_path / "nested" / "pictures"
    options = pictures.PictureOptions(num_images=4, eval_batch_size=6, manifold_size=3)
    written = pictures.write_pictures(model, Reconstruct(), state.params, data, 3, "mine",
                                      str(out_dir), options)
    assert set(written) == set(os.listdir(out_dir)) and "reconstructions.png" in written
    again = tmp_path / "again"
    pictures.write_pictures(model, Reconstruct(), state.params, data, derive_keys(3), "mine",
                            str(again), options)
    for name in written:  # a seed and the Keys derived from it draw the same pictures
        assert (out_dir / name).read_bytes() == (again / name).read_bytes()


def test_build_model_checks_the_init_scheme_it_leaves_to_init_params():
    from jaxae.registry import RegistryError
    from jaxae.training import steps

    with pytest.raises(RegistryError, match="model init 'nonsense' is not a scheme: use one of "
                                            "glorot, torch, lecun"):
        models.build_model({"name": "vae", "latent_dim": 2, "init": "nonsense"},
                           image_shape=MNIST)
    model = models.build_model({"name": "vae", "latent_dim": 2, "init": "torch"},
                               image_shape=MNIST)
    flax_own = jax.jit(lambda key: model.init(key, np.zeros((1, *MNIST), np.float32),
                                              sample=False))(jax.random.key(0))["params"]
    torch = steps.init_params(model, MNIST, jax.random.key(0), "torch")
    assert jax.tree.structure(flax_own) == jax.tree.structure(torch)
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(flax_own),
                                                         jax.tree.leaves(torch), strict=True))


def test_check_model_names_a_task_that_cannot_run_and_elbo_of_a_plain_ae_is_one_line():
    from jaxae import objectives
    from jaxae.tasks import SuperResolve

    with pytest.raises(config_lib.ConfigError) as caught:
        build_lib.check_model(_Dense(MNIST), SuperResolve(factor=3), MNIST)
    assert str(caught.value).startswith("task SuperResolve: factor=3 does not divide the "
                                        "28x28 images"), str(caught.value)
    logits = jnp.zeros((2, 784))
    with pytest.raises(ValueError, match=r"NegativeELBO needs a variational model's aux "
                                         r"\(mean, log_sigma\), and this one has none"):
        objectives.NegativeELBO(objectives.Bernoulli())(logits, logits, {})


class _ConditionalDense(_Dense):
    """A plain AE of the user's that reads the class, in its encoder and its decoder."""
    num_classes: int = 3

    @property
    def conditional(self):
        return True

    @nn.compact
    def encode(self, x, *, labels=None):
        h = jnp.concatenate([x.reshape(x.shape[0], -1),
                             jax.nn.one_hot(labels, self.num_classes)], axis=1)
        return nn.Dense(self.latent_dim, name="encoder")(h)

    @nn.compact
    def decode(self, z, *, labels=None):
        h = jnp.concatenate([z, jax.nn.one_hot(labels, self.num_classes)], axis=1)
        return nn.Dense(self.pixels, name="decoder")(h).reshape(z.shape[0], 28, 28, 1)


def test_a_conditional_plain_autoencoders_samples_decode_each_image_with_its_class(tmp_path):
    """The perturbed-code samples of a conditional plain AE once lost the labels (its
    one-hot of None failed); they now encode and decode each image with its own class."""
    import optax

    from jaxae.data.splits import Split, Splits
    from jaxae.evaluation import generation, pictures
    from jaxae.training import steps
    model = _ConditionalDense(image_shape=MNIST)
    state = steps.create_train_state(model, optax.sgd(0.1), MNIST, jax.random.key(0))
    rng = np.random.default_rng(0)
    split = Split(rng.integers(0, 256, (12, *MNIST), np.uint8), np.arange(12) % 3)
    data = Splits(split, None, split, ("a", "b", "c"), "random")
    options = pictures.PictureOptions(num_images=4, eval_batch_size=6, manifold_size=3)
    written = pictures.write_pictures(model, Reconstruct(), state.params, data, 3, "mine",
                                      str(tmp_path), options)
    assert written["samples.png"] == "mine: perturbed codes"
    inputs, key = jnp.asarray(split.images[:3] / 255.0, jnp.float32), jax.random.key(1)
    as_a = generation.perturbed_code_samples(model, state.params, inputs, key, jnp.zeros(3, int))
    as_b = generation.perturbed_code_samples(model, state.params, inputs, key, jnp.ones(3, int))
    assert as_a.shape == (3, *MNIST) and not np.allclose(as_a, as_b)  # the class is read
    code = model.apply({"params": state.params}, inputs, labels=jnp.zeros(3, int),
                       method="encode")  # the material's code * (1 + N(0, 1)), not code + N
    scaled = code * (1 + jax.random.normal(key, code.shape))
    np.testing.assert_allclose(as_a, generation.decode(model, state.params, scaled,
                                                       jnp.zeros(3, int)), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="is conditional on the class: pass labels="):
        generation.perturbed_code_samples(model, state.params, inputs, key)


def test_a_module_of_a_users_folder_is_recorded_by_its_file(tmp_path, monkeypatch):
    """--config.model.name=my_models:Class imports my_models through a folder of the user's
    (the current one, the config's): config.json names its file, so evaluate.py finds it
    from any folder; an installed module, and a package's module, keep their names."""
    import json
    import sys

    from jaxae.training.workdir import recorded_config

    (tmp_path / "here").mkdir()
    (tmp_path / "beside_config").mkdir()
    for folder, module in (("here", "cwd_models_for_test"), ("beside_config",
                                                             "config_models_for_test")):
        (tmp_path / folder / f"{module}.py").write_text(
            "from jaxae.models.autoencoders import DenseAE as Tiny\n")
        monkeypatch.syspath_prepend(str(tmp_path / folder))  # as the entry points put them
        monkeypatch.delitem(sys.modules, module, raising=False)  # undone after the test
    monkeypatch.chdir(tmp_path / "here")
    config = config_lib.base_config()
    for folder, module in (("here", "cwd_models_for_test"), ("beside_config",
                                                             "config_models_for_test")):
        config.model.name = f"{module}:Tiny"
        build_lib.make_model(config, MNIST, 10)  # imports it
        assert recorded_config(config).model.name == f"{tmp_path / folder / module}.py:Tiny"
    (tmp_path / "here" / "cwd_pkg_for_test").mkdir()  # a package: imported by its name
    (tmp_path / "here" / "cwd_pkg_for_test" / "__init__.py").write_text(
        "from jaxae.models.autoencoders import DenseAE as Tiny\n")
    monkeypatch.delitem(sys.modules, "cwd_pkg_for_test", raising=False)
    import six  # an installed single-file module

    config.model.name = "cwd_pkg_for_test:Tiny"
    build_lib.make_model(config, MNIST, 10)  # imports it
    for kept in ("cwd_pkg_for_test:Tiny", "jaxae.models.autoencoders:DenseAE",
                 f"json:{json.JSONDecoder.__name__}", f"six:{six.moves.__class__.__name__}"):
        config.model.name = kept
        assert recorded_config(config).model.name == kept


def test_an_error_is_placed_in_the_users_code_not_in_jaxae_reached_through_a_link(
        tmp_path, monkeypatch):
    """The frames of jaxae's own files are passed over however its folder is reached (here
    jaxae imported through a link), so only the user's line is named."""
    from jaxae import messages

    root = os.path.dirname(os.path.dirname(os.path.realpath(messages.__file__)))
    (tmp_path / "link").symlink_to(root)
    monkeypatch.setattr(messages, "__file__", str(tmp_path / "link" / "jaxae" / "messages.py"))
    messages._library_folders.cache_clear()

    def raised(filename: str) -> BaseException:
        try:
            exec(compile("raise ValueError('x')", filename, "exec"), {})
        except ValueError as e:
            return e
        raise AssertionError("no error")

    linked = messages.raised_at(raised(str(tmp_path / "link" / "jaxae" / "build.py")))
    assert "jaxae/build.py" not in linked and linked.endswith(", in raised)"), linked  # ours
    mine = str(tmp_path / "my_models.py")
    assert messages.raised_at(raised(mine)) == f" (at {mine}:1, in <module>)"
    messages._library_folders.cache_clear()  # (the real path's, for the tests after)


def test_a_loop_of_models_encoded_one_after_another_keeps_the_programs_of_the_last_few():
    """A model built anew for each evaluation (a sweep's loop in one process): the
    evaluation's compiled functions keep the programs of the MODELS_KEPT models used last,
    and a model no longer used is freed with its programs (they were kept for the process,
    a loop of evaluations growing by megabytes a call)."""
    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1), np.uint8)
    freed = []
    for _ in range(compiler.MODELS_KEPT + 3):
        model = models.build_model({"name": "dense_ae", "latent_dim": 2}, image_shape=(8, 8, 1))
        params = steps.init_params(model, (8, 8, 1), jax.random.key(0))
        assert generation.encode(model, params, images).shape == (4, 2)
        freed.append(weakref.ref(model))
        del model, params
    gc.collect()
    assert [ref() is None for ref in freed] == [True] * 3 + [False] * compiler.MODELS_KEPT


def test_the_dense_and_conv_aes_are_the_materials_networks_computed_by_hand():
    """Linear + ReLU, Linear (the dense AE); Conv 16 / pool / Conv 8 / pool / Conv 8 / pool
    to a 4x4x8 code, then Conv 8, up, Conv 8, up, Conv 16 (valid: 16 -> 14), up, Conv 1
    (the conv AE), a ReLU after every layer but the last, whose logits the sigmoid reads;
    each recomputed with lax from the model's own parameters (one program each)."""
    x = jnp.asarray(np.random.default_rng(0).random((2, *MNIST), np.float32))
    highest = jax.lax.Precision.HIGHEST

    def dense_by_hand(params, x):
        code = jax.nn.relu(jnp.dot(x.reshape(2, -1), params["encoder"]["code"]["kernel"],
                                   precision=highest) + params["encoder"]["code"]["bias"])
        (out,) = params["decoder"].values()
        return code, (jnp.dot(code, out["kernel"], precision=highest)
                      + out["bias"]).reshape(x.shape)

    def conv(h, layer, padding="SAME"):
        return jax.lax.conv_general_dilated(h, layer["kernel"], (1, 1), padding,
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                            precision=highest) + layer["bias"]

    def pool(h):  # 2x2, padded at the end where a side is odd (7 -> 4), as Keras's "same"
        return jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1),
                                     "SAME")

    def up(h):
        return jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)

    def conv_by_hand(params, x):
        encoder, decoder = params["encoder"], params["decoder"]
        code = x
        for name in ("Conv_0", "Conv_1", "Conv_2"):
            code = pool(jax.nn.relu(conv(code, encoder[name])))
        h = jax.nn.relu(conv(code, decoder["Conv_0"]))
        h = jax.nn.relu(conv(up(h), decoder["Conv_1"]))  # 8x8
        h = jax.nn.relu(conv(up(h), decoder["Conv_2"], "VALID"))  # 16x16 -> 14x14
        return code, conv(up(h), decoder["pixels"])  # 28x28

    for spec, by_hand in (({"name": "dense_ae", "latent_dim": 10}, dense_by_hand),
                          ({"name": "conv_ae"}, conv_by_hand)):
        model = models.build_model(spec, image_shape=MNIST)
        params = jax.jit(model.init)(jax.random.key(0), x)["params"]
        code, logits = jax.jit(by_hand)(params, x)
        mine = jax.jit(lambda p, x, model=model: (
            model.apply({"params": p}, x, method="encode"), model.apply({"params": p}, x)[0]))
        my_code, my_logits = mine(params, x)
        np.testing.assert_allclose(my_code, code, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(my_logits, logits, rtol=1e-4, atol=1e-5)
        assert float(code.min()) == 0.0  # the ReLU clips: some units at 0 for these images
    assert code.shape == (2, 4, 4, 8)  # the conv AE's code
