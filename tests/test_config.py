"""Every shipped config is valid; every bad value gets a one-line error naming the field; the
old flat names point to where they moved."""

import glob
import importlib
import json
import os
import re

import jax.numpy as jnp
import numpy as np
import pytest

from jaxae import config as config_lib
from jaxae.objectives import LOSSES
from tests.conftest import set_fields

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_NAMES = sorted(os.path.basename(p)[:-3]
                      for p in glob.glob(os.path.join(ROOT, "configs", "[!_]*.py")))


def set_field(config, path, value):
    section, _, field = path.rpartition(".")
    node = config_lib.get(config, section) if section else config
    with node.unlocked():
        node[field] = value


def test_the_lesson_configs_exist():
    assert {"default", "conv_ae_mnist", "conv_ae_fashion", "dae_dropout", "dae_gaussian",
            "superres", "deep_ae", "test", "vae_fashion_2d", "cvae"} <= set(CONFIG_NAMES)


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_shipped_configs_import_from_the_package_and_are_valid_and_documented(name):
    module = importlib.import_module(f"jaxae.configs.{name}")
    config_lib.validate(module.get_config())
    with open(module.__file__) as f:
        source = f.read()
    assert "Command" in source and "python train.py --config=configs/" in source
    doc = module.__doc__
    assert "Results:" in doc
    # figures live in results/RESULTS.md, written by the command that measured them
    assert not re.search(r"\d(\.\d+)? ?(dB|nats|%)|\d\.\d{2,}|minute|seconds", source), name
    with open(os.path.join(ROOT, "results", "RESULTS.md")) as f:
        has_row = f"| `{name}` |" in f.read()
    assert has_row == (f"the `{name}` row of results/RESULTS.md" in " ".join(doc.split()))


