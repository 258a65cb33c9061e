"""Evaluation of a trained run: metrics over whole splits, and pictures of what it does."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import jax
import ml_collections
import numpy as np

from jaxae import checkpoints, pipeline, plots, steps
from jaxae.models import build_model
from jaxae.splits import load_splits
from jaxae.workdir import load_run_config


def padded_batches(images: np.ndarray, batch_size: int):
    """Yields (index, {"image", "mask"}) batches of one shape; the last is zero-padded."""
    for index, start in enumerate(range(0, len(images), batch_size)):
        chunk = images[start:start + batch_size]
        mask = np.zeros(batch_size, np.float32)
        mask[:len(chunk)] = 1.0
        pad = np.zeros((batch_size - len(chunk), *chunk.shape[1:]), chunk.dtype)
        yield index, {"image": np.concatenate([chunk, pad]), "mask": mask}


def evaluate_split(eval_step: Callable, params: dict, images: np.ndarray, batch_size: int,
                   key: jax.Array) -> dict[str, float]:
    """Means over every image of the split; batch i's corruption uses fold_in(key, i)."""
    sums = None
    for index, batch in padded_batches(images, min(batch_size, len(images))):
        out = eval_step(params, batch, jax.random.fold_in(key, index))
        sums = out if sums is None else jax.tree.map(lambda a, b: a + b, sums, out)
    sums = jax.device_get(sums)
    count = float(sums.pop("count"))
    return {name: float(total) / count for name, total in sums.items()}


def _squeeze(images_BxHxWx1: jax.Array) -> np.ndarray:
    return np.asarray(images_BxHxWx1)[..., 0]


def picture_rows(config: ml_collections.ConfigDict, model, params: dict, images_u8: np.ndarray,
                 key: jax.Array) -> list[tuple[str, np.ndarray]]:
    """Rows for the reconstruction picture: [input,] output, original (clean target)."""
    inputs, targets = pipeline.make_example(config, images_u8, key)
    recon = jax.nn.sigmoid(model.apply({"params": params}, inputs))
    rows = []
    if config.model == "superres":
        side = 28 // config.superres_factor
        rows.append((f"input\n{side}x{side}", _squeeze(inputs)))
    elif config.corruption != "none":
        rows.append((f"input\n({config.corruption})", _squeeze(jax.numpy.clip(inputs, 0, 1))))
    rows += [("output", _squeeze(recon)), ("original", _squeeze(targets))]
    return rows


def evaluate_workdir(workdir: str, step: int | None = None) -> dict[str, float]:
    """Reloads a run's checkpoint (newest, or `step`) and writes `eval/metrics.json` and
    `eval/reconstructions.png` in the workdir; returns the metrics."""
    config = load_run_config(workdir)
    manager = checkpoints.make_manager(workdir, read_only=True)
    available = manager.all_steps()
    if not available:
        raise FileNotFoundError(f"{workdir!r} holds no checkpoint: its training run saved none "
                                "yet; rerun python train.py with this --workdir to finish it")
    if step is not None and step not in available:
        raise FileNotFoundError(f"{workdir!r} has no checkpoint at step {step}: it has steps "
                                f"{', '.join(map(str, available))}")
    frozen = ml_collections.FrozenConfigDict(config)
    keys = pipeline.derive_keys(config.seed)
    data = load_splits(config, keys.data)
    model = build_model(config.model, config.latent_dim, config.superres_factor)
    state = steps.create_train_state(frozen, model, keys.init)
    state = checkpoints.restore(manager, state, step)
    step = int(state.step)
    print(f"evaluating the checkpoint at step {step} of {workdir}", flush=True)

    metrics = evaluate_split(steps.make_eval_step(frozen, model), state.params,
                             data.test.images, config.eval_batch_size, keys.eval)
    result = {"step": step, "model": config.model, "dataset": config.dataset,
              "test_images": len(data.test),
              **{f"test_{name}": value for name, value in metrics.items()}}
    out_dir = os.path.join(workdir, "eval")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump(result, f, indent=2)

    shown = data.test.images[:config.num_images]
    rows = picture_rows(frozen, model, state.params, shown, keys.eval)
    title = (f"{config.model} on {config.dataset}, step {step}: test {config.loss} "
             f"{metrics['loss']:.4f}, PSNR {metrics['psnr']:.1f} dB")
    plots.image_rows(rows, title, os.path.join(out_dir, "reconstructions.png"))
    return result
