"""The entry points as a user runs them: train.py then evaluate.py, and their error lines."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_train_then_evaluate_writes_checkpoint_metrics_and_picture(fashion_tfds_dir, tmp_path):
    workdir = str(tmp_path / "run")
    trained = run("train.py", "--config=configs/test.py", f"--workdir={workdir}",
                  f"--config.tfds_dir={fashion_tfds_dir}", "--config.latent_dim=2")
    assert trained.returncode == 0, trained.stderr[-2000:]
    saved = sorted(os.listdir(os.path.join(workdir, "checkpoints")), key=int)
    assert saved == ["16", "32"]  # one per epoch of 16 steps
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["latent_dim"] == 2
    evaluated = run("evaluate.py", f"--workdir={workdir}")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert "evaluating the checkpoint at step 32" in evaluated.stdout
    with open(os.path.join(workdir, "eval", "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["step"] == 32 and metrics["test_images"] == 256
    with open(os.path.join(workdir, "eval", "reconstructions.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_bad_input_is_one_line_and_nothing_is_written(tmp_path):
    workdir = str(tmp_path / "bad")
    result = run("train.py", "--config=configs/test.py", f"--workdir={workdir}",
                 "--config.model=vae9")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: config.model='vae9' is unknown: choose one of dense_ae, deep_ae, conv_ae, "
        "vae, conv_vae, cvae, superres"]
    assert not os.path.exists(workdir)


def test_misspelt_config_field_is_one_line_naming_the_right_one(tmp_path):
    workdir = str(tmp_path / "typo")
    result = run("train.py", "--config=configs/test.py", f"--workdir={workdir}",
                 "--config.modle=vae")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: unknown config field 'modle': Did you mean \"model\" instead of \"modle\"?"]
    assert not os.path.exists(workdir)


def test_evaluating_a_workdir_without_a_run_is_one_line(tmp_path):
    result = run("evaluate.py", f"--workdir={tmp_path}")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "holds no run (config.json is missing)" in lines[0]