@pytest.mark.parametrize("path, value, words", [
    ("model.name", "vit", "config.model.name: unknown model 'vit': choose one of dense_ae"),
    ("data.name", "fashion_mnsit", "config.data.name: unknown data set 'fashion_mnsit'"),
    ("data.path", "photos", "config.data.path='photos' is set, but the fashion_mnist data set "
                            "reads no path: add --config.data.name=folder"),
    ("model.conv", "cudnn", "config.model.conv='cudnn' is unknown: choose one of patches, xla"),
    ("model.init", "he", "config.model.init='he' is unknown: choose one of glorot"),
    ("train.compute_dtype", "float16",
     "config.train.compute_dtype='float16' is unknown: choose one of float32, bfloat16"),
    ("model.latent_dim", 0, "config.model.latent_dim=0 must be a positive integer"),
    ("train.batch_size", -1, "config.train.batch_size=-1 must be a positive integer"),
    ("train.num_epochs", 0, "config.train.num_epochs=0 must be a positive integer"),
    ("optim.learning_rate", 0.0, "config.optim.learning_rate=0.0 must be a positive number"),
    ("optim.learning_rate", float("nan"),
     "config.optim.learning_rate=nan must be a positive number"),
    ("task.dropout_rate", 1.0, "config.task.dropout_rate=1.0 must lie in [0, 1)"),
    ("task.dropout_rate", -0.1, "config.task.dropout_rate=-0.1 must lie in [0, 1)"),
    ("task.corruption", "salt", "config.task.corruption='salt' is unknown: choose one of"),
    ("task.noise_std", -1.0, "config.task.noise_std=-1.0 must be >= 0"),
    ("task.name", "inpaint", "config.task.name: unknown task 'inpaint'"),
    ("objective.loss", "l1", "config.objective.loss: unknown loss 'l1'"),
    ("objective.gaussian_scale", 0.0, "config.objective.gaussian_scale=0.0 must be in "
                                      "[1e-18, 3.4e+38] (float32, in which training computes, "
                                      "overflows outside it), e.g. 0.1"),
    ("objective.gaussian_scale", float("inf"), "config.objective.gaussian_scale=inf must be in "
                                               "[1e-18, 3.4e+38]"),  # was -inf nats at step 1
    ("objective.gaussian_scale", 1e-20, "config.objective.gaussian_scale=1e-20 must be in "),
    ("objective.likelihood", "poisson", "config.objective.likelihood: unknown likelihood"),
    ("objective.beta", -1.0, "config.objective.beta=-1.0 must be >= 0"),
    ("objective.beta", 1e39, "config.objective.beta=1e+39 is beyond float32's range"),
    ("objective.beta_warmup_steps", -5, "config.objective.beta_warmup_steps=-5 must be a "
                                        "whole number of steps >= 0"),
    ("optim.learning_rate", 1e39, "config.optim.learning_rate=1e+39 must be a positive "
                                  "number within float32's range"),
    ("optim.weight_decay", 0.01, "config.optim.weight_decay=0.01 is an option of adamw, and "
                                 "adam takes none: use --config.optim.name=adamw, or leave "
                                 "weight_decay unset"),
    ("optim.weight_decay", -1.0, "config.optim.weight_decay=-1.0 must be a number >= 0"),
    ("eval.manifold_size", 1, "config.eval.manifold_size=1 must be at least 2"),  # was taken
    ("seed", -1, "config.seed=-1 must be an integer in [0, 4294967295]"),
    ("seed", 2**32, "config.seed=4294967296 must be an integer in [0, 4294967295]"),
    ("seed", 2**64, "config.seed=18446744073709551616 must be an integer in [0, 4294967295]"),
    ("model.latnt_dim", 3, "config.model.latnt_dim is not a field of model 'dense_ae': "
                           "did you mean 'latent_dim'?"),
    ("task.dropout_rat", 0.3, "config.task.dropout_rat is not a field of task 'denoise': "
                              "did you mean 'dropout_rate'? its fields are corruption, "
                              "dropout_rate, dropout_rescale, noise_std"),  # (not the data's)
])
def test_bad_values_get_a_one_line_error_naming_the_field(path, value, words):
    """A field is checked by the entry that uses it: the task's fields under the denoising
    task, the likelihood's under the gaussian one."""
    config = config_lib.base_config()
    set_field(config, "task.name", "denoise")
    set_field(config, "objective.likelihood", "gaussian")
    set_field(config, path, value)
    with pytest.raises(config_lib.ConfigError) as caught:
        config_lib.validate(config)
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("section, fields, words", [
    ("objective", {"loss": "bce", "likelihood": "gaussian", "gaussian_scale": "abc"},
     "config.objective.gaussian_scale='abc' must be a number, e.g. 0.1"),
    ("task", {"name": "denoise", "dropout_rescale": "False"},
     "config.task.dropout_rescale='False' must be True or False"),
    ("model", {"name": "conv_ae", "width": "2"},
     "config.model (conv_ae): conv_ae: width='2' and features=(16, 8, 8) must be positive whole "
     "numbers"),
])
def test_a_word_for_a_number_or_a_flag_in_a_section_given_whole_names_its_field(
        section, fields, words):
    """A section given whole (--config.objective="{...}") escapes the config's field types:
    its entry names the field, not a comparison of a string and a number deep inside."""
    from jaxae import build

    config = config_lib.base_config()
    config[section] = fields
    with pytest.raises(config_lib.ConfigError) as caught:
        config_lib.validate(config)
        build.make_model(config, (28, 28, 1), 10)  # the model's fields: as it is built
    assert str(caught.value).startswith(words), caught.value


@pytest.mark.parametrize("name, words", [
    ("folder", "the folder data set reads no data_dir: it reads config.data.path: give the "
               "folder or file there"),
    ("svhn_cropped", "the svhn_cropped data set reads no data_dir: leave data.data_dir unset"),
])
def test_a_data_dir_the_data_set_does_not_read_is_refused_not_ignored(name, words):
    config = config_lib.base_config()
    set_field(config, "data.name", name)
    set_field(config, "data.data_dir", "offline")
    with pytest.raises(config_lib.ConfigError, match=f"^config.data.data_dir='offline' is set, "
                                                     f"but {words}"):
        config_lib.validate(config)
    set_field(config, "data.name", "cifar10")  # reads one: its archive's folder
    config_lib.validate(config)


