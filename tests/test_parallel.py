"""Fast and parallel training paths give the results of the plain one.

Chunks of any length are bitwise equal; 8 devices and 2 processes equal 1 device within
float tolerance (a different reduction order changes the last bits).
"""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxae import build
from jaxae import config as config_lib
from jaxae.data import batches
from jaxae.experiments.common import load_config
from jaxae.keys import derive_keys
from jaxae.training import steps, trainer
from tests.conftest import with_test_flags

MNIST = (28, 28, 1)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def chunk_parts(config):
    """(model, task, objective, a fresh state maker, 256 random images, epoch 0's order)."""
    model = build.make_model(config, MNIST, 10)
    task, objective = config_lib.make_task(config), build.make_objective(config, model)
    keys = derive_keys(0)
    rng = np.random.default_rng(0)
    arrays = jax.device_put({"image": rng.integers(0, 256, (256, *MNIST), np.uint8),
                             "label": rng.integers(0, 10, 256).astype(np.int32)})

    def fresh():
        return steps.create_train_state(model, build.make_optimizer(config), MNIST, keys.init,
                                        build.init_scheme(config))

    return model, task, objective, fresh, arrays, batches.epoch_permutation(keys.data, 0, 256)


@pytest.mark.parametrize("overrides", [
    {"model": {"name": "conv_ae"}, "objective.loss": "bce"},
    {"task.name": "denoise"},
    {"model": {"name": "vae", "latent_dim": 2}},
])
def test_chunks_of_any_length_give_the_same_bits(tiny_config, overrides):
    config = tiny_config(**overrides)
    model, task, objective, fresh, arrays, order = chunk_parts(config)
    train_key = derive_keys(0).train
    chunk = steps.make_train_chunk(model, task, objective, batch_size=32, max_steps=8)
    initial = fresh()  # copied for each run (a chunk donates its state): traced once
    finals = []
    for length in (1, 4, 8):
        state = jax.tree.map(jax.numpy.copy, initial)
        for first in range(0, 8, length):
            state, _ = chunk(state, arrays, order, first, train_key, length)
        finals.append([np.asarray(x) for x in jax.tree.leaves(state.params)])
    for other in finals[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(finals[0], other, strict=True))


def test_a_slow_runs_chunks_are_cut_to_a_few_seconds_with_the_same_records(tiny_config,
                                                                           tmp_path,
                                                                           monkeypatch):
    """A stop waits for the chunks running: a slow model's 100-step chunks outlasted a
    scheduler's grace period. Once the run is timed, chunks last CHUNK_SECONDS at most
    (here a nanosecond: a step each), and metrics.jsonl is the same bytes."""
    lengths = []
    real = steps.make_train_chunk

    def recording(*args, **kwargs):
        chunk = real(*args, **kwargs)
        return lambda *a: (lengths.append(int(a[-1])), chunk(*a))[1]

    monkeypatch.setattr(steps, "make_train_chunk", recording)
    config = tiny_config(**{"train.num_epochs": 4, "train.log_every_steps": 16})
    trainer.train_and_evaluate(config, str(tmp_path / "whole"))
    assert lengths == [16] * 4
    lengths.clear()
    monkeypatch.setattr(trainer, "CHUNK_SECONDS", 1e-9)
    trainer.train_and_evaluate(config, str(tmp_path / "cut"))
    assert lengths[:2] == [16] * 2 and set(lengths[2:]) == {1} and sum(lengths) == 64
    assert (tmp_path / "cut" / "metrics.jsonl").read_bytes() == \
        (tmp_path / "whole" / "metrics.jsonl").read_bytes()


