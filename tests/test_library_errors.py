"""Mistakes of a user's own loop, made through the library's functions (no config, no CLI):
each is one line naming the fix, raised before anything computes or compiles, instead of a
silent wrong result or an error from deep inside JAX or Flax."""

import functools
import os
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxae import build, losses, models, objectives
from jaxae.config import ConfigError, base_config
from jaxae.data import StreamedBatches, from_arrays, make_splits
from jaxae.data.errors import DataError
from jaxae.evaluation import generation, metrics, pictures
from jaxae.keys import derive_keys
from jaxae.models.declarations import DeclarationError
from jaxae.registry import RegistryError
from jaxae.tasks import Reconstruct
from jaxae.training import checkpoints, steps

MNIST = (28, 28, 1)
IMAGES = np.random.default_rng(0).integers(0, 256, (8, *MNIST), dtype=np.uint8)


def dense_state(latent_dim: int = 4):
    model = models.build_model({"name": "dense_ae", "latent_dim": latent_dim},
                               image_shape=MNIST)
    return model, steps.create_train_state(model, optax.sgd(0.1), MNIST, jax.random.key(0))


def test_a_conditional_model_built_without_classes_is_refused_not_built_unconditional():
    with pytest.raises(RegistryError, match=r"^model 'cvae' is conditional on the class and "
                                            r"was given num_classes=0: build it for labelled"):
        models.build_model({"name": "cvae", "latent_dim": 2}, image_shape=MNIST)
    built = models.build_model({"name": "cvae", "latent_dim": 2}, image_shape=MNIST,
                               num_classes=10)
    assert built.conditional and built.num_classes == 10


@pytest.mark.parametrize("shape, words", [
    ((28, 28), r"image_shape=\(28, 28\): give \(height, width, channels\)"),
    ((28, 28, 0), r"image_shape=\(28, 28, 0\): give \(height, width, channels\)"),
    ((3, 32, 32), r"image_shape=\(3, 32, 32\) is channels first: .* give \(32, 32, 3\)"),
])
def test_an_image_shape_that_is_not_one_channels_last_image_is_refused(shape, words):
    with pytest.raises(RegistryError, match=words):
        models.build_model({"name": "dense_ae"}, image_shape=shape)
    for valid in ((3, 4, 3), (3, 64, 2), (1, 100, 8), (4, 4, 8), np.array([28, 28, 1])):
        assert models.build_model({"name": "dense_ae"}, image_shape=valid).latent_dim == 10


def test_a_conv_models_size_hint_names_only_sizes_it_takes():
    with pytest.raises(ValueError) as caught:
        _ = models.build_model({"name": "conv_ae"}, image_shape=(3, 64, 2)).latent_shape
    named = re.findall(r"(\d+)x\1", str(caught.value).split("decodes (")[1])
    assert named == ["6", "64"], str(caught.value)
    for side in map(int, named):  # following the hint works
        assert models.build_model({"name": "conv_ae"}, image_shape=(side, side, 2)).latent_shape


def test_jax_in_64_bits_is_refused_by_the_library_entry_points(tiny_config, tmp_path):
    """A notebook's jax.config.update('jax_enable_x64', True): a state with an int64 step
    fitted no checkpoint of a 32-bit run, and a run in 64 bits repeated no seeded bits."""
    from jaxae.training.trainer import train_and_evaluate

    model = models.build_model({"name": "dense_ae", "latent_dim": 2}, image_shape=(28, 28, 1))
    jax.config.update("jax_enable_x64", True)
    try:
        with pytest.raises(ConfigError, match=r"^jax_enable_x64 is on in this process: "):
            steps.create_train_state(model, optax.adam(1e-3), (28, 28, 1), jax.random.key(0))
        task, objective = Reconstruct(), objectives.Reconstruction(losses.mse)
        with pytest.raises(ConfigError, match=r"^jax_enable_x64 is on in this process: "):
            steps.make_train_step(model, task, objective)  # fed a state of one's own
        with pytest.raises(ConfigError, match=r"^jax_enable_x64 is on in this process: "):
            steps.make_train_chunk(model, task, objective, batch_size=8, max_steps=2)
        with pytest.raises(ConfigError, match=r"^jax_enable_x64 is on in this process: "):
            train_and_evaluate(tiny_config(), str(tmp_path / "run"))
    finally:
        jax.config.update("jax_enable_x64", False)
    assert not os.path.exists(tmp_path / "run")


def test_create_train_state_takes_one_inputs_shape_not_a_batchs():
    model = models.build_model({"name": "dense_ae"}, image_shape=MNIST)
    for shape in ((8, 28, 28, 1), (28, 28)):
        with pytest.raises(ValueError, match=rf"^create_train_state's input_shape="
                                             rf"{re.escape(str(shape))}: give one input's shape"):
            steps.create_train_state(model, optax.sgd(0.1), shape, jax.random.key(0))


class _UnnamedLayers(models.Autoencoder):
    """Unnamed layers in @nn.compact encode and decode: numbered per method by Flax."""

    @property
    def latent_shape(self):
        return (8,)

    @nn.compact
    def encode(self, x, *, labels=None):
        return nn.Dense(8)(x.reshape(x.shape[0], -1))

    @nn.compact
    def decode(self, z, *, labels=None):
        return nn.Dense(784)(z).reshape(z.shape[0], *MNIST)


class _CodeOfTwo(_UnnamedLayers):
    """Declares a code of 4 and encodes to 2."""

    @property
    def latent_shape(self):
        return (4,)

    @nn.compact
    def encode(self, x, *, labels=None):
        return nn.Dense(2, name="code")(x.reshape(x.shape[0], -1))

    @nn.compact
    def decode(self, z, *, labels=None):
        return nn.Dense(784, name="pixels")(z).reshape(z.shape[0], *MNIST)


@pytest.mark.parametrize("model, words", [
    (_UnnamedLayers(), r"^model _UnnamedLayers fails .* name the layers of @nn.compact"),
    (_CodeOfTwo(), r"^model _CodeOfTwo declares latent_shape \(4,\) but its encoder gives a "
                   r"code of shape \(2,\) per image: make them agree$"),
    (models.build_model({"name": "dense_ae", "latent_dim": 0}, image_shape=MNIST),
     r"^model DenseAE's latent_shape is \(0,\): give a tuple of positive sizes"),
])
def test_create_train_state_checks_the_model_against_its_declarations(model, words):
    with pytest.raises(DeclarationError, match=words):
        steps.create_train_state(model, optax.sgd(0.1), MNIST, jax.random.key(0))


class _PlainModule(nn.Module):
    """A Flax module of another convention: no encode, decode or declarations."""

    @nn.compact
    def __call__(self, x, labels=None, sample=False):
        return nn.Dense(4)(x.reshape(x.shape[0], -1)), {}


def test_a_module_of_another_convention_is_told_how_to_skip_the_check():
    with pytest.raises(DeclarationError, match=r"does not declare variational, conditional, "
                                               r"latent_shape: .*pass check=False\)$"):
        steps.create_train_state(_PlainModule(), optax.sgd(0.1), MNIST, jax.random.key(0))
    with pytest.raises(DeclarationError) as caught:  # one that declares: no such advice
        steps.create_train_state(_CodeOfTwo(), optax.sgd(0.1), MNIST, jax.random.key(0))
    assert "check=False" not in str(caught.value)


def test_the_steps_name_a_wrong_state_batch_or_key_and_channels_first_images():
    model, state = dense_state()
    train = steps.make_train_step(model, Reconstruct(), objectives.Reconstruction(losses.mse))
    evaluate = steps.make_eval_step(model, Reconstruct(), objectives.Reconstruction(losses.mse))
    key = jax.random.key(1)
    for call, error, words in (
            (lambda: train(state, {"image": IMAGES}, 0), TypeError,
             r"^train_step's key must be one PRNG key, not int32\[\]: pass jax.random.key"),
            (lambda: train(state, IMAGES, key), TypeError,
             r"^train_step's batch is an array: give a dict \{\"image\": uint8"),
            (lambda: train(state, {"images": IMAGES}, key), TypeError,
             r"^train_step's batch has no \"image\" \(it holds 'images'\)"),
            (lambda: train(state.params, {"image": IMAGES}, key), TypeError,
             r"^train_step's state is a dict, not a TrainState: make it with"),
            (lambda: train(state, {"image": IMAGES.transpose(0, 3, 1, 2)}, key), ValueError,
             r"^train_step's images are \[8, 1, 28, 28\], channels first: .*transpose"),
            (lambda: evaluate(state, {"image": IMAGES}, key), TypeError,
             r"^eval_step takes the parameters, not the TrainState: pass state.params"),
            (lambda: evaluate(state.params, {"image": IMAGES}, jax.random.split(key)),
             TypeError, r"^eval_step's key must be one PRNG key, not key<fry>\[2\]")):
        with pytest.raises(error, match=words):
            call()
    state, metrics = train(state, {"image": IMAGES}, jax.random.PRNGKey(1))  # a raw key: fine
    assert np.isfinite(float(metrics["loss"]))


