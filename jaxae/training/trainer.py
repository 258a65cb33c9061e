"""`train_and_evaluate(config, workdir)`: the epoch loop, with resume, metrics and checkpoints.

Order of work: validate the config and check the workdir (nothing written, no compilation
yet), take the workdir's writer lock, load the data, build the model, task and objective
(sizes checked against the data), bound the state's memory (`jax.eval_shape`, nothing
placed on a device), restore the newest checkpoint if the workdir holds one (a checkpoint
that does not fit is refused before any array is read), then train; config.json is written
just before a fresh run's first checkpoint, and once a resumed run has saved one of its own.

Training runs in chunks: the steps between two points where the host has something to do
(log, checkpoint, evaluate, end of epoch, stop) run as one compiled loop over batches
gathered on the device (its length an argument, so one program serves every chunk), of
about 5 s at most once the run's speed is known (`CHUNK_SECONDS`: a stop waits for the
chunks running) and, streamed, within `data.memory_budget_mb`; their metrics are read only
after the next interval has been dispatched.
Chunks of any length give the same bits, so resuming at any step repeats the run exactly.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import math
import numbers
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh
from tqdm import tqdm

from jaxae import build, optimizers
from jaxae import config as config_lib
from jaxae.data import Splits, batches
from jaxae.evaluation.metrics import evaluate_splits
from jaxae.keys import Keys, derive_keys
from jaxae.messages import printable
from jaxae.objectives import Objective
from jaxae.progress import LogLines, duration
from jaxae.registry import display_name
from jaxae.tasks import Task
from jaxae.training import checkpoints, memory, parallel, steps
from jaxae.training.batch_sources import BatchSource, FinishedSource, ResidentSource, StreamedSource
from jaxae.training.faults import Faults, first_non_finite_step, flat_at_chunk_end
from jaxae.training.metric_writer import MetricWriter
from jaxae.training.workdir import (
    CONFIG_FILE,
    LOCK_FILE,
    TIMINGS_FILE,
    WorkdirBusy,
    append_resume,
    changes_shown,
    code_files,
    holds_run,
    lock_workdir,
    mismatch_with_code,
    prepare_workdir,
    resume_changes,
    run_environment,
    unlock_workdir,
    write_run_files,
)

MAX_STEPS = 2**31 - 1  # a run's steps: the train state's step counter is int32
StopRequest = Callable[[], str | None]  # the name of a stop signal received, or None
EvaluationHook = Callable[[int, int, dict[str, float]], None]  # (step, epoch, metrics)


@dataclasses.dataclass(frozen=True)
class _Evaluations:
    """When a run evaluates besides each epoch's end (`at_steps`, and every `every` steps:
    config.eval.every_steps), and who hears of it."""

    at_steps: tuple[int, ...] = ()  # sorted
    every: int | None = None
    hook: EvaluationHook | None = None

    def next_after(self, step: int) -> int | None:
        """The first extra evaluation step after `step`, or None."""
        index = bisect.bisect_right(self.at_steps, step)
        steps = [self.at_steps[index]] if index < len(self.at_steps) else []
        if self.every:
            steps.append((step // self.every + 1) * self.every)
        return min(steps, default=None)

    def due(self, step: int) -> bool:
        index = bisect.bisect_left(self.at_steps, step)
        listed = index < len(self.at_steps) and self.at_steps[index] == step
        return listed or bool(self.every and step % self.every == 0)


class StopRequested(Exception):
    """A stop (SIGTERM, Ctrl-C, SIGUSR1) was asked for: before training started (nothing new
    to save), or, raised by a caller that trains several runs (`jaxae.experiments`), during
    one of them (its checkpoint saved). `jaxae.cli.run` prints its message and ends the
    process as the signal does (`cli.end_stopped`), so that a shell's loop or `&&` stops
    too."""

    def __init__(self, message: str, signal_name: str | None = None):
        super().__init__(message)
        self.signal_name = signal_name  # "SIGINT", "SIGTERM" or "SIGUSR1" (None: another)


def _restore_or_init(manager, fresh: Callable[[], steps.TrainState], like, mesh, workdir: str
                     ) -> tuple[steps.TrainState, dict | None]:
    """Resume order: the newest intact checkpoint in the workdir, else the fresh state.
    Returns the state and the data stream's saved position (None when fresh).

    The checkpoint is read into the fresh state's shapes (`like`, from `jax.eval_shape`),
    so a resumed run never computes (nor compiles) an initialisation it would throw away.
    The steps are those `manager` listed when it was made: the run holds the workdir's lock,
    so no other process has written or deleted one since.
    """
    restored = checkpoints.restore_newest_intact(manager, like, settle_s=0,  # ours alone
                                                 with_data=True, listed=True)
    if restored is None:
        return parallel.put_replicated(fresh(), mesh), None
    state, position = restored
    if parallel.is_main_process():
        print(f"resumed from the checkpoint at step {int(state.step)} in {workdir}",
              flush=True)
    return state, position


def _check_position(position: dict, num_examples: int, batch_size: int, step: int,
                    workdir: str) -> None:
    """A ConfigError, before anything is written, where the checkpoint's data position was
    saved for another batch size or number of training images: its batches' order would not
    be this run's. config.json's check refuses such a resume first; this one holds where
    config.json was lost."""
    saved = (int(position["batch_size"]), int(position["num_examples"]))
    if saved != (batch_size, num_examples):
        raise config_lib.ConfigError(
            f"the checkpoint at step {step} in {workdir!r} trained with batches of {saved[0]} "
            f"from {saved[1]:,} training images, this config asks for {batch_size} from "
            f"{num_examples:,}: rerun with the run's own flags (train.batch_size, data."
            "train_size, data.val_size), or train in a new --workdir")


def _batch_bytes(config: ml_collections.ConfigDict, data: Splits) -> int:
    """A training batch's images and labels, as a chunk sends them to the device."""
    return config.train.batch_size * (math.prod(data.image_shape) + 4)


