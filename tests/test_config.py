"""Every shipped config is valid; every bad value gets a one-line error naming the field."""

import glob
import importlib.util
import os

import pytest

from jaxae import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = sorted(glob.glob(os.path.join(ROOT, "configs", "[!_]*.py")))


def load_config(path: str):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def test_the_issue_configs_exist():
    names = {os.path.basename(p)[:-3] for p in CONFIG_FILES}
    assert {"default", "conv_ae_mnist", "conv_ae_fashion", "dae_dropout", "dae_gaussian",
            "superres", "deep_ae", "test"} <= names


@pytest.mark.parametrize("path", CONFIG_FILES, ids=os.path.basename)
def test_shipped_configs_are_valid_and_documented(path):
    config = load_config(path)
    config_lib.validate(config)
    with open(path) as f:
        source = f.read()
    assert "Command: python train.py --config=configs/" in source
    assert "Expected:" in source and "EXPECTED_" not in source


@pytest.mark.parametrize("field, value, words", [
    ("model", "vit", "config.model='vit' is unknown: choose one of dense_ae"),
    ("dataset", "cifar10", "config.dataset='cifar10' is unknown: choose one of mnist"),
    ("conv", "cudnn", "config.conv='cudnn' is unknown: choose one of patches, xla"),
    ("compute_dtype", "float16",
     "config.compute_dtype='float16' is unknown: choose one of float32, bfloat16"),
    ("latent_dim", 0, "config.latent_dim=0 must be a positive integer"),
    ("batch_size", -1, "config.batch_size=-1 must be a positive integer"),
    ("num_epochs", 0, "config.num_epochs=0 must be a positive integer"),
    ("learning_rate", 0.0, "config.learning_rate=0.0 must be a positive number"),
    ("learning_rate", float("nan"), "config.learning_rate=nan must be a positive number"),
    ("dropout_rate", 1.0, "config.dropout_rate=1.0 must lie in [0, 1)"),
    ("dropout_rate", -0.1, "config.dropout_rate=-0.1 must lie in [0, 1)"),
    ("superres_factor", 3, "config.superres_factor=3 must be 2 (14x14 input) or 4"),
    ("corruption", "salt", "config.corruption='salt' is unknown: choose one of none"),
    ("loss", "l1", "config.loss='l1' is unknown"),
])
def test_bad_values_get_a_one_line_error_naming_the_field(field, value, words):
    config = config_lib.base_config()
    with config.unlocked():
        config[field] = value
    with pytest.raises(config_lib.ConfigError) as caught:
        config_lib.validate(config)
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


def test_batch_larger_than_the_split_is_rejected():
    config = config_lib.base_config()
    config.batch_size = 600
    with pytest.raises(config_lib.ConfigError, match="batch_size=600 is larger than the 500"):
        config_lib.check_sizes(config, num_train=500, num_test=100)
    config.batch_size = 100
    config.val_size = 450
    with pytest.raises(config_lib.ConfigError, match="larger than the 50 training images"):
        config_lib.check_sizes(config, num_train=500, num_test=100)