@pytest.mark.parametrize("name", ["conv_ae", "conv_vae"])
def test_the_steps_name_images_of_another_size_than_the_model_was_built_for(name):
    """A convolutional model runs on larger images too, computing something else: it
    trained silently on 32x32 images when built for 16x16 ones."""
    model = models.build_model({"name": name}, image_shape=(16, 16, 3))
    state = steps.create_train_state(model, optax.sgd(0.1), (16, 16, 3), jax.random.key(0))
    task, objective = Reconstruct(), objectives.Reconstruction(losses.mse)
    train = steps.make_train_step(model, task, objective)
    evaluate = steps.make_eval_step(model, task, objective)
    large = np.zeros((4, 32, 32, 3), np.uint8)
    words = (r"'s images are 32x32x3, but the model was built for 16x16x3 images: build it "
             r"with image_shape=\(32, 32, 3\), or give 16x16x3 images")
    with pytest.raises(ValueError, match="^train_step" + words):
        train(state, {"image": large}, jax.random.key(1))
    with pytest.raises(ValueError, match="^eval_step" + words):
        evaluate(state.params, {"image": large}, jax.random.key(1))
    state, metrics = train(state, {"image": large[:, :16, :16]}, jax.random.key(1))
    assert np.isfinite(float(metrics["loss"]))


def cvae_steps():
    """(a fresh train state, the compiled train step, the compiled eval step) of a cvae."""
    model = models.build_model({"name": "cvae", "latent_dim": 2}, image_shape=MNIST,
                               num_classes=10)
    state = steps.create_train_state(model, optax.adam(1e-3), MNIST, jax.random.key(0))
    objective = objectives.NegativeELBO(objectives.Bernoulli())
    return (state, steps.make_train_step(model, Reconstruct(), objective),
            steps.make_eval_step(model, Reconstruct(), objective))


def test_the_steps_name_a_conditional_models_missing_labels():
    state, train, evaluate = cvae_steps()
    words = r'^model .* is conditional, but the batch has no "label": give \{"image"'
    for call in (lambda: train(state, {"image": IMAGES}, jax.random.key(1)),
                 lambda: evaluate(state.params, {"image": IMAGES}, jax.random.key(1))):
        with pytest.raises(ValueError, match=words):
            call()
    labels = np.arange(len(IMAGES), dtype=np.int32) % 10
    _, metrics = train(state, {"image": IMAGES, "label": labels}, jax.random.key(1))
    assert np.isfinite(float(metrics["loss"]))


def test_iwae_bounds_name_batches_given_as_anything_but_a_list_of_dicts():
    from jaxae.evaluation import iwae

    model = models.build_model({"name": "vae", "latent_dim": 2}, image_shape=MNIST)
    params = steps.init_params(model, MNIST, jax.random.key(0))
    bounds = functools.partial(iwae.iwae_bounds, model, Reconstruct(), objectives.Bernoulli(),
                               params, key=jax.random.key(1), sample_counts=(2,))
    for wrong, said in (({"image": IMAGES}, "a dict"), (IMAGES, "an array"),
                        (iter([{"image": IMAGES}]), "a list_iterator"),
                        ([IMAGES], "a list of ndarray")):
        with pytest.raises(TypeError, match=r"^iwae_bounds takes a list of batches, each a "
                                            r"dict \{\"image\": .*\}, not " + said + ": e.g."):
            bounds(wrong)
    assert np.isfinite(bounds([{"image": IMAGES}])[2])


def test_a_field_without_a_default_left_unset_is_named_with_where_to_set_it():
    from jaxae.registry import build as build_entry

    class NeedsWidth(models.Autoencoder):
        image_shape: tuple
        width: int

    with pytest.raises(TypeError, match=r"^width is unset and NeedsWidth gives it no default: "
                                        r"set it in the config file \(a --config flag "
                                        r"overrides only"):
        build_entry(NeedsWidth, {"image_shape": MNIST})
    assert build_entry(NeedsWidth, {"width": 3, "image_shape": MNIST}).width == 3


def test_a_loader_field_without_a_default_left_unset_is_one_line_naming_config_data(
        monkeypatch):
    from jaxae.config import base_config
    from jaxae.data import DATASETS

    for registry_field in ("_entries", "_origins", "_files"):  # undone after the test
        monkeypatch.setattr(DATASETS, registry_field, dict(getattr(DATASETS, registry_field)))

    @DATASETS.register("needs_root_for_test")
    def needs_root(root, *, tfds_dir=None, image_size=None, channels=None,
                   streaming="memory", memory_budget_mb=None):
        raise AssertionError("not called without its root")

    config = base_config()
    config.data.name = "needs_root_for_test"
    with pytest.raises(ConfigError, match=r"^config.data.root is unset and needs_root gives it "
                                          r"no default: set it in the config file"):
        build.load_data(config, derive_keys(0).data)


def test_losses_refuse_arguments_of_two_shapes_rather_than_broadcast_them():
    batch = jnp.zeros((8, *MNIST))
    gaussian = functools.partial(losses.gaussian_log_likelihood, scale=0.1)
    gaussian.__name__ = "gaussian_log_likelihood"
    for loss in (losses.mse, losses.bce_with_logits, losses.psnr,
                 losses.bernoulli_log_likelihood, gaussian):
        with pytest.raises(ValueError, match=rf"^{loss.__name__}: its two arguments are shaped "
                                             r"\(8, 28, 28, 1\) and \(28, 28, 1\)"):
            loss(batch, batch[0])
        assert loss(batch, batch).shape == (8,)
    with pytest.raises(ValueError, match=r"^psnr: its two arguments are shaped \(\) and \(\)"):
        losses.psnr(0.5, 0.5)


def test_generation_refuses_integer_images_a_wrong_key_and_labels_it_cannot_take():
    model, state = dense_state()
    with pytest.raises(TypeError, match=r"^perturbed_code_samples takes float model inputs in "
                                        r"\[0, 1\], not uint8: scale"):
        generation.perturbed_code_samples(model, state.params, IMAGES, jax.random.key(0))
    with pytest.raises(TypeError, match=r"^deterministic_codes takes float model inputs"):
        generation.deterministic_codes(model, state.params, IMAGES)
    codes = generation.deterministic_codes(model, state.params, IMAGES / 255.0)
    assert codes.shape == (8, 4)
    cvae = models.build_model({"name": "cvae", "latent_dim": 2}, image_shape=MNIST,
                              num_classes=10)
    params = steps.create_train_state(cvae, optax.sgd(0.1), MNIST, jax.random.key(0)).params
    key = jax.random.key(1)
    for labels, words in ((None, r"is conditional on the class: pass labels="),
                          (jnp.full(16, 7), r"labels of shape \(16,\) for 4 samples"),
                          (jnp.array([0, 3, 12, 1]), r"labels 0 \.\. 12, outside its 10 "
                                                     r"classes: give classes 0 \.\. 9")):
        with pytest.raises(ValueError, match=words):
            generation.prior_samples(cvae, params, key, 4, labels=labels)
    with pytest.raises(TypeError, match=r"^prior_samples' key must be one PRNG key, not int"):
        generation.prior_samples(cvae, params, 0, 4, labels=jnp.zeros(4, jnp.int32))
    assert generation.prior_samples(cvae, params, key, 4, labels=jnp.full(4, 9)).shape == \
        (4, *MNIST)