def streamed_chunk_steps(config: ml_collections.ConfigDict, data: Splits) -> int:
    """The batches a streamed chunk sends to the device at once: up to a log point, and as
    many as data.memory_budget_mb holds (one at least: a larger batch is said as the run
    starts); the bits do not depend on it."""
    budget = config.data.memory_budget_mb * 2**20
    return max(1, min(config.train.log_every_steps, len(data.train) // config.train.batch_size,
                      budget // _batch_bytes(config, data)))


def _check_memory(config: ml_collections.ConfigDict, like, data: Splits) -> None:
    """The state, a gradient and an update, and the training images (or a streamed chunk
    of them), against the memory of this process's first device: before anything is placed
    on it. The one-line refusal names what takes the most, and its fix."""
    count, state_bytes = memory.state_size(like)
    if data.streamed:  # a chunk of batches at a time is on the device
        steps = streamed_chunk_steps(config, data)
        data_bytes = steps * _batch_bytes(config, data)
        images = f"a streamed chunk of {steps} batch{'es' * (steps > 1)}"
        data_fix = ("lower --config.train.batch_size (a streamed chunk is one batch already)"
                    if steps == 1 else "lower --config.data.memory_budget_mb (a streamed chunk "
                    f"stays within it, now {config.data.memory_budget_mb}) or "
                    "--config.train.batch_size")
    else:  # the training images and labels, placed on the device whole
        data_bytes = data.train.images.nbytes + data.train.labels.nbytes
        images = "the training images, held in device memory"
        data_fix = ("stream them from disk: --config.data.streaming=stream"
                    if config_lib.loader_takes(config.data, "streaming") else
                    "give the data set's loader a streaming parameter (jaxae.data.load_folder "
                    "and load_npz stream), or fewer training images (config.data.train_size)")
    latent = config.model.get("latent_dim")
    model_fix = (f"lower --config.model.latent_dim (now {latent})" if latent is not None
                 else "make the model smaller (config.model)")
    name = display_name(config.model.name)
    memory.check_fits(
        state_bytes + data_bytes,
        f"the {name} model's state ({count:,} parameters, {memory.size_text(state_bytes)}) and "
        f"{images} ({memory.size_text(data_bytes)})",
        data_fix if data_bytes > state_bytes else model_fix)


@contextlib.contextmanager
def _writer_lock(workdir: str, main: bool):
    """Holds the workdir's writer lock for the run. Only process 0 writes, so only it locks;
    in a multi-process run every process learns the outcome (one broadcast) and all of them
    stop together."""
    fd, busy = None, None
    if main:
        try:
            fd = lock_workdir(workdir)
        except config_lib.ConfigError as e:
            busy = e
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        if int(multihost_utils.broadcast_one_to_all(np.int32(busy is not None))) and not main:
            raise WorkdirBusy(f"workdir {workdir!r} could not be locked by process 0 (see "
                              "its error)")
    if busy is not None:
        raise busy
    try:
        yield
    finally:
        if fd is not None:
            unlock_workdir(fd)


def _chunk_end(step: int, epoch_end: int, stop_at: int, config: ml_collections.ConfigDict,
               next_evaluation: int | None = None) -> int:
    """The next step at which the host must act: log, checkpoint, evaluate, end of epoch
    or stop."""
    log_every = config.train.log_every_steps
    ends = [epoch_end, stop_at, (step // log_every + 1) * log_every]
    if next_evaluation is not None:
        ends.append(next_evaluation)
    if config.train.checkpoint_every_steps:
        every = config.train.checkpoint_every_steps
        ends.append((step // every + 1) * every)
    return min(ends)


# A chunk's steps, once the run's speed is known: a stop, acted on between chunks, waits for
# the chunk running and the one dispatched after it (a slow model's 100-step chunk outlasted
# a scheduler's grace period). The bits do not depend on chunks' lengths.
CHUNK_SECONDS = 5.0


class TimingLog:
    """`<workdir>/timings.jsonl`: at each step metrics.jsonl records, when it was reached
    (`time`, Unix seconds), the seconds of training so far over every part of the run
    (`train_s`: the time between reads of the steps' metrics, with evaluations, saves and
    each part's first chunk, which compiles, left out) and this part's `images_per_s` at
    that rate; at each evaluation, its `eval_s`. metrics.jsonl holds no timings: its bytes
    are the same in every run of a config and seed."""

    def __init__(self, workdir: str, step: int):
        self.writer = MetricWriter(workdir, echo=False, file=TIMINGS_FILE, what="timings")
        trained = [r["train_s"] for r in self.writer.drop_after(step)  # a restart from `step`
                   if isinstance(r.get("train_s"), (int, float))]  # times its steps again
        self.before = float(trained[-1]) if trained else 0.0  # the earlier parts' training

    def trained(self, step: int, epoch: int, seconds: float, rate: float | None) -> None:
        """A log point: `seconds` of training in this part so far, at `rate` images/s."""
        rate = {"images_per_s": round(rate, 1)} if rate else {}
        self.writer.write({"step": step, "epoch": epoch, "time": round(time.time(), 3),
                           "train_s": round(self.before + seconds, 3), **rate})

    def evaluated(self, step: int, epoch: int, seconds: float) -> None:
        self.writer.write({"step": step, "epoch": epoch, "time": round(time.time(), 3),
                           "eval_s": round(seconds, 3)})


class _ChunkLog:
    """Reads a dispatched chunk's metrics (after the next one is dispatched): checks that
    every step is finite, writes the step's record (and its timings) at log points, updates
    the progress bar (off a terminal, where the bar is off: a progress line on stderr now
    and then)."""

    def __init__(self, config: ml_collections.ConfigDict, writer: MetricWriter | None,
                 steps_per_epoch: int, last_step: int, faults: Faults,
                 timings: TimingLog | None = None):
        self.config, self.writer, self.steps_per_epoch = config, writer, steps_per_epoch
        self.timings = timings
        self.last_step, self.faults = last_step, faults  # the step this process trains to
        self.pending = None
        self.last_nonzero_gradient: int | None = None  # the last step it was checked at
        self.since: tuple[float, int, tqdm] | None = None  # (time, step, bar): the bar's first read
        self.lines: LogLines | None = None  # off a terminal: from the first read
        # the run's rate, for the progress line: images over the time between chunk reads
        # (the first read's, with the compile, left out), less the time set aside meanwhile
        self.last_read: float | None = None
        self.trained_s, self.trained_images, self.set_aside_s = 0.0, 0, 0.0

    @property
    def rate(self) -> float | None:
        """The run's images per second of training so far; None before it is known."""
        return self.trained_images / self.trained_s if self.trained_s > 0 else None

    def steps_within(self, seconds: float) -> int | None:
        """How many steps train in about `seconds` at the run's rate so far (at least one);
        None before it is known."""
        if self.rate is None:
            return None
        return max(1, int(seconds * self.rate / self.config.train.batch_size))

    def set_aside(self, seconds: float) -> None:
        """Time spent since the last read on other work than training (an evaluation, a
        checkpoint's save): left out of the run's rate."""
        self.set_aside_s += seconds

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
        fault = first_non_finite_step(fetched, first_step)
        if fault:
            raise self.faults.error(f"train_{fault[1]} became {fault[2]}", fault[0])
        step = first_step + count - 1
        if flat_at_chunk_end(fetched):
            raise self.faults.flat_gradient(step, self.last_nonzero_gradient)
        self.last_nonzero_gradient = step if "grad_norm" in fetched else None
        last = {name: float(values[-1]) for name, values in fetched.items()}
        logged = step % self.config.train.log_every_steps == 0 or \
            step % self.steps_per_epoch == 0  # or an epoch's end
        if self.writer and logged:
            # the step's own values, not a window mean: a resumed run writes the same
            # records as an uninterrupted one (and no timings, for the same reason)
            self.writer.write({"step": step, "epoch": epoch + 1,
                               **{f"train_{k}": v for k, v in last.items()}})
        now = time.perf_counter()
        if self.since is None or self.since[2] is not bar:  # an epoch's first chunk read:
            self.since = (now, step, bar)  # its compile (and the dispatch ahead) not timed
        start, first, _ = self.since
        bar.update(count)
        # over the epoch's chunks read since its first: one chunk's read times its dispatch,
        # not its steps, and swung a hundredfold between a fast step's chunks
        rate = (step - first) * self.config.train.batch_size / (now - start) \
            if step > first else None
        bar.set_postfix(loss=f"{last['loss']:.4f}",
                        **({"images_per_s": f"{rate:.0f}"} if rate else {}))
        if self.last_read is not None:
            self.trained_s += max(now - self.last_read - self.set_aside_s, 0.0)
            self.trained_images += count * self.config.train.batch_size
        self.last_read, self.set_aside_s = now, 0.0
        if self.timings and logged:
            self.timings.trained(step, epoch + 1, self.trained_s, self.rate)
        if self.lines is None:
            self.lines = LogLines(now)
        if bar.disable and self.writer and self.rate and \
                (seconds := self.lines.due(now)) is not None:
            print(self._progress_line(step, epoch, last["loss"], self.rate, seconds),
                  file=sys.stderr, flush=True)

    def _progress_line(self, step: int, epoch: int, loss: float, rate: float,
                       seconds: float) -> str:
        """The bar's figures as one line, for a log file (nohup, a cluster job); `rate`: the
        run's images per second of training; `seconds`: since its first steps were read."""
        left = (self.last_step - step) * self.config.train.batch_size / rate
        return (f"epoch {epoch + 1}/{self.config.train.num_epochs}, step {step:,} of "
                f"{self.last_step:,}: loss {loss:.4f}, {rate:,.0f} images/s while training, "
                f"{duration(seconds)} in, about {duration(left)} of training left "
                "(evaluations and saves not counted)")


def _local(tree):
    """This process's copy of replicated arrays (evaluation runs on one local device)."""
    return jax.tree.map(lambda a: a.addressable_data(0), tree)


def parameter_checksum(state: steps.TrainState) -> float:
    """Sum of |x| over every parameter and every array of the model's state (a BatchNorm's
    running averages), in float64: equal across processes in step."""
    return float(sum(np.abs(np.asarray(leaf, np.float64)).sum()
                     for leaf in jax.tree.leaves(_local(state.variables))))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       on_evaluation: EvaluationHook | None = None,
                       evaluate_at_steps: Iterable[int] = (),
                       stop_requested: StopRequest = lambda: None,
                       on_saved: Callable[[], None] = lambda: None,
                       on_stopped: Callable[[str], None] = lambda reason: None
                       ) -> steps.TrainState:
    """Trains the config's model, resuming from `workdir` if it holds a run; returns the state.

    The run evaluates at each epoch's end and also at `evaluate_at_steps` and every
    config.eval.every_steps steps (e.g. to watch the test figure inside long epochs); each
    evaluation is a record of metrics.jsonl, and `on_evaluation(step, epoch, metrics)` is
    called after it (e.g. to time training against a peer, `benchmarks/parity.py`; epoch:
    the one ending or in progress); metrics.jsonl stays free of timings.

    `stop_requested()` is polled between chunks of steps: when it returns a reason (the
    command line's stop-signal handler gives one), the run checkpoints and returns;
    asked before training starts, StopRequested is raised. `on_saved()` is called once the
    run's last checkpoint and its config.json are on disk, before the closing line (train.py:
    a stop signal from then on has nothing left to stop); then `on_stopped(reason)` where a
    stop request ended the run before its last step (train.py then ends as the signal does). A
    stop asked for as the last step's work ends leaves a finished run, and says so.

    Runs data-parallel over every device of every process (`jaxae.training.parallel`); only
    process 0 writes files and prints, and holds the workdir's writer lock for the run (a
    second run on the workdir is refused: WorkdirBusy). Stops early, with a checkpoint, at
    config.train.stop_after_steps or on a stop request; rerunning the command (without
    stop_after_steps, or with a larger one) continues and ends bitwise equal to an
    uninterrupted run.

    Nothing is written before the run is accepted (config, workdir, lock, data, memory,
    checkpoint fit); config.json is written just before a fresh run's first checkpoint
    and once a resumed run's first checkpoint of its own is on disk (`_RunFiles`), so a
    refused run, or one that fails before saving, leaves the workdir's description as it
    was. A failed checkpoint write ends the run at the next chunk with
    CheckpointWriteError; a non-finite quantity with FloatingPointError naming the knob.
    """
    config_lib.validate(config)
    at_steps = sorted(set(evaluate_at_steps))
    if any(not isinstance(s, numbers.Integral) or s < 1 for s in at_steps):
        raise ValueError(f"evaluate_at_steps={at_steps}: give whole steps of 1 or more")
    evaluations = _Evaluations(tuple(int(s) for s in at_steps), config.eval.every_steps,
                               on_evaluation)
    mesh = parallel.data_mesh()
    main = parallel.is_main_process()
    if main:
        _warn_of_script_registrations(config)
    trained = holds_run(workdir)  # (preparing the workdir below writes no run into it)
    variational = None  # whether the model is, where known before the data are
    if not trained:  # a run's own config.json stands as it was recorded
        config_lib.check_new_run(config)
        variational = build.variational_before_data(config)
        if variational is not None:
            build.check_unread_fields(config, variational, config_lib.make_task(config))
        # (a trained run's batch size is checked against its record below)
        config_lib.check_batch_splits(config.train.batch_size, mesh.size)
    created = not os.path.exists(workdir)
    prepare_workdir(workdir, config)  # a run there has this config's batch size (or refused)
    if trained:
        config_lib.check_batch_splits(config.train.batch_size, mesh.size, workdir)
    with _writer_lock(workdir, main):
        try:
            return _train(config, workdir, mesh, main, evaluations, stop_requested, on_saved,
                          on_stopped, check_unread=not trained and variational is None)
        except BaseException:
            if main and created:
                _remove_if_unused(workdir)
            raise


def _warn_of_script_registrations(config: ml_collections.ConfigDict) -> None:
    """A model or task name registered by the running script itself (`__main__`) is one
    that evaluate.py, another process, cannot find: said once, before the run starts."""
    from jaxae.models import MODELS
    from jaxae.tasks import TASKS

    for section, registry in (("model", MODELS), ("task", TASKS)):
        name = config[section].name
        if registry.registered(name) is not None and registry.origin(name) == "__main__":
            print(f"warning: {section} {name!r} is registered by the running script, which "
                  "evaluate.py cannot import: evaluate this run with "
                  "jaxae.evaluation.evaluate.evaluate_workdir from a script that registers "
                  f"it, or move the {section} into a module file and name it "
                  f"'my_{section}s.py:{name}'", file=sys.stderr)


def _remove_if_unused(workdir: str) -> None:
    """Removes a workdir this run made, while its lock is held, if the run failed before
    writing anything into it (bad data, a model that does not fit): it holds only the lock
    file and empty folders. Anything else, it keeps."""
    lock = os.path.join(workdir, LOCK_FILE)
    if all(os.path.join(root, f) == lock for root, _, files in os.walk(workdir) for f in files):
        # a folder left behind matters less than the error on its way
        shutil.rmtree(workdir, ignore_errors=True)


def _stop_before_training(stopped: str, step: int) -> StopRequested:
    then = (f"rerun the same command to continue from step {step}" if step
            else "rerun the same command to start")
    return StopRequested(f"{stopped} received before training started: nothing new to save; "
                         f"{then}", stopped)


def _train(config: ml_collections.ConfigDict, workdir: str, mesh, main: bool,
           evaluations: _Evaluations, stop_requested: StopRequest,
           on_saved: Callable[[], None], on_stopped: Callable[[str], None],
           check_unread: bool) -> steps.TrainState:
    """train_and_evaluate, once the workdir is checked and locked (`check_unread`: a new
    run's fields it would not read, where the model could not be built before the data)."""
    train_config = config.train
    if stopped := stop_requested():
        raise _stop_before_training(stopped, 0)
    keys = derive_keys(config.seed)
    build.check_size_before_data(config)
    data = build.load_run_data(config, keys.data, workdir)
    config_lib.check_batch_fits(config, len(data.train), len(data.test), mesh.size)
    task, model, train_model, objective = build.run_objects(config, data.image_shape,
                                                            data.num_classes, train=True)
    if (note := build.classes_note(config, model, data.train.labels, data.class_names)) \
            and jax.process_index() == 0:
        print(note, file=sys.stderr, flush=True)
    if check_unread:
        build.check_unread_fields(config, model.variational, task)
    steps_per_epoch = batches.steps_per_epoch(len(data.train), train_config.batch_size)
    total_steps = steps_per_epoch * train_config.num_epochs
    if total_steps > MAX_STEPS:  # the step counter, and a stream's position, are int32
        raise config_lib.ConfigError(
            f"config.train.num_epochs={train_config.num_epochs} asks for {total_steps:,} steps "
            f"of {steps_per_epoch:,} an epoch, more than a run counts ({MAX_STEPS:,}): use at "
            f"most {MAX_STEPS // steps_per_epoch:,} epochs")

    def fresh() -> steps.TrainState:
        return steps.create_train_state(model, build.make_optimizer(config, total_steps),
                                        task.input_shape(data.image_shape), keys.init,
                                        build.init_scheme(config), check=False)

    sharding = parallel.replicated(mesh)
    like = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                        jax.eval_shape(fresh))  # shapes only: nothing computed or placed
    _check_memory(config, like, data)
    manager = checkpoints.make_manager(checkpoints.checkpoint_dir(workdir),  # under its lock
                                       train_config.keep_checkpoints, sole_writer=main)
    run_files = _RunFiles(workdir, config, manager, due=main, data=data.fingerprint,
                          content=data.content_sha256)
    run_files.facts = run_facts(data, like, steps_per_epoch, total_steps)
    try:
        try:
            state, position = _restore_or_init(manager, fresh, like, mesh, workdir)
        except checkpoints.CheckpointMismatch as error:
            raise mismatch_with_code(error, workdir, config, run_files.code) from None
        first_step = int(state.step)
        if position is not None:
            _check_position(position, len(data.train), train_config.batch_size, first_step,
                            workdir)
        run_files.fresh = first_step == 0
        if first_step > 0 and main:
            changes = resume_changes(workdir, config, first_step, run_files.code,
                                     run_files.environment)
            notes, warnings = changes.notes, changes.warnings
            if first_step >= total_steps:  # nothing trains: the changes reach no step
                changed = (changes.record or {}).get("config")
                notes = [f"the run is finished at step {first_step}: "
                         f"{changes_shown(changed)} change nothing (no step is trained, saved "
                         "or pruned)"] if changed else []
                warnings = []  # another device count or code: no step computed with it
            for line in notes:
                print(line, flush=True)
            for line in warnings:
                print(line, file=sys.stderr, flush=True)
            run_files.resume = changes.record  # kept once a checkpoint of this part is saved
        if first_step > 0:
            run_files.write_if_missing()  # the checkpoint fits: the config describes it
        if first_step >= total_steps:
            run_files.keep_as_they_are()
        if first_step >= total_steps and main:
            print(_nothing_to_train(config, first_step, total_steps), flush=True)
        if stopped := stop_requested():
            raise _stop_before_training(stopped, first_step)
        run = _Run(config, workdir, mesh, main, data, keys, task, model, train_model,
                   objective, manager, run_files, evaluations, stop_requested,
                   steps_per_epoch, total_steps)
        state, step, stopped = _train_loop(run, state, position)
        if stopped and step == first_step:  # asked as the loop was being set up
            raise _stop_before_training(stopped, first_step)
    except BaseException:
        try:
            checkpoints.close(manager)  # the save in flight finished, Orbax's threads released
            run_files.write_if_saved()  # config.json describes the checkpoints this run wrote
        except OSError as e:  # a failed write: the error on its way comes first
            print(f"warning: {e}", file=sys.stderr, flush=True)
        raise
    checkpoints.close(manager)
    run_files.write_if_saved()
    on_saved()
    if jax.process_count() > 1:  # every process prints: equal figures show they ran in step
        print(f"process {jax.process_index()}: parameter checksum "
              f"{parameter_checksum(state):.10e}", flush=True)
    if main and 0 < step < total_steps:  # stopped early: in an epoch, at its end or its eval
        print(_stopped_early(config, step, first_step, stopped), flush=True)
    if stopped and step < total_steps:
        on_stopped(stopped)
    elif stopped and main:  # during the last step's evaluation or checkpoint: all done
        print(f"{stopped} received as the run ended: it is finished (step {step})", flush=True)
    return state


def run_facts(data: Splits, state_shapes: Any, steps_per_epoch: int, total_steps: int
              ) -> dict:
    """What a run's config and data came to, for environment.json's "run" (the run's first
    line says the same to a person): the splits' sizes, the image shape, the steps and the
    model's parameters."""
    return {"train_images": len(data.train),
            "val_images": 0 if data.val is None else len(data.val),
            "test_images": len(data.test), "image_shape": list(data.image_shape),
            "steps_per_epoch": steps_per_epoch, "total_steps": total_steps,
            "parameters": memory.state_size(state_shapes)[0], "data_source": data.source}


def _nothing_to_train(config: ml_collections.ConfigDict, step: int, total_steps: int) -> str:
    """What a rerun of a finished run says, and how to train it further, in the config's
    words: a caller may be train.py (which names evaluate.py next) or a library's loop (the
    experiments reload their finished runs so)."""
    schedule = config.optim.schedule
    longer = (f"a longer run needs a workdir of its own: under the {schedule} schedule its "
              "length is part of the run" if optimizers.spans_run(schedule) else
              "a larger train.num_epochs trains it on")
    return (f"the run has trained {step} steps and train.num_epochs={config.train.num_epochs} "
            f"asks for {total_steps}: nothing to train ({longer})")


def _stopped_early(config: ml_collections.ConfigDict, step: int, first_step: int,
                   stopped: str | None) -> str:
    """What a run that ends before its last step says: a stop signal's, or
    train.stop_after_steps'."""
    if stopped:
        return (f"{stopped} received: stopped at step {step} with a checkpoint; rerun the same "
                "command to continue")
    what = (f"the run is at step {step} already, so nothing was trained" if step == first_step
            else f"stopped at step {step} with a checkpoint")
    return (f"train.stop_after_steps={config.train.stop_after_steps}: {what}; rerun without it "
            "(or with a larger one) to continue")


class _RunFiles:
    """config.json and environment.json, written by process 0 so that they describe the
    checkpoints in the workdir: a fresh run's just before its first checkpoint is saved (no
    checkpoint is ever on disk without them, so a run killed as it saves is resumed only by
    its own config), a resumed run's once a checkpoint of its own is on disk, and at once
    when a resumed checkpoint fits and the workdir has no config.json (it was removed); a
    resume's changes join resumes.jsonl as they do."""

    def __init__(self, workdir: str, config: ml_collections.ConfigDict, manager, due: bool,
                 data: str = "", content: str = ""):
        self.workdir, self.config, self.manager, self.due = workdir, config, manager, due
        self.data, self.content = data, content  # the images' fingerprint and content hash
        self.code = code_files(config)  # the user's files as this run imported them
        self.environment = run_environment()  # jaxae's source, threads, ... as it started
        self.resume: dict | None = None  # what this resume changed, for resumes.jsonl
        self.fresh = False  # set once it is known that no checkpoint was restored
        self.facts: dict | None = None  # `run_facts`, once the state's shapes are known

    def keep_as_they_are(self) -> None:
        """A finished run, rerun: it saves nothing, so its files keep describing the run
        that saved its checkpoints (a smaller train.num_epochs is not recorded)."""
        self.due = False

    def write_if_missing(self) -> None:
        if self.due and not os.path.exists(os.path.join(self.workdir, CONFIG_FILE)):
            self._write()

    def write_before_first_save(self) -> None:
        """A fresh run's (one that restored no checkpoint): written whether or not a
        config.json is there (an attempt killed before its first checkpoint left its own)."""
        if self.due and self.fresh:
            self._write()

    def write_if_saved(self) -> None:
        if self.due and checkpoints.confirmed_step(self.manager) is not None:
            self._write()

    def _write(self) -> None:
        if self.resume is not None and (failed := append_resume(self.workdir, self.resume)):
            print(failed, file=sys.stderr, flush=True)
        write_run_files(self.workdir, self.config, self.data, self.code, self.content,
                        self.environment, self.facts)
        self.due = False


@dataclasses.dataclass(frozen=True)
class _Run:
    """What a run's training loop works with and never changes: the config, the workdir,
    the device mesh, whether this process writes the run's files (`main`), the data and
    keys, the task, the models (`train_model` in the config's compute dtype), the
    objective, the checkpoint manager, the run's files, its evaluation schedule, its stop
    requests, and the steps of an epoch and of the whole run."""

    config: ml_collections.ConfigDict
    workdir: str
    mesh: Mesh
    main: bool
    data: Splits
    keys: Keys
    task: Task
    model: nn.Module
    train_model: nn.Module
    objective: Objective
    manager: Any  # Orbax's CheckpointManager (`checkpoints.make_manager`)
    run_files: _RunFiles
    evaluations: _Evaluations
    stop_requested: StopRequest
    steps_per_epoch: int
    total_steps: int


def _train_loop(run: _Run, state: steps.TrainState, position: dict | None
                ) -> tuple[steps.TrainState, int, str | None]:
    """The epochs, from `state` on (`position`: the data stream's, from its checkpoint):
    returns (state, step, the stop reason or None)."""
    train_config = run.config.train
    max_steps = min(train_config.log_every_steps, run.steps_per_epoch)  # steps per chunk, at most
    step = int(state.step)
    if run.data.streamed:  # a chunk on the device within data.memory_budget_mb
        max_steps = min(max_steps, streamed_chunk_steps(run.config, run.data))
    faults = Faults(run.config, run.objective, run.manager, step + 1)
    if step >= run.total_steps:  # a finished run, rerun: no batch to place or stream
        source = FinishedSource()
    elif run.data.streamed:
        source = StreamedSource(run.data, run.keys.data, run.mesh, run.config, step,
                                 position, max_steps)
    else:
        source = ResidentSource(run.data, run.keys.data, run.mesh, train_config.batch_size,
                                 run.steps_per_epoch, run.total_steps)
    with contextlib.closing(source):
        return _epochs(run, state, source, faults, max_steps)


def _announce(run: _Run, state: steps.TrainState) -> None:
    """The run's first line (the model, its size and code, the data, the steps, the
    devices), and the notes a fresh or streamed run needs."""
    config, data, mesh = run.config, run.data, run.mesh
    devices = f"{mesh.size} device{'s' * (mesh.size > 1)}"
    if jax.process_count() > 1:
        devices += f" in {jax.process_count()} processes"
    height, width, channels = data.image_shape
    count, _ = memory.state_size(state)
    shape = run.model.latent_shape  # None: a model without a bottleneck (ESPCN)
    code = "no code" if shape is None else "code " + "x".join(map(str, shape))
    per_epoch, total = run.steps_per_epoch, run.total_steps
    print(f"{display_name(config.model.name)} ({count:,} parameters, {code}) on "
          f"{display_name(config.data.name)} ({printable(data.source)}): "
          f"{len(data.train)} train / {len(data.test)} test images of "
          f"{height}x{width}x{channels}, {per_epoch} step{'s' if per_epoch != 1 else ''} per "
          f"epoch, {total} step{'s' if total != 1 else ''} in all, on {devices} "
          f"({jax.default_backend()}{', streamed' if data.streamed else ''})", flush=True)
    if int(state.step) == 0:
        for note in (build.replaced_defaults_note(config), build.init_scheme_note(config),
                     build.warmup_note(config, run.model.variational, total)):
            if note:
                print(note, flush=True)
    batch, budget = _batch_bytes(config, data), config.data.memory_budget_mb
    if data.streamed and batch > budget * 2**20:
        print(f"note: one batch ({memory.size_text(batch)}) is more than "
              f"data.memory_budget_mb={budget}: it is streamed a batch at a time", flush=True)


def _epochs(run: _Run, state: steps.TrainState, source: BatchSource, faults: Faults,
            max_steps: int) -> tuple[steps.TrainState, int, str | None]:
    """_train_loop's epochs, with the batches of `source`, in chunks of at most `max_steps`
    steps."""
    config, data, keys, evaluations = run.config, run.data, run.keys, run.evaluations
    main, mesh, train_config = run.main, run.mesh, run.config.train
    steps_per_epoch, total_steps = run.steps_per_epoch, run.total_steps
    step = int(state.step)

    last_saved = step  # the state it starts from: a fresh one, or one restored from disk

    def save() -> None:
        """Checkpoints the state once per step (a stop right after a scheduled save, or
        before the first chunk has run, saves nothing new); a step on disk from an earlier
        process, which resuming passed over as damaged, is written over."""
        nonlocal last_saved
        if step == last_saved:
            return
        started = time.perf_counter()
        run.run_files.write_before_first_save()  # no checkpoint is on disk without them
        try:
            checkpoints.save_state(run.manager, state, source.position(step), replace=True)
        except checkpoints.NonFinite as e:  # a parameter the metrics did not show non-finite
            raise faults.error(f"{e.leaf} became non-finite", e.step, training=False) from None
        last_saved = step
        log.set_aside(time.perf_counter() - started)

    def saved_so_far(block: bool = False) -> None:
        """Raises the error of a save that failed; writes config.json once one is on disk."""
        checkpoints.check_saved(run.manager, block=block)
        run.run_files.write_if_saved()

    writer = MetricWriter(run.workdir) if main else None
    kept = writer.drop_after(step) if writer else []  # records of steps a restart runs again
    timings = TimingLog(run.workdir, step) if main else None
    first_step, part_started = step, time.perf_counter()
    # every chunk ends at a log point or sooner (`_chunk_end`)
    train_chunk = steps.make_train_chunk(
        run.train_model, run.task, run.objective, batch_size=train_config.batch_size,
        max_steps=max_steps, mesh=mesh)
    eval_step = steps.make_eval_step(run.model, run.task, run.objective, floors=False)
    floor_step, floors = steps.make_floor_step(run.task), {}  # floors: computed once

    train_key = parallel.put_replicated(keys.train, mesh)
    if main and step < total_steps:  # a finished run said "nothing to train" instead
        _announce(run, state)
    stop_at = min(total_steps, train_config.stop_after_steps or total_steps)
    log = _ChunkLog(config, writer, steps_per_epoch, stop_at, faults, timings)

    def evaluate(epoch: int) -> None:
        """Evaluates the state at `step`, in `epoch` (1-based): a record and the hook."""
        started = time.perf_counter()
        try:
            evaluation = evaluate_splits(eval_step, _local(state.variables), data,
                                         config.eval.batch_size, keys.eval, floor_step, floors)
        except Exception:  # out of memory, say: the steps trained are saved first (a fault
            save()  # the evaluation finds, a NaN, still saves nothing: below); the rerun
            raise  # evaluates that step before it trains on (`_evaluation_pending`)
        faults.check_evaluation(evaluation, step)
        if writer:  # with the classical method its *_baseline_psnr scores, by name
            named = {"baseline": run.task.baseline_name} if any(
                k.endswith("baseline_psnr") for k in evaluation) else {}
            writer.write({"step": step, "epoch": epoch, **evaluation, **named})
        if evaluations.hook:
            evaluations.hook(step, epoch, evaluation)
        seconds = time.perf_counter() - started
        if timings:
            timings.evaluated(step, epoch, seconds)
        log.set_aside(seconds)  # not training: out of its rate

    if writer and _evaluation_pending(run, step, kept):  # its evaluation failed as it ran
        evaluate((step - 1) // steps_per_epoch + 1)
    stopped = None
    every = train_config.checkpoint_every_steps
    while step < stop_at and not (stopped := run.stop_requested()):
        epoch, first = divmod(step, steps_per_epoch)
        epoch_end = min((epoch + 1) * steps_per_epoch, stop_at)
        bar = tqdm(desc=f"epoch {epoch + 1}/{train_config.num_epochs}", initial=first,
                   total=steps_per_epoch, leave=False, disable=None if main else True)
        while step < epoch_end and not (stopped := run.stop_requested()):
            end = min(_chunk_end(step, epoch_end, stop_at, config, evaluations.next_after(step)),
                      step + max_steps,  # a streamed chunk within the memory budget
                      step + (log.steps_within(CHUNK_SECONDS) or max_steps))
            arrays, order, first_index = source.chunk(step, end - step)
            state, metrics = train_chunk(state, arrays, order, first_index, train_key,
                                         end - step)
            log.add(step + 1, end - step, metrics, epoch, bar)
            saved_so_far()  # a save that failed stops the run here, a chunk after it
            step = end
            if evaluations.due(step) and step % steps_per_epoch:  # an epoch's end: below
                log.flush()  # the step's training record first
                evaluate(epoch + 1)
            if every and step % every == 0 and step % steps_per_epoch:  # an epoch's end: below
                log.flush()  # metrics are checked before every checkpoint
                save()
        log.flush()
        bar.close()
        if step < (epoch + 1) * steps_per_epoch:  # stopped inside the epoch
            save()
            break
        evaluate(epoch + 1)
        stopped = run.stop_requested()  # (one asked for inside the epoch broke out above)
        if (epoch + 1) % train_config.checkpoint_every_epochs == 0 or step >= stop_at or \
                stopped or (every and step % every == 0):
            save()
    saved_so_far(block=True)
    if main and step > first_step:
        print(_trained_line(first_step, step, time.perf_counter() - part_started, log),
              flush=True)
    return state, step, stopped


def _evaluation_pending(run: _Run, step: int, records: list[dict]) -> bool:
    """Whether the checkpoint resumed from is of a step whose evaluation was due and is not
    among metrics.jsonl's `records`: it was saved as that evaluation failed (out of memory,
    say). Run before training on, its record keeps metrics.jsonl as an uninterrupted run
    writes it (the evaluation's draws depend on the key and the step's state alone)."""
    if step == 0 or not (step % run.steps_per_epoch == 0 or run.evaluations.due(step)):
        return False
    return not any(record["step"] == step and "test_loss" in record for record in records)


def _trained_line(first_step: int, step: int, seconds: float, log: _ChunkLog) -> str:
    """What this part of the run trained, in how long: its time from the first chunk's
    dispatch (compiling, evaluations and saves included) and its rate while training."""
    took = f"{seconds:.1f} s" if seconds < 60 else duration(seconds)
    rate = f"; {log.rate:,.0f} images/s while training" if log.rate else ""
    return (f"trained steps {first_step + 1:,} to {step:,} in {took} (compiling, evaluations "
            f"and saves included{rate}; {TIMINGS_FILE} holds the timings)")