def test_adamws_weight_decay_is_the_configs_and_unset_is_optaxs_default():
    """adamw had decayed every parameter by Optax's 1e-4, which no field could change."""
    import jax.numpy as jnp

    from jaxae import build

    def decay_step(**optim) -> float:  # a zero gradient's update: -lr * decay * w
        config = config_lib.base_config()
        set_fields(config, {"optim.name": "adamw", "optim.learning_rate": 0.1,
                            **{f"optim.{k}": v for k, v in optim.items()}})
        config_lib.validate(config)
        tx, params = build.make_optimizer(config, 10), {"w": jnp.ones(3)}
        updates, _ = tx.update({"w": jnp.zeros(3)}, tx.init(params), params)
        return float(updates["w"][0])

    assert decay_step(weight_decay=0.01) == pytest.approx(-0.1 * 0.01)
    assert decay_step() == pytest.approx(-0.1 * 1e-4)
    assert decay_step(weight_decay=0.0) == 0.0
    from jaxae import optimizers  # a library caller's, without a config

    with pytest.raises(ValueError, match=r"^optimizer 'adam' takes no weight_decay: leave it "
                                         r"out, or choose one that does \(adamw\)$"):
        optimizers.make_optimizer("adam", 0.1, weight_decay=0.01)
    with pytest.raises(ValueError, match=r"^weight_decay=-1.0 must be a number >= 0"):
        optimizers.make_optimizer("adamw", 0.1, weight_decay=-1.0)


def test_a_field_misspelt_in_a_config_file_fails_at_load():
    config = config_lib.base_config()
    with pytest.raises(AttributeError, match="latnt_dim"):
        config.latnt_dim = 3


@pytest.mark.parametrize("path, hint", [
    ("latent_dim", "it moved to config.model.latent_dim"),
    ("superres_factor", "it moved to config.task.factor"),
    ("eval_batch_size", "it moved to config.eval.batch_size"),
    ("train.batch_sise", "did you mean config.train.batch_size?"),
    ("optim.lr", "did you mean config.optim.learning_rate?"),  # by its words' initials
    ("train.bs", "did you mean config.train.batch_size?"),
    ("model.xyz", ""),
    ("optim.momentum", "config.optim's fields are learning_rate, name, schedule, weight_decay"),
])
def test_old_flat_names_and_typos_get_a_hint(path, hint):
    assert config_lib.field_hint(path) == hint


def test_every_old_flat_field_has_a_new_home():
    """Each new path exists (model.conv in the conv models' configs), and no old name is a
    top-level field any more ("model" is now a section)."""
    config = config_lib.base_config()
    conv_config = importlib.import_module("jaxae.configs.conv_ae_fashion").get_config()
    for old, new in config_lib.MOVED_FIELDS.items():
        config_lib.get(conv_config if new == "model.conv" else config, new)
        assert old not in config or old in config_lib.SECTIONS


def test_batch_larger_than_the_split_is_rejected():
    config = config_lib.base_config()
    config.train.batch_size = 600
    with pytest.raises(config_lib.ConfigError,
                       match="batch_size=600 is larger than the 500 training images: use "
                             "--config.train.batch_size=128 or more data"):
        config_lib.check_batch_fits(config, num_train=500, num_test=100)
    config.train.batch_size = 100
    with pytest.raises(config_lib.ConfigError, match="larger than the 50 training images: use "
                                                     "--config.train.batch_size=50 or more"):
        config_lib.check_batch_fits(config, num_train=50, num_test=100)
    with pytest.raises(config_lib.ConfigError, match="the test split is empty"):
        config_lib.check_batch_fits(config, num_train=500, num_test=0)