@pytest.mark.parametrize("options, words", [
    ({"binarize": "Static"}, r"^binarize='Static' is unknown: choose one of none, static"),
    ({"train_size": -5}, r"^train_size=-5: give a number of images, 1 or more, or None"),
    ({"test_size": 0}, r"^test_size=0: give a number of images, 1 or more"),
    ({"val_size": 8}, r"^val_size=8 leaves no training images out of 8: use at most 7 "
                      r"\(a fraction of them, e.g. 1\)$"),
    ({"val_size": 6, "train_size": 6}, r"^val_size=6 leaves no training images out of 6"),
])
def test_make_splits_refuses_sizes_and_choices_it_cannot_honour(options, words):
    data = from_arrays(IMAGES, IMAGES[:4])
    with pytest.raises(DataError, match=words):
        make_splits(data, jax.random.key(0), **options)
    with pytest.raises(TypeError, match=r"^make_splits' data_key must be one PRNG key"):
        make_splits(data, 0)
    splits = make_splits(data, jax.random.PRNGKey(0), val_size=np.int64(2),
                         train_size=jnp.asarray(8))  # numpy or 0-d sizes, a raw key: fine
    assert (len(splits.train), len(splits.val), len(splits.test)) == (6, 2, 4)
    assert repr(splits.train) == "Split(6 images of 28x28x1, uint8)"  # not every pixel


def test_a_configs_val_size_too_large_is_named_by_its_field(tiny_config):
    config = tiny_config(**{"data.val_size": 512})
    with pytest.raises(ConfigError, match=r"^config\.data\.val_size=512 leaves no training "
                                          r"images out of 512: use at most 511 \(a fraction "
                                          r"of them, e.g. 51\)$"):
        build.load_data(config, derive_keys(0).data)


def test_a_negative_checkpoint_step_is_refused_before_anything_is_deleted(tmp_path):
    manager = checkpoints.make_manager(str(tmp_path / "checkpoints"), keep=3)
    for step in (1, 2, 3):
        checkpoints.save(manager, step, {"a": jnp.full(3, float(step))})
    for bad in (-1, 2.5, "4"):
        with pytest.raises(ValueError, match=rf"^checkpoint step {bad!r}: give an integer 0 "):
            checkpoints.save(manager, bad, {"a": jnp.zeros(3)})
    checkpoints.save(manager, jnp.int32(4), {"a": jnp.zeros(3)})  # a state's step array
    checkpoints.close(manager)
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()
                  if p.name.isdigit()) == [2, 3, 4]


def test_write_pictures_takes_a_key_and_names_a_split_or_state_given_for_its_arguments(
        tmp_path):
    model, state = dense_state(2)
    data = make_splits(from_arrays(IMAGES, IMAGES, np.arange(8) % 2, np.arange(8) % 2,
                                   ("a", "b")), jax.random.key(0))
    task = Reconstruct()
    with pytest.raises(TypeError, match=r"^write_pictures takes the run's Splits .*not a "
                                        r"Split"):
        pictures.write_pictures(model, task, state.params, data.test, 0, "t", str(tmp_path))
    with pytest.raises(TypeError, match=r"^write_pictures takes the model's parameters, not "
                                        r"a TrainState: pass state.params \(state.variables "
                                        r"for a model that keeps state\)$"):
        pictures.write_pictures(model, task, state, data, 0, "t", str(tmp_path))
    by_key = pictures.write_pictures(model, task, state.params, data, jax.random.key(3), "t",
                                     str(tmp_path / "key"))
    by_seed = pictures.write_pictures(model, task, state.params, data, 3, "t",
                                      str(tmp_path / "seed"))
    assert by_key == by_seed and "samples.png" in by_key
    for name in by_key:  # a key stands for its seed: the same draws, the same pictures
        assert (tmp_path / "key" / name).read_bytes() == (tmp_path / "seed" / name).read_bytes()
    for seed_key, int_key in zip(derive_keys(jax.random.key(3)), derive_keys(3), strict=True):
        np.testing.assert_array_equal(jax.random.key_data(seed_key), jax.random.key_data(int_key))
    other = steps.init_params(models.build_model({"name": "vae", "latent_dim": 2},
                                                 image_shape=MNIST), MNIST, jax.random.key(0))
    with pytest.raises(DeclarationError, match="made for another model"):
        pictures.write_pictures(model, task, other, data, 0, "t", str(tmp_path / "none"))
    assert not (tmp_path / "none").exists()  # refused before a folder is made
    drawn = pictures.reconstruction_rows(model, Reconstruct(binarize_targets=True),
                                         state.params, data.test, jax.random.key(3), 4)
    assert drawn[-1][0] == "target\n(binarised draw)" and set(np.unique(drawn[-1][1])) <= {0, 1}
    static = make_splits(from_arrays(np.asarray(data.train.images), np.asarray(data.test.images)),
                         jax.random.key(0), binarize="static")
    drawn = pictures.reconstruction_rows(model, task, state.params, static.test,
                                         jax.random.key(3), 4)
    assert drawn[-1][0] == "original\n(binarised)" and set(np.unique(drawn[-1][1])) <= {0, 1}
    assert pictures.original_label(data.test) == "original"


def test_a_registered_name_in_other_letter_case_is_suggested():
    from jaxae.data import DATASETS
    from jaxae.registry import RegistryError

    with pytest.raises(RegistryError, match="unknown data set 'Fashion_MNIST': did you mean "
                                            "'fashion_mnist'?"):
        DATASETS.get("Fashion_MNIST")


def test_titles_name_code_by_its_attribute_and_a_tfds_name_whole_with_its_version():
    from jaxae.registry import display_name

    assert display_name("/home/me/my_models.py:DeeperVAE") == "DeeperVAE"
    assert display_name("mypkg.models:DeeperVAE") == "DeeperVAE"
    assert display_name("conv_vae") == "conv_vae"
    for tfds_name in ("celeb_a/align:2.1.0", "mnist:3.0.1"):
        assert display_name(tfds_name) == tfds_name


class _Defaults(models.Autoencoder):
    """A model that gives the data's fields defaults: the data's values must win."""

    image_shape: tuple = (28, 28, 1)
    num_classes: int = 0

    @property
    def latent_shape(self):
        return (4,)

    @nn.compact
    def encode(self, x, *, labels=None):
        return nn.Dense(4, name="code")(x.reshape(x.shape[0], -1))

    @nn.compact
    def decode(self, z, *, labels=None):
        return nn.Dense(int(np.prod(self.image_shape)), name="pixels")(z).reshape(
            z.shape[0], *self.image_shape)


class _FlatDecode(_Defaults):
    """Decodes to flat pixels rather than images."""

    @nn.compact
    def decode(self, z, *, labels=None):
        return nn.Dense(int(np.prod(self.image_shape)), name="pixels")(z)


class _VariationalClaim(_Defaults):
    """Declares itself variational but returns a plain autoencoder's aux."""

    variational = True


def test_the_datas_image_shape_and_classes_win_over_a_models_defaults():
    built = models.build_model({"name": f"{__name__}:_Defaults"}, image_shape=(32, 32, 3),
                               num_classes=6)
    assert (built.image_shape, built.num_classes) == ((32, 32, 3), 6)
    kept = models.build_model({"name": f"{__name__}:_Defaults", "num_classes": 0},
                              image_shape=(32, 32, 3), num_classes=6)
    assert kept.num_classes == 0  # the config's section says so: the data's count does not win


def test_a_config_giving_a_conditional_model_fewer_classes_than_the_data_is_refused():
    """A config file's model.num_classes below the data's would train labels past it as no
    class, then fail at the first evaluation: refused as the model is built."""
    config = base_config()
    config.model = {"name": "cvae", "latent_dim": 2, "num_classes": 5}
    with pytest.raises(ConfigError, match=r"^config.model.num_classes=5 is fewer than the "
                                          r"data's 10 classes: labels 5 to 9 would be no class "
                                          r"to the model; leave num_classes out"):
        build.make_model(config, MNIST, 10)
    config.model.num_classes = 12  # more than the data has: as the section says
    assert build.make_model(config, MNIST, 10).num_classes == 12


def test_a_model_section_without_a_name_is_one_line():
    with pytest.raises(RegistryError, match=r"^the model section \{'latent_dim': 3\} has no "
                                            r"name: give it one, a registered model \(dense_ae, "):
        models.build_model({"latent_dim": 3}, image_shape=MNIST)


