"""The experiment config every `configs/*.py` starts from, in sections, and its validation.

    config.model      the model: its registered name and its own fields
    config.data       which images, how many, and where they come from
    config.task       what is learned from what: reconstruct, denoise, superresolve
    config.objective  the loss of plain autoencoders, the likelihood and beta of VAEs
    config.optim      the Optax optimiser and learning rate
    config.train      batch size, length, precision, logging and checkpoints
    config.eval       what evaluate.py measures and draws
    config.seed       the one seed every PRNG key derives from

Validation runs before any data is loaded or anything is compiled, so a wrong value costs a
second and a one-line message naming the field and a fix. The top level is locked (a field a
config file misspells is an error at load); the model, task, objective and data sections are
open for the fields of one's own entries (a data set's loader's too), and a field no entry
declares is an error too.
A field that may be left unset (a placeholder: data.train_size, train.stop_after_steps, ...)
is unset again from the command line with `--config.FIELD=None`.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any, NamedTuple

import jax
import ml_collections
from ml_collections import config_dict

from jaxae import objectives, optimizers
from jaxae.data import DATASETS
from jaxae.data.dataset import STREAMING_MODES, declared_paths, declared_unset_values
from jaxae.data.splits import BINARIZATIONS, SUBSETS
from jaxae.kernels import conv, precision
from jaxae.keys import SEED_RANGE
from jaxae.models.initializers import SCHEMES
from jaxae.models.registry import BUILDER_OPTIONS, MODELS, settable_fields
from jaxae.optimizers import OPTIMIZERS, SCHEDULES, spans_run
from jaxae.registry import Entry, Registry, RegistryError, build, check_options, parameters
from jaxae.tasks import TASKS, Task

FLOAT32_MAX = 3.4028234663852886e38  # training computes in float32: larger numbers are inf


class ConfigError(ValueError):
    """A config field has a value that cannot work; the message names the field and the fix."""


# the objective's fields a VAE reads besides its likelihood's own (a plain AE reads `loss`)
ELBO_FIELDS = ("loss", "likelihood", "beta", "beta_warmup_steps")


class CodeField(NamedTuple):
    """A config field that names code: a registered name, 'module:attr' or 'file.py:attr'."""

    section: str
    field: str
    registry: Registry

    @property
    def path(self) -> str:
        return f"{self.section}.{self.field}"


# every field that names code: a run records each as another process finds it again
# (workdir.recorded_config), so evaluate.py reloads a run of one's own model, task, loss,
# likelihood or data set with nothing imported by hand
CODE_FIELDS = (CodeField("model", "name", MODELS), CodeField("task", "name", TASKS),
               CodeField("objective", "loss", objectives.LOSSES),
               CodeField("objective", "likelihood", objectives.LIKELIHOODS),
               CodeField("data", "name", DATASETS))


def base_config() -> ml_collections.ConfigDict:
    """Defaults: the material's dense autoencoder, d=10, MSE, on Fashion-MNIST."""
    c = ml_collections.ConfigDict()
    c.seed = 0  # every PRNG key (init, data order, corruption, sampling) derives from it
    c.model = ml_collections.ConfigDict({
        "name": "dense_ae",  # a registered model (jaxae.models) or "file.py:Class"
        "latent_dim": 10,  # code size, for the models that have one of free size
        "init": "glorot",  # initial weights: "glorot" (Keras, the material's), "torch", "lecun"
    })  # conv models also take conv="patches" or "xla" (jaxae.kernels.conv) and their fields
    c.data = ml_collections.ConfigDict({
        "name": "fashion_mnist",  # a registered data set (jaxae.data) or a TFDS name
        "data_dir": config_dict.placeholder(str),  # offline files: 4 IDX .gz or CIFAR-10's
        "tfds_dir": config_dict.placeholder(str),  # TFDS data dir; default: TFDS's own
        "path": config_dict.placeholder(str),  # npz: the file of arrays; folder: the folder
        # folder without test/: the share of each class held out for testing, in (0, 1)
        # (None: 0.2), by a fixed carve of its files, the same for every seed (a data set's
        # own split)
        "test_fraction": config_dict.placeholder(float),
        "image_size": config_dict.placeholder(int),  # resize + centre-crop to SxS (None: as is)
        "channels": config_dict.placeholder(int),  # 1 (grey) or 3 (RGB) (None: as stored)
        "train_size": config_dict.placeholder(int),  # use only N training images
        "test_size": config_dict.placeholder(int),  # use only N test images
        "subset": "first",  # which N: the "first" (stored order) or "random" (drawn from the
        # seed's data key: runs of other seeds train and are scored on other images)
        "val_size": 0,  # images carved from the training split, drawn from the seed's data key
        "binarize": "none",  # Bernoulli targets: "static" (one fixed draw) or "dynamic"
        # (each step's own); the static draw, the test split's too, follows the seed, so
        # runs of other seeds are scored on other draws of the same test images
        "streaming": "auto",  # "memory", "stream" (Grain), or "auto": stream what exceeds
        # the device memory the training images may take: whole, or else a streamed chunk
        # of batches at a time (one batch at least)
        "memory_budget_mb": 2048,  # MiB: that memory (and a streamed chunk's most)
    })
    c.task = ml_collections.ConfigDict({
        "name": "reconstruct",  # "reconstruct", "denoise" or "superresolve" (jaxae.tasks)
        "corruption": "dropout",  # denoise: "dropout" or "gaussian"
        "dropout_rate": 0.5,  # denoise, dropout: probability that a pixel value is set to 0
        "dropout_rescale": False,  # denoise, dropout: also divide kept pixels by (1 - rate)
        "noise_std": 0.3,  # denoise, gaussian: std of the additive noise (clipped to [0, 1])
        "factor": 2,  # superresolve: the input is the image average-pooled by this factor
    })
    c.objective = ml_collections.ConfigDict({
        "loss": "mse",  # plain autoencoders, mean per pixel on sigmoid(logits): "mse", "bce"
        "likelihood": "bernoulli",  # VAEs, p(x|z): "bernoulli" (BCE, nats; a surrogate on
        # grey pixels, see objectives.Bernoulli) or "gaussian"
        "gaussian_scale": 0.1,  # gaussian likelihood: the pixels' standard deviation
        "beta": 1.0,  # VAEs: weight of the KL term (the reported ELBO always uses 1)
        "beta_warmup_steps": 0,  # VAEs: KL annealing, beta rising linearly from 0 over the
        # first N steps (0: beta from the first step)
    })
    c.optim = ml_collections.ConfigDict({
        "name": "adam",  # "adam", "adamw" or "sgd" (Optax's; sgd without momentum)
        "learning_rate": 1e-3,  # a resume may change it; under cosine it then scales the
        # rest of the curve, from the resume's step on
        "schedule": "constant",  # "constant", or "cosine": decayed to 0 over the run's steps
        "weight_decay": config_dict.placeholder(float),  # adamw's decoupled weight decay, on
        # every parameter (unset: Optax's default, 1e-4); adam and sgd take none
    })
    c.train = ml_collections.ConfigDict({
        "batch_size": 128,  # global: split evenly over all devices (docs/devices.md)
        "num_epochs": 10,  # epochs of floor(train images / batch_size) steps: an epoch leaves
        # out the last (train images mod batch_size) of its shuffle, other ones each epoch
        "compute_dtype": "float32",  # or "bfloat16": Dense and Conv matmuls (kernels.precision)
        "log_every_steps": 100,  # training metrics (stdout, metrics.jsonl): every N steps and
        # at each epoch's end; train_loss is the step's batch mean before its update,
        # train_grad_norm the global L2 norm of that loss's gradient (nothing clips it). The
        # steps between run as compiled chunks of at most about 5 s (trainer.CHUNK_SECONDS): a
        # stop (Ctrl-C, SIGTERM, SIGUSR1) is taken at a chunk's end
        "checkpoint_every_epochs": 1,  # a checkpoint every N epochs (and always at the end)
        "checkpoint_every_steps": config_dict.placeholder(int),  # and also every N steps
        "keep_checkpoints": 3,  # keep the newest N checkpoints
        "stop_after_steps": config_dict.placeholder(int),  # stop early (with a checkpoint)
    })  # at that step; rerunning the same command without it resumes there
    # evaluation draws its noise (a task's corruption, a VAE's z, dynamic binarisation's
    # targets) per batch of batch_size, and the IWAE samples per chunk of iwae_chunk: the
    # same settings give the same bits, other settings other draws (a stochastic figure
    # moves within its noise); metrics.json records both
    c.eval = ml_collections.ConfigDict({
        "batch_size": 1000,
        "every_steps": config_dict.placeholder(int),  # also evaluate every N steps (long epochs)
        "num_images": 10,  # columns of the reconstruction and sample pictures
        "iwae_samples": (1, 50, 1000),  # VAEs: importance samples k of each IWAE bound
        "iwae_images": 1000,  # VAEs: test images the IWAE bounds average over
        "iwae_chunk": 50,  # VAEs: samples drawn at a time; their decodes' memory, not speed
        "manifold_size": 15,  # 2-D latents: decoded images per side of the manifold grid
    })
    c.lock()
    for open_section in ("model", "task", "objective", "data"):  # fields of one's own entries
        c[open_section].unlock()
    return c