def test_a_suggested_batch_size_splits_over_the_devices():
    """The hints name a batch the devices can split, and a resumed run's hint names device
    counts its fixed batch splits over, not another batch size the run would refuse."""
    config = config_lib.base_config()
    config.train.batch_size = 128
    with pytest.raises(config_lib.ConfigError) as caught:
        config_lib.check_batch_fits(config, num_train=6, num_test=4, num_devices=4)
    assert str(caught.value).endswith("use --config.train.batch_size=4 or more data")
    with pytest.raises(config_lib.ConfigError) as caught:
        config_lib.check_batch_fits(config, num_train=3, num_test=4, num_devices=4)
    assert str(caught.value).endswith("use more data: 4 devices need a batch of 4 or more")
    with pytest.raises(config_lib.ConfigError) as caught:
        config_lib.check_batch_splits(32, 3, run_in="runs/a")
    assert str(caught.value) == (
        "config.train.batch_size=32 does not split over 3 devices, and the run in 'runs/a' "
        "trains with it: resume it on a device count that divides 32 (e.g. 2 or 4), or train "
        "a new run in a new --workdir with a multiple of 3")
    with pytest.raises(config_lib.ConfigError, match=r"e.g. 32\)"):
        config_lib.check_batch_splits(32, 40, run_in="runs/a")
    with pytest.raises(config_lib.ConfigError, match="e.g. --config.train.batch_size=30$"):
        config_lib.check_batch_splits(32, 3)


def test_a_batch_that_does_not_split_over_the_devices_leaves_no_workdir(tiny_config, tmp_path,
                                                                       monkeypatch):
    import types

    from jaxae.training import trainer

    monkeypatch.setattr(trainer.parallel, "data_mesh", lambda: types.SimpleNamespace(size=2))
    with pytest.raises(config_lib.ConfigError, match="batch_size=33 does not split over 2 "):
        trainer.train_and_evaluate(tiny_config(**{"train.batch_size": 33}),
                                   str(tmp_path / "new"))
    assert not (tmp_path / "new").exists()


def test_a_test_fraction_left_unset_on_resume_is_the_share_it_stands_for():
    """A folder run trained with --config.data.test_fraction=0.2 and resumed without it (or
    the reverse) carved the same split: no run-defining change; another share is one."""
    def config_json(fraction):
        config = config_lib.base_config()
        config.data.name, config.data.path, config.data.test_fraction = "folder", "/x", fraction
        return json.loads(config.to_json_best_effort())

    assert config_lib.run_differences(config_json(0.2), config_json(None)) == []
    assert config_lib.run_differences(config_json(None), config_json(0.2)) == []
    assert config_lib.run_differences(config_json(None), config_json(0.3)) == [
        ("data.test_fraction", 0.2, 0.3)]
    recorded_before_the_field = config_json(None)
    del recorded_before_the_field["data"]["test_fraction"]
    assert config_lib.run_differences(recorded_before_the_field, config_json(0.2)) == []
    # a loader that declares no such value: unset is its own choice, not 0.2
    other = config_json(0.2)
    other["data"]["name"] = "npz"
    assert config_lib.run_differences({**other, "data": {**other["data"],
                                                         "test_fraction": None}}, other) == [
        ("data.test_fraction", None, 0.2)]


def test_a_code_size_for_a_model_that_takes_none_is_refused_for_a_new_run(tiny_config,
                                                                         tmp_path):
    from jaxae.training.trainer import train_and_evaluate
    from jaxae.training.workdir import load_run_config, write_run_files

    config = config_lib.base_config()
    config.model.name = "conv_ae"  # --config.model.name=conv_ae: its code is 4x4x8
    config_lib.check_new_run(config)  # the base config's latent_dim, untouched: nothing asked
    config.model.latent_dim = 2
    config_lib.validate(config)  # a run's record: read as it is
    with pytest.raises(config_lib.ConfigError) as caught:
        config_lib.check_new_run(config)
    assert str(caught.value) == (
        "config.model.latent_dim=2 is set, but model 'conv_ae' takes no latent_dim (it has no "
        "code of a free size; its fields: conv, features, init, width): leave it unset, or "
        "choose a model that takes one")
    with pytest.raises(config_lib.ConfigError, match="takes no latent_dim"):  # train.py's
        train_and_evaluate(tiny_config(**{"model.name": "conv_ae", "model.latent_dim": 2}),
                           str(tmp_path / "new"))
    assert not (tmp_path / "new").exists()
    write_run_files(str(tmp_path), config)  # a run trained before the check: evaluable
    assert load_run_config(str(tmp_path), {}).model.latent_dim == 2
    config.model.name = "conv_vae"  # one that takes it
    config_lib.check_new_run(config)


ELBO_UNDER = "minimises -ELBO under objective.likelihood='bernoulli' and beta"