@pytest.mark.parametrize("model, words", [
    (_FlatDecode(image_shape=MNIST), r"^model _FlatDecode returns logits of shape 784 per "
                                     r"image for 28x28x1 "),
    (_VariationalClaim(image_shape=MNIST), r"^model _VariationalClaim declares variational = "
                                           r"True but its aux lacks mean, log_sigma, z: return"),
])
def test_create_train_state_checks_the_logits_against_the_models_image_shape(model, words):
    with pytest.raises(DeclarationError, match=words):
        steps.create_train_state(model, optax.sgd(0.1), MNIST, jax.random.key(0))


def test_generation_names_a_train_state_and_labels_an_unconditional_model_would_ignore():
    model, state = dense_state()
    vae = models.build_model({"name": "vae", "latent_dim": 2}, image_shape=MNIST)
    vae_state = steps.create_train_state(vae, optax.sgd(0.1), MNIST, jax.random.key(0))
    with pytest.raises(ValueError, match=r"^VAE is not conditional on the class, so it would "
                                         r"ignore the labels: drop labels="):
        generation.prior_samples(vae, vae_state.params, jax.random.key(1), 4,
                                 labels=jnp.full(4, 3))
    with pytest.raises(ValueError, match=r"^VAE is not conditional on the class, so no class "
                                         r"can be asked of its samples: use prior_samples"):
        generation.class_samples(vae, vae_state.params, jax.random.key(1), 2, 10)
    for call in (lambda: generation.prior_samples(vae, vae_state, jax.random.key(1), 4),
                 lambda: generation.encode(model, state, IMAGES, np.zeros(8, np.int32)),
                 lambda: generation.decode(model, state, jnp.zeros((2, 4)))):
        with pytest.raises(TypeError, match=r" takes the model's parameters, not a TrainState: "
                                            r"pass state.params \(state.variables for a "
                                            r"model that keeps state\)$"):
            call()


def test_a_probe_infers_its_classes_and_refuses_labels_outside_them():
    from jaxae.evaluation.probe import train_probe

    features = np.random.default_rng(0).normal(size=(64, 5)).astype(np.float32)
    probe = train_probe(features, np.arange(64) % 12, jax.random.key(0), epochs=1)
    assert probe.model.num_classes == 12  # not a default of 10 that labels 10 and 11 outrun
    with pytest.raises(ValueError, match=r"^train_probe's labels reach 11, beyond "
                                         r"num_classes=10 \(classes 0..9\): pass "
                                         r"num_classes=12"):
        train_probe(features, np.arange(64) % 12, jax.random.key(0), num_classes=10)
    with pytest.raises(TypeError, match=r"^train_probe's key must be one PRNG key"):
        train_probe(features, np.arange(64) % 12, 0)


def test_a_tasks_example_names_an_integer_key_or_a_vector_of_the_wrong_length():
    from jaxae.tasks import Denoise

    with pytest.raises(TypeError, match=r"^make_example's key must be one PRNG key, not int"):
        Denoise().make_example(IMAGES, 0)
    # a uint32 vector of another length is no raw key (jax.random.PRNGKey's: 2 words)
    with pytest.raises(TypeError, match=r"^make_example's key must be one PRNG key, not "
                                        r"uint32\[784\]: pass jax.random.key"):
        Denoise().make_example(IMAGES, jnp.zeros(784, jnp.uint32))
    Denoise().make_example(IMAGES, jax.random.PRNGKey(0))  # a raw key: taken


def test_make_splits_refuses_more_images_than_a_split_holds_and_one_based_labels_warn(capsys):
    data = from_arrays(IMAGES, IMAGES[:4])
    with pytest.raises(DataError, match=r"^train_size=1000 is more than the 8 images of "
                                        r"arrays's training split: use at most 8"):
        make_splits(data, jax.random.key(0), train_size=1000)
    with pytest.raises(DataError, match=r"^test_size=5 is more than the 4 images of"):
        make_splits(data, jax.random.key(0), test_size=5)
    assert "no image has label 0" not in capsys.readouterr().err
    from_arrays(IMAGES, IMAGES[:4], np.arange(8) % 3 + 1, np.array([1, 2, 3, 1]))
    assert capsys.readouterr().err.startswith(
        "warning: arrays given in memory: no image has label 0, so class '0' is empty: if the "
        "labels count from 1, subtract 1 from them")


TWICE = '''
import flax.linen as nn

from jaxae import models


@models.register_model("named_by_file_then_imported")
class Twice(models.Autoencoder):
    image_shape: tuple

    @property
    def latent_shape(self):
        return (2,)

    @nn.compact
    def encode(self, x, *, labels=None):
        return nn.Dense(2, name="code")(x.reshape(x.shape[0], -1))

    @nn.compact
    def decode(self, z, *, labels=None):
        return nn.Dense(784, name="pixels")(z).reshape(z.shape[0], 28, 28, 1)
'''


def test_a_model_file_named_by_path_and_then_imported_is_one_module(tmp_path, monkeypatch):
    import importlib
    import sys

    (tmp_path / "reg_twice_models.py").write_text(TWICE)
    monkeypatch.syspath_prepend(str(tmp_path))  # importable as well as named by its path
    built = models.build_model({"name": f"{tmp_path}/reg_twice_models.py:Twice"},
                               image_shape=MNIST)
    module = importlib.import_module("reg_twice_models")  # no "registered already"
    assert type(built) is module.Twice and sys.modules["reg_twice_models"] is module
    assert models.build_model({"name": "named_by_file_then_imported"},
                              image_shape=MNIST).latent_shape == (2,)
    del sys.modules["reg_twice_models"]  # (its folder leaves sys.path with the monkeypatch)


def test_a_model_module_that_cannot_be_imported_names_pythonpath():
    with pytest.raises(RegistryError, match=r"^model module 'no_such_models_here' cannot be "
                                            r"imported \(.*\): install it or put the folder "
                                            r"that holds it on PYTHONPATH, or name its file"):
        models.build_model({"name": "no_such_models_here:Model"}, image_shape=MNIST)


OWN_VAE = '''
from jaxae.models.autoencoders import DenseAE


def vae(image_shape, latent_dim: int = 7):
    return DenseAE(image_shape=image_shape, latent_dim=latent_dim)
'''


def test_a_files_function_named_like_a_builtin_model_is_the_files_not_jaxaes(tmp_path):
    from jaxae.models import MODELS
    from jaxae.registry import same_code

    (tmp_path / "own_vae_models.py").write_text(OWN_VAE)
    name = f"{tmp_path}/own_vae_models.py:vae"
    built = models.build_model({"name": name}, image_shape=MNIST)
    assert not built.variational and built.latent_shape == (7,)  # the file's, not jaxae's VAE
    assert not same_code("vae", name, MODELS)  # a run of jaxae's vae is not this code's
    assert same_code("tiny_dense_of_mine", "/x/my_models.py:tiny_dense_of_mine", MODELS)
    # a loss recorded by its path from the current folder (as runs did before it was located)
    assert same_code("own.py:l1", f"{os.getcwd()}/own.py:l1", objectives.LOSSES)
    assert not same_code("own.py:l1", "/elsewhere/own.py:l1", objectives.LOSSES)
    assert MODELS.get("jaxae.models:vae") is MODELS.get("vae")  # registered below jaxae.models


def test_only_training_builds_the_compute_dtype_model_and_its_warning(tmp_path, capsys):
    """A model without jaxae's `dense`/`conv` fields ignores compute_dtype: said when a run
    trains, not when it is evaluated or reloaded."""
    from jaxae.config import base_config

    (tmp_path / "plain_dtype_models.py").write_text(
        TWICE.replace("named_by_file_then_imported", "plain_of_mine_for_dtypes"))
    config = base_config()
    config.model = {"name": f"{tmp_path}/plain_dtype_models.py:Twice"}
    config.train.compute_dtype = "bfloat16"
    evaluated = build.run_objects(config, MNIST, 10)
    assert evaluated.train_model is evaluated.model and "warning" not in capsys.readouterr().err
    trained = build.run_objects(config, MNIST, 10, train=True)
    assert trained.train_model is not trained.model
    assert "so compute_dtype=bfloat16 changes none of its layers" in capsys.readouterr().err


