"""`train_and_evaluate(config, workdir)`: the epoch loop, with resume, metrics and checkpoints.

Order of work: validate the config and the workdir (no compilation yet), load the data,
build the model, task and objective (sizes checked against the data), build the state,
restore the newest checkpoint if the workdir holds one, then train.

Training runs in chunks: the steps between two points where the host has something to do
(log, checkpoint, end of epoch, stop) run as one compiled loop over batches gathered on the
device (its length an argument, so one program serves every chunk), and their metrics are
read only after the next interval has been dispatched.
Chunks of any length give the same bits, so resuming at any step repeats the run exactly.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from jaxae import build
from jaxae import config as config_lib
from jaxae.data import Splits, batches
from jaxae.evaluation.metrics import evaluate_split
from jaxae.keys import derive_keys
from jaxae.training import checkpoints, parallel, steps
from jaxae.training.metric_writer import MetricWriter
from jaxae.training.workdir import prepare_workdir, write_run_files

StopRequest = Callable[[], str | None]  # the name of a stop signal received, or None


def evaluate_splits(eval_step, params, data: Splits, batch_size: int, eval_key: jax.Array
                    ) -> dict[str, float]:
    """Test (and validation) metrics, prefixed 'test_' / 'val_'."""
    named = {"test": data.test, "val": data.val}
    out = {}
    for prefix, split in named.items():
        if split is not None:
            metrics = evaluate_split(eval_step, params, split, batch_size, eval_key)
            out.update({f"{prefix}_{name}": value for name, value in metrics.items()})
    return out


def _first_non_finite(metrics: dict[str, np.ndarray], first_step: int
                      ) -> tuple[int, str, float] | None:
    """(step, quantity, value) of the first non-finite value in a chunk's stacked metrics
    (steps.CHUNK_END_METRICS only at the last step: the other rows do not hold them)."""
    last = len(metrics["loss"]) - 1
    for offset in range(last + 1):
        for name, values in metrics.items():
            if offset < last and name in steps.CHUNK_END_METRICS:
                continue
            if not math.isfinite(float(values[offset])):
                return first_step + offset, name, float(values[offset])
    return None


def _check_finite(metrics: dict[str, float], step: int, what: str = "") -> None:
    for name, value in metrics.items():
        if not math.isfinite(value):
            raise FloatingPointError(
                f"{what}{name} became {value} at step {step}: training stopped without "
                "writing a checkpoint for it (the newest one on disk is the last good state); "
                "lower --config.optim.learning_rate")


def _restore_or_init(manager, fresh: Callable[[], steps.TrainState], mesh, workdir: str
                     ) -> steps.TrainState:
    """Resume order: the newest intact checkpoint in the workdir, else the fresh state.

    The checkpoint is read into the fresh state's shapes (`jax.eval_shape`), so a resumed
    run never computes (nor compiles) an initialisation it would throw away.
    """
    sharding = parallel.replicated(mesh)
    like = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                        jax.eval_shape(fresh))
    restored = checkpoints.restore_newest_intact(manager, like)
    if restored is None:
        return parallel.put_replicated(fresh(), mesh)
    if parallel.is_main_process():
        print(f"resumed from the checkpoint at step {int(restored.step)} in {workdir}",
              flush=True)
    return restored


def _chunk_end(step: int, epoch_end: int, stop_at: int, config: ml_collections.ConfigDict
               ) -> int:
    """The next step at which the host must act: log, checkpoint, end of epoch or stop."""
    log_every = config.train.log_every_steps
    ends = [epoch_end, stop_at, (step // log_every + 1) * log_every]
    if config.train.checkpoint_every_steps:
        every = config.train.checkpoint_every_steps
        ends.append((step // every + 1) * every)
    return min(ends)


class _ChunkLog:
    """Reads a dispatched chunk's metrics (after the next one is dispatched): checks that
    every step is finite, writes the step's record at log points, updates the progress bar."""

    def __init__(self, config: ml_collections.ConfigDict, writer: MetricWriter | None,
                 steps_per_epoch: int):
        self.config, self.writer, self.steps_per_epoch = config, writer, steps_per_epoch
        self.pending = None
        self.clock = time.perf_counter()

    def add(self, first_step: int, count: int, metrics: dict, epoch: int, bar: tqdm) -> None:
        """A dispatched chunk: `count` steps from `first_step`, their metrics' first rows."""
        self.flush()
        self.pending = (first_step, count, metrics, epoch, bar)

    def flush(self) -> None:
        if self.pending is None:
            return
        first_step, count, metrics, epoch, bar = self.pending
        self.pending = None
        fetched = {name: rows[:count] for name, rows in jax.device_get(metrics).items()}
        fault = _first_non_finite(fetched, first_step)
        if fault:
            _check_finite({fault[1]: fault[2]}, fault[0], "train_")
        step = first_step + count - 1
        last = {name: float(values[-1]) for name, values in fetched.items()}
        end_of_epoch = step % self.steps_per_epoch == 0
        if self.writer and (step % self.config.train.log_every_steps == 0 or end_of_epoch):
            # the step's own values, not a window mean: a resumed run writes the same
            # records as an uninterrupted one (and no timings, for the same reason)
            self.writer.write({"step": step, "epoch": epoch + 1,
                               **{f"train_{k}": v for k, v in last.items()}})
        now = time.perf_counter()
        rate = count * self.config.train.batch_size / max(now - self.clock, 1e-9)
        self.clock = now
        bar.update(count)
        bar.set_postfix(loss=f"{last['loss']:.4f}", images_per_s=f"{rate:.0f}")