def unread_check(overrides: dict) -> None:
    """build.check_unread_fields of the base config with `overrides`."""
    from jaxae import build

    config = config_lib.base_config()
    set_fields(config, overrides)
    variational = build.variational_before_data(config)
    assert variational is not None
    build.check_unread_fields(config, variational, config_lib.make_task(config))


@pytest.mark.parametrize("overrides, said", [
    ({"objective.beta": 4.0}, "objective.beta=4.0 is set, but model 'dense_ae' minimises "
                              "objective.loss"),
    ({"objective.likelihood": "gaussian"}, "objective.likelihood='gaussian' is set, but model "
                                           "'dense_ae' minimises objective.loss"),
    ({"model.name": "vae", "objective.loss": "bce"},
     f"objective.loss='bce' is set, but model 'vae' {ELBO_UNDER}"),
    ({"model.name": "vae", "objective.gaussian_scale": 0.5},
     f"objective.gaussian_scale=0.5 is set, but model 'vae' {ELBO_UNDER}"),
    ({"objective.beta_warmup_steps": 100}, "objective.beta_warmup_steps=100 is set, but model "
                                           "'dense_ae' minimises objective.loss"),
    ({"task.noise_std": 0.5}, "task.noise_std=0.5 is set, but task 'reconstruct' does not read "
                              "it (it takes no noise_std)"),
    ({"task.dropout_rate": 0.9}, "task.dropout_rate=0.9 is set, but task 'reconstruct' does "
                                 "not read it (it takes no dropout_rate)"),
    ({"task.name": "denoise", "task.corruption": "gaussian", "task.dropout_rate": 0.9},
     "task.dropout_rate=0.9 is set, but task 'denoise' does not read it (its corruption is "
     "'gaussian')")])
def test_a_task_or_objective_field_the_run_does_not_read_is_refused(overrides, said):
    with pytest.raises(config_lib.ConfigError) as caught:
        unread_check(overrides)
    assert str(caught.value).startswith(f"config.{said}, so the run would ignore it: leave "), \
        caught.value


@pytest.mark.parametrize("overrides", [
    {"task.name": "denoise", "task.corruption": "gaussian", "task.noise_std": 0.5},
    {"task.name": "denoise", "task.dropout_rate": 0.3, "task.dropout_rescale": True},
    {"model.name": "vae", "objective.likelihood": "gaussian", "objective.gaussian_scale": 0.5,
     "objective.beta": 4.0, "objective.beta_warmup_steps": 100},
    {"objective.loss": "bce"}])
def test_the_fields_a_run_reads_are_taken(overrides):
    """Not refused, and in the task and objective the run builds (a beta or a loss dropped
    on the way would train a plain VAE, or MSE, under the config's name)."""
    from jaxae import build

    unread_check(overrides)
    config = config_lib.base_config()
    set_fields(config, overrides)
    task = config_lib.make_task(config)
    objective = build.make_objective(config, build.make_model(config, (28, 28, 1), 10))
    logits = jnp.linspace(-3.0, 3.0, 12).reshape(2, 6)
    targets = jnp.linspace(0.0, 1.0, 12).reshape(2, 6)
    taken = {"task.name": type(task).__name__.lower()}
    for path in overrides:
        section, field = path.split(".")
        if section == "task" and field != "name":
            taken[path] = getattr(task, field)
        if field in ("beta", "beta_warmup_steps"):
            taken[path] = getattr(objective, field.replace("beta_", ""))
        if field == "likelihood":
            taken[path] = type(objective.likelihood).__name__.lower()
        if field == "gaussian_scale":
            taken[path] = objective.likelihood.gaussian_scale
        if field == "loss":  # the registered loss whose values the objective's are
            taken[path] = [name for name in ("mse", "bce") if np.allclose(
                objective(logits, targets, {})["loss"], LOSSES.get(name)(logits, targets))]
    read = {path: value for path, value in overrides.items() if not path.startswith("model.")}
    assert {path: taken[path] for path in read} == read | (
        {"objective.loss": ["bce"]} if "objective.loss" in read else {})


def test_a_task_section_of_ones_own_may_hold_only_its_name():
    from jaxae import build

    config = config_lib.base_config()
    with config.unlocked():
        config.task = config_lib.ml_collections.ConfigDict({"name": "reconstruct"})
    build.check_unread_fields(config, False, config_lib.make_task(config))