def test_make_optimizer_names_the_optimizers_and_schedules_it_knows():
    """A misspelt schedule was a constant learning rate, silently; a misspelt optimiser a
    bare KeyError."""
    from jaxae import optimizers

    with pytest.raises(ValueError, match=r"^schedule 'cosin' is unknown: choose one of "
                                         r"constant, cosine$"):
        optimizers.make_optimizer("adam", 1e-3, "cosin", 10)
    with pytest.raises(ValueError, match=r"^optimizer 'adamm' is unknown: choose one of adam,"):
        optimizers.make_optimizer("adamm", 1e-3)
    assert optimizers.spans_run("cosine") and not optimizers.spans_run("constant")


@pytest.mark.parametrize("name", ["dense_ae", "vae"])
def test_a_model_given_integer_pixels_says_to_scale_them(name):
    """uint8 pixels (0..255) ran through model.apply, giving meaningless logits; a user's
    own loop that forgets the / 255 is told."""
    model = models.build_model({"name": name, "latent_dim": 2}, image_shape=MNIST)
    params = model.init(jax.random.key(0), jnp.zeros((1, *MNIST)), sample=False)["params"]
    with pytest.raises(TypeError, match=r" takes pixels as floats in \[0, 1\], not uint8 "
                                        r"ones: scale them \(x / 255.0 for 8-bit pixels"):
        model.apply({"params": params}, IMAGES, key=jax.random.key(1))
    logits, _ = model.apply({"params": params}, IMAGES / 255.0, key=jax.random.key(1))
    assert logits.shape == (8, *MNIST)


@pytest.mark.parametrize("name", ["dense_ae", "conv_ae", "vae"])
def test_apply_and_init_refuse_images_and_codes_a_model_would_misread(name):
    """encode ran on uint8 pixels (codes 255 times too large), a dense model on channels-first
    colour images (3,072 values read as HWC), and one image or one code (under jax.vmap) failed
    deep inside Flax: each is now one line naming the fix, whichever method apply runs."""
    spec = {"name": name} if name == "conv_ae" else {"name": name, "latent_dim": 2}
    model = models.build_model(spec, image_shape=MNIST)
    owner = type(model).__name__
    # compiled whole: run op by op, a conv model's init and encode took seconds
    variables = jax.jit(functools.partial(model.init, sample=False))(
        jax.random.key(0), jnp.zeros((1, *MNIST)))
    images = IMAGES / 255.0
    with pytest.raises(TypeError, match=rf"^{owner} takes pixels as floats in \[0, 1\], not "
                                        "uint8 ones"):
        model.apply(variables, IMAGES, method="encode")
    for method in ("encode", None):
        with pytest.raises(ValueError) as refused:
            model.apply(variables, images[0], method=method, sample=False)
        assert str(refused.value) == (
            f"{owner}.{method or '__call__'} takes images [B, H, W, C], not [28, 28, 1]: one "
            "image without its batch axis? give x[None] (under jax.vmap, apply the model to "
            "x[None] inside the mapped function)")
    with pytest.raises(ValueError, match=rf"^{owner}.__call__'s images are \[8, 1, 28, 28\], "
                                         r"channels first: jaxae takes \[B, H, W, C\]"):
        model.apply(variables, np.transpose(images, (0, 3, 1, 2)), sample=False)
    with pytest.raises(ValueError, match=rf"^{owner}.__call__'s images are \[1, 1, 28, 28\], "
                                         "channels first"):
        model.init(jax.random.key(0), jnp.zeros((1, 1, 28, 28)), sample=False)
    code = jax.eval_shape(functools.partial(model.apply, method="encode"), variables, images)
    z = jnp.zeros((code[0] if model.variational else code).shape)  # the codes' shape
    latent = ", ".join(map(str, model.latent_shape))
    with pytest.raises(ValueError) as refused:
        model.apply(variables, z[0], method="decode")
    assert str(refused.value) == (f"{owner}.decode takes codes [B, {latent}], not [{latent}]: "
                                  "give z[None] for one code")
    assert jax.eval_shape(functools.partial(model.apply, method="decode"), variables,
                          z).shape == (8, *MNIST)


def test_a_conv_models_parameters_are_float32_under_x64_as_dense_ones_are():
    """With jax_enable_x64 the convolutions' kernels and biases were float64 (nn.Dense's
    stay float32): a conv model trained in float64, to other numbers from the same seed."""
    model = models.build_model({"name": "conv_vae", "latent_dim": 2}, image_shape=MNIST)
    with jax.enable_x64(True):
        shapes = jax.eval_shape(functools.partial(model.init, sample=False),
                                jax.random.key(0), jnp.zeros((1, *MNIST), jnp.float32))
    assert {str(leaf.dtype) for leaf in jax.tree.leaves(shapes)} == {"float32"}


def test_keys_losses_and_objectives_refuse_what_would_fail_deep_inside_or_mean_nothing():
    """An int key reached jax.random's internals (or a Grain thread, 24 frames deep), 0..255
    targets gave a negative cross-entropy, and an objective built with a class or a name
    failed only when called."""
    model = models.build_model({"name": "vae", "latent_dim": 2}, image_shape=MNIST)
    variables = model.init(jax.random.key(0), jnp.zeros((1, *MNIST)), sample=False)
    images = IMAGES / 255.0
    for call, what in [(lambda: model.apply(variables, images, key=0), "VAE's key"),
                       (lambda: losses.gaussian_noise(0, images, 0.1), "gaussian_noise's key"),
                       (lambda: losses.dropout_noise(0, images, 0.5, False),
                        "dropout_noise's key")]:
        with pytest.raises(TypeError, match=rf"^{what} must be one PRNG key, not int: pass "):
            call()
    data = from_arrays(IMAGES, IMAGES, np.arange(8) % 2, np.arange(8) % 2)
    with pytest.raises(TypeError, match=r"^StreamedBatches takes a Split, not a Dataset: give "
                                        r"make_splits\(dataset, keys.data\).train$"):
        StreamedBatches(data, jax.random.key(0), 4, 1)
    with pytest.raises(TypeError, match=r"^StreamedBatches' data_key must be one PRNG key"):
        StreamedBatches(make_splits(data, jax.random.key(0)).train, 0, 4, 1)
    for loss in (losses.mse, losses.bce_with_logits, losses.bernoulli_log_likelihood):
        with pytest.raises(TypeError, match=rf"^{loss.__name__}: its targets are uint8: give "
                                            r"pixels as floats in \[0, 1\]"):
            loss(jnp.zeros((8, 784)), IMAGES.reshape(8, -1))
    for likelihood in (objectives.Bernoulli, "bernoulli"):
        with pytest.raises(TypeError, match=r"^NegativeELBO\(likelihood=.*\): give a "
                                            "likelihood object with log_prob"):
            objectives.NegativeELBO(likelihood)
    with pytest.raises(TypeError, match=r"^Reconstruction\(loss='mse'\): give a function "):
        objectives.Reconstruction("mse")


def test_a_conditional_models_labels_must_be_one_int_class_per_image():
    """Float labels, or labels [B, 1], one-hot encode to no class (or fail deep in JAX): the
    model names them, in the steps and in its own apply, as it is traced."""
    model = models.build_model({"name": "cvae", "latent_dim": 2}, image_shape=MNIST,
                               num_classes=10)
    state = steps.create_train_state(model, optax.adam(1e-3), MNIST, jax.random.key(0))
    train = steps.make_train_step(model, Reconstruct(),
                                  objectives.NegativeELBO(objectives.Bernoulli()))
    labels = np.arange(len(IMAGES), dtype=np.int32) % 10
    for wrong, said in ((labels + 0.5, r"float\d+ \[8\]"), (labels[:, None], r"int32 \[8, 1\]")):
        words = rf"^VAE's labels are {said} for 8 images: give int labels \[8\], the class"
        with pytest.raises(ValueError, match=words):
            train(state, {"image": IMAGES, "label": wrong}, jax.random.key(1))
        with pytest.raises(ValueError, match=words):
            model.apply({"params": state.params}, IMAGES / 255.0, labels=wrong, sample=False)
    state, metrics = train(state, {"image": IMAGES, "label": labels}, jax.random.key(1))
    assert np.isfinite(float(metrics["loss"]))
    for given in (labels.tolist(), labels.astype(np.uint8), jnp.asarray(labels)):  # all ints
        logits, _ = model.apply({"params": state.params}, IMAGES / 255.0, labels=given,
                                sample=False)
        assert logits.shape[0] == len(IMAGES)


