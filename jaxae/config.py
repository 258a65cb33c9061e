"""The experiment config every `configs/*.py` starts from, and its validation.

Validation runs before any data is loaded or anything is compiled, so a wrong flag costs
a second and a one-line message that names the field and a valid choice.
"""

from __future__ import annotations

import math

import ml_collections
from ml_collections import config_dict

from jaxae import conv, initializers, precision
from jaxae.data import DATASET_NAMES
from jaxae.models import MODEL_NAMES

CORRUPTIONS = ("none", "dropout", "gaussian")
BINARIZATIONS = ("none", "static", "dynamic")
OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("constant", "cosine")
LIKELIHOODS = ("bernoulli", "gaussian")


class ConfigError(ValueError):
    """A config field has a value that cannot work; the message names the field and the fix."""


def base_config() -> ml_collections.ConfigDict:
    """Defaults: the material's dense autoencoder, d=10, MSE, on Fashion-MNIST."""
    c = ml_collections.ConfigDict()
    # Model.
    c.model = "dense_ae"  # one of: dense_ae, deep_ae, conv_ae, superres.
    c.latent_dim = 10  # code size (conv_ae fixes it at 4x4x8 = 128; superres has none).
    c.conv = "patches"  # convolutions as patches + matmul (fast on CPU) or "xla" (see conv.py).
    c.compute_dtype = "float32"  # or "bfloat16": training's Dense matmuls (see precision.py).
    c.init = "glorot"  # initial weights: "glorot" (Keras, the material's), "torch" or "lecun".
    # Dense AE, Fashion-MNIST, test MSE after 1 epoch: glorot 0.036, torch 0.057, lecun 0.066.
    c.superres_factor = 2  # superres: input is the image average-pooled by 2 (14x14) or 4 (7x7).
    # Objective.
    c.loss = "mse"  # reconstruction loss on sigmoid(logits): "mse", or "bce" (with logits).
    c.corruption = "none"  # denoising input corruption: "none", "dropout" or "gaussian".
    c.dropout_rate = 0.5  # dropout corruption: probability that a pixel is set to 0.
    c.dropout_rescale = False  # dropout corruption: also divide kept pixels by (1 - rate).
    c.noise_std = 0.3  # gaussian corruption: std of the additive noise (result clipped to [0, 1]).
    c.binarize = "none"  # Bernoulli targets: "none", "static" (one fixed draw) or "dynamic".
    # Variational models (vae, conv_vae, cvae): minimise -ELBO = -log p(x|z) + beta * KL.
    c.likelihood = "bernoulli"  # p(x|z): "bernoulli" (BCE, nats) or "gaussian" (MSE-like).
    c.gaussian_scale = 0.1  # gaussian likelihood: the pixels' standard deviation.
    c.beta = 1.0  # weight of the KL term (1 = the plain VAE; the reported ELBO always uses 1).
    # Data.
    c.dataset = "fashion_mnist"  # "fashion_mnist" or "mnist" (TFDS, or local IDX files).
    c.data_dir = config_dict.placeholder(str)  # folder of the 4 IDX .gz files (offline path).
    c.tfds_dir = config_dict.placeholder(str)  # TFDS data dir; default: TFDS's own.
    c.train_size = config_dict.placeholder(int)  # use only the first N training images.
    c.test_size = config_dict.placeholder(int)  # use only the first N test images.
    c.val_size = 0  # images carved (deterministically) from the training split for validation.
    # Optimisation.
    c.optimizer = "adam"  # "adam", "adamw" or "sgd" (Optax).
    c.learning_rate = 1e-3
    c.lr_schedule = "constant"  # "constant", or "cosine": decayed to 0 over the run's steps.
    c.batch_size = 128
    c.num_epochs = 10  # training length, in epochs of floor(train_size / batch_size) steps.
    c.seed = 0  # the one seed every PRNG key (init, data order, corruption) derives from.
    # Evaluation, logging and checkpoints.
    c.eval_batch_size = 1000
    c.log_every_steps = 100  # training metrics to stdout / metrics.jsonl every N steps.
    c.checkpoint_every_epochs = 1  # save a checkpoint every N epochs (and always at the end).
    c.checkpoint_every_steps = config_dict.placeholder(int)  # also save every N steps.
    c.keep_checkpoints = 3  # keep the newest N checkpoints.
    c.stop_after_steps = config_dict.placeholder(int)  # stop early (with a checkpoint) at this
    # step; rerunning the same command, without it, resumes there (time-limited jobs).
    c.num_images = 10  # evaluation: columns in the reconstruction picture.
    c.iwae_samples = (1, 50, 1000)  # VAEs: importance samples k of each IWAE bound reported.
    c.iwae_images = 1000  # VAEs: test images the IWAE bounds average over (cost grows with k).
    c.iwae_chunk = 50  # VAEs: samples decoded at once; bounds the memory of large k.
    c.manifold_size = 15  # 2-D latents: decoded images per side of the manifold grid.
    return c