SECTIONS = ("model", "data", "task", "objective", "optim", "train", "eval")
# The flat fields of jaxae 0.1's config, and where each lives now.
MOVED_FIELDS = {
    "model": "model.name", "latent_dim": "model.latent_dim", "conv": "model.conv",
    "init": "model.init", "superres_factor": "task.factor", "compute_dtype": "train.compute_dtype",
    "loss": "objective.loss", "corruption": "task.corruption",
    "dropout_rate": "task.dropout_rate", "dropout_rescale": "task.dropout_rescale",
    "noise_std": "task.noise_std", "binarize": "data.binarize",
    "likelihood": "objective.likelihood", "gaussian_scale": "objective.gaussian_scale",
    "beta": "objective.beta", "dataset": "data.name", "data_dir": "data.data_dir",
    "tfds_dir": "data.tfds_dir", "train_size": "data.train_size", "test_size": "data.test_size",
    "val_size": "data.val_size", "optimizer": "optim.name", "learning_rate": "optim.learning_rate",
    "lr_schedule": "optim.schedule", "batch_size": "train.batch_size",
    "num_epochs": "train.num_epochs", "log_every_steps": "train.log_every_steps",
    "checkpoint_every_epochs": "train.checkpoint_every_epochs",
    "checkpoint_every_steps": "train.checkpoint_every_steps",
    "keep_checkpoints": "train.keep_checkpoints", "stop_after_steps": "train.stop_after_steps",
    "eval_batch_size": "eval.batch_size", "num_images": "eval.num_images",
    "iwae_samples": "eval.iwae_samples", "iwae_images": "eval.iwae_images",
    "iwae_chunk": "eval.iwae_chunk", "manifold_size": "eval.manifold_size",
}