def test_decode_and_manifold_name_codes_and_labels_the_model_cannot_take():
    cvae = models.build_model({"name": "cvae", "latent_dim": 2}, image_shape=MNIST,
                              num_classes=10)
    params = steps.init_params(cvae, MNIST, jax.random.key(0))
    z = np.zeros((2, 2), np.float32)
    for labels, words in ((np.array([3, 12]), r"labels 3 \.\. 12, outside its 10 classes"),
                          (np.array([0.5, 1.5]), r"labels of dtype float64: give int labels"),
                          (None, r"is conditional on the class: pass labels=")):
        with pytest.raises(ValueError, match=words):
            generation.decode(cvae, params, z, labels)
    assert generation.decode(cvae, params, z, np.array([3, 9])).shape == (2, *MNIST)
    assert generation.decode(cvae, params, jnp.asarray(z), [3, 9]).shape == (2, *MNIST)
    vae = models.build_model({"name": "vae", "latent_dim": 16}, image_shape=MNIST)
    params = steps.init_params(vae, MNIST, jax.random.key(0))
    with pytest.raises(ValueError, match=r"^decode's codes are \[2, 2\], but VAE's latent is "
                                         r"\[16\]: give codes \[N, 16\]"):
        generation.decode(vae, params, z)
    with pytest.raises(ValueError, match=r"^manifold sweeps a code of 2 numbers, and VAE's is "
                                         r"\[16\]: give a model whose code is 2 numbers"):
        generation.manifold(vae, params, generation.manifold_coordinates(True, 3))


@pytest.mark.parametrize("name", ["dense_ae", "deep_ae", "vae"])
@pytest.mark.parametrize("size", [0, -1, 2.5])
def test_a_code_size_that_is_no_positive_integer_is_named(name, size):
    model = models.build_model({"name": name, "latent_dim": size}, image_shape=MNIST)
    with pytest.raises(ValueError, match=rf"latent_dim={size!r}: give the code's size, a "
                                         r"positive integer"):
        model.init(jax.random.key(0), IMAGES[:1] / 255.0, sample=False)


def test_the_negative_elbo_takes_a_finite_beta_of_zero_or_more():
    for beta in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=rf"^beta={beta!r} must be a finite number >= 0"):
            objectives.NegativeELBO(objectives.Bernoulli(), beta=beta)
    for beta in (np.float32(0.5), jnp.float32(0.5), np.array(0.5), 0):
        assert objectives.NegativeELBO(objectives.Bernoulli(), beta=beta).beta == beta
    weighted = jax.jit(lambda beta: objectives.NegativeELBO(objectives.Bernoulli(), beta).beta)
    assert float(weighted(0.25)) == 0.25  # a schedule's beta, traced


def test_iwae_bounds_take_positive_integer_sample_counts_and_chunk():
    from jaxae.evaluation import iwae

    model = models.build_model({"name": "vae", "latent_dim": 2}, image_shape=MNIST)
    params = steps.init_params(model, MNIST, jax.random.key(0))
    bounds = functools.partial(iwae.iwae_bounds, model, Reconstruct(), objectives.Bernoulli(),
                               params, [{"image": IMAGES}], jax.random.key(1))
    for counts in ((0,), (-3,), (2.5,), (), 5, (True,)):
        with pytest.raises(ValueError, match=r"^iwae_bounds' sample_counts=.*: give positive "
                                            r"integers k, e.g. \(1, 50, 1000\)"):
            bounds(counts)
    for chunk in (0, -2, 1.5):
        with pytest.raises(ValueError, match=rf"^iwae_bounds' chunk={chunk!r}: give a positive"):
            bounds((2,), chunk=chunk)
    assert set(bounds([1, np.int64(3)], chunk=2)) == {1, 3}
    assert set(bounds(np.array([1, 3]))) == {1, 3}


def test_a_conv_code_of_two_numbers_gets_a_scatter_but_no_manifold(tmp_path):
    """A code [1, 1, 2] is 2 numbers but not a flat code the manifold can decode from
    [N, 2]: its pictures plot the codes and leave the manifold out."""
    shape = (4, 4, 1)
    model = models.build_model({"name": "conv_ae", "features": (4, 2)}, image_shape=shape)
    assert tuple(model.latent_shape) == (1, 1, 2)
    params = jax.jit(functools.partial(steps.init_params, model, shape))(  # op by op: seconds
        jax.random.key(0))
    images = np.random.default_rng(0).integers(0, 256, (8, *shape), dtype=np.uint8)
    data = make_splits(from_arrays(images, images, np.arange(8) % 2, np.arange(8) % 2,
                                   ("a", "b")), jax.random.key(0))
    written = pictures.write_pictures(model, Reconstruct(), params, data, 0, "t", str(tmp_path))
    assert "latent_scatter.png" in written and "manifold.png" not in written


def test_the_steps_refuse_host_labels_outside_a_conditional_models_classes():
    """One-hot encoding makes a label out of range no class at all: trained on, it would
    train the model as if it had no class."""
    state, train, evaluate = cvae_steps()
    wrong = np.array([10, 11, -1, 255, 0, 1, 2, 3])
    for name, call in (("train_step", lambda b: train(state, b, jax.random.key(1))),
                       ("eval_step", lambda b: evaluate(state.params, b, jax.random.key(1)))):
        with pytest.raises(ValueError, match=rf"^{name} of model VAE was given labels -1 \.\. "
                                             r"255, outside its 10 classes: give classes 0 "
                                             r"\.\. 9$"):
            call({"image": IMAGES, "label": wrong})
    with pytest.raises(ValueError, match=r"^eval_step of model VAE was given labels -1"):
        evaluate(params=state.params, batch={"image": IMAGES, "label": wrong},
                 key=jax.random.key(1))  # by keyword too
    right = {"image": IMAGES, "label": wrong.clip(0, 9)}
    assert train.lower(state, right, jax.random.key(1)).compile() is not None  # still jitted
    assert all(hasattr(train, method) for method in ("lower", "trace", "eval_shape"))
    assert np.isfinite(float(evaluate(params=state.params, batch=right,
                                      key=jax.random.key(1))["loss"]))
    _, metrics = train(state=state, batch=right, key=jax.random.key(1))  # in range: runs
    assert np.isfinite(float(metrics["loss"]))
    unconditional, dense = dense_state()
    plain = steps.make_train_step(unconditional, Reconstruct(),
                                  objectives.Reconstruction(losses.mse))
    assert hasattr(plain, "lower")  # nothing to check: the compiled step itself
    plain(dense, {"image": IMAGES, "label": wrong}, jax.random.key(1))  # labels unread


def test_encode_refuses_images_the_model_was_not_built_for_and_needs_labels_only_if_it_reads_them():
    model = models.build_model({"name": "dense_ae", "latent_dim": 4}, image_shape=(32, 32, 3))
    params = steps.init_params(model, (32, 32, 3), jax.random.key(0))
    with pytest.raises(ValueError, match=r"^encode's images are \[8, 3, 32, 32\], channels "
                                         r"first: jaxae takes \[B, H, W, C\]"):
        generation.encode(model, params, np.zeros((8, 3, 32, 32), np.uint8))
    with pytest.raises(ValueError, match=r"^encode's images are 28x28x3, but the model was "
                                         r"built for 32x32x3 images"):
        generation.encode(model, params, np.zeros((8, 28, 28, 3), np.uint8))
    with pytest.raises(ValueError, match=r"^deterministic_codes's images are \[8, 3, 32, 32\], "
                                         "channels first"):
        generation.deterministic_codes(model, params, np.zeros((8, 3, 32, 32), np.float32))
    codes = generation.encode(model, params, np.zeros((8, 32, 32, 3), np.uint8))  # no labels
    assert codes.shape == (8, 4)
    cvae = models.build_model({"name": "cvae", "latent_dim": 2}, image_shape=MNIST,
                              num_classes=10)
    cparams = steps.init_params(cvae, MNIST, jax.random.key(0))
    with pytest.raises(ValueError, match=r"^VAE is conditional on the class: pass labels="):
        generation.encode(cvae, cparams, IMAGES)
    with pytest.raises(ValueError, match=r"labels 3 \.\. 10, outside its 10 classes"):
        generation.encode(cvae, cparams, IMAGES, np.arange(8) + 3)
    assert generation.encode(cvae, cparams, IMAGES, np.arange(8)).shape == (8, 2)
    x = np.zeros((8, *MNIST), np.float32)
    with pytest.raises(ValueError, match=r"labels 3 \.\. 10, outside its 10 classes"):
        cvae.apply({"params": cparams}, x, labels=np.arange(8) + 3, sample=False)  # one's own
    assert cvae.apply({"params": cparams}, x, labels=np.arange(8), sample=False)[0].shape == (
        8, *MNIST)


