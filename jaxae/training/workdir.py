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
        _check_release(saved, workdir)
        ours = json.loads(config.to_json_best_effort())
        for field in config_lib.RUN_DEFINING_FIELDS:
            value, wanted = _defining(saved, field), _defining(ours, field)
            if value != wanted:
                raise config_lib.ConfigError(
                    f"workdir {workdir!r} holds a run with {field}={value!r}, but the "
                    f"config says {wanted!r}: use a new --workdir, or the same {field}")


def _defining(tree: dict, path: str):
    """The value at a dotted path of a JSON config, without the fields that do not define
    the run (config_lib.NOT_RUN_DEFINING)."""
    node = tree
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        skip = {f.split(".", 1)[1] for f in config_lib.NOT_RUN_DEFINING
                if f.startswith(path + ".")}
        node = {k: v for k, v in node.items() if k not in skip}
    return node


def _check_release(saved: dict, workdir: str) -> None:
    """A config.json of the flat layout (jaxae 0.1) cannot be read by this release."""
    if isinstance(saved.get("model"), str):
        raise config_lib.ConfigError(
            f"workdir {workdir!r} was written by jaxae 0.1.0, whose flat config and checkpoints "
            f"this release ({jaxae.__version__}) does not read: evaluate it with jaxae 0.1.0, "
            "or train a new run in another --workdir")


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
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

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
    saved = _read_json(
        path, "rerun python train.py with this --workdir and the run's flags to write it again")
    _check_release(saved, workdir)
    config = config_lib.base_config()
    for section, values in saved.items():
        if section == "model":  # a model section is the model's own fields, whole
            config.model = ml_collections.ConfigDict(_from_json(values))
        elif isinstance(values, dict) and section in config:
            with config[section].unlocked():
                for key, value in values.items():
                    config[section][key] = _from_json(value)
        elif section in config:
            config[section] = _from_json(values)
    config_lib.validate(config)
    return config


def _from_json(value):
    """JSON lists back to tuples (the config's sequences are tuples)."""
    if isinstance(value, dict):
        return {k: _from_json(v) for k, v in value.items()}
    return tuple(_from_json(v) for v in value) if isinstance(value, list) else value
