"""Faults, injected into real runs on Fashion-MNIST: SIGKILL at chosen moments, SIGTERM and
Ctrl-C, damaged checkpoints, numerical blow-ups and bad input.

What needs a process of its own (a kill, a signal, an exit code, the cost of a start) runs
train.py / evaluate.py: a process started for it where it is killed or signalled, else a
fork of one that has imported the libraries (tests/test_cli.py's `Prestarted`), its exit code
and stderr its own; reruns after a fault run in this process through `cli.run`, as the entry
points do. Runs that must end as
if nothing happened use the kill script's flags (configs/test.py, a checkpoint every 2 steps)
and are compared bitwise with one uninterrupted run of them. The bad-input cases run in the
background from the start.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxae import build, cli
from jaxae.cli import quiet
from jaxae.evaluation.evaluate import evaluate_workdir
from jaxae.keys import derive_keys
from jaxae.training import checkpoints, steps
from jaxae.training.metric_writer import MetricWriter, read_metrics
from jaxae.training.trainer import train_and_evaluate
from jaxae.training.workdir import lock_workdir, unlock_workdir
from tests.conftest import lines_of, one_line
from tests.test_cli import Prestarted

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BAD_INPUT_CPU_S = 15.0  # a whole process's CPU seconds, imports included (the same when busy)
BAD_INPUT_WALL_S = 60.0  # and in wall time: it must not wait for anything (network, locks)


def _load_kill_script():
    """scripts/kill_test.py as a module (scripts/ is not a package)."""
    path = os.path.join(ROOT, "scripts", "kill_test.py")
    spec = importlib.util.spec_from_file_location("kill_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


kill_test = _load_kill_script()


# ---------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def run_env(tmp_path_factory) -> dict[str, str]:
    """Environment for train.py: a compilation cache of this module's own, filled by the
    uninterrupted run before any process is killed."""
    return kill_test.cache_env(str(tmp_path_factory.mktemp("jax_cache")))


@pytest.fixture(scope="module")
def reference(fashion_tfds_dir, tmp_path_factory, run_env) -> str:
    """The workdir of one uninterrupted train.py run with the kill script's flags."""
    root = tmp_path_factory.mktemp("reference")
    workdir = str(root / "uninterrupted")
    kill_test.uninterrupted_run(workdir, fashion_tfds_dir, run_env, str(root))
    return workdir


@pytest.fixture
def kill_script_config(tiny_config) -> Callable[..., ml_collections.ConfigDict]:
    """The config train.py builds from the kill script's flags, for in-process reruns."""

    def make(**overrides) -> ml_collections.ConfigDict:
        return tiny_config(**{"task.name": "denoise", "task.corruption": "dropout",
                              "train.checkpoint_every_steps": 2, "train.log_every_steps": 4,
                              "seed": 0, **overrides})

    return make


def cli_run(fn: Callable, *args) -> tuple[int, object]:
    """(exit code, result) of fn(*args) run as the entry points run it."""
    try:
        return 0, cli.run(fn, *args)
    except SystemExit as e:
        return int(e.code), None


def copy_run(reference: str, tmp_path) -> str:
    return shutil.copytree(reference, str(tmp_path / "run"))


def largest_file(folder: str) -> str:
    """The biggest file under a checkpoint folder: the one holding the parameters."""
    files = [os.path.join(d, f) for d, _, names in os.walk(folder) for f in names]
    return max(files, key=os.path.getsize)