def test_parameters_of_another_model_are_named_in_the_steps_and_in_generation():
    model, state = dense_state(latent_dim=4)
    vae = models.build_model({"name": "vae", "latent_dim": 4}, image_shape=MNIST)
    vae_params = steps.init_params(vae, MNIST, jax.random.key(0))
    words = (r"^the parameters given to model DenseAE were made for another model or for other "
             r"inputs .*\((?:Could not find parameter|For parameter).*\): give the "
             r"parameters of this model, initialised on inputs of the data's shape")
    evaluate = steps.make_eval_step(model, Reconstruct(), objectives.Reconstruction(losses.mse))
    with pytest.raises(DeclarationError, match=words):  # a parameter missing: not found
        evaluate(vae_params, {"image": IMAGES}, jax.random.key(0))
    other, _ = dense_state(latent_dim=6)
    with pytest.raises(DeclarationError, match=words):  # shapes differ
        generation.decode(model, steps.init_params(other, MNIST, jax.random.key(0)),
                          np.zeros((2, 4), np.float32))
    with pytest.raises(DeclarationError, match=words):
        generation.encode(model, vae_params, IMAGES)
    with pytest.raises(DeclarationError, match=r"^the parameters given to model DenseAE hold a "
                                               r"'params' collection, as Flax's variables dict "
                                               r"does: give the parameters themselves"):
        generation.encode(model, {"params": state.params}, IMAGES)  # model.init's own dict
    assert generation.decode(model, state.params, np.zeros((2, 4), np.float32)).shape == (
        2, *MNIST)


def test_perturbed_codes_are_a_plain_autoencoders_samples_and_a_manifold_takes_a_class():
    vae = models.build_model({"name": "vae", "latent_dim": 2}, image_shape=MNIST)
    params = steps.init_params(vae, MNIST, jax.random.key(0))
    with pytest.raises(ValueError, match=r"^VAE is a variational model: its samples decode "
                                         r"z ~ N\(0, I\), its prior: use prior_samples"):
        generation.perturbed_code_samples(vae, params, IMAGES / 255.0, jax.random.key(1))
    cvae = models.build_model({"name": "cvae", "latent_dim": 2}, image_shape=MNIST,
                              num_classes=10)
    cparams = steps.init_params(cvae, MNIST, jax.random.key(0))
    coords = generation.manifold_coordinates(True, 3)
    with pytest.raises(ValueError, match=r"^VAE is conditional on the class: give label="):
        generation.manifold(cvae, cparams, coords)
    with pytest.raises(ValueError, match=r"labels 12 \.\. 12, outside its 10 classes"):
        generation.manifold(cvae, cparams, coords, label=12)
    threes, sevens = (generation.manifold(cvae, cparams, coords, label=c) for c in (3, 7))
    assert threes.shape == (3, 3, *MNIST)
    assert not np.array_equal(threes, sevens)  # the class reaches the decoder
    np.testing.assert_allclose(  # a batch of one: products of another shape, other last bits
        threes[0, 0], generation.decode(cvae, cparams, np.array([[coords[0][0], coords[1][-1]]],
                                                               np.float32), [3])[0],
        atol=1e-6)


class _Convention(nn.Module):
    """A module of another convention that takes jaxae's call, but declares nothing."""

    @nn.compact
    def __call__(self, x, labels=None, sample=False):
        return nn.Dense(4)(x.reshape(x.shape[0], -1)), {}


def test_check_false_creates_the_state_of_a_module_that_declares_nothing():
    state = steps.create_train_state(_Convention(), optax.sgd(0.1), MNIST, jax.random.key(0),
                                     check=False)
    assert state.params["Dense_0"]["kernel"].shape == (784, 4)


def test_checkpoints_restore_numpy_scalars_and_name_the_state_functions_for_a_train_state(
        tmp_path):
    manager = checkpoints.make_manager(str(tmp_path / "checkpoints"))
    checkpoints.save(manager, 1, {"w": jnp.ones(3), "epoch": np.int32(3)})
    tree = checkpoints.restore(manager, {"w": jnp.zeros(3), "epoch": np.int32(0)})
    assert int(tree["epoch"]) == 3 and tree["epoch"].dtype == np.int32
    _, state = dense_state()
    with pytest.raises(TypeError, match=r"^save takes a tree of arrays: a TrainState saves "
                                        r"with save_state\(manager, state\), and "
                                        r"restore_state reads it back$"):
        checkpoints.save(manager, 2, state)
    checkpoints.save_state(manager, state)
    with pytest.raises(TypeError, match=r"^restore takes a tree like the one saved: a "
                                        r"TrainState saved with save_state restores with "
                                        r"restore_state\(manager, state\)$"):
        checkpoints.restore(manager, state)
    restored = checkpoints.restore_state(manager, state)
    assert int(restored.step) == int(state.step)
    checkpoints.close(manager)


def test_a_model_built_with_a_list_field_is_encoded_its_programs_kept_by_identity():
    """A module built by hand may hold a list (build_model makes tuples): unhashable, so the
    evaluation functions keep its programs by the object, not by its value."""
    listed = models.DeepAE(image_shape=MNIST, latent_dim=2, hidden=[16, 8])
    params = steps.init_params(listed, MNIST, jax.random.key(0))
    programs = generation._codes.programs
    programs.cache_clear()
    codes = generation.encode(listed, params, IMAGES[:3])
    np.testing.assert_array_equal(generation.encode(listed, params, IMAGES[:3]), codes)
    assert (programs.cache_info().misses, programs.cache_info().hits) == (1, 1)
    tupled = models.DeepAE(image_shape=MNIST, latent_dim=2, hidden=(16, 8))
    np.testing.assert_array_equal(generation.encode(tupled, params, IMAGES[:3]), codes)


def test_generation_metrics_and_the_kl_name_misshapen_inputs_and_a_seed_given_as_a_key():
    vae = models.build_model({"name": "vae", "latent_dim": 2}, image_shape=MNIST)
    params = steps.init_params(vae, MNIST, jax.random.key(0))
    assert generation.encode(vae, params, list(IMAGES[:3])).shape == (3, 2)  # a list too
    with pytest.raises(ValueError, match=r"^decode's codes are \[2\], one code without the "
                                         r"batch axis: give codes \[N, 2\] \(z\[None\]"):
        generation.decode(vae, params, jnp.zeros(2))
    with pytest.raises(ValueError, match=r"^manifold's coords are shaped \(3, 4\): give "
                                         r"\[2, size\]"):
        generation.manifold(vae, params, np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"^a plain autoencoder's manifold spans its test "
                                         r"codes, and codes=None: give codes \[N, 2\]"):
        generation.manifold_coordinates(False, 5)
    assert generation.manifold_coordinates(False, 5, np.ones((4, 2))).shape == (2, 5)
    np.testing.assert_allclose(  # the test codes' 5th to 95th percentiles on each axis
        generation.manifold_coordinates(False, 3, np.arange(101.0)[:, None] * [1, 2]),
        [[5, 50, 95], [10, 100, 190]])
    with pytest.raises(ValueError, match=r"^gaussian_kl: mean and log_sigma are shaped "
                                         r"\(8, 2\) and \(8, 3\)"):
        losses.gaussian_kl(jnp.zeros((8, 2)), jnp.zeros((8, 3)))
    elbo = objectives.objective_for(True, likelihood=objectives.Bernoulli())
    eval_step = steps.make_eval_step(vae, Reconstruct(), elbo)
    split = make_splits(from_arrays(IMAGES, IMAGES), jax.random.key(0)).test
    with pytest.raises(TypeError, match=r"evaluate_split's key .*jax\.random\.key"):
        metrics.evaluate_split(eval_step, params, split, 4, 0)
    assert np.isfinite(metrics.evaluate_split(eval_step, params, split, 4,
                                              jax.random.key(0))["loss"])