def _abbreviated(path: str, known: list[str]) -> list[str]:
    """The one known field that `path` abbreviates by its words' initials ("optim.lr":
    optim.learning_rate, "train.bs": train.batch_size), within the section where given."""
    section, _, name = path.rpartition(".")
    found = [k for k in known if (not section or k.startswith(f"{section}."))
             and len(name) > 1 and "".join(w[0] for w in k.split(".")[-1].split("_")) == name]
    return found if len(found) == 1 else []


def is_field(path: str) -> bool:
    """Whether `path` ("model.latent_dim", "seed") is a field of the base config."""
    section, _, field = path.partition(".")
    if section in SECTIONS:
        return field in base_config()[section]
    return path in base_config()  # a top-level field: seed


def field_hint(path: str) -> str:
    """For a field that does not exist ("latent_dim", "model.latnt_dim"): where it moved or
    the closest real field, as a hint; '' if nothing is close."""
    head = path.split(".")[-1] if path.startswith(tuple(f"{s}." for s in SECTIONS)) else path
    if path in MOVED_FIELDS:
        return f"it moved to config.{MOVED_FIELDS[path]}"
    known = [f"{s}.{k}" for s in SECTIONS for k in base_config()[s]] + ["seed"]
    close = difflib.get_close_matches(path, known, n=1, cutoff=0.7) or \
        difflib.get_close_matches(head, [k.split(".")[-1] for k in known], n=1) or \
        _abbreviated(path, known)
    if close and "." not in close[0]:
        close = [k for k in known if k.endswith(f".{close[0]}")][:1] or close
    if close:
        return f"did you mean config.{close[0]}?"
    # the fixed sections' fields; a model's, task's, data set's or likelihood's are its own,
    # which their errors list
    section = path.split(".")[0]
    if section in ("optim", "train", "eval") and "." in path:
        return f"config.{section}'s fields are {', '.join(sorted(base_config()[section]))}"
    return ""