def test_a_new_run_refuses_a_field_it_would_not_read_before_its_workdir_or_data(
        tiny_config, tmp_path, monkeypatch):
    """Refused before the workdir is made or a data set is read (an image folder's
    preparation takes minutes); a trained run's config.json stands as recorded."""
    from jaxae.training import trainer, workdir

    def never(*args, **kwargs):
        raise AssertionError("reached past the refusal")

    monkeypatch.setattr(trainer, "prepare_workdir", never)
    monkeypatch.setattr(trainer.build, "load_run_data", never)
    config = tiny_config(**{"task.noise_std": 0.5})
    with pytest.raises(config_lib.ConfigError, match=r"^config.task.noise_std=0.5 is set"):
        trainer.train_and_evaluate(config, str(tmp_path / "new"))
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    workdir.write_run_files(str(tmp_path / "old"), config)  # recorded before the refusal
    with pytest.raises(AssertionError, match="reached past the refusal"):
        trainer.train_and_evaluate(config, str(tmp_path / "old"))


OWN_LOADER = """
import numpy as np
from jaxae.data import from_arrays

def load(**options):  # takes none of config.data's fields
    images = np.zeros((8, 16, 16, 3), np.uint8)
    return from_arrays(images, images[:4], name="mine")
"""


@pytest.mark.parametrize("field, value", [("image_size", 32), ("channels", 1),
                                          ("streaming", "stream")])
def test_a_loader_option_a_loader_of_ones_own_does_not_take_is_refused_for_a_new_run(
        tmp_path, field, value):
    """The loader would never see it: the run would train on other images than the config
    records (64x64 colour ones where it says 32, grey)."""
    loader = tmp_path / "mydata.py"
    loader.write_text(OWN_LOADER)
    config = config_lib.base_config()
    config.data.name = f"{loader}:load"
    config_lib.check_new_run(config)  # nothing asked of it
    setattr(config.data, field, value)
    config_lib.validate(config)  # a run's record: read as it is
    with pytest.raises(config_lib.ConfigError, match=(
            rf"^config\.data\.{field}={value!r} is set, but the .*mydata\.py:load data set's "
            rf"loader takes no {field}, so the run would ignore it: give the loader the "
            rf"parameter {field}, or leave config\.data\.{field} unset$")):
        config_lib.check_new_run(config)
    config.data.name = "fashion_mnist"  # a built-in loader takes each
    config_lib.check_new_run(config)


def test_a_field_the_named_model_lacks_lists_its_settable_fields_and_the_whole_section_fix():
    """Switching models with --config.model.name keeps the file's other model fields: the
    error lists what the new model takes (not what the data give it) and how to replace
    the section."""
    config = config_lib.base_config()
    with config.model.unlocked():
        config.model.name, config.model.code_channels = "conv_ae", 8
    with pytest.raises(config_lib.ConfigError) as caught:
        config_lib.validate(config)
    assert str(caught.value) == (
        "config.model.code_channels is not a field of model 'conv_ae': its fields are conv, "
        "features, init, width; if --config.model.name switched to it from another model's "
        "section, give the whole section instead: --config.model=\"{'name': 'conv_ae'}\"")


def test_a_seed_jax_would_alias_is_refused_by_the_library_as_by_the_config():
    """jax.random.key takes a seed modulo 2^32: 2^32 + 3 would run seed 3's streams."""
    from jaxae.keys import derive_keys

    with pytest.raises(ValueError, match=r"derive_keys' seed 4294967299 is outside \[0, "
                                         r"4294967295\], config.seed's range, whose seeds "
                                         r"have streams of their own"):
        derive_keys(2**32 + 3)
    with pytest.raises(ValueError, match="seed -1 is outside"):
        derive_keys(-1)


def test_the_library_s_gaussian_likelihood_defaults_to_the_configs_scale():
    """objectives.Gaussian() built in one's own loop scores as a config's run does."""
    from jaxae import objectives

    assert objectives.Gaussian().gaussian_scale == config_lib.base_config().objective.gaussian_scale