# Fields that fix parameter shapes, the optimiser state's structure or the data a run trains
# on: resuming a workdir with different values would load a checkpoint that does not belong
# to the config.
RUN_DEFINING_FIELDS = ("model", "latent_dim", "superres_factor", "dataset", "seed",
                       "lr_schedule")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _choice(config: ml_collections.ConfigDict, field: str, choices: tuple[str, ...]) -> None:
    value = config[field]
    _require(value in choices, f"config.{field}={value!r} is unknown: choose one of "
             f"{', '.join(choices)}")


def _positive_int(config: ml_collections.ConfigDict, field: str) -> None:
    value = config[field]
    _require(_is_int(value) and value > 0,
             f"config.{field}={value!r} must be a positive integer, e.g. --config.{field}=10")


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError with a one-line message for the first field that cannot work."""
    _choice(config, "model", MODEL_NAMES)
    _choice(config, "dataset", DATASET_NAMES)
    _choice(config, "loss", ("mse", "bce"))
    _choice(config, "corruption", CORRUPTIONS)
    _choice(config, "binarize", BINARIZATIONS)
    _choice(config, "optimizer", OPTIMIZERS)
    _choice(config, "lr_schedule", LR_SCHEDULES)
    _choice(config, "likelihood", LIKELIHOODS)
    _choice(config, "init", initializers.SCHEMES)
    _choice(config, "conv", conv.IMPLEMENTATIONS)
    _choice(config, "compute_dtype", precision.COMPUTE_DTYPES)
    for field in ("latent_dim", "batch_size", "num_epochs", "eval_batch_size",
                  "log_every_steps", "checkpoint_every_epochs", "keep_checkpoints", "num_images",
                  "iwae_images", "iwae_chunk", "manifold_size"):
        _positive_int(config, field)
    for field in ("train_size", "test_size", "stop_after_steps", "checkpoint_every_steps"):
        if config[field] is not None:
            _positive_int(config, field)
    _require(_is_int(config.val_size) and config.val_size >= 0,
             f"config.val_size={config.val_size!r} must be an integer >= 0")
    _require(_is_int(config.seed), f"config.seed={config.seed!r} must be an integer")
    lr = config.learning_rate
    _require(isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0,
             f"config.learning_rate={lr!r} must be a positive number, e.g. 1e-3")
    rate = config.dropout_rate
    _require(isinstance(rate, (int, float)) and 0 <= rate < 1,
             f"config.dropout_rate={rate!r} must lie in [0, 1), e.g. 0.5")
    std = config.noise_std
    _require(isinstance(std, (int, float)) and std >= 0,
             f"config.noise_std={std!r} must be >= 0, e.g. 0.3")
    _require(isinstance(config.beta, (int, float)) and config.beta >= 0,
             f"config.beta={config.beta!r} must be >= 0 (1 is the plain VAE)")
    scale = config.gaussian_scale
    _require(isinstance(scale, (int, float)) and scale > 0,
             f"config.gaussian_scale={scale!r} must be > 0, e.g. 0.1")
    ks = config.iwae_samples
    valid_ks = isinstance(ks, (tuple, list)) and all(_is_int(k) and k > 0 for k in ks)
    _require(valid_ks and len(ks) > 0,
             f"config.iwae_samples={ks!r} must be positive integers, e.g. '(1, 50, 1000)'")
    factor = config.superres_factor
    _require(_is_int(factor) and factor in (2, 4),
             f"config.superres_factor={factor!r} must be 2 (14x14 input) or 4 (7x7 input): "
             "factors that divide 28 and that the network's x2 stages reach")


def check_batch_splits(config: ml_collections.ConfigDict, num_devices: int) -> None:
    """The batch is split evenly over the devices of the data-parallel mesh."""
    size = config.batch_size
    _require(size % num_devices == 0,
             f"config.batch_size={size} does not split over {num_devices} devices: use a "
             f"multiple of {num_devices}, e.g. --config.batch_size="
             f"{max(num_devices, size // num_devices * num_devices)}")


def check_sizes(config: ml_collections.ConfigDict, num_train: int, num_test: int) -> None:
    """Checks batch and split sizes against the data actually loaded, before compiling."""
    _require(config.val_size < num_train,
             f"config.val_size={config.val_size} leaves no training images out of {num_train}")
    usable = num_train - config.val_size
    _require(config.batch_size <= usable,
             f"config.batch_size={config.batch_size} is larger than the {usable} training "
             f"images: use --config.batch_size={min(128, usable)} or more data")
    _require(num_test > 0, "the test split is empty: check config.test_size")
