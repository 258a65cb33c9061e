"""Evaluation of a trained workdir: reload its config and a checkpoint, write metrics and
pictures into `<workdir>/eval/`."""

from __future__ import annotations

import json
import os

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from jaxae import build
from jaxae import config as config_lib
from jaxae.data.splits import Split, Splits
from jaxae.evaluation import generation, iwae
from jaxae.evaluation.metrics import evaluate_split, padded_batches
from jaxae.evaluation.pictures import PictureOptions, write_pictures
from jaxae.evaluation.probe import train_probe
from jaxae.keys import derive_keys
from jaxae.training import checkpoints, steps
from jaxae.training.workdir import load_run_config


def class_sample_recognition(model: nn.Module, params: dict, data: Splits, key: jax.Array,
                             per_class: int = 100) -> dict[str, float]:
    """How often a pixel classifier, trained on the real training images, sees the requested
    class in a conditional model's samples; with its accuracy on the real test images."""
    probe_key, sample_key = jax.random.split(key)

    def flat(images: np.ndarray) -> np.ndarray:  # [..., H, W, C] -> [N, H*W*C]
        return images.reshape(-1, int(np.prod(data.image_shape)))

    probe = train_probe(flat(data.train.images) / 255.0, data.train.labels, probe_key,
                        hidden=(512, 256), epochs=10, num_classes=data.num_classes)
    samples = generation.class_samples(model, params, sample_key, per_class, data.num_classes)
    requested = np.repeat(np.arange(data.num_classes), per_class)
    return {"cvae_samples_recognised": probe.accuracy(flat(samples), requested),
            "cvae_probe_test_accuracy": probe.accuracy(flat(data.test.images) / 255.0,
                                                       data.test.labels),
            "cvae_samples_per_class": per_class}


def evaluate_workdir(workdir: str, step: int | None = None) -> dict:
    """Reloads a run's checkpoint (newest, or `step`) and writes `eval/metrics.json` and the
    pictures that apply to its model into `<workdir>/eval`; returns the metrics."""
    config = load_run_config(workdir)
    manager = checkpoints.make_manager(checkpoints.checkpoint_dir(workdir), read_only=True)
    available = manager.all_steps()
    if not available:
        raise FileNotFoundError(f"{workdir!r} holds no checkpoint: its training run saved none "
                                "yet; rerun python train.py with this --workdir to finish it")
    if step is not None and step not in available:
        raise FileNotFoundError(f"{workdir!r} has no checkpoint at step {step}: it has steps "
                                f"{', '.join(map(str, available))}")
    keys = derive_keys(config.seed)
    data = build.load_data(config, keys.data)
    task = config_lib.make_task(config)
    model = build.make_model(config, data.image_shape, data.num_classes)
    objective = build.make_objective(config, model)
    state = jax.eval_shape(lambda: steps.create_train_state(  # shapes only: nothing computed
        model, build.make_optimizer(config), task.input_shape(data.image_shape), keys.init,
        build.init_scheme(config)))
    if step is None:  # the newest checkpoint that restores; damaged ones are named and skipped
        state = checkpoints.restore_newest_intact(manager, state)
    else:
        state = checkpoints.restore_state(manager, state, step)
    step = int(state.step)
    print(f"evaluating the checkpoint at step {step} of {workdir}", flush=True)
    return evaluate_state(config, model, task, objective, state.params, data, step,
                          os.path.join(workdir, "eval"))


def evaluate_state(config: ml_collections.ConfigDict, model: nn.Module, task, objective,
                   params: dict, data: Splits, step: int, out_dir: str) -> dict:
    """Test metrics, the IWAE bounds of a variational model, the class recognition of a
    conditional one, and the pictures, written into `out_dir`."""
    keys = derive_keys(config.seed)
    eval_config = config.eval
    metrics = evaluate_split(steps.make_eval_step(model, task, objective), params, data.test,
                             eval_config.batch_size, keys.eval)
    result = {"step": step, "model": config.model.name, "dataset": config.data.name,
              "test_images": len(data.test),
              **{f"test_{name}": value for name, value in metrics.items()}}
    if model.variational:
        subset = Split(data.test.images[:eval_config.iwae_images],
                       data.test.labels[:eval_config.iwae_images])
        batches = [b for _, b in padded_batches(subset, min(100, len(subset)))]
        bounds = iwae.iwae_bounds(model, task, objective.likelihood, params, batches,
                                  jax.random.fold_in(keys.eval, 1), eval_config.iwae_samples,
                                  eval_config.iwae_chunk)
        result["iwae_images"] = len(subset)
        result |= {f"test_iwae_k{k}": bound for k, bound in bounds.items()}
    if model.variational and model.conditional:
        result |= class_sample_recognition(model, params, data,
                                           jax.random.fold_in(keys.sample, 1))
    os.makedirs(out_dir, exist_ok=True)
    title = f"{config.model.name} on {data.title}, step {step}"
    result["pictures"] = write_pictures(
        model, task, params, data, keys, title, out_dir,
        PictureOptions(eval_config.num_images, eval_config.manifold_size))
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump(result, f, indent=2)
    return result