def test_encode_reads_images_that_are_not_an_array_batch_by_batch():
    """A streamed split's images (a lazy array of records) are read a batch at a time, never
    whole."""
    model, state = dense_state(latent_dim=4)

    class Lazy:
        shape, dtype = IMAGES.shape, IMAGES.dtype
        read: list[int] = []

        def __len__(self) -> int:
            return len(IMAGES)

        def __getitem__(self, index: slice) -> np.ndarray:
            self.read.append(len(IMAGES[index]))
            return IMAGES[index]

    lazy = Lazy()
    codes = generation.encode(model, state.params, lazy, batch_size=3)
    assert lazy.read == [3, 3, 2]
    np.testing.assert_array_equal(codes, generation.encode(model, state.params, IMAGES))


def test_a_task_of_ones_own_that_breaks_its_contract_is_named_before_compiling():
    """Traced on an abstract batch: inputs of another shape than input_shape says (the error
    had blamed the model's parameters), and a corruption drawn with NumPy, the same at every
    step and out of the seed's reach (it had trained silently)."""
    import dataclasses

    from jaxae.tasks import Task

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Halves(Task):
        def corrupt(self, targets, key):
            return targets[:, ::2, ::2]

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class NumpyNoise(Task):
        def corrupt(self, targets, key):
            noise = np.random.default_rng().normal(size=targets.shape).astype(np.float32)
            return targets + noise

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class NumpyDim(Task):  # one brightness for every image and step, drawn when traced
        def corrupt(self, targets, key):
            return targets * np.random.uniform(0.2, 0.8)

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class KeyedNoise(Task):
        def corrupt(self, targets, key):
            return targets + jax.random.normal(key, targets.shape)

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Blur(Task):  # a fixed kernel of 5 taps: a constant, not a draw
        def corrupt(self, targets, key):
            kernel = np.full((5, 5, 1, 1), 1 / 25, np.float32)
            return jax.lax.conv_general_dilated(targets, kernel, (1, 1), "SAME",
                                                dimension_numbers=("NHWC", "HWIO", "NHWC"))

    with pytest.raises(ConfigError, match=r"^task Halves makes inputs of 14x14x1 from 28x28x1 "
                                          r"images, but its input_shape says 28x28x1: make "
                                          r"input_shape return the shape corrupt returns$"):
        build.check_task(Halves(), MNIST)
    for drawn in (NumpyNoise(), NumpyDim()):
        with pytest.raises(ConfigError, match=rf"^task {type(drawn).__name__} makes other inputs "
                                              r"each time it is traced \(a draw with NumPy"):
            build.check_task(drawn, MNIST)
    build.check_task(KeyedNoise(), MNIST)
    build.check_task(Blur(), MNIST)
    from jaxae.tasks import Denoise, SuperResolve

    for shipped in (Reconstruct(), Reconstruct(binarize_targets=True), SuperResolve(factor=2),
                    Denoise(corruption="dropout"), Denoise(corruption="gaussian")):
        build.check_task(shipped, MNIST)


def test_a_loss_of_ones_own_that_is_not_one_number_per_flat_image_is_named_before_compiling():
    model = models.build_model({"name": "dense_ae", "latent_dim": 4}, image_shape=MNIST)
    per_pixel = objectives.Reconstruction(lambda logits, targets: jnp.abs(logits - targets))
    with pytest.raises(ConfigError, match=r"^config.objective.loss gives an array of shape "
                                          r"\[5, 784\] for a batch of 5 flat images \[5, 784\], "
                                          r"not one per image \[5\]: reduce over the "
                                          r"pixels \(axis -1\)$"):
        build.check_objective(per_pixel, model, MNIST, "objective.loss")

    def edges(logits, targets):  # written for [B, H, W, C]
        return jnp.abs(logits[:, 1:, :, :] - targets[:, 1:, :, :]).mean(axis=(1, 2, 3))

    with pytest.raises(ConfigError, match=r"^config.objective.loss fails on flat logits and "
                                          r"targets \[batch, 784\] \(each image's pixels in one "
                                          r"row, as training gives them\): IndexError: .*\(at \S*"
                                          r"test_library_errors.py:\d+, in edges\)$"):
        build.check_objective(objectives.Reconstruction(edges), model, MNIST, "objective.loss")
    build.check_objective(objectives.Reconstruction(losses.mse), model, MNIST, "objective.loss")
    vae = models.build_model({"name": "vae", "latent_dim": 2}, image_shape=MNIST)
    build.check_objective(objectives.NegativeELBO(objectives.Gaussian()), vae, MNIST,
                          "objective.likelihood")

    class Summed:  # the whole batch's log p(x | z): it broadcast against the KL, and trained
        def log_prob(self, logits, targets):
            return -jnp.abs(logits - targets).sum()

    class PerPixel:
        def log_prob(self, logits, targets):
            return -jnp.abs(logits - targets)

    for likelihood, shape in ((Summed(), r"\[\]"), (PerPixel(), r"\[5, 784\]")):
        with pytest.raises(ConfigError, match=rf"^config.objective.likelihood gives its "
                                              rf"log_prob as an array of shape {shape} for a "
                                              r"batch of 5 flat images \[5, 784\], not one per "
                                              r"image \[5\]: reduce over the pixels"):
            build.check_objective(objectives.NegativeELBO(likelihood), vae, MNIST,
                                  "objective.likelihood")


def test_evaluate_state_refuses_a_variational_model_whose_objective_has_no_likelihood(tmp_path):
    """A VAE trained with a plain reconstruction loss: its evaluation had scored the whole
    test split, then failed with an AttributeError where it reads the likelihood."""
    from jaxae.config import base_config
    from jaxae.evaluation.evaluate import evaluate_state

    model = models.build_model({"name": "vae", "latent_dim": 2}, image_shape=MNIST)
    data = make_splits(from_arrays(IMAGES, IMAGES), jax.random.key(0))
    with pytest.raises(ValueError, match=r"^evaluate_state scores a variational model's ELBO "
                                         r"and IWAE bounds under its objective's likelihood, "
                                         r"and Reconstruction has none: pass objectives\."
                                         r"NegativeELBO\(likelihood\)"):
        evaluate_state(base_config(), model, Reconstruct(), objectives.Reconstruction(
            losses.mse), None, data, 0, str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_a_vaes_pictures_say_what_their_codes_and_outputs_are_of(tmp_path, monkeypatch):
    """Its reconstructions are decoded at z = z_mean; under dynamic binarisation its codes
    are of a Bernoulli draw of each image (no PCA of the grey pixels beside them, which had
    been compared with them); a conditional model's encoder is given each image's class."""
    from jaxae.evaluation import plots

    drawn = {}
    monkeypatch.setattr(plots, "image_rows", lambda rows, title, path: drawn.setdefault(
        os.path.basename(path), [label for label, _ in rows]))
    monkeypatch.setattr(plots, "latent_scatter", lambda *args, beside=None, **kwargs: drawn.
                        setdefault("beside", beside))
    monkeypatch.setattr(plots, "manifold", lambda *args, **kwargs: None)
    shape = (8, 8, 1)
    images = np.random.default_rng(0).integers(0, 256, (24, *shape), dtype=np.uint8)
    labels = np.arange(24) % 2
    data = make_splits(from_arrays(images, images, labels, labels, ("a", "b")),
                       jax.random.key(0))
    for name, task in (("vae", Reconstruct(binarize_targets=True)), ("cvae", Reconstruct())):
        drawn.clear()
        model = models.build_model({"name": name, "latent_dim": 2}, image_shape=shape,
                                   num_classes=2)
        params = steps.init_params(model, shape, jax.random.key(0))
        titles = pictures.write_pictures(model, task, params, data, 0, "t", str(tmp_path))
        assert "output\n(z = z_mean)" in drawn["reconstructions.png"]
        assert drawn["beside"] is None
        assert titles["latent_scatter.png"] == (
            "t: test z_mean of a binarised draw of each image (2-D)" if name == "vae" else
            "t: test z_mean, given its class (2-D)")