# Resuming a workdir continues its run: the config must agree with the run's config.json on
# every field that decides what the steps compute, on which images, in which order, from
# which parameters. These fields, and only these, may change when a run is resumed:
RESUMABLE_FIELDS = (
    "train.num_epochs",  # how long it runs (not under a schedule spanning the run: below)
    "train.stop_after_steps",
    "train.log_every_steps",  # how it logs and saves (chunks of any length give the same bits)
    "train.checkpoint_every_epochs",
    "train.checkpoint_every_steps",
    "train.keep_checkpoints",
    "optim.learning_rate",  # the fix a diverged run's error suggests
    "model.conv",  # the two convolution implementations share their parameters
    "data.data_dir",  # where the same images are found
    "data.path",  # a folder's or npz's new place: its images' fingerprint must match
    "data.tfds_dir",
    "data.streaming",  # the two paths give the same batches in the same order
    "data.memory_budget_mb",
    "eval",  # the whole section: what evaluate.py measures and draws
)
# Every other field is run-defining, fields added later included; under a schedule that
# decays over the run's total steps (`optimizers.Schedule.spans_run`: "cosine") so is
# train.num_epochs.


def _flat(tree: dict, prefix: str = "") -> dict[str, object]:
    """{'model.latent_dim': 10, 'seed': 0, ...} of a config's JSON form."""
    out = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{path}."))
        else:
            out[path] = value
    return out


def _unset_values(data_name: object) -> dict[str, Any]:
    """What the data set `data_name` names makes of its fields left unset (its loader's
    `unset_means`); none for a name no loader has."""
    loader = _named_loader(data_name)
    return {} if loader is None else declared_unset_values(loader)


def _named_loader(data_name: object) -> Entry | None:
    """The loader a registered name or a 'file.py:function' / 'module:function' names; None
    for a TFDS name (its loader declares nothing) and a name that finds nothing (its own
    error comes from `validate`)."""
    if not isinstance(data_name, str) or \
            (data_name not in DATASETS.names() and ":" not in data_name):
        return None
    try:
        return DATASETS.get(data_name)
    except (RegistryError, ImportError, OSError):
        return None


def is_resumable(path: str, schedule: str = "constant") -> bool:
    """Whether a resumed run may change the field at `path` (see RESUMABLE_FIELDS)."""
    if path == "train.num_epochs" and schedule in SCHEDULES and spans_run(schedule):
        return False
    return any(path == f or path.startswith(f"{f}.") for f in RESUMABLE_FIELDS)


def _differences(saved: dict, ours: dict) -> Iterator[tuple[str, object, object, bool]]:
    """(field, the saved run's value, ours, whether a resume may change it) of every field on
    which two configs in JSON form differ, run-defining sections first and names first in
    each. A field the saved run does not have (added since) counts with its default (a
    model's fields with None: they are the model's own)."""
    defaults = _flat(json.loads(base_config().to_json_best_effort()))
    old, new = _flat(saved), _flat(ours)
    meant = {f"data.{field}": value  # an unset field and what its loader makes of it
             for field, value in _unset_values(new.get("data.name")).items()}
    schedule = new.get("optim.schedule", "constant")
    order = {section: i for i, section in enumerate(("seed", *SECTIONS))}
    paths = sorted(old.keys() | new.keys(), key=lambda p: (
        order.get(p.split(".")[0], len(order)), not p.endswith(".name"), p))
    for path in paths:
        default = defaults.get(path) if not path.startswith("model.") else None
        value, wanted = old.get(path, default), new.get(path, default)
        if path in meant:
            value, wanted = (meant[path] if v is None else v for v in (value, wanted))
        if value != wanted:
            yield path, value, wanted, is_resumable(path, schedule)


def resumed_changes(saved: dict, ours: dict) -> dict[str, list]:
    """{field: [the saved run's value, ours]} of the fields a resumed run may change (its
    learning rate, how long it runs, logs, saves and evaluates, ...) on which two configs
    in JSON form differ."""
    return {path: [value, wanted]
            for path, value, wanted, resumable in _differences(saved, ours) if resumable}