def test_a_chunk_computes_the_gradient_norm_at_its_last_step(tiny_config):
    config = tiny_config(**{"task.name": "denoise"})
    model, task, objective, fresh, arrays, order = chunk_parts(config)
    train_key = derive_keys(0).train
    chunk = steps.make_train_chunk(model, task, objective, batch_size=32, max_steps=8)
    step = steps.make_train_step(model, task, objective)
    initial = fresh()
    state, rows = chunk(jax.tree.map(jax.numpy.copy, initial), arrays, order, 0, train_key, 5)
    norms = np.asarray(rows["grad_norm"])
    assert np.isnan(norms[:4]).all() and np.isfinite(norms[4]) and norms[4] > 0
    assert np.isfinite(np.asarray(rows["loss"][:5])).all()
    by_step = initial
    for index in range(5):  # the step-by-step path computes it at every step
        batch = batches.gather_batch(arrays, order, index, 32)
        by_step, metrics = step(by_step, batch, train_key)
    np.testing.assert_allclose(norms[4], float(metrics["grad_norm"]), rtol=1e-5)


def _train(workdir, tfds_dir, env=None, *extra) -> subprocess.Popen:
    command = [sys.executable, "train.py", "--config=configs/test.py", f"--workdir={workdir}",
               f"--config.data.tfds_dir={tfds_dir}", *extra]
    return subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    return out


def _losses(workdir) -> np.ndarray:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    return np.array([r.get("train_loss", r.get("test_loss")) for r in records])


@pytest.fixture(scope="module")
def single_device_losses(fashion_tfds_dir, tmp_path_factory) -> np.ndarray:
    """The loss curve of configs/test.py trained on one device: what the runs over several
    devices and processes follow (trained in this process: its curve is the reference, not
    the process under test)."""
    config = load_config("test")  # configs/test.py
    config.data.tfds_dir = fashion_tfds_dir
    workdir = tmp_path_factory.mktemp("one")
    trainer.train_and_evaluate(config, str(workdir))
    return _losses(workdir)


@pytest.mark.slow
def test_eight_devices_follow_the_single_device_loss_curve(fashion_tfds_dir, tmp_path,
                                                           single_device_losses):
    eight = _train(tmp_path / "eight", fashion_tfds_dir,
                   {"XLA_FLAGS": with_test_flags("--xla_force_host_platform_device_count=8")})
    out = _finish(eight)
    assert "8 devices" in out
    np.testing.assert_allclose(_losses(tmp_path / "eight"), single_device_losses, rtol=1e-4)
    # its checkpoint, saved over eight devices, is evaluated on one
    evaluation = subprocess.run([sys.executable, "evaluate.py", f"--workdir={tmp_path / 'eight'}",
                                 f"--config.data.tfds_dir={fashion_tfds_dir}"], cwd=ROOT,
                                capture_output=True, text=True, timeout=300)
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    assert "damaged" not in evaluation.stderr
    with open(tmp_path / "eight" / "eval" / "metrics.json") as f:
        evaluated = json.load(f)
    assert evaluated["test_loss"] == pytest.approx(_losses(tmp_path / "eight")[-1], rel=1e-6)


def test_the_processes_checksum_counts_the_models_state():
    """Processes that agree on parameters but not on BatchNorm's averages print two sums."""
    params = {"dense": {"kernel": jax.numpy.ones((2, 3))}}
    state = steps.TrainState(step=0, apply_fn=None, params=params, tx=None, opt_state=None,
                             model_state={"batch_stats": {"mean": jax.numpy.zeros(3)}})
    moved = state.replace(model_state={"batch_stats": {"mean": jax.numpy.full(3, 0.5)}})
    assert trainer.parameter_checksum(state) == 6.0
    assert trainer.parameter_checksum(moved) == 7.5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_the_same_model_in_step(fashion_tfds_dir, tmp_path,
                                                    single_device_losses):
    port = _free_port()
    workers = [_train(tmp_path / "two", fashion_tfds_dir, {
        "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "JAX_NUM_PROCESSES": "2",
        "JAX_PROCESS_ID": str(i), "JAX_PLATFORMS": "cpu"}) for i in range(2)]
    outputs = [_finish(w) for w in workers]
    checksums = [line.split()[-1] for out in outputs for line in out.splitlines()
                 if "parameter checksum" in line]
    assert len(checksums) == 2 and checksums[0] == checksums[1], outputs
    np.testing.assert_allclose(_losses(tmp_path / "two"), single_device_losses, rtol=1e-4)
