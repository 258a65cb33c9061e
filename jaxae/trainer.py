"""`train_and_evaluate(config, workdir)`: the epoch loop, with resume, metrics and checkpoints.

Order of work: validate the config and the workdir (no compilation yet), load the data,
build the state, restore the newest checkpoint if the workdir holds one, then train.
"""

from __future__ import annotations

import math
import time

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from jaxae import checkpoints, pipeline, steps
from jaxae import config as config_lib
from jaxae.evaluation import evaluate_split
from jaxae.metric_writer import MetricWriter
from jaxae.models import build_model
from jaxae.splits import Splits, load_splits
from jaxae.workdir import prepare_workdir, write_run_files


def evaluate_splits(eval_step, params, data: Splits, config: ml_collections.ConfigDict,
                    eval_key: jax.Array) -> dict[str, float]:
    """Test (and validation) metrics, prefixed 'test_' / 'val_'."""
    named = {"test": data.test, "val": data.val}
    out = {}
    for prefix, split in named.items():
        if split is not None:
            metrics = evaluate_split(eval_step, params, split, config.eval_batch_size, eval_key)
            out.update({f"{prefix}_{name}": value for name, value in metrics.items()})
    return out


def _check_finite(metrics: dict[str, float], step: int) -> None:
    for name, value in metrics.items():
        if not math.isfinite(value):
            raise FloatingPointError(
                f"{name} became {value} at step {step}: training stopped and no checkpoint was "
                "written for it; lower --config.learning_rate (the last good checkpoint is kept)")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> steps.TrainState:
    """Trains the config's model, resuming from `workdir` if it holds a run; returns the state."""
    config_lib.validate(config)
    prepare_workdir(workdir, config)
    keys = pipeline.derive_keys(config.seed)
    data = load_splits(config, keys.data)
    config_lib.check_sizes(config, len(data.train) + (len(data.val) if data.val else 0),
                           len(data.test))
    write_run_files(workdir, config)
    frozen = ml_collections.FrozenConfigDict(config)

    model = build_model(config.model, config.latent_dim, config.superres_factor)
    state = steps.create_train_state(frozen, model, keys.init)
    manager = checkpoints.make_manager(workdir, config.keep_checkpoints)
    if manager.latest_step() is not None:
        state = checkpoints.restore(manager, state)
        print(f"resumed from the checkpoint at step {int(state.step)} in {workdir}", flush=True)
    train_step = steps.make_train_step(frozen)
    eval_step = steps.make_eval_step(frozen, model)
    writer = MetricWriter(workdir)

    train_arrays = jax.device_put({"image": data.train.images, "label": data.train.labels})
    steps_per_epoch = pipeline.steps_per_epoch(len(data.train), config.batch_size)
    total_steps = steps_per_epoch * config.num_epochs
    print(f"{config.model} on {config.dataset} ({data.source}): {len(data.train)} train / "
          f"{len(data.test)} test images, {steps_per_epoch} steps per epoch, "
          f"{total_steps} steps in all", flush=True)
    step = int(state.step)
    stop_at = min(total_steps, config.stop_after_steps or total_steps)
    while step < stop_at:
        epoch, first = divmod(step, steps_per_epoch)
        order = pipeline.epoch_permutation(keys.data, epoch, len(data.train))
        window, start = [], time.perf_counter()
        last = min(steps_per_epoch, first + stop_at - step)
        bar = tqdm(range(first, last), desc=f"epoch {epoch + 1}/{config.num_epochs}",
                   initial=first, total=steps_per_epoch, leave=False, disable=None)
        for index in bar:
            batch = pipeline.take_batch(train_arrays, order, index, config.batch_size)
            state, metrics = train_step(state, batch, keys.train)
            window.append(metrics)
            step += 1
            if step % config.log_every_steps == 0 or index == last - 1:
                means = {k: float(np.mean(v)) for k, v in jax.device_get(
                    jax.tree.map(lambda *xs: np.stack(xs), *window)).items()}
                _check_finite(means, step)
                rate = len(window) * config.batch_size / (time.perf_counter() - start)
                writer.write({"step": step, "epoch": epoch + 1,  # no timings: files repeat
                              **{f"train_{name}": value for name, value in means.items()}})
                bar.set_postfix(loss=f"{means['loss']:.4f}", images_per_s=f"{rate:.0f}")
                window, start = [], time.perf_counter()
        bar.close()
        if last < steps_per_epoch:  # stopped inside the epoch: keep the place, skip evaluation
            checkpoints.save(manager, state)
            print(f"stopped at step {step} with a checkpoint; rerun to continue", flush=True)
            break
        evaluation = evaluate_splits(eval_step, state.params, data, config, keys.eval)
        _check_finite(evaluation, step)
        writer.write({"step": step, "epoch": epoch + 1, **evaluation})
        if (epoch + 1) % config.checkpoint_every_epochs == 0 or step >= stop_at:
            checkpoints.save(manager, state)
    manager.wait_until_finished()
    manager.close()
    return state
