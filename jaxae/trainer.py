"""`train_and_evaluate(config, workdir)`: the epoch loop, with resume, metrics and checkpoints.

Order of work: validate the config and the workdir (no compilation yet), load the data,
build the state, restore the newest checkpoint if the workdir holds one, then train.
"""

from __future__ import annotations

import math
import time

import jax
import ml_collections
from tqdm import tqdm

from jaxae import checkpoints, pipeline, steps
from jaxae import config as config_lib
from jaxae.evaluation import evaluate_split
from jaxae.metric_writer import MetricWriter
from jaxae.models import build_model
from jaxae.signals import GracefulStop
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


def _first_non_finite(window: list[dict], first_step: int) -> tuple[int, str, float] | None:
    """(step, quantity, value) of the first non-finite training metric in a window."""
    for offset, metrics in enumerate(window):
        for name, value in metrics.items():
            if not math.isfinite(float(value)):
                return first_step + offset, name, float(value)
    return None


def _check_finite(metrics: dict[str, float], step: int, what: str = "") -> None:
    for name, value in metrics.items():
        if not math.isfinite(value):
            raise FloatingPointError(
                f"{what}{name} became {value} at step {step}: training stopped without "
                "writing a checkpoint for it (the newest one on disk is the last good state); "
                "lower --config.learning_rate")


def _restore_or_init(manager, state: steps.TrainState, workdir: str) -> steps.TrainState:
    """Resume order: the newest intact checkpoint in the workdir, else the fresh state."""
    restored = checkpoints.restore_newest_intact(manager, state)
    if restored is None:
        return state
    print(f"resumed from the checkpoint at step {int(restored.step)} in {workdir}", flush=True)
    return restored


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> steps.TrainState:
    """Trains the config's model, resuming from `workdir` if it holds a run; returns the state.

    Stops early, with a checkpoint, at config.stop_after_steps or on SIGTERM / Ctrl-C;
    rerunning the same command continues and ends bitwise equal to an uninterrupted run.
    """
    config_lib.validate(config)
    prepare_workdir(workdir, config)
    keys = pipeline.derive_keys(config.seed)
    data = load_splits(config, keys.data)
    config_lib.check_sizes(config, len(data.train) + (len(data.val) if data.val else 0),
                           len(data.test))
    write_run_files(workdir, config)
    frozen = ml_collections.FrozenConfigDict(config)

    model = build_model(config.model, config.latent_dim, config.superres_factor)
    manager = checkpoints.make_manager(workdir, config.keep_checkpoints)
    state = _restore_or_init(manager, steps.create_train_state(frozen, model, keys.init),
                             workdir)
    writer = MetricWriter(workdir)
    writer.drop_after(int(state.step))  # records of steps a restart will run again
    train_step = steps.make_train_step(frozen)
    eval_step = steps.make_eval_step(frozen, model)

    train_arrays = jax.device_put({"image": data.train.images, "label": data.train.labels})
    steps_per_epoch = pipeline.steps_per_epoch(len(data.train), config.batch_size)
    total_steps = steps_per_epoch * config.num_epochs
    print(f"{config.model} on {config.dataset} ({data.source}): {len(data.train)} train / "
          f"{len(data.test)} test images, {steps_per_epoch} steps per epoch, "
          f"{total_steps} steps in all", flush=True)
    step = int(state.step)
    stop_at = min(total_steps, config.stop_after_steps or total_steps)
    with GracefulStop() as stop:
        while step < stop_at and not stop.requested:
            epoch, first = divmod(step, steps_per_epoch)
            order = pipeline.epoch_permutation(keys.data, epoch, len(data.train))
            last = min(steps_per_epoch, first + stop_at - step)
            window, window_start, start = [], step + 1, time.perf_counter()
            bar = tqdm(range(first, last), desc=f"epoch {epoch + 1}/{config.num_epochs}",
                       initial=first, total=steps_per_epoch, leave=False, disable=None)
            for index in bar:
                batch = pipeline.take_batch(train_arrays, order, index, config.batch_size)
                state, metrics = train_step(state, batch, keys.train)
                window.append(metrics)
                step += 1
                end_of_epoch = index == steps_per_epoch - 1
                if step % config.log_every_steps == 0 or end_of_epoch or stop.requested:
                    fetched = jax.device_get(window)  # one transfer for the whole window
                    fault = _first_non_finite(fetched, window_start)
                    if fault:
                        _check_finite({fault[1]: fault[2]}, fault[0], "train_")
                    rate = len(window) * config.batch_size / (time.perf_counter() - start)
                    if step % config.log_every_steps == 0 or end_of_epoch:
                        # the step's own values, not a window mean: a resumed run writes the
                        # same records as an uninterrupted one (and no timings, for the same
                        # reason)
                        writer.write({"step": step, "epoch": epoch + 1,
                                      **{f"train_{k}": float(v) for k, v in fetched[-1].items()}})
                    bar.set_postfix(loss=f"{float(fetched[-1]['loss']):.4f}",
                                    images_per_s=f"{rate:.0f}")
                    window, window_start, start = [], step + 1, time.perf_counter()
                every = config.checkpoint_every_steps
                if every and step % every == 0 and not end_of_epoch:
                    checkpoints.save(manager, state)
                if stop.requested:
                    break
            bar.close()
            if step < (epoch + 1) * steps_per_epoch:  # stopped inside the epoch
                checkpoints.save(manager, state)
                why = f"{stop.requested} received" if stop.requested else "stop_after_steps"
                print(f"{why}: stopped at step {step} with a checkpoint; rerun the same "
                      "command to continue", flush=True)
                break
            evaluation = evaluate_splits(eval_step, state.params, data, config, keys.eval)
            _check_finite(evaluation, step)
            writer.write({"step": step, "epoch": epoch + 1, **evaluation})
            if (epoch + 1) % config.checkpoint_every_epochs == 0 or step >= stop_at or \
                    stop.requested:
                checkpoints.save(manager, state)
    manager.wait_until_finished()
    manager.close()
    return state
