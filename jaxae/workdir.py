"""A run's folder: checks before writing to it, and the files that describe the run."""

from __future__ import annotations

import importlib
import json
import os
import platform
import subprocess

import jax
import ml_collections

import jaxae
from jaxae import config as config_lib

CONFIG_FILE = "config.json"
ENVIRONMENT_FILE = "environment.json"


def prepare_workdir(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Creates the workdir and checks that a run already in it was made by this config."""
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, f".write_test.{os.getpid()}")  # one per process
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise config_lib.ConfigError(
            f"workdir {workdir!r} cannot be written ({e.strerror}): pass a --workdir you can "
            "write to") from None
    path = os.path.join(workdir, CONFIG_FILE)
    if os.path.exists(path):
        saved = _read_json(path, "delete it: this run writes it again")
        defaults = config_lib.base_config()  # fields added since the run was written
        for field in config_lib.RUN_DEFINING_FIELDS:
            value = saved.get(field, defaults[field])
            if value != config[field]:
                raise config_lib.ConfigError(
                    f"workdir {workdir!r} holds a run with {field}={value!r}, but the "
                    f"config says {config[field]!r}: use a new --workdir, or the same {field}")


def write_run_files(workdir: str, config: ml_collections.ConfigDict) -> None:
    """config.json and environment.json: everything a rerun needs to repeat this run."""
    _write_whole(os.path.join(workdir, CONFIG_FILE),
                 config.to_json_best_effort(indent=2, sort_keys=True) + "\n")
    environment = {
        "jaxae": jaxae.__version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "devices": [str(d) for d in jax.devices()],
        "platform": platform.platform(),
    }
    for module in ("flax", "optax", "orbax.checkpoint", "numpy", "tensorflow_datasets"):
        environment[module] = _version_of(module)
    _write_whole(os.path.join(workdir, ENVIRONMENT_FILE), json.dumps(environment, indent=2))


def _write_whole(path: str, text: str) -> None:
    """Writes a file whole or not at all: a run killed meanwhile leaves the previous one."""
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def _read_json(path: str, fix: str) -> dict:
    """A JSON file of the workdir; a damaged one is a one-line ConfigError with the fix."""
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise config_lib.ConfigError(f"{path} is damaged ({e}): {fix}") from None


def _version_of(module: str) -> str:
    return getattr(importlib.import_module(module), "__version__", "unknown")


def git_commit() -> str:
    """The commit of the jaxae checkout, with '+dirty' for uncommitted changes; '' if none."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()

    try:
        return git("rev-parse", "HEAD") + ("+dirty" if git("status", "--porcelain") else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a workdir's run was trained with (its config.json), validated."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{workdir!r} holds no run ({CONFIG_FILE} is missing): train one first with "
            f"python train.py --config=configs/default.py --workdir={workdir}")
    config = config_lib.base_config()
    config.update_from_flattened_dict(_flatten(_read_json(
        path, "rerun python train.py with this --workdir and the run's flags to write it again")))
    config_lib.validate(config)
    return config


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