def run_differences(saved: dict, ours: dict) -> list[tuple[str, object, object]]:
    """(field, the saved run's value, ours) of every run-defining field on which two configs
    in JSON form (config.json's, and this run's) differ; empty if they agree."""
    return [(path, value, wanted)
            for path, value, wanted, resumable in _differences(saved, ours) if not resumable]


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def _choice(config: ml_collections.ConfigDict, path: str, choices: Collection[str]) -> None:
    value = get(config, path)
    _require(value in choices, f"config.{path}={value!r} is unknown: choose one of "
             f"{', '.join(choices)}")


def _positive_int(config: ml_collections.ConfigDict, path: str, optional: bool = False
                  ) -> None:
    value = get(config, path)
    if optional and value is None:
        return
    _require(_is_int(value) and value > 0,
             f"config.{path}={value!r} must be a positive integer, e.g. --config.{path}=10")


def get(config: ml_collections.ConfigDict, path: str) -> Any:
    """config["a.b"] for a dotted path."""
    node = config
    for part in path.split("."):
        node = node[part]
    return node


def _entry(registry, section: str, name: str):
    try:
        return registry.get(name)
    except RegistryError as e:
        raise ConfigError(f"config.{section}: {e}") from None


def _checked_entry(registry, config: ml_collections.ConfigDict, section: str, field: str,
                   reserved: tuple[str, ...],
                   listed: Callable[[Any], list[str]] | None = None, fix: str = ""):
    """The entry config.<section>.<field> names, after checking that every field of the
    section is the entry's own or one of the base config's (an error lists `listed(entry)`,
    default the entry's declared fields, then `fix`)."""
    name = config[section][field]
    entry = _entry(registry, f"{section}.{field}", name)
    options = [k for k in config[section].keys() if k not in reserved]
    try:
        check_options(entry, options, [*base_config()[section].keys(), *reserved], section,
                      f"{registry.kind} {name!r}", listed=listed(entry) if listed else None,
                      fix=fix.format(name=name))
    except RegistryError as e:
        raise ConfigError(str(e)) from None
    return entry


def _construct(entry, options, section: str):
    """entry(**options it declares); its own ValueError ("field=value must ...") becomes a
    ConfigError naming the config field."""
    try:
        return build(entry, options)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"config.{section}.{e}") from None


# a task's fields given from other sections, never from config.task
TASK_FROM_DATA = {"binarize_targets": "config.data.binarize (dynamic: binarised at every step)"}


def make_task(config: ml_collections.ConfigDict) -> Task:
    """The task config.task names, with its fields (and dynamic binarisation from data)."""
    for field, where in TASK_FROM_DATA.items():
        _require(field not in config.task, f"config.task.{field} is set, but a task's {field} "
                 f"follows {where}: leave task.{field} unset")
    entry = _checked_entry(TASKS, config, "task", "name", ("name",),  # (not the data's)
                           listed=lambda e: sorted(set(parameters(e)) - set(TASK_FROM_DATA)))
    options = {k: v for k, v in config.task.items() if k != "name"}
    options["binarize_targets"] = config.data.binarize == "dynamic"
    return _construct(entry, options, "task")


def make_loss(config: ml_collections.ConfigDict) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """A plain autoencoder's per-image loss function, config.objective.loss."""
    return _entry(objectives.LOSSES, "objective.loss", config.objective.loss)


def make_likelihood(config: ml_collections.ConfigDict) -> objectives.Likelihood:
    """A VAE's likelihood, config.objective.likelihood, with the fields it declares."""
    entry = _checked_entry(objectives.LIKELIHOODS, config, "objective", "likelihood",
                           ELBO_FIELDS)
    return _construct(entry, config.objective, "objective")


def fill_defaults(config: ml_collections.ConfigDict) -> None:
    """Gives a section given whole (`--config.objective="{'likelihood': 'gaussian'}"`) the
    base config's value of each field it leaves out, in place; not the model's or the task's
    section, whose fields are their entry's own (its defaults apply)."""
    base = base_config()
    for section in SECTIONS:
        if section in ("model", "task") or not isinstance(config.get(section),
                                                           ml_collections.ConfigDict):
            continue
        missing = [f for f in base[section] if f not in config[section]]
        if missing:
            with config[section].unlocked():
                for field in missing:
                    config[section][field] = base[section][field]