def _local(tree):
    """This process's copy of replicated arrays (evaluation runs on one local device)."""
    return jax.tree.map(lambda a: a.addressable_data(0), tree)


def parameter_checksum(params) -> float:
    """Sum of |p| over every parameter, in float64: equal across processes in step."""
    return float(sum(np.abs(np.asarray(leaf, np.float64)).sum()
                     for leaf in jax.tree.leaves(_local(params))))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       on_evaluation: Callable[[int, dict[str, float]], None] | None = None,
                       stop_requested: StopRequest = lambda: None) -> steps.TrainState:
    """Trains the config's model, resuming from `workdir` if it holds a run; returns the state.

    `on_evaluation(epoch, test_metrics)` is called after each epoch's evaluation (e.g. to
    time training against a peer, `benchmarks/parity.py`); metrics.jsonl stays free of
    timings. `stop_requested()` is polled between chunks of steps: when it returns a reason
    (the command line's SIGTERM / Ctrl-C handler gives one), the run checkpoints and returns.

    Runs data-parallel over every device of every process (`jaxae.training.parallel`); only
    process 0 writes files and prints. Stops early, with a checkpoint, at
    config.train.stop_after_steps or on a stop request; rerunning the same command continues
    and ends bitwise equal to an uninterrupted run.
    """
    config_lib.validate(config)
    train_config = config.train
    mesh = parallel.data_mesh()
    config_lib.check_batch_splits(train_config.batch_size, mesh.size)
    main = parallel.is_main_process()
    prepare_workdir(workdir, config)
    keys = derive_keys(config.seed)
    data = build.load_data(config, keys.data)
    config_lib.check_sizes(config, len(data.train) + (len(data.val) if data.val else 0),
                           len(data.test))
    task = config_lib.make_task(config)
    build.check_task(task, data.image_shape)
    model = build.make_model(config, data.image_shape, data.num_classes)
    train_model = build.make_model(config, data.image_shape, data.num_classes,
                                   train_config.compute_dtype)
    objective = build.make_objective(config, model)
    if main:
        write_run_files(workdir, config)

    manager = checkpoints.make_manager(checkpoints.checkpoint_dir(workdir),
                                       train_config.keep_checkpoints)
    steps_per_epoch = batches.steps_per_epoch(len(data.train), train_config.batch_size)
    total_steps = steps_per_epoch * train_config.num_epochs
    def fresh() -> steps.TrainState:
        return steps.create_train_state(model, build.make_optimizer(config, total_steps),
                                        task.input_shape(data.image_shape), keys.init,
                                        build.init_scheme(config))

    state = _restore_or_init(manager, fresh, mesh, workdir)
    writer = MetricWriter(workdir) if main else None
    if writer:
        writer.drop_after(int(state.step))  # records of steps a restart will run again
    # every chunk ends at a log point or sooner (`_chunk_end`)
    train_chunk = steps.make_train_chunk(
        train_model, task, objective, batch_size=train_config.batch_size,
        max_steps=min(train_config.log_every_steps, steps_per_epoch), mesh=mesh)
    eval_step = steps.make_eval_step(model, task, objective)

    train_arrays = parallel.put_replicated(
        {"image": data.train.images, "label": data.train.labels}, mesh)
    train_key = parallel.put_replicated(keys.train, mesh)
    devices = f"{mesh.size} device{'s' * (mesh.size > 1)}"
    if jax.process_count() > 1:
        devices += f" in {jax.process_count()} processes"
    if main:
        height, width, channels = data.image_shape
        print(f"{config.model.name} on {config.data.name} ({data.source}): {len(data.train)} "
              f"train / {len(data.test)} test images of {height}x{width}x{channels}, "
              f"{steps_per_epoch} steps per epoch, {total_steps} steps in all, on {devices} "
              f"({jax.default_backend()})", flush=True)
    step = int(state.step)
    stop_at = min(total_steps, train_config.stop_after_steps or total_steps)
    log = _ChunkLog(config, writer, steps_per_epoch)
    stopped = None
    # closing the manager waits for the save in flight, also when an error ends the run
    with contextlib.closing(manager):
        while step < stop_at and not (stopped := stop_requested()):
            epoch, first = divmod(step, steps_per_epoch)
            epoch_end = min((epoch + 1) * steps_per_epoch, stop_at)
            order = parallel.put_replicated(
                batches.epoch_permutation(keys.data, epoch, len(data.train)), mesh)
            bar = tqdm(desc=f"epoch {epoch + 1}/{train_config.num_epochs}", initial=first,
                       total=steps_per_epoch, leave=False, disable=None if main else True)
            while step < epoch_end and not (stopped := stop_requested()):
                end = _chunk_end(step, epoch_end, stop_at, config)
                state, metrics = train_chunk(state, train_arrays, order,
                                             step - epoch * steps_per_epoch, train_key, end - step)
                log.add(step + 1, end - step, metrics, epoch, bar)
                step = end
                every = train_config.checkpoint_every_steps
                if every and step % every == 0 and step % steps_per_epoch:
                    log.flush()  # metrics are checked before every checkpoint
                    checkpoints.save_state(manager, state)
            log.flush()
            bar.close()
            if step < (epoch + 1) * steps_per_epoch:  # stopped inside the epoch
                checkpoints.save_state(manager, state)
                break
            evaluation = evaluate_splits(eval_step, _local(state.params), data,
                                         config.eval.batch_size, keys.eval)
            _check_finite(evaluation, step)
            if writer:
                writer.write({"step": step, "epoch": epoch + 1, **evaluation})
            if on_evaluation:
                on_evaluation(epoch + 1, evaluation)
            stopped = stopped or stop_requested()
            if (epoch + 1) % train_config.checkpoint_every_epochs == 0 or step >= stop_at or \
                    stopped:
                checkpoints.save_state(manager, state)
    if jax.process_count() > 1:  # every process prints: equal figures show they ran in step
        print(f"process {jax.process_index()}: parameter checksum "
              f"{parameter_checksum(state.params):.10e}", flush=True)
    if main and 0 < step < total_steps:  # stopped early: in an epoch, at its end or its eval
        why = f"{stopped} received" if stopped else "stop_after_steps"
        print(f"{why}: stopped at step {step} with a checkpoint; rerun the same command to "
              "continue", flush=True)
    return state