def damage(workdir: str, step: int, how: str) -> None:
    """Truncates to half, deletes, or flips one bit in the middle of the main data file of
    the checkpoint at `step` (a flipped bit leaves a file Orbax reads without complaint)."""
    path = largest_file(os.path.join(checkpoints.checkpoint_dir(workdir), str(step)))
    if how == "deleted":
        os.remove(path)
    elif how == "flipped":
        with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) // 2)
            byte = f.read(1)[0]
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte ^ 1]))
    else:
        os.truncate(path, os.path.getsize(path) // 2)


def snapshot(folder: str) -> dict[str, str]:
    """{relative path: sha256} of every file under a folder."""
    digests = {}
    for directory, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                digests[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return digests


def restored(workdir: str, step: int) -> steps.TrainState:
    """The train state of a workdir's checkpoint at `step`, restored with jaxae itself into
    a fresh state of the workdir's config."""
    from absl import logging

    from jaxae.training.workdir import load_run_config

    logging.set_verbosity(logging.ERROR)  # Orbax notes that the manager is read-only
    config = load_run_config(workdir)
    data = build.load_data(config, derive_keys(config.seed).data)  # for the image shape
    task, model, _, _ = build.run_objects(config, data.image_shape, data.num_classes)
    like = steps.create_train_state(model, build.make_optimizer(config),
                                    task.input_shape(data.image_shape),
                                    derive_keys(config.seed).init, build.init_scheme(config))
    manager = checkpoints.make_manager(checkpoints.checkpoint_dir(workdir), read_only=True)
    try:
        return checkpoints.restore_state(manager, like, step)
    finally:
        manager.close()


# ---------------------------------------------------------------------------- SIGKILL


@pytest.mark.slow
def test_killed_three_times_once_mid_write_and_a_failed_write_end_bitwise_equal(
        fashion_tfds_dir, reference, run_env, tmp_path):
    """Three SIGKILLs, then a start whose checkpoint write fails (its files capped below a
    checkpoint's size, a full disk's stand-in): one error line naming the step it could not
    write, the older checkpoints kept, and the rerun still ends bitwise equal."""
    points = ["mid_epoch", "checkpoint_write", "evaluation", "failed_write"]
    outcome = kill_test.kill_test(fashion_tfds_dir, str(tmp_path), points,
                                  reference=(reference, None),
                                  cache_dir=run_env["JAX_COMPILATION_CACHE_DIR"])
    print(kill_test.report(outcome))
    assert [k.point for k in outcome.kills] == points
    assert outcome.during_writes >= 1, "no kill landed inside a checkpoint write"
    failed = outcome.kills[-1]
    assert re.match(r"error: could not write the checkpoint at step \d+ to \S+ \(File too "
                    r"large, errno 27\): the newest checkpoint on disk is step \d+; ",
                    failed.note), failed.note
    assert failed.seconds < 60, "the failed write was not noticed at once"
    assert outcome.differences == []


def test_the_comparison_sees_one_checkpoint_out_of_place(reference, tmp_path):
    workdir = copy_run(reference, tmp_path)
    folder = checkpoints.checkpoint_dir(workdir)
    os.rename(os.path.join(folder, "28"), os.path.join(folder, "swap"))
    os.rename(os.path.join(folder, "30"), os.path.join(folder, "28"))
    os.rename(os.path.join(folder, "swap"), os.path.join(folder, "30"))
    differences = kill_test.compare_runs(reference, workdir)
    assert any(d.startswith("step 30: ['params']") for d in differences), differences
    assert "metrics.jsonl differs" not in differences


# ---------------------------------------------------------------------------- SIGTERM, Ctrl-C


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, timeout: float = 120.0
             ) -> None:
    """Polls until `condition` holds; fails if the process ends or time runs out first."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"train.py ended early with exit code {proc.returncode}"
        assert time.monotonic() < deadline, "train.py did not get that far in time"
        time.sleep(0.005)


@pytest.mark.slow
def test_a_signal_stops_with_a_checkpoint_and_the_rerun_ends_bitwise_equal(
        fashion_tfds_dir, reference, run_env, kill_script_config, tmp_path, capsys):
    """SIGTERM; Ctrl-C (SIGINT) goes to the same handler (test_reliability.py)."""
    sig = signal.SIGTERM
    workdir = str(tmp_path / "run")
    metrics = os.path.join(workdir, "metrics.jsonl")
    with open(tmp_path / "stdout", "w+") as out:
        proc = subprocess.Popen(kill_test.train_command(workdir, fashion_tfds_dir), cwd=ROOT,
                                env=run_env, stdout=out, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: os.path.exists(metrics) and os.path.getsize(metrics) > 0, proc)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=120)
        out.seek(0)
        stdout = out.read()
    assert proc.returncode == -sig, stderr[-3000:]  # ended by it: a shell's loop stops too
    said = re.search(rf"{sig.name} received: stopped at step (\d+) with a checkpoint", stdout)
    assert said, stdout[-2000:]
    step = int(said[1])
    assert 0 < step < 32 and step in kill_test.checkpoint_steps(workdir)

    code, state = cli_run(train_and_evaluate, kill_script_config(), workdir)
    assert code == 0
    assert f"resumed from the checkpoint at step {step}" in capsys.readouterr().out
    assert int(state.step) == 32
    assert kill_test.compare_runs(reference, workdir) == []


# ---------------------------------------------------------------------------- damaged checkpoints


@pytest.mark.slow
@pytest.mark.parametrize("how", ["truncated", "deleted", "flipped"])
def test_a_damaged_newest_checkpoint_is_passed_over_with_one_warning(
        how, reference, entry_points, kill_script_config, tmp_path, capsys):
    workdir = copy_run(reference, tmp_path)
    assert kill_test.checkpoint_steps(workdir) == [28, 30, 32]
    damage(workdir, 32, how)
    warning = "warning: the checkpoint at step 32 is damaged ("

    if how == "truncated":  # evaluate.py takes the same path in every case (once is enough)
        evaluated = entry_points.start("evaluate.py", f"--workdir={workdir}").result()
        assert evaluated.returncode == 0, evaluated.stderr[-3000:]
        assert "evaluating the checkpoint at step 30 of" in evaluated.stdout
        lines = lines_of(evaluated.stderr)
        assert len(lines) == 1, evaluated.stderr
        assert lines[0].startswith(warning) and lines[0].endswith("trying an older one")

    code, state = cli_run(train_and_evaluate, kill_script_config(), workdir)
    out, err = capsys.readouterr()
    assert code == 0 and int(state.step) == 32
    line = one_line(err)
    assert line.startswith(warning)
    assert "resumed from the checkpoint at step 30" in out
    assert kill_test.compare_runs(reference, workdir) == []  # step 32 written again, intact


def test_only_the_leftovers_of_a_failed_restore_are_silenced(monkeypatch, caplog):
    """A failed restore's concurrent reads end later, on other threads, as unraisable errors
    or asyncio log records; those are dropped, anything else still reaches its hook."""
    passed_on = []
    monkeypatch.setattr(sys, "unraisablehook", passed_on.append)
    monkeypatch.setattr(quiet, "_chained_unraisablehook", None)
    quiet.silence_abandoned_reads()
    orbax_read = types.SimpleNamespace(
        cr_code=types.SimpleNamespace(co_filename="/site-packages/orbax/serialization.py"))
    other_coroutine = types.SimpleNamespace(
        cr_code=types.SimpleNamespace(co_filename="/site-packages/mine.py"))

    def unraisable(obj, error):
        return types.SimpleNamespace(object=obj, exc_type=type(error), exc_value=error)

    loop_closed = RuntimeError("Event loop is closed")
    dropped = [unraisable(orbax_read, ValueError("OUT_OF_RANGE")), unraisable(None, loop_closed)]
    kept = [unraisable(other_coroutine, ValueError("x")), unraisable(object(), loop_closed),
            unraisable(None, RuntimeError("something else"))]
    for args in dropped + kept:
        sys.unraisablehook(args)
    assert passed_on == kept

    asyncio_logger = logging.getLogger("asyncio")
    try:
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            asyncio_logger.error("Task exception was never retrieved\nfuture: <Task coro="
                                 "<async_deserialize() defined at /site-packages/orbax/x.py>>")
            asyncio_logger.error("Task exception was never retrieved\nfuture: <Task coro="
                                 "<mine() defined at /home/me/mine.py>>")
            # a gathering future names only the array: Orbax is in its traceback
            for n, where in enumerate((f"{os.sep}site-packages{os.sep}orbax{os.sep}ser.py",
                                       f"{os.sep}home{os.sep}me{os.sep}mine.py")):
                namespace = {}
                exec(compile("def read():\n    raise ValueError('OUT_OF_RANGE')\n", where,
                             "exec"), namespace)
                try:
                    namespace["read"]()
                except ValueError:
                    asyncio_logger.error("_GatheringFuture exception was never retrieved\n"
                                         f"future: <_GatheringFuture {n}>",
                                         exc_info=sys.exc_info())
        assert [r.getMessage().splitlines()[-1] for r in caplog.records] == [
            "future: <Task coro=<mine() defined at /home/me/mine.py>>",
            "future: <_GatheringFuture 1>"]
    finally:
        asyncio_logger.removeFilter(quiet._is_not_abandoned_read_task)


@pytest.mark.slow
def test_no_intact_checkpoint_is_one_error_and_nothing_is_deleted(reference, kill_script_config,
                                                                  tmp_path, capsys):
    workdir = copy_run(reference, tmp_path)
    for step in kill_test.checkpoint_steps(workdir):
        damage(workdir, step, "truncated")
    before = snapshot(os.path.join(workdir, "checkpoints"))
    metrics = snapshot(workdir)["metrics.jsonl"]

    code, _ = cli_run(train_and_evaluate, kill_script_config(), workdir)
    err = lines_of(capsys.readouterr().err)
    assert code == 1
    assert [line for line in err if line.startswith("error:")] == err[-1:]
    assert err[-1].startswith(f"error: no checkpoint in {workdir}/checkpoints restores "
                              "(steps [32, 30, 28] are damaged)")
    assert all(line.startswith("warning: the checkpoint at step") for line in err[:-1])
    assert snapshot(os.path.join(workdir, "checkpoints")) == before
    assert snapshot(workdir)["metrics.jsonl"] == metrics


@pytest.mark.slow
def test_a_checkpoint_that_does_not_fit_the_config_names_the_parameter(
        reference, kill_script_config, tmp_path, capsys):
    workdir = copy_run(reference, tmp_path)
    path = os.path.join(workdir, "config.json")
    with open(path) as f:
        saved = json.load(f)
    with open(path, "w") as f:
        json.dump({**saved, "model": {**saved["model"], "latent_dim": 2}}, f)  # checkpoints: 10

    code, _ = cli_run(train_and_evaluate, kill_script_config(**{"model.latent_dim": 2}),
                      workdir)
    line = one_line(capsys.readouterr().err)
    assert code == 1
    assert re.match(r"error: the checkpoint at step 32 in \S+ does not fit: params/\S+ is "
                    r"\(\d+(, \d+)?\) there, \(\d+(, \d+)?\) here: the run's config.json and "
                    r"model code describe another model than that step's \(a config.json "
                    r"edited since, or a step of another run's\): put back the run's own "
                    r"config.json, or move that step's folder out of the checkpoints$", line), line


# ---------------------------------------------------------------------------- numerical faults

# Plain SGD at 0.1 on a 2-D VAE: the gradient norm overflows at step 3, between the
# checkpoints at steps 2 and 4.
BLOW_UP = {"model.name": "vae", "model.latent_dim": 2, "optim.name": "sgd",
           "optim.learning_rate": 0.1}


@pytest.fixture(scope="module")
def blown_up(fashion_tfds_dir, entry_points, tmp_path_factory) -> tuple[str, str]:
    """(workdir, stderr) of train.py on BLOW_UP with a checkpoint every 2 steps."""
    workdir = str(tmp_path_factory.mktemp("blow_up") / "run")
    flags = [f"--config.{field}={value}" for field, value in BLOW_UP.items()]
    result = entry_points.start("train.py", "--config=configs/test.py", f"--workdir={workdir}",
                                f"--config.data.tfds_dir={fashion_tfds_dir}",
                                "--config.train.checkpoint_every_steps=2", *flags).result()
    assert result.returncode == 1, result.stderr[-3000:]
    return workdir, result.stderr


@pytest.mark.slow
def test_a_numerical_fault_is_one_line_and_the_checkpoint_before_it_is_intact(blown_up):
    workdir, stderr = blown_up
    line = one_line(stderr)
    said = re.match(r"error: (params/\S+|train_\w+) became \S+ at step (\d+): training stopped "
                    r"without writing a checkpoint for it \(the newest checkpoint, step \d+, holds "
                    r"the last good state\); lower --config.optim.learning_rate \(now 0.1\)$",
                    line)
    assert said, line
    saved = kill_test.checkpoint_steps(workdir)
    assert saved and saved[-1] < int(said[2])
    assert not kill_test.tmp_checkpoints(workdir), "a checkpoint write was abandoned"
    params = jax.tree.leaves(restored(workdir, saved[-1]).params)
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in params)


@pytest.mark.slow
def test_a_numerical_fault_is_named_at_its_first_step_and_quantity(blown_up, tiny_config,
                                                                  tmp_path):
    truth = tiny_config(**{"train.log_every_steps": 1, **BLOW_UP})  # every step: the exact fault
    with pytest.raises(FloatingPointError) as first:
        train_and_evaluate(truth, str(tmp_path))
    name, step = re.match(r"train_(\w+) became \S+ at step (\d+)", str(first.value)).groups()
    said_name, said_step = re.search(r"error: train_(\w+) became \S+ at step (\d+)",
                                     blown_up[1]).groups()
    if name in steps.CHUNK_END_METRICS and said_name not in steps.CHUNK_END_METRICS:
        # computed at chunk ends only: inside a chunk, the gradients' overflow shows first
        # in the next step's loss, computed from the parameters it left non-finite
        assert int(said_step) == int(step) + 1, (blown_up[1], str(first.value))
    else:
        assert (said_name, said_step) == (name, step), (blown_up[1], str(first.value))


def test_a_gradient_gone_to_zero_stops_the_run_as_a_nan_does(tiny_config, tmp_path, capsys):
    """Too large a step saturates the sigmoid outputs: the gradient is exactly 0 from then on
    and every loss stays finite, so no NaN stopped the run, which ended as if trained (a
    warning said so) while the checkpoints' rotation dropped the last good one."""
    workdir = str(tmp_path)
    train_and_evaluate(tiny_config(**{"train.num_epochs": 1, "train.log_every_steps": 4}),
                       workdir)
    capsys.readouterr()
    config = tiny_config(**{"optim.learning_rate": 1e6, "train.num_epochs": 3,
                            "train.log_every_steps": 4, "train.keep_checkpoints": 1})
    assert cli_run(train_and_evaluate, config, workdir)[0] == 1
    line = one_line(capsys.readouterr().err)
    assert re.fullmatch(r"error: the gradient is exactly 0 at step (\d+): the steps no longer "
                        r"change the model \(.*\); training stopped without writing a "
                        r"checkpoint for it \(the newest checkpoint, step 16, is the state this "
                        r"run resumed from, its gradient not checked there\); lower "
                        r"--config.optim.learning_rate \(now 1e\+06\) and rerun; if the "
                        r"gradient is 0 again at once, that checkpoint is flat too: train "
                        r"again in a new --workdir \(no older checkpoint is kept\)", line), line
    assert kill_test.checkpoint_steps(workdir) == [16]  # kept, though keep_checkpoints=1
    # a checkpoint saved after the gradient was last seen nonzero may hold the flat state:
    # "holds the last good state; lower the learning rate" had the rerun fail the same way
    flat = str(tmp_path / "flat")
    every_step = {"train.checkpoint_every_steps": 1, "train.log_every_steps": 1}
    assert cli_run(train_and_evaluate, tiny_config(**{"optim.learning_rate": 1e6,
                                                       **every_step}), flat)[0] == 1
    assert one_line(capsys.readouterr().err).endswith(
        "(the newest checkpoint, step 1, may hold a flat state too: the gradient was last "
        "seen nonzero at step 1); lower --config.optim.learning_rate (now 1e+06) and train "
        "again in a new --workdir (no older checkpoint is kept)")
    assert cli_run(train_and_evaluate, tiny_config(**every_step), flat)[0] == 1
    assert one_line(capsys.readouterr().err).endswith(
        "(the newest checkpoint, step 1, is the state this run resumed from, its gradient not "
        "checked there); lower --config.optim.learning_rate (now 0.001) and rerun; if the "
        "gradient is 0 again at once, that checkpoint is flat too: train again in a new "
        "--workdir (no older checkpoint is kept)")


def test_an_error_exit_finishes_the_checkpoint_being_written(tiny_config, tmp_path, capsys):
    config = tiny_config()
    model = build.make_model(config, (28, 28, 1), 10)
    state = steps.create_train_state(model, build.make_optimizer(config), (28, 28, 1),
                                     derive_keys(0).init)
    manager = checkpoints.make_manager(checkpoints.checkpoint_dir(str(tmp_path)))

    def save_then_fail() -> None:
        checkpoints.save_state(manager, state)  # asynchronous: still being written at the raise
        raise FloatingPointError("train_loss became nan at step 1")

    assert cli_run(save_then_fail) == (1, None)
    assert os.listdir(checkpoints.checkpoint_dir(str(tmp_path))) == ["0"]
    assert capsys.readouterr().err == "error: train_loss became nan at step 1\n"


def test_a_metrics_line_cut_short_is_dropped_on_resume_saying_whose_record_is_lost(
        tmp_path, capsys):
    """The resume at step 12 goes on from step 13, so step 12's record is not written again:
    its loss is said; a cut record of a later step is written again, so nothing is said."""
    path = tmp_path / "metrics.jsonl"
    kept = '{"step": 4, "loss": 1.0}\n{"step": 8, "loss": 0.5}\n'
    path.write_text(kept + '{"step": 12, "lo')
    MetricWriter(str(tmp_path), echo=False).drop_after(12)
    assert path.read_text() == kept
    assert lines_of(capsys.readouterr().err) == [
        f"warning: {path}'s last line was cut short (a write interrupted) and is dropped: step "
        "12's metrics are lost, as the run goes on after step 12; the checkpoints and the other "
        "records are whole"]
    path.write_text(kept + '{"step": 12, "lo')
    MetricWriter(str(tmp_path), echo=False).drop_after(8)
    assert path.read_text() == kept and capsys.readouterr().err == ""
    path.write_text(kept + '{"step": 1')  # cut inside the number: 1, 12 or 120 alike
    MetricWriter(str(tmp_path), echo=False).drop_after(100)
    assert path.read_text() == kept
    assert "dropped: its record may be lost, as the run goes on after step 100" in \
        capsys.readouterr().err
    path.write_text(kept + '{"step": 12, "loss": 0.2}')  # whole but for its newline: kept
    MetricWriter(str(tmp_path), echo=False).drop_after(12)
    assert path.read_text() == kept + '{"step": 12, "loss": 0.2}\n'
    assert capsys.readouterr().err == ""


def test_read_metrics_gives_the_records_and_skips_lines_that_are_none(tmp_path):
    """What an experiment reads of a run's metrics: the records, in order; a typed-in line
    and a last line cut short are skipped (a resume sets them aside), a missing file is
    no records."""
    assert read_metrics(str(tmp_path)) == []
    (tmp_path / "metrics.jsonl").write_text(
        '{"step": 4, "loss": 1.0}\nchecked by hand\n{"step": 8, "test_loss": 0.5}\n'
        '{"step": 12, "lo')
    assert read_metrics(str(tmp_path)) == [{"step": 4, "loss": 1.0},
                                           {"step": 8, "test_loss": 0.5}]


def test_stopping_on_a_checkpoint_step_writes_it_once(kill_script_config, tmp_path):
    state = train_and_evaluate(kill_script_config(**{"train.stop_after_steps": 4}),
                               str(tmp_path))
    assert int(state.step) == 4 and kill_test.checkpoint_steps(str(tmp_path)) == [2, 4]


def test_a_stop_at_the_end_of_an_epoch_is_reported(tiny_config, tmp_path, capsys):
    train_and_evaluate(tiny_config(**{"train.stop_after_steps": 16}), str(tmp_path))
    assert ("train.stop_after_steps=16: stopped at step 16 with a checkpoint; rerun without it "
            "(or with a larger one) to continue") in capsys.readouterr().out


# ---------------------------------------------------------------------------- a finished run


def file_digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.mark.slow
def test_a_refused_run_writes_nothing_and_a_plain_rerun_describes_the_run_again(
        reference, kill_script_config, tmp_path, capsys):
    """config.json removed (as the damaged-config message advises), then a run whose model
    does not fit the checkpoints: refused before writing config.json, so the plain rerun
    and evaluate.py still work."""
    workdir = copy_run(reference, tmp_path)
    os.remove(os.path.join(workdir, "config.json"))
    before = without_lock(snapshot(workdir))
    code, _ = cli_run(train_and_evaluate, kill_script_config(**{"model.latent_dim": 20}),
                      workdir)
    line = one_line(capsys.readouterr().err)
    assert code == 1 and "does not fit: params/" in line
    assert without_lock(snapshot(workdir)) == before

    code, state = cli_run(train_and_evaluate, kill_script_config(), workdir)
    assert code == 0 and int(state.step) == 32
    assert file_digest(os.path.join(workdir, "config.json")) == \
        file_digest(os.path.join(reference, "config.json"))


@pytest.mark.parametrize("field", ["train.batch_size", "data.train_size"])
def test_without_config_json_a_resume_with_other_batches_is_refused_by_the_checkpoint(
        field, reference, kill_script_config, tmp_path, capsys):
    """The data position a checkpoint holds (batch size, training images) still checks the
    batches where config.json, which would refuse the change, was lost; nothing is written."""
    workdir = copy_run(reference, tmp_path)
    os.remove(os.path.join(workdir, "config.json"))
    before = without_lock(snapshot(workdir))
    base = kill_script_config()
    size = base.train.batch_size
    changed = kill_script_config(**({"train.batch_size": 2 * size} if field == "train.batch_size"
                                    else {"data.train_size": base.data.train_size // 2}))
    code, _ = cli_run(train_and_evaluate, changed, workdir)
    line = one_line(capsys.readouterr().err)
    new_size = changed.train.batch_size
    assert code == 1 and re.match(
        rf"error: the checkpoint at step 32 in '\S+' trained with batches of {size} from "
        rf"([\d,]+) training images, this config asks for {new_size} from ([\d,]+): rerun "
        r"with the run's own flags", line), line
    assert without_lock(snapshot(workdir)) == before


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_another_optimiser_is_a_mismatch_naming_the_field_not_damage(
        optimizer, reference, kill_script_config, tmp_path, capsys):
    """Refused by config.json's optim.name; without config.json, by the checkpoint's tree
    (adam and adamw differ only in an empty state), before any array is read."""
    workdir = copy_run(reference, tmp_path)
    config = kill_script_config(**{"optim.name": optimizer})
    assert cli_run(train_and_evaluate, config, workdir)[0] == 1
    line = one_line(capsys.readouterr().err)
    assert line.endswith(f"holds a run with optim.name='adam', but the config says "
                         f"'{optimizer}': use a new --workdir, or the same optim.name (a resumed "
                         "run may change only how long it runs, its learning rate, how it logs, "
                         "saves and evaluates, where its data lives, whether it streams, and its "
                         "convolutions' implementation)")
    os.remove(os.path.join(workdir, "config.json"))
    assert cli_run(train_and_evaluate, config, workdir)[0] == 1
    line = one_line(capsys.readouterr().err)
    assert re.match(r"error: the checkpoint at step 32 in \S+ does not fit: opt_state/\d is "
                    r"(absent|an empty state|a node holding [a-z, ]+) there, "
                    r"(absent|an empty state) here \(make the optimiser as the saved one was: "
                    r"a run's config.json gives its optim.name and optim.schedule\)$", line), line
    assert not os.path.exists(os.path.join(workdir, "config.json"))


@pytest.mark.slow
def test_a_resume_that_diverges_leaves_config_json_as_it_was(reference, kill_script_config,
                                                             tmp_path, capsys):
    workdir = copy_run(reference, tmp_path)
    before = file_digest(os.path.join(workdir, "config.json"))
    config = kill_script_config(**{"optim.learning_rate": 1e38, "train.num_epochs": 3})
    assert cli_run(train_and_evaluate, config, workdir)[0] == 1
    line = one_line(capsys.readouterr().err)
    assert re.match(r"error: \S+ became \S+ at step 3[34]: training stopped without writing a "
                    r"checkpoint for it \(the newest checkpoint, step 32, holds the last good "
                    r"state\); lower --config.optim.learning_rate \(now 1e\+38\)$", line), line
    assert file_digest(os.path.join(workdir, "config.json")) == before
    assert kill_test.checkpoint_steps(workdir) == [28, 30, 32]


@pytest.mark.slow
def test_evaluating_a_damaged_step_is_one_line_and_a_deleted_one_is_not_damage(
        reference, tmp_path, capsys, monkeypatch):
    workdir = copy_run(reference, tmp_path)
    damage(workdir, 32, "truncated")
    assert cli_run(evaluate_workdir, workdir, 32) == (1, None)
    line = one_line(capsys.readouterr().err)
    assert re.match(rf"error: the checkpoint at step 32 in {workdir}/checkpoints is damaged "
                    r"\(.+\): evaluate another step, or the newest intact one without --step$",
                    line), line
    assert not os.path.exists(os.path.join(workdir, "eval_step_32"))  # no empty folder left

    # a training run deletes step 30 (keep_checkpoints) between the listing and the read
    real_restore = ocp.CheckpointManager.restore

    def deleted_first(manager, step, *args, **kwargs):
        if step == 30:
            shutil.rmtree(os.path.join(manager.directory, "30"))
        return real_restore(manager, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "restore", deleted_first)
    shutil.rmtree(os.path.join(workdir, "checkpoints", "32"))
    manager = checkpoints.make_manager(checkpoints.checkpoint_dir(workdir), read_only=True)
    like = restored(reference, 32)
    state = checkpoints.restore_newest_intact(manager, like)
    assert int(state.step) == 28 and capsys.readouterr().err == ""  # no "damaged" warning
    with pytest.raises(checkpoints.CheckpointVanished, match="was deleted while it was read"):
        checkpoints.restore_step(manager, like, 30)


@pytest.mark.slow
def test_a_garbage_line_in_metrics_jsonl_is_set_aside_and_resume_works(
        reference, kill_script_config, tmp_path, capsys):
    workdir = copy_run(reference, tmp_path)
    path = os.path.join(workdir, "metrics.jsonl")
    with open(path) as f:
        lines = f.readlines()
    with open(path, "w") as f:
        f.writelines([lines[0], "junk\n", *lines[1:]])
    code, state = cli_run(train_and_evaluate, kill_script_config(), workdir)
    assert code == 0 and int(state.step) == 32
    line = one_line(capsys.readouterr().err)
    assert line == (f"warning: {path} line 2 is not a metrics record ('junk'): moved to "
                    f"{path}.rejected")
    assert read_bytes(path) == read_bytes(os.path.join(reference, "metrics.jsonl"))
    assert read_bytes(path + ".rejected") == b"junk\n"


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.slow
def test_a_second_run_on_a_busy_workdir_is_refused_at_once(reference, kill_script_config,
                                                           tmp_path, capsys):
    """The lock is the kernel's (flock): two opens of the lock file conflict, also in one
    process, and the lock goes with the process however it ends (scripts/kill_test.py
    SIGKILLs holders and restarts)."""
    workdir = copy_run(reference, tmp_path)
    before = snapshot(workdir)
    holder = lock_workdir(workdir)
    try:
        code, _ = cli_run(train_and_evaluate, kill_script_config(), workdir)
    finally:
        unlock_workdir(holder)
    line = one_line(capsys.readouterr().err)
    assert code == 1
    assert line == (f"error: workdir {workdir!r} is in use by another training run (pid "
                    f"{os.getpid()} on {socket.gethostname()}): wait for it to end or stop it "
                    "(SIGTERM saves a checkpoint), or pass another --workdir")
    assert without_lock(snapshot(workdir)) == without_lock(before)


def test_a_deleted_lock_file_lets_no_second_run_in(tmp_path):
    """rm train.lock (a stale-lock habit) while its run lives: a second run locked a new
    file, and both wrote checkpoints and metrics.jsonl; the folder's lock still holds."""
    from jaxae.training import lock
    from jaxae.training.workdir import WorkdirBusy

    workdir = str(tmp_path)
    holder = lock_workdir(workdir)
    try:
        os.remove(os.path.join(workdir, "train.lock"))
        said = (f"workdir {workdir!r} is locked by another process: a training run whose "
                "train.lock was deleted (that file never goes stale: leave it be), or a "
                "`flock` on the folder; wait for it to end, or pass another --workdir")
        assert lock.busy(workdir) == said  # train.py's answer before it imports JAX
        with pytest.raises(WorkdirBusy) as refused:
            lock_workdir(workdir)
        assert str(refused.value) == said
    finally:
        unlock_workdir(holder)
    unlock_workdir(lock_workdir(workdir))  # released: free for the next run


def test_evaluating_a_run_that_has_saved_nothing_yet_says_so(tmp_path):
    """A run's config.json comes with its first checkpoint: evaluate.py meanwhile said the
    folder held no run, "train one first", which the busy workdir then refused."""
    workdir = str(tmp_path)
    holder = lock_workdir(workdir)
    try:
        with pytest.raises(FileNotFoundError) as caught:
            evaluate_workdir(workdir)
    finally:
        unlock_workdir(holder)
    assert str(caught.value) == (
        f"{workdir!r} is a training run's (pid {os.getpid()} on {socket.gethostname()}) that "
        "has saved no checkpoint yet: evaluate it once it has saved one "
        "(train.checkpoint_every_epochs or checkpoint_every_steps say when)")


def test_train_py_refuses_a_busy_workdir_before_importing_jax(tmp_path):
    """train.py answers a workdir in use before its heavy imports: the same line as the
    trainer's, exit 1, and JAX never imported (a look at sys.modules in that process)."""
    workdir = str(tmp_path / "busy")
    os.makedirs(workdir)
    holder = lock_workdir(workdir)
    script = ("import runpy, sys\n"
              f"sys.argv = ['train.py', '--workdir', {workdir!r}, '--config.seed=1']\n"
              "try:\n"
              "    runpy.run_path('train.py', run_name='__main__')\n"
              "except SystemExit as e:\n"
              "    print('exit', e.code, 'jax' in sys.modules)\n")
    try:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              cwd=ROOT, timeout=120)
    finally:
        unlock_workdir(holder)
    assert done.stdout.strip() == "exit 1 False"
    assert done.stderr.strip() == (
        f"error: workdir {workdir!r} is in use by another training run (pid {os.getpid()} on "
        f"{socket.gethostname()}): wait for it to end or stop it (SIGTERM saves a "
        "checkpoint), or pass another --workdir")


def without_lock(digests: dict[str, str]) -> dict[str, str]:
    """A workdir's files but its lock file, whose content names the holder of the day."""
    return {name: digest for name, digest in digests.items() if name != "train.lock"}


# ---------------------------------------------------------------------------- bad input


def write_idx(path: str, magic: int, shape: tuple[int, ...], payload: int | None = None
              ) -> None:
    """An IDX file of zeros; `payload` cuts its data to that many bytes (a truncated file)."""
    size = int(np.prod(shape)) if payload is None else payload
    with open(path, "wb") as f:
        f.write(struct.pack(f">I{len(shape)}I", magic, *shape) + bytes(size))


def idx_folder(folder: str, fault: str) -> str:
    """The four MNIST IDX files, 10 training and 10 test images, with one fault in the first."""
    os.makedirs(folder)
    for prefix in ("train", "t10k"):
        write_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte"), 2051, (10, 28, 28))
        write_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte"), 2049, (10,))
    images = os.path.join(folder, "train-images-idx3-ubyte")
    if fault == "truncated":
        write_idx(images, 2051, (10, 28, 28), payload=5 * 28 * 28)
    if fault == "wrong_magic":
        write_idx(images, 1234, (10, 28, 28))
    return folder


@dataclasses.dataclass(frozen=True)
class Where:
    """What a bad-input case may use: a folder of its own, the data, a finished run."""

    tmp: str
    tfds_dir: str
    finished: str  # a copy of the uninterrupted run, for the one case that reruns it


def train_py(where: Where, *flags: str) -> list[str]:
    return ["train.py", "--config=configs/test.py", f"--workdir={where.tmp}/workdir",
            f"--config.data.tfds_dir={where.tfds_dir}", *flags]


def on_mnist_idx(where: Where, data_dir: str) -> list[str]:
    """train.py on MNIST from an IDX folder, with nothing prepared in its TFDS dir."""
    empty_tfds = os.path.join(where.tmp, "empty_tfds")
    os.makedirs(empty_tfds)
    return train_py(where, "--config.data.name=mnist", f"--config.data.data_dir={data_dir}",
                    f"--config.data.tfds_dir={empty_tfds}")


def evaluate_without_checkpoint(where: Where) -> list[str]:
    """evaluate.py on a workdir whose run wrote its config.json and then no checkpoint."""
    from jaxae.config import base_config

    workdir = os.path.join(where.tmp, "no_checkpoint")
    os.makedirs(workdir)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(base_config().to_json_best_effort())
    return ["evaluate.py", f"--workdir={workdir}"]


def flags(*given: str) -> Callable[[Where], list[str]]:
    return lambda where: train_py(where, *given)


FINISHED_RUN_CASE = "batch larger than the split, on a finished run"

# name: (the command line, made in a case's own folder; what its one error line must say:
# the field or file at fault, and a valid choice or the fix)
BAD_INPUT: dict[str, tuple[Callable[[Where], list[str]], list[str]]] = {
    "unknown model": (flags("--config.model.name=vae9"),
                      ["config.model.name: unknown model 'vae9'", "dense_ae"]),
    "unknown data set": (flags("--config.data.name=fashion_mnsit"),
                         ["config.data.name: unknown data set 'fashion_mnsit'",
                          "did you mean 'fashion_mnist'?"]),
    "latent_dim 0": (flags("--config.model.latent_dim=0"),
                     ["config.model.latent_dim=0 must be a positive integer",
                      "latent_dim=10"]),
    "batch_size 0": (flags("--config.train.batch_size=0"),
                     ["config.train.batch_size=0 must be a positive integer",
                      "batch_size=10"]),
    FINISHED_RUN_CASE: (
        lambda where: kill_test.train_command(where.finished, where.tfds_dir, (
            "--config.data.train_size=100", "--config.train.batch_size=128"))[1:],
        ["holds a run with data.train_size=512, but the config says 100; and "
         "train.batch_size=32, not 128: use a new --workdir, or the same data.train_size, "
         "train.batch_size ("]),
    "dropout_rate 1.0": (flags("--config.task.name=denoise", "--config.task.dropout_rate=1.0"),
                         ["config.task.dropout_rate=1.0 must lie in [0, 1)", "0.5"]),
    "learning_rate 0": (flags("--config.optim.learning_rate=0"),
                        ["config.optim.learning_rate=0", "must be a positive number", "1e-3"]),
    "learning_rate negative": (flags("--config.optim.learning_rate=-0.001"),
                               ["config.optim.learning_rate=-0.001 must be a positive number",
                                "1e-3"]),
    "num_epochs 0": (flags("--config.train.num_epochs=0"),
                     ["config.train.num_epochs=0 must be a positive integer",
                      "num_epochs=10"]),
    "superres factor 3": (flags("--config.model.name=superres", "--config.task.name=superresolve",
                                "--config.task.factor=3"),
                          ["config.task.factor=3 does not divide the 28x28 images",
                           "2, 4, 7, 14"]),
    "old flat field": (flags("--config.latent_dim=2"),
                       ["unknown config field config.latent_dim",
                        "it moved to config.model.latent_dim"]),
    "workdir not writable": (
        lambda where: ["train.py", "--config=configs/test.py", "--workdir=/proc/jaxae_run"],
        ["workdir '/proc/jaxae_run' cannot be written", "pass a --workdir"]),
    "data folder missing": (
        lambda where: on_mnist_idx(where, os.path.join(where.tmp, "nowhere")),
        ["IDX folder", "nowhere does not exist", "train-images-idx3-ubyte.gz"]),
    "IDX file truncated": (
        lambda where: on_mnist_idx(where, idx_folder(f"{where.tmp}/idx", "truncated")),
        ["train-images-idx3-ubyte is truncated (expected 7856 bytes, got 3936)",
         "re-download it"]),
    "IDX file with a wrong magic": (
        lambda where: on_mnist_idx(where, idx_folder(f"{where.tmp}/idx", "wrong_magic")),
        ["train-images-idx3-ubyte has wrong magic number 1234 (expected 2051",
         "re-download it"]),
    "evaluation without a checkpoint": (
        evaluate_without_checkpoint, ["holds no checkpoint",
                                      "rerun train.py (jaxae-train) with this --workdir"]),
}
# Folders the user cannot write: root ignores file modes unless it drops the capabilities
# that let it (setpriv: `entry_points` runs everything so); skipped where neither is possible.
NO_CAPABILITIES = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]
CAN_DROP_WRITES = os.geteuid() != 0 or (  # setpriv there, and allowed to drop them
    shutil.which("setpriv") is not None
    and subprocess.run([*NO_CAPABILITIES, "true"], capture_output=True).returncode == 0)


def read_only_checkpoints(where: Where) -> list[str]:
    os.makedirs(f"{where.tmp}/workdir/checkpoints")
    os.chmod(f"{where.tmp}/workdir/checkpoints", 0o555)
    return train_py(where)


def evaluate_read_only(where: Where) -> list[str]:
    """evaluate.py on a read-only workdir: it stops before any work, not after it."""
    workdir = evaluate_without_checkpoint(where)[1].removeprefix("--workdir=")
    os.chmod(workdir, 0o555)
    return ["evaluate.py", f"--workdir={workdir}"]


if CAN_DROP_WRITES:
    BAD_INPUT |= {
        "checkpoints not writable": (
            read_only_checkpoints, ["workdir/checkpoints cannot be written (Permission denied): "
                                    "make it writable, or pass another --workdir"]),
        "evaluation of a read-only workdir": (
            evaluate_read_only, ["no_checkpoint/eval cannot be written (Permission denied): "
                                 "pass --eval_dir=FOLDER"]),
    }


class InBackground:
    """Runs of train.py and evaluate.py, one at a time in a thread of their own, each a fork
    of one `Prestarted` process that starts with the first run. Where this is root, that
    process drops root's power to write anything (NO_CAPABILITIES): what a test made
    read-only is read-only to every run, as to a user's."""

    def __init__(self, folder: str, env: dict[str, str]):
        self.folder, self.env = folder, env
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self.prestarted: concurrent.futures.Future | None = None

    def start(self, *args: str) -> concurrent.futures.Future:
        """python *args, run from the repository's root: a future of its `Ran`."""
        if self.prestarted is None:
            prefix = NO_CAPABILITIES if os.geteuid() == 0 and CAN_DROP_WRITES else []
            self.prestarted = self.pool.submit(Prestarted, self.folder, self.env, prefix)
        return self.pool.submit(lambda: self.prestarted.result().run(*args))

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)
        if self.prestarted is not None and self.prestarted.exception() is None:
            self.prestarted.result().close()


@pytest.fixture(scope="module")
def entry_points(tmp_path_factory, run_env) -> Iterator[InBackground]:
    """train.py and evaluate.py runs that are neither killed nor signalled, with the module's
    compilation cache."""
    runs = InBackground(str(tmp_path_factory.mktemp("prestarted")), run_env)
    yield runs
    runs.close()


@pytest.fixture(scope="module", autouse=True)
def bad_input_started(request, fashion_tfds_dir, tmp_path_factory, entry_points):
    """Starts the bad-input cases the session runs (a `-k` may keep some) with the module,
    one at a time in the background: they use the second core while the other tests run
    (their CPU time does not change)."""
    selected = {item.callspec.params["name"] for item in request.session.items
                if getattr(item, "function", None)
                is test_bad_input_is_one_error_line_before_anything_compiles}
    started = {}
    for name, (command, _) in BAD_INPUT.items():
        if name in selected and name != FINISHED_RUN_CASE:
            where = Where(str(tmp_path_factory.mktemp("bad")), fashion_tfds_dir, "")
            started[name] = entry_points.start(*command(where))
    return started


@dataclasses.dataclass(frozen=True)
class BadInputRuns:
    results: dict[str, concurrent.futures.Future]  # of each case's `Ran`
    finished: str  # the finished run that one case reran with bad flags
    finished_before: dict[str, str]  # its files before that


@pytest.fixture(scope="module")
def bad_input(bad_input_started, entry_points, fashion_tfds_dir, reference, tmp_path_factory
              ) -> BadInputRuns:
    """The bad-input cases' runs, each test waiting for its own."""
    finished = shutil.copytree(reference, str(tmp_path_factory.mktemp("finished") / "run"))
    before = snapshot(finished)
    where = Where(str(tmp_path_factory.mktemp("bad")), fashion_tfds_dir, finished)
    last = entry_points.start(*BAD_INPUT[FINISHED_RUN_CASE][0](where))
    return BadInputRuns({**bad_input_started, FINISHED_RUN_CASE: last}, finished, before)


@pytest.mark.parametrize("name", list(BAD_INPUT))
def test_bad_input_is_one_error_line_before_anything_compiles(name, bad_input):
    result = bad_input.results[name].result()
    assert result.returncode == 1, result.stderr[-3000:]
    line = one_line(result.stderr)
    assert line.startswith("error: ")
    for part in BAD_INPUT[name][1]:
        assert part in line
    assert result.cpu_s < BAD_INPUT_CPU_S, f"took {result.cpu_s:.1f} s of CPU time"
    assert result.wall_s < BAD_INPUT_WALL_S, f"took {result.wall_s:.1f} s"


def test_a_bad_rerun_leaves_a_finished_run_untouched(bad_input):
    bad_input.results[FINISHED_RUN_CASE].result()  # the bad rerun, over
    assert snapshot(bad_input.finished) == bad_input.finished_before


def test_the_first_non_finite_value_is_found_step_by_step_then_quantity_by_quantity():
    """A chunk's earliest step whose value is not finite, whichever quantity it is in (read
    quantity by quantity, a NaN loss at a later step was named before an infinite KL)."""
    from jaxae.training import faults

    chunk = {"loss": np.array([1.0, 2.0, np.nan]), "kl": np.array([1.0, np.inf, np.nan]),
             "grad_norm": np.array([np.nan, np.nan, 3.0])}  # read at the chunk's end only
    assert faults.first_non_finite_step(chunk, 10) == (11, "kl", np.inf)
    assert faults.first_non_finite_step({**chunk, "kl": np.ones(3)}, 10)[:2] == (12, "loss")