def require_32_bits() -> None:
    """Raises ConfigError where this process runs JAX in 64 bits (jax_enable_x64, set by a
    notebook's cell or JAX_ENABLE_X64): a run's programs, bits and checkpoints (an int32
    step) are 32-bit ones, and a 64-bit run's would repeat no seeded run nor fit one."""
    _require(not jax.config.jax_enable_x64,
             "jax_enable_x64 is on in this process: jaxae runs in 32 bits (its seeded bits and "
             "checkpoints are 32-bit ones); turn it off with jax.config.update("
             "'jax_enable_x64', False), or unset JAX_ENABLE_X64")


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError with a one-line message for the first field that cannot work (and
    where the process runs JAX in 64 bits: `require_32_bits`)."""
    require_32_bits()
    missing = [s for s in SECTIONS if s not in config]
    _require(not missing, f"the config has no section {', '.join(missing)}: start it from "
             "jaxae.config.base_config()")
    seed = config.seed
    _require(_is_int(seed) and SEED_RANGE[0] <= seed <= SEED_RANGE[1],
             f"config.seed={seed!r} must be an integer in [{SEED_RANGE[0]}, {SEED_RANGE[1]}] "
             "(the PRNG key holds 32 bits: larger seeds would repeat smaller ones)")
    # --config.model.name=OTHER keeps the file's other model fields: the fix replaces them all
    _checked_entry(MODELS, config, "model", "name", BUILDER_OPTIONS, listed=settable_fields,
                   fix="; if --config.model.name switched to it from another model's "
                       "section, give the whole section instead: "
                       "--config.model=\"{{'name': '{name}'}}\"")
    if "init" in config.model:
        _choice(config, "model.init", SCHEMES)
    if "conv" in config.model:
        _choice(config, "model.conv", conv.IMPLEMENTATIONS)
    if "latent_dim" in config.model:
        _positive_int(config, "model.latent_dim")
    _validate_data(config)
    make_task(config)
    make_loss(config)
    make_likelihood(config)
    beta = config.objective.beta
    _require(_is_number(beta) and beta >= 0,
             f"config.objective.beta={beta!r} must be >= 0 (1 is the plain VAE)")
    _require(beta <= FLOAT32_MAX, f"config.objective.beta={beta!r} is beyond float32's range "
             f"(at most {FLOAT32_MAX:.3g}), in which training computes: 1 is the plain VAE")
    warmup = config.objective.get("beta_warmup_steps", 0)
    _require(_is_int(warmup) and warmup >= 0,
             f"config.objective.beta_warmup_steps={warmup!r} must be a whole number of steps "
             ">= 0 (0: beta from the first step)")
    _choice(config, "optim.name", tuple(OPTIMIZERS))
    _choice(config, "optim.schedule", tuple(SCHEDULES))
    lr = config.optim.learning_rate
    _require(_is_number(lr) and 0 < lr <= FLOAT32_MAX,
             f"config.optim.learning_rate={lr!r} must be a positive number within float32's "
             "range, e.g. 1e-3")
    decay = config.optim.get("weight_decay")
    if decay is not None:
        _require(_is_number(decay) and 0 <= decay <= FLOAT32_MAX,
                 f"config.optim.weight_decay={decay!r} must be a number >= 0, e.g. 0.01")
        takes = optimizers.taking("weight_decay")
        _require(config.optim.name in takes,
                 f"config.optim.weight_decay={decay!r} is an option of {', '.join(takes)}, and "
                 f"{config.optim.name} takes none: use --config.optim.name={takes[0]}, or leave "
                 "weight_decay unset")
    _choice(config, "train.compute_dtype", precision.COMPUTE_DTYPES)
    for field in ("batch_size", "num_epochs", "log_every_steps", "checkpoint_every_epochs",
                  "keep_checkpoints"):
        _positive_int(config, f"train.{field}")
    for field in ("checkpoint_every_steps", "stop_after_steps"):
        _positive_int(config, f"train.{field}", optional=True)
    for field in ("batch_size", "num_images", "iwae_images", "iwae_chunk", "manifold_size"):
        _positive_int(config, f"eval.{field}")
    _require(config.eval.manifold_size >= 2,  # one image spans no range of the latent
             f"config.eval.manifold_size={config.eval.manifold_size!r} must be at least 2 (a "
             "grid of that many images per side), e.g. --config.eval.manifold_size=15")
    _positive_int(config, "eval.every_steps", optional=True)
    ks = config.eval.iwae_samples
    valid_ks = isinstance(ks, (tuple, list)) and all(_is_int(k) and k > 0 for k in ks)
    _require(valid_ks and len(ks) > 0,
             f"config.eval.iwae_samples={ks!r} must be positive integers, e.g. '(1, 50, 1000)'")


def _validate_data(config: ml_collections.ConfigDict) -> None:
    try:
        loader = DATASETS.get(config.data.name)
    except RegistryError as e:
        raise ConfigError(f"config.data.name: {e}") from None
    takes = parameters(loader)
    _check_read_locations(config.data, takes)
    known = set(base_config().data) | set(takes)
    for field in config.data:
        if field not in known:
            close = difflib.get_close_matches(field, sorted(known), n=1)
            raise ConfigError(
                f"config.data.{field} is neither a field of config.data nor one the data set "
                f"{config.data.name!r} reads: " + (f"did you mean {close[0]!r}? " if close
                                                   else "")
                + f"the data set reads {', '.join(sorted(takes)) or 'none'}")
    _choice(config, "data.binarize", BINARIZATIONS)
    _choice(config, "data.subset", SUBSETS)
    for field in ("train_size", "test_size"):
        _positive_int(config, f"data.{field}", optional=True)
    val = config.data.val_size
    _require(_is_int(val) and val >= 0, f"config.data.val_size={val!r} must be an integer >= 0")
    fraction = config.data.test_fraction
    _require(fraction is None or (_is_number(fraction) and 0 < fraction < 1),
             f"config.data.test_fraction={fraction!r} must lie in (0, 1), e.g. 0.2: the share "
             "of each class held out for testing")
    _choice(config, "data.streaming", STREAMING_MODES)
    _positive_int(config, "data.image_size", optional=True)
    _positive_int(config, "data.memory_budget_mb")
    channels = config.data.channels
    _require(channels in (None, 1, 3),
             f"config.data.channels={channels!r} must be 1 (grey) or 3 (RGB), or unset")


def loader_takes(data: ml_collections.ConfigDict, field: str) -> bool:
    """Whether config.data's loader (`data.name`'s) takes the field `field`."""
    return field in parameters(DATASETS.get(data.name))


# fields of config.data that only a loader reads: every built-in one takes them, a loader of
# one's own may not (memory_budget_mb is the trainer's too: it sizes a streamed set's chunks)
LOADER_OPTIONS = ("image_size", "channels", "streaming")


def check_new_run(config: ml_collections.ConfigDict) -> None:
    """What `validate` leaves to a new run (a trained run's config.json is its record, read
    as it is): a latent_dim other than the base config's, for a model that takes none (no
    code, or one whose size follows from its other fields), would be ignored: the run would
    train another code than the one asked for; so would one of the LOADER_OPTIONS set for
    a loader (one's own) that does not take it: the run would train on other images."""
    data, defaults = config.data, base_config().data
    for field in LOADER_OPTIONS:
        if data.get(field) != defaults.get(field) and not loader_takes(data, field):
            raise ConfigError(
                f"config.data.{field}={data.get(field)!r} is set, but the {data.name} data "
                f"set's loader takes no {field}, so the run would ignore it: give the loader "
                f"the parameter {field}, or leave config.data.{field} unset")
    section, default = config.model, base_config().model.latent_dim
    model = _entry(MODELS, "model.name", section.name)
    if section.get("latent_dim", default) != default and "latent_dim" not in parameters(model):
        raise ConfigError(
            f"config.model.latent_dim={section.latent_dim!r} is set, but model "
            f"{section.name!r} takes no latent_dim (it has no code of a free size; its fields: "
            f"{', '.join(settable_fields(model))}): leave it unset, or choose a model that "
            "takes one")


def _check_read_locations(data: ml_collections.ConfigDict, takes: Mapping[str, Any]) -> None:
    """A data field of one kind of data set (`path`, `data_dir`, `test_fraction`) set for a
    data set whose loader does not take it would be ignored: the run would train on other
    images, or other splits, than the ones named."""
    name = data.name
    if data.get("path") is not None and "path" not in takes:
        raise ConfigError(
            f"config.data.path={data.path!r} is set, but the {name} data set reads no path: "
            "add --config.data.name=folder (a folder of images) or npz (a file of arrays) to "
            "train on it, or leave data.path unset")
    if data.get("test_fraction") is not None and "test_fraction" not in takes:
        raise ConfigError(f"config.data.test_fraction={data.test_fraction!r} is set, but the "
                          f"{name} data set has its own test split: leave it unset")
    if data.get("data_dir") is not None and "data_dir" not in takes:
        where = ("it reads config.data.path: give the folder or file there" if "path" in takes
                 else "leave data.data_dir unset (TFDS prepares it in config.data.tfds_dir)")
        raise ConfigError(f"config.data.data_dir={data.data_dir!r} is set, but the {name} data "
                          f"set reads no data_dir: {where}")


def data_path_kinds(config: ml_collections.ConfigDict) -> dict[str, str]:
    """{field of config.data: "file", "folder" or "file or folder"} for the fields that name
    something on disk: TFDS's data dir, and what the registered loader says it reads."""
    loader = _named_loader(config.data.name)
    declared = {} if loader is None else declared_paths(loader)
    return {"tfds_dir": "folder", **declared}


def expand_home(config: ml_collections.ConfigDict) -> None:
    """Makes a leading `~` of each data field that names something on disk (data_path_kinds)
    the user's home folder, as a shell would: `--config.data.path=~/photos` reaches Python
    unexpanded (the shell expands only a `~` that begins a word)."""
    for field in data_path_kinds(config):
        value = config.data.get(field)
        if isinstance(value, str) and value.startswith("~"):
            with config.data.unlocked():
                config.data[field] = os.path.expanduser(value)


def check_data_paths(config: ml_collections.ConfigDict) -> None:
    """The data's location fields that name something on disk name the right kind of thing:
    a file given where a folder is read (or the reverse) is named as such, not as missing.
    A path that does not exist is left to the loader (it may be prepared, or downloaded)."""
    for field, kind in data_path_kinds(config).items():
        path = config.data.get(field)
        if not path or not os.path.exists(path) or kind == "file or folder":
            continue
        if kind == "folder" and not os.path.isdir(path):
            raise ConfigError(
                f"config.data.{field}={path!r} is a file, not a folder: point it at the folder "
                + ("where prepared data sets are kept (TFDS's data dir)" if field == "tfds_dir"
                   else "that holds the data set's files")
                + (", or read the file with --config.data.name=npz"
                   if field == "path" and path.endswith(".npz") else ""))
        if kind == "file" and os.path.isdir(path):
            raise ConfigError(f"config.data.{field}={path!r} is a folder, not a file: point it "
                              f"at the {config.data.name} file itself")


def check_batch_splits(batch_size: int, num_devices: int, run_in: str | None = None) -> None:
    """The batch is split evenly over the devices of the data-parallel mesh; `run_in`: the
    workdir of the run being resumed, whose batch size is fixed."""
    if batch_size % num_devices == 0:
        return
    if run_in is not None:
        counts = [n for n in range(1, batch_size + 1) if batch_size % n == 0]
        near = sorted({max(n for n in counts if n < num_devices),
                       min((n for n in counts if n > num_devices), default=batch_size)})
        raise ConfigError(
            f"config.train.batch_size={batch_size} does not split over {num_devices} devices, "
            f"and the run in {run_in!r} trains with it: resume it on a device count that "
            f"divides {batch_size} (e.g. {' or '.join(map(str, near))}), or train a new run in "
            f"a new --workdir with a multiple of {num_devices}")
    raise ConfigError(
        f"config.train.batch_size={batch_size} does not split over {num_devices} devices: "
        f"use a multiple of {num_devices}, e.g. --config.train.batch_size="
        f"{max(num_devices, batch_size // num_devices * num_devices)}")


def check_batch_fits(config: ml_collections.ConfigDict, num_train: int, num_test: int,
                     num_devices: int = 1) -> None:
    """Checks the batch against the data actually loaded, before compiling: `num_train`
    training images (after the validation split; `make_splits` has checked the split
    sizes), `num_test` test images. A batch size it suggests splits over `num_devices`."""
    batch = config.train.batch_size
    fits = min(base_config().train.batch_size, num_train) // num_devices * num_devices
    _require(batch <= num_train,
             f"config.train.batch_size={batch} is larger than the {num_train} training images: "
             + (f"use --config.train.batch_size={fits} or more data" if fits else
                f"use more data: {num_devices} devices need a batch of {num_devices} or more"))
    _require(num_test > 0, "the test split is empty: check config.data.test_size")
