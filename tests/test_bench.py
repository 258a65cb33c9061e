"""The benchmark's code path: it times real steps of every workload it knows."""

import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import types

import jax
import numpy as np
import pytest

from benchmarks import bench, bench_args, matmul_floor, narrow_gradient, report, roofline, workloads
from jaxae import cli, optimizers, provenance
from jaxae.data import idx
from tests.conftest import FailingOutput, with_test_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

IMAGE_SHAPE = (*idx.IMAGE_SHAPE, 1)  # (Fashion-)MNIST's, as the benchmark trains on


@pytest.fixture(autouse=True)
def stop_signals_as_they_were():
    """The throughput mode leaves the stop signals ignored for the report's writing (its
    command exits after it): a test calling it puts them back, or the worker's later
    processes would start with them ignored."""
    handlers = {sig: signal.getsignal(sig) for sig in bench.GracefulStop.SIGNALS}
    yield
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def random_arrays(count: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return jax.device_put({"image": rng.integers(0, 256, (count, *IMAGE_SHAPE), np.uint8),
                           "label": rng.integers(0, 10, count).astype(np.int32)})


def test_bench_configs_match_the_peer_models():
    dae = workloads.bench_config("dae", 128)
    assert dae.model.latent_dim == 940 and dae.task.name == "denoise"
    assert dae.task.dropout_rescale  # nn.Dropout, as the peer
    assert workloads.bench_config("conv_ae", 64).objective.loss == "bce"
    assert workloads.bench_config("vae", 64).model.latent_dim == 2
    assert workloads.bench_config("conv_vae", 64, conv="xla").model.conv == "xla"
    assert "conv" not in workloads.bench_config("dense_ae", 64, conv="xla").model
    assert [name for name, w in workloads.WORKLOADS.items() if w.uses_conv] == ["conv_ae",
                                                                             "conv_vae"]
    assert workloads.WORKLOADS["conv_vae"].peer is None  # the peer has no conv VAE


@pytest.mark.parametrize("model", ["dense_ae", "vae"])
def test_bench_model_reports_rates_flops_and_the_roofline(model):
    arrays = random_arrays(256, 0)
    result = bench.bench_model(model, batch_size=32, steps_per_chunk=3, chunks=2,
                               arrays=arrays, peak_n=128)
    assert result["img_per_s"] > 0 and len(result["chunk_img_per_s"]) == 2
    # a dense AE step is at least forward + backward of two (pixels x 10) matmuls
    assert result["flops_per_step"] > 6 * 32 * math.prod(IMAGE_SHAPE) * 10
    assert result["bytes_per_step"] > 4 * 32 * math.prod(IMAGE_SHAPE)  # reads the batch
    assert result["intensity"] == result["flops_per_step"] / result["bytes_per_step"]
    assert result["bound"] in ("compute", "memory")
    assert len(result["chunk_peak_gflops"]) == 3  # before the first chunk, after each
    fraction = result["fraction_of_roof"]  # None only where every chunk beat the roof
    assert (fraction is None and result["roof_errors"]) or 0 < fraction <= 1
    assert "| " + model + " | - | float32 | 28x28x1 | 1 | 32 |" in report.table([(result, None)])


def test_an_accelerator_s_own_step_counts_are_kept_beside_the_host_s(monkeypatch):
    """Off the CPU, FLOPs and bytes come from the host's compiled step (a GPU's library calls
    count 0 FLOPs), the footprint and the device's own counts from the device's step."""
    arrays = random_arrays(64, 2)
    epoch = workloads.first_epoch(workloads.bench_config("dense_ae", 32), arrays)
    on_cpu = bench.step_cost(epoch, arrays)
    assert on_cpu.flops > 0 and on_cpu.device_bytes is None and on_cpu.device_flops is None
    counted = iter([bench.roofline.Cost(1.0, 2.0, 3), bench.roofline.Cost(4.0, 5.0, 6)])
    monkeypatch.setattr(bench.roofline, "step_cost", lambda compiled: next(counted))
    cpu = jax.devices("cpu")
    gpu_like = type("Device", (), {"platform": "gpu"})()
    monkeypatch.setattr(bench.jax, "devices",
                        lambda backend=None: cpu if backend == "cpu" else [gpu_like])
    assert bench.step_cost(epoch, arrays) == bench.roofline.Cost(
        4.0, 5.0, 3, device_flops=1.0, device_bytes=2.0)


def test_bench_model_times_whole_epochs_when_asked():
    arrays = random_arrays(200, 1)
    result = bench.bench_model("dense_ae", batch_size=32, steps_per_chunk=None, chunks=1,
                               arrays=arrays, roofs=False)
    assert result["steps_per_chunk"] == 6  # floor(200 / 32) steps: one epoch per dispatch
    assert result["epoch_ms"] == pytest.approx(6 * result["step_ms"])
    assert "fraction_of_roof" not in result


def test_a_conv_workload_grows_with_image_size_channels_and_width():
    data = workloads.BenchData("random")
    arrays, source = data.arrays((16, 16, 3), 8)
    assert arrays["image"].shape[1:] == (16, 16, 3) and source.startswith("random pixels")
    result = bench.bench_model("conv_ae", batch_size=8, steps_per_chunk=1, chunks=1,
                               arrays=arrays, width=2, epoch_images=workloads.EPOCH_IMAGES,
                               roofs=False)
    assert result["image_shape"] == [16, 16, 3] and result["width"] == 2
    assert result["epoch_ms"] == pytest.approx(workloads.EPOCH_IMAGES // 8 * result["step_ms"])
    assert workloads.bench_config("conv_vae", 8, width=4).model.width == 4
    with pytest.raises(ValueError, match="no convolutions to widen"):
        workloads.bench_config("dae", 8, width=2)


def test_an_epoch_of_random_pixels_draws_a_smaller_pool_again_and_again(monkeypatch):
    assert workloads.pool_size((28, 28, 1), 128) == workloads.EPOCH_IMAGES  # 47 MB: all fit
    monkeypatch.setattr(workloads, "RANDOM_POOL_BYTES", 100 * 64 * 64 * 3)
    assert workloads.pool_size((64, 64, 3), 8) == 100
    assert workloads.pool_size((64, 64, 3), 128) == 256  # at least two batches
    config = workloads.bench_config("dense_ae", 10)
    first = workloads.first_epoch(config, random_arrays(100, 2), epoch_images=1000)
    assert first.num_batches == 100 and first.order.shape == (1000,)
    assert int(first.order.max()) < 100 and len(set(first.order[:100].tolist())) > 50


@pytest.mark.parametrize("text", ["0", "-3", "ten", ""])
def test_chunk_steps_rejects_what_is_not_a_count_or_epoch(text):
    with pytest.raises(ValueError, match="--steps-per-chunk"):
        bench_args.chunk_steps(text)


@pytest.mark.parametrize("argv, said", [
    (["--peer-python", "python3"], "--peer-python needs --peer-script PATH"),
    (["--peer-script", __file__], "--peer-script is only used with --peer-python"),
    (["--peer-python", "python3", "--peer-script", "/no/such/peer.py"], "does not exist"),
    (["--models", "dense_ae,resnet"], "unknown model(s) resnet"),
    (["--mode", "throughput,speed"], "--mode: unknown speed"),
    (["--image-sizes", "28,0"], "--image-sizes='28,0': give positive integers"),
    (["--batch-sizes", "32,64,32"], "--batch-sizes='32,64,32' names 32 more than once: give "
                                    "each once"),
    (["--widths", "two"], "--widths='two'"),
    (["--compute-dtype", "float16"], "--compute-dtype: unknown float16"),
    (["--write", "a.md", "--append", "b.md"], "give one"),
    (["--chunks", "0"], "--chunks 0: give 1 or more"),
    (["--peak-n", "-4"], "--peak-n -4 is too small to measure a matmul peak (its products are "
                         "over before the timer resolves them, or run far from the peak): give "
                         "128 or more (default 2048 on a CPU, 8192 else)"),
    (["--peak-n", "7"], "--peak-n 7 is too small to measure a matmul peak"),
    (["--epochs", "0"], "--epochs 0: give 1 or more"),
    (["--background-load", "-2"], "--background-load -2: give 0 or more"),
    (["--mode", "quality", "--models", "dae"], "--mode quality: dae: no time-to-quality "
                                               "pairing; choose from"),
    (["--peer-python", "/no/such/python", "--peer-script", __file__],
     "--peer-python /no/such/python is not a program that can be run"),
    (["--plot", "roof.txt"], "--plot roof.txt: give a file ending in .png, .svg, .pdf"),
    (["--plot", "roof.png", "--no-roofs"], "which --no-roofs skips: drop one of them"),
    (["--write", "/no/such/folder/b.md"], "the folder /no/such/folder does not exist"),
    (["--append", "/"], "--append / is a folder: give a file in it"),
    (["--append", "/tmp/no_such_report.md"], "--append /tmp/no_such_report.md: no such file: "
                                             "name an existing report, or start one with "
                                             "--write"),
    (["--write="], "--write needs a file name"),
    (["--mode", "quality"], "--peer-python PYTHON is required"),
    (["--mode", "precision", "--plot", "roof.png"], "--plot draws the throughput mode's rows"),
    (["--mode", "precision", "--batch-sizes", "256"], "--batch-sizes is read by --mode "
     "throughput, determinism, matmuls, not by precision: drop it, or add one of those modes"),
    (["--mode", "precision", "--conv", "xla"], "--conv is read by --mode throughput, matmuls"),
    (["--seed", "3"], "--seed is read by --mode quality, precision, not by throughput"),
    (["--peak-n", "300000"], "--peak-n 300000: its three 300000x300000 float32 matrices need "
     "1,005.8 GiB, and "),  # it had been an out-of-memory traceback after compiling
    (["--mode", "precision", "--seed", "-1"], "--seed -1 (with --seeds 1): the seeds must lie in "
     "[0, 4294967295]"),  # it had been refused after the modes before it had measured
    (["--mode", "precision", "--seed", "4294967296"], "--seed 4294967296 (with --seeds 1): the "
     "seeds must lie in"),
    (["--batch-sizes", "8,100000"], "--batch-sizes 100000 is larger than the 60,000-image "
                                    "epoch every workload trains on: give at most 60,000"),
    (["--batch-sizes", "128,1024", "--steps-per-chunk", "100"], "--steps-per-chunk 100 is more "
     "than the 58 steps of an epoch at batch 1024: give at most 58, or 'epoch'"),
    (["--image-sizes", "28,32", "--channels", "3", "--data", "fashion_mnist"], "--data "
     "fashion_mnist is read by the 28x28x1 workloads, and --image-sizes 28,32 --channels 3 ask "
     "for none (other shapes train on random pixels): drop --data, or add 28 and 1"),
    (["--image-sizes", "32", "--dat", "fashion_mnist"], "unrecognized arguments: --dat"),
    (["--mode", "precision", "--steps-per-chunk", "1000"], "--steps-per-chunk 1000 is more "
     "than the 468 steps of an epoch at batch 128: give at most 468, or 'epoch'"),
    (["--mode", "determinism", "--batch-sizes", "16,64"], "--mode determinism measures one "
     "--batch-sizes value, not 16,64: give one, and run determinism once per value"),
    (["--mode", "matmuls", "--conv", "patches,xla"], "--mode matmuls measures one --conv value"),
    (["--mode", "throughput,throughput"], "names a mode twice"),
    (["--models", ""], "--models needs a comma-separated list"),
    (["--models", "dense_ae,"], "--models dense_ae, has an empty name: give names separated by "
     "single commas"),
    (["--mode", "throughput,,quality"], "--mode throughput,,quality has an empty name"),
    (["--background-pin"], "--background-pin pins the --background-load processes"),
    (["--compute-dtype", "tf32"], "--compute-dtype tf32: a CPU has no TensorFloat-32"),
    (["--models", "dense_ae", "--image-sizes", "100000"], "--image-sizes 100000 (--channels 1) "
     "at batch 128 needs at least 11,920.9 GiB, and "),
    (["--models", "dense_ae,conv_ae", "--image-sizes", "28,33"],
     "conv_ae at 33x33x1, width 1: config.model (conv_ae): conv_ae cannot decode"),
])
def test_bad_options_are_one_line_refusals_before_any_work(capsys, monkeypatch, argv, said):
    monkeypatch.setattr(bench_args.jax, "default_backend", lambda: "cpu")  # tf32 is refused there
    with pytest.raises(SystemExit) as exit_info:
        bench_args.parse_args(argv)
    assert exit_info.value.code == 2  # argparse's usage error
    assert said in capsys.readouterr().err


def test_write_refuses_to_replace_a_section_of_several_runs_and_a_run_leads_with_its_heading(
        tmp_path, capsys, monkeypatch):
    """--write starts this device's section: where the section holds anything (a run, runs
    --append added, notes written beside them), replacing it would delete that, so it is
    refused before anything runs."""
    monkeypatch.setattr(report, "header", lambda devices=1: "cpu x 1")
    path = str(tmp_path / "BENCHMARKS.md")
    run = report.report_section([("Throughput and roofline", "| table |")], " Code: jaxae "
                                "commit abc.", "python -m benchmarks.bench", "abcdef0123")
    title = report.device_title()
    assert run.startswith(f"## {title}\n\n### Throughput and roofline (")
    assert ", abcdef0)\n\nMachine: " in run
    assert run.endswith("Machine: cpu x 1. Code: jaxae commit abc.\n\nCommand: `python -m "
                        "benchmarks.bench`\n\n| table |\n")
    assert bench_args.parse_args(["--write", path]).write == path  # no such file yet: fine
    with open(path, "w") as f:
        f.write(f"# Benchmarks\n\n## {title}\n\n")
    assert bench_args.parse_args(["--write", path]).write == path  # an empty section: fine
    report.write_section(path, run)
    with open(path, "a") as f:
        f.write("#### A note on this run\n\nWritten by hand.\n")
    with pytest.raises(SystemExit):
        bench_args.parse_args(["--write", path])
    assert (f"--write {path} would replace its section '## {title}', which holds 1 run: add "
            f"this run with --append {path}") in capsys.readouterr().err
    report.write_section(path, run, append=True)
    assert report.runs_in_section(path, title) == 2
    assert "A note on this run" in open(path).read()
    with pytest.raises(SystemExit):
        bench_args.parse_args(["--write", path])
    assert "which holds 2 runs: add this run with --append" in capsys.readouterr().err
    both = report.report_section([("Time to quality", "q"), ("Precision matrix", "p")], "", "c")
    assert "### Time to quality, Precision matrix (" in both and "#### Precision matrix\n\np" \
        in both


def test_the_matmuls_mode_is_refused_off_the_cpu(capsys, monkeypatch):
    """Its products are timed on the CPU beside the CPU peer: a GPU step beside them would
    compare different machines."""
    monkeypatch.setattr(bench_args.jax, "default_backend", lambda: "gpu")
    with pytest.raises(SystemExit):
        bench_args.parse_args(["--mode", "matmuls"])
    assert "JAX runs on gpu: run it with JAX_PLATFORMS=cpu" in capsys.readouterr().err
    assert bench_args.parse_args(["--mode", "throughput"]).mode == "throughput"


def _program(path, body: str) -> str:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_the_peer_runs_with_the_script_it_is_given_and_must_import_torch(tmp_path, capsys):
    with_torch = _program(tmp_path / "with_torch", "echo '--mode {train,step-bench,info}'")
    args = bench_args.parse_args(["--peer-python", with_torch, "--peer-script", __file__])
    assert args.peer_script == __file__
    other = _program(tmp_path / "other_script", "echo 'usage: something else'")  # no step-bench
    with pytest.raises(SystemExit):
        bench_args.parse_args(["--peer-python", other, "--peer-script", __file__])
    assert (f"--peer-script {__file__} is not the PyTorch peer (its --help offers no step-bench "
            "mode): give torch_autoencoders.py") in capsys.readouterr().err
    assert bench_args.parse_args([]).peer_script is None  # no default outside the repository
    without = _program(tmp_path / "without_torch",
                       "echo \"ModuleNotFoundError: No module named 'torch'\" >&2; exit 1")
    with pytest.raises(SystemExit):
        bench_args.parse_args(["--peer-python", without, "--peer-script", __file__])
    assert (f"--peer-python {without} cannot import torch (ModuleNotFoundError: No module named "
            "'torch'): give a Python with torch installed") in capsys.readouterr().err
    with pytest.raises(workloads.BenchRefused, match=r"the peer's step-bench of dae \(.*\) failed "
                                                     r"with exit status 3: out of luck$"):
        bench.bench_peer(_program(tmp_path / "failing", "echo 'out of luck' >&2; exit 3"),
                         __file__, "dae", 8, 2, 1, 1)


def test_a_device_count_jax_does_not_see_names_the_counts_it_does(capsys):
    with pytest.raises(SystemExit):
        bench_args.parse_args(["--devices", str(jax.device_count() + 1)])
    said = capsys.readouterr().err
    assert f"JAX sees {jax.device_count()} device(s): give 1" in said
    assert ("xla_force_host_platform_device_count" in said) == (jax.device_count() == 1)


def test_the_command_quoted_names_only_what_differs_from_the_defaults(monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    args = bench_args.parse_args(["--models", "dae", "--chunks", "3", "--write", "x.md"])
    assert bench_args.command_line(args) == "python -m benchmarks.bench --models=dae --chunks=3"
    # split over devices the flags made: both said, or the command reruns on one device
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    monkeypatch.setattr(jax, "device_count", lambda: 2)  # the default: all JAX sees
    args = bench_args.parse_args(["--models", "dae", "--chunks", "3", "--write", "x.md"])
    assert args.devices == 2 and bench_args.command_line(args) == (
        "XLA_FLAGS=--xla_force_host_platform_device_count=2 python -m benchmarks.bench "
        "--models=dae --devices=2 --chunks=3")


def test_background_load_starts_busy_processes_and_ends_them(monkeypatch):
    started = []
    real_popen = bench.subprocess.Popen
    monkeypatch.setattr(bench.subprocess, "Popen",
                        lambda *a, **k: started.append(real_popen(*a, **k)) or started[-1])
    with bench.background_load(1):
        assert started[0].poll() is None  # running
    assert started[0].poll() is not None  # ended with the block


def test_append_adds_to_the_end_of_its_own_device_section(tmp_path):
    path = str(tmp_path / "BENCHMARKS.md")
    report.write_section(path, "## NVIDIA H100\n\nh100 table\n")
    report.write_section(path, "## NVIDIA H200\n\nfirst part\n")
    report.write_section(path, "## NVIDIA H200\n\nsecond part\n", append=True)
    report.write_section(path, "## cpu: Xeon\n\ncpu part\n", append=True)  # a new section
    text = open(path).read()
    h200 = text[text.index("## NVIDIA H200"):text.index("## cpu: Xeon")]
    assert "first part" in h200 and "second part" in h200
    assert h200.index("first part") < h200.index("second part")
    assert "h100 table" in text and "cpu part" in text and text.count("## NVIDIA H200") == 1


def test_a_heading_like_line_in_a_fenced_block_is_not_a_section(tmp_path):
    """A device's section holding a fenced block with a "## " line: the run goes after the
    block, which keeps its lines as they were."""
    path = tmp_path / "BENCHMARKS.md"
    block = ("```bash\n## a shell comment, not a heading\nmake\n```\n\n"
             "~~~markdown\n```\n## a heading in a code sample\n~~~")
    path.write_text(f"# Benchmarks\n\n## cpu: X\n\nfirst run\n\n{block}\n\n## Notes\n\nnote\n")
    report.write_section(str(path), "## cpu: X\n\nsecond run\n", append=True)
    assert path.read_text() == (f"# Benchmarks\n\n## cpu: X\n\nfirst run\n\n{block}\n\n"
                                "second run\n\n## Notes\n\nnote\n")


def test_write_section_replaces_only_its_own_device(tmp_path):
    path = str(tmp_path / "BENCHMARKS.md")
    report.write_section(path, "## cpu\n\nold cpu table\n")
    report.write_section(path, "## NVIDIA H100\n\ngpu table\n")
    report.write_section(path, "## cpu\n\nnew cpu table\n")
    text = open(path).read()
    assert "new cpu table" in text and "gpu table" in text and "old cpu table" not in text
    assert text.count("## cpu") == 1
    assert text.startswith("# Benchmarks\n\nOne section per device")  # a new report's


@pytest.mark.parametrize("start", ["# My lab's runs\n\nThe room is at 21 C.\n\n", ""])
def test_write_and_append_keep_the_text_above_the_sections(tmp_path, start):
    path = tmp_path / "mine.md"
    path.write_text(start + "## Other device\n\nits table\n")
    report.write_section(str(path), "## cpu\n\nfirst\n")
    report.write_section(str(path), "## cpu\n\nsecond\n", append=True)
    assert path.read_text() == (start + "## Other device\n\nits table\n\n"
                                "## cpu\n\nfirst\n\nsecond\n")


@pytest.mark.parametrize("commit, files, said", [
    ("0123456789abcdef0123", [], " Code: jaxae commit 0123456789ab."),
    ("0123456789abcdef0123", ["BENCHMARKS.md", "benchmarks/logs/run-1.log"],
     " Code: jaxae commit 0123456789ab (uncommitted: BENCHMARKS.md, benchmarks/logs/run-1.log; "
     "no code)."),
    ("0123456789abcdef0123", ["a.py", "b.py", "c.py", "d.py", "e.py"],
     " Code: jaxae commit 0123456789ab with uncommitted changes to code: a.py, b.py, c.py and 2 "
     "more."),
    ("0123456789abcdef0123", ["BENCHMARKS.md", "Makefile", "plot.png"],
     " Code: jaxae commit 0123456789ab with uncommitted changes to code: Makefile (and to 2 "
     "other files)."),
    ("", [], "")])
def test_a_section_names_the_commit_it_measured(monkeypatch, commit, files, said):
    monkeypatch.delenv(report.COMMIT_VAR, raising=False)
    monkeypatch.setattr(report, "head_commit", lambda: commit)
    monkeypatch.setattr(report, "uncommitted_files", lambda: files)
    assert report.code_version() == said


def test_uncommitted_files_reads_git_status(monkeypatch):
    """Changed, new and renamed paths from `git status --porcelain`; none outside git."""
    status = " M BENCHMARKS.md\n?? benchmarks/new.py\nR  old.py -> renamed.py"
    monkeypatch.setattr(provenance, "_git",
                        lambda *args: "abc123" if "rev-parse" in args else status)
    assert provenance.uncommitted_files() == ["BENCHMARKS.md", "benchmarks/new.py",
                                              "renamed.py"]
    assert provenance.git_commit() == "abc123+dirty"
    # no code changed: a log, or an output folder's files, in the checkout had marked runs dirty
    for status in ("", "?? nohup.out\n?? train.log\n M BENCHMARKS.md",
                   "?? out/runs/a/checkpoints/16/commit_success.txt\n"
                   "?? out/data/tfds/mnist/1.0.0/label.labels.txt"):
        monkeypatch.setattr(provenance, "_git",
                            lambda *args, status=status: "abc123" if "rev-parse" in args
                            else status)
        assert provenance.git_commit() == "abc123"

    def no_git(*args):
        raise FileNotFoundError("git")
    monkeypatch.setattr(provenance, "_git", no_git)
    assert provenance.uncommitted_files() == [] and provenance.git_commit() == ""


def test_jaxae_commit_names_the_commit_of_a_copy_whose_git_is_stale(monkeypatch):
    """A GPU machine's copy may carry an older .git: $JAXAE_COMMIT names its files' commit in
    the reports, with no uncommitted files asked of that git."""
    monkeypatch.setattr(report, "head_commit", lambda: "9aeb9c37aff6aaaa")
    monkeypatch.setattr(report, "uncommitted_files", lambda: ["benchmarks/bench.py"])
    monkeypatch.delenv(report.COMMIT_VAR, raising=False)
    assert report.code_version() == (" Code: jaxae commit 9aeb9c37aff6 with uncommitted changes "
                                     "to code: benchmarks/bench.py.")
    monkeypatch.setenv(report.COMMIT_VAR, "f359400ec9d2b895")
    assert report.measured_commit() == "f359400ec9d2b895"
    assert report.code_version() == (" Code: jaxae commit f359400ec9d2 (named by $JAXAE_COMMIT, "
                                     "not checked).")


def test_append_through_a_link_writes_the_file_it_names_and_keeps_its_mode(tmp_path):
    real, link = tmp_path / "real.md", tmp_path / "link.md"
    report.write_section(str(real), "## cpu: X\n\nfirst run\n")
    real.chmod(0o640)
    link.symlink_to(real)
    report.write_section(str(link), "## cpu: X\n\nsecond run\n", append=True)
    assert link.is_symlink() and "second run" in real.read_text()
    assert real.stat().st_mode & 0o777 == 0o640
    assert not (tmp_path / "real.md.partial").exists()


def measured_row(model: str, batch_size: int) -> dict:
    """A throughput row as bench_model returns it (without roofs), for the report's code."""
    return {"model": model, "framework": "jaxae", "batch": batch_size, "conv": "patches",
            "compute_dtype": "float32", "image_shape": [28, 28, 1], "width": 1,
            "compile_s": 0.5, "step_ms": 0.3, "epoch_ms": 140.0, "img_per_s": 4e5,
            "flops_per_step": 1.2e7, "bytes_per_step": 7.1e6, "intensity": 1.7,
            "achieved_gflops": 40.0, "achieved_gbytes_per_s": 23.0,
            "chunk_img_per_s": [400000], "steps_per_chunk": 2}


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_throughput_run_reports_the_rows_it_measured(monkeypatch, capsys, stop):
    """gpu.sh's time budget interrupts a step (SIGINT), a scheduler's time limit sends
    SIGTERM (which had ended the run without its report): the rows measured so far are
    its report."""
    measured = []

    def bench_model(model, batch_size, *args, **kwargs):
        if measured:
            os.kill(os.getpid(), stop)
            time.sleep(5)  # the handler runs before this returns
        measured.append(batch_size)
        return measured_row(model, batch_size)
    monkeypatch.setattr(bench, "bench_model", bench_model)
    args = bench_args.parse_args(["--models", "conv_ae", "--batch-sizes", "8,16,32", "--no-roofs",
                                  "--data", "random"])
    # Ctrl-C's handler as in a terminal (the suite run as a script's background job starts
    # ignoring SIGINT, and the bench leaves a signal ignored so)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        text, cut_short = bench.throughput(args)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert cut_short == stop and measured == [8]
    assert "| 8 |" in text and "| 16 |" not in text
    assert "Roofs not measured (--no-roofs)." in text and "Roofs measured" not in text
    assert text.rstrip().endswith(f"Cut short by {stop.name}: the workloads after these rows "
                                  "were not measured.")
    assert f"# interrupted ({stop.name}) after 1 row(s)" in capsys.readouterr().out


@pytest.mark.parametrize("mode", ["determinism", "precision"])
def test_a_mode_stopped_midway_writes_the_rows_it_measured(monkeypatch, tmp_path, capsys,
                                                           mode):
    """gpu.sh's budget (SIGINT) or a scheduler (SIGTERM) stopping the determinism or precision
    mode on its second model had lost the first one's row with the report; a stop before
    the first row writes nothing."""
    from benchmarks import determinism, precision_matrix

    started = []

    def second_stops(model):
        if model not in started:
            started.append(model)
        if len(started) == stop_at:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs before this returns

    monkeypatch.setattr(determinism, "spawn", lambda model, *args: second_stops(model) or {
        "steps": 4, "sha256": "ab" * 32, "step_ms": 1.0})
    monkeypatch.setattr(bench, "bench_model", lambda model, batch, *a, **k:
                        measured_row(model, batch))
    # stopped as it trains, inside cli.run (as parity.run_jaxae trains), which ends the
    # process on a KeyboardInterrupt
    monkeypatch.setattr(precision_matrix, "train_figure", lambda model, *args: cli.run(
        lambda: second_stops(model)) or (0.3, 1))
    path = tmp_path / "b.md"
    argv = ["--mode", f"{mode},throughput", "--models", "dense_ae,vae", "--data", "random",
            "--no-roofs", "--write", str(path)]
    stop_at = 2
    assert bench.main(argv) == signal.SIGTERM
    written = path.read_text()
    assert "| dense_ae |" in written and "| vae |" not in written
    assert ("Cut short by SIGTERM: the models after these rows were not measured.\n\n"
            "Not run, after it: --mode throughput.") in written
    assert "# interrupted (SIGTERM) after 1 row(s)" in capsys.readouterr().out
    started.clear()
    stop_at = 1
    path.unlink()
    assert bench.main(argv) == signal.SIGTERM and not path.exists()
    assert f"nothing is written to {path}" in capsys.readouterr().out


@pytest.mark.parametrize("interrupted, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143),
                                                 (None, None)])
def test_a_run_cut_short_exits_128_plus_the_signal_once_its_report_is_written(
        monkeypatch, interrupted, status):
    monkeypatch.setattr(bench, "main", lambda argv: interrupted)
    exits = []
    monkeypatch.setattr(bench.os, "_exit", exits.append)
    bench.main_or_refuse([])
    assert exits == ([status] if status else [])


def test_a_throughput_run_cut_short_runs_no_later_mode_and_the_others_run_stoppable(
        monkeypatch, tmp_path, capsys):
    """Stopped, the modes after it had run with every stop signal ignored (a scheduler's
    SIGKILL then lost the report); run to its end, the next mode has the bench's stop
    handler (with the process's own, a stop in its set-up lost the earlier modes' report),
    the report's writing none (a late stop had lost it), and the process's own handlers
    are given back."""
    from benchmarks import determinism

    argv = ["--models", "dense_ae", "--batch-sizes", "8", "--no-roofs", "--data", "random",
            "--write", str(tmp_path / "b.md"), "--mode"]
    handlers = {sig: signal.getsignal(sig) for sig in bench.GracefulStop.SIGNALS}
    seen = []
    monkeypatch.setattr(determinism, "run", lambda args: seen.append(
        {sig: signal.getsignal(sig) for sig in handlers}) or ("", None))
    monkeypatch.setattr(bench, "bench_model", lambda model, batch_size, *a, **k:
                        measured_row(model, batch_size))
    writes = []
    monkeypatch.setattr(bench, "write_section", lambda *args, **kwargs: writes.append(
        {sig: signal.getsignal(sig) for sig in handlers}))
    assert bench.main(argv + ["throughput"]) is None
    assert writes == [{sig: signal.SIG_IGN for sig in handlers}]  # a late stop waits for it
    stoppable = {sig: signal.SIG_IGN if handler is signal.SIG_IGN else bench._stop
                 for sig, handler in handlers.items()}  # one ignored from the start stays so
    assert bench.main(argv + ["throughput,determinism"]) is None and seen == [stoppable]
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers  # given back
    monkeypatch.setattr(bench, "throughput", lambda args: ("rows", signal.SIGTERM))
    seen.clear()
    assert bench.main(argv + ["throughput,determinism"]) == signal.SIGTERM and seen == []
    assert "# not run: --mode determinism" in capsys.readouterr().out


def test_a_stop_in_a_modes_set_up_writes_the_modes_before_it(monkeypatch, tmp_path):
    """A stop as the second mode loads its data (before any row of it) had killed the
    process with the default handler, losing the first mode's rows; now they are written,
    saying where it stopped, and the process's handlers are given back."""
    from benchmarks import precision_matrix

    def set_up_stopped(args):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler runs before this returns
    monkeypatch.setattr(precision_matrix, "run", set_up_stopped)
    monkeypatch.setattr(bench, "bench_model", lambda model, batch_size, *a, **k:
                        measured_row(model, batch_size))
    handlers = {sig: signal.getsignal(sig) for sig in bench.GracefulStop.SIGNALS}
    path = tmp_path / "b.md"
    assert bench.main(["--mode", "throughput,precision,determinism", "--models", "dense_ae",
                       "--batch-sizes", "8", "--no-roofs", "--data", "random", "--write",
                       str(path)]) == signal.SIGTERM
    written = path.read_text()
    assert "| dense_ae | patches |" in written
    assert written.rstrip().endswith("Stopped by SIGTERM in --mode precision, before its first "
                                     "row.\n\nNot run, after it: --mode determinism.")
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers


def test_a_cpu_section_is_titled_by_the_cpu_model(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\n"
                       "model name\t: AMD  EPYC 7B13\nflags\t: fpu avx2\n")
    bare = tmp_path / "bare_cpuinfo"  # a model name alone: nothing to add to it
    bare.write_text("processor\t: 0\nmodel name\t: AMD  EPYC 7B13\n")
    assert provenance.host_cpu_kind(str(bare)) == "AMD EPYC 7B13"
    assert provenance.host_cpu_kind(str(tmp_path / "missing")) != ""  # the architecture instead
    assert provenance.host_cpu_kind(str(cpuinfo)) == "AMD EPYC 7B13 (AVX2)"
    cpuinfo.write_text("processor\t: 0\ncpu family\t: 26\nmodel\t\t: 2\n"
                       "model name\t: AMD EPYC\nflags\t: fpu avx avx2 avx512f avx512_bf16\n\n"
                       "processor\t: 1\ncpu family\t: 25\nmodel\t\t: 1\n")
    assert provenance.host_cpu_kind(str(cpuinfo)) == \
        "AMD EPYC (family 26, model 2; AVX-512, bfloat16)"  # the first processor's
    arm = tmp_path / "arm_cpuinfo"  # a blank line first; no model name
    arm.write_text("\nprocessor\t: 0\nFeatures\t: fp asimd sve bf16\nCPU implementer\t: 0x41\n"
                   "CPU part\t: 0xd40\n")
    assert provenance.host_cpu_kind(str(arm)).endswith(
        " (implementer 0x41, part 0xd40; SVE, bfloat16)")
    monkeypatch.setattr(report, "host_cpu_kind", lambda: "AMD EPYC 7B13 (family 25; AVX2)")
    assert report.device_title() == "cpu: AMD EPYC 7B13 (family 25; AVX2)"  # the suite's CPU
    assert "host AMD EPYC 7B13 (family 25; AVX2)," in report.header()
    assert report.header().startswith("cpu x 1 (cpu;")
    monkeypatch.setattr(report.jax, "device_count", lambda: 8)  # the bench times one of them
    assert report.header().startswith("cpu (1 of 8 devices used) (cpu;")
    assert report.header(8).startswith("cpu x 8 (cpu;")  # a batch split over all eight


def test_the_narrow_gradient_bench_times_both_layouts(capsys):
    narrow_gradient.main(["--batch-sizes", "8", "--inputs", "40", "--outputs", "3,24",
                          "--calls", "2"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 8 |")]
    assert [row.split(" | ")[:3] for row in rows] == [["| 8", "40", "3"], ["| 8", "40", "24"]]
    assert all(row.endswith("x |") for row in rows)


@pytest.mark.parametrize("lhs, rhs, dims", [
    ((6, 5), (5, 4), (((1,), (0,)), ((), ()))),  # x @ W
    ((6, 5), (6, 4), (((0,), (0,)), ((), ()))),  # x.T @ g, a kernel's gradient
    ((6, 5), (4, 5), (((1,), (1,)), ((), ()))),  # g @ W.T, an input's gradient
    ((3, 6, 5), (3, 5, 4), (((2,), (1,)), ((0,), (0,)))),  # batched
    ((5, 3, 6), (6, 2, 5), (((0, 2), (2, 0)), ((), ()))),  # two contracted dimensions
])
def test_a_timed_product_is_the_dot_general_it_stands_for(lhs, rhs, dims):
    dot = matmul_floor.Dot(lhs, rhs, dims)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=lhs).astype(np.float32), rng.normal(size=rhs).astype(np.float32)
    expected = np.asarray(jax.lax.dot_general(a, b, dims))
    assert dot.out == expected.shape
    contracted = math.prod(lhs[i] for i in dims[0][0])
    assert dot.flops == 2 * expected.size * contracted
    np.testing.assert_allclose(np.einsum(dot.einsum(), a, b), expected, rtol=1e-5, atol=1e-5)
    transposes = dot.mm_transposes()
    assert (transposes is None) == (len(lhs) != 2 or len(dims[0][0]) != 1)
    if transposes is not None:  # torch.mm on transposed views, as the peer's timer calls it
        product = (a.T if transposes[0] else a) @ (b.T if transposes[1] else b)
        np.testing.assert_allclose(product, expected, rtol=1e-5, atol=1e-5)


def test_the_vae_steps_products_are_read_from_its_compiled_step():
    arrays = random_arrays(64, 0)
    epoch = workloads.first_epoch(workloads.bench_config("vae", 16), arrays)
    counts = matmul_floor.step_matmuls(epoch, arrays)
    big = {dot: n for dot, n in counts.items() if dot.flops == 2 * 16 * 784 * 512}
    # forward: encoder and decoder; backward: both kernels' gradients and the decoder's input's
    assert sum(big.values()) == 5
    assert sorted(dot.out for dot in big) == sorted([(16, 512), (16, 784), (16, 512),
                                                     (784, 512), (512, 784)])
    assert sum(counts.values()) == 14  # and nine with the 2-D code: heads, decoder's first


def test_the_eviction_pass_is_twice_the_distinct_last_level_caches(tmp_path):
    def cache(cpu: int, index: int, level: int, size: str, shared: str) -> None:
        folder = tmp_path / f"cpu{cpu}" / "cache" / f"index{index}"
        folder.mkdir(parents=True)
        for name, text in (("level", str(level)), ("size", size), ("shared_cpu_list", shared)):
            (folder / name).write_text(text + "\n")

    for cpu in range(4):  # two CCDs of two CPUs: an L2 each, an L3 per CCD
        cache(cpu, 2, 2, "1024K", str(cpu))
        cache(cpu, 3, 3, "16384K", "0-1" if cpu < 2 else "2-3")
    assert matmul_floor.flush_bytes(str(tmp_path), {0, 1, 2, 3}) == 2 * 2 * 16 * 2**20
    assert matmul_floor.flush_bytes(str(tmp_path), {2}) == 2 * 16 * 2**20  # its CCD's only
    assert matmul_floor.flush_bytes(str(tmp_path / "none"), {0}) == 64 * 2**20  # none listed


def test_a_matmuls_row_that_contradicts_itself_is_named_in_doubt():
    row = {"model": "dae", "fastest_product_gflops": 400.0, "products_peak_gflops": 450.0,
           "adam_over_sgd_alone_ms": 0.2, "adam_over_sgd_evicted_ms": 0.5,
           "sgd_step_ms": 2.6, "matmuls_ms": 2.3}
    assert matmul_floor._doubt(row) == ""
    row |= {"fastest_product_gflops": 462.3, "products_peak_gflops": 412.1,
            "adam_over_sgd_alone_ms": 0.66, "adam_over_sgd_evicted_ms": 0.6,
            "sgd_step_ms": 2.2}
    assert matmul_floor._doubt(row) == (
        "\nIn doubt: dae: a product ran at 462.3 GFLOP/s, above the peak of 412.1 read beside "
        "them; Adam's update alone took longer over SGD's in the caches than evicted; the SGD "
        "step took no longer than its products alone; rerun before quoting.")


def test_the_matmuls_mode_reports_the_step_and_its_products(monkeypatch, capsys):
    monkeypatch.setattr(matmul_floor, "TARGET_FLOPS_PER_REPEAT", 1e6)
    monkeypatch.setattr(matmul_floor, "flush_bytes", lambda: 2**20)
    monkeypatch.setattr(matmul_floor, "REPEATS", 1)
    built = []  # the optimisers the timed steps are built with: Adam's, then SGD's
    for name, make in list(optimizers.OPTIMIZERS.items()):
        monkeypatch.setitem(optimizers.OPTIMIZERS, name,
                            lambda rate, name=name, make=make: built.append(name) or make(rate))
    args = bench_args.parse_args(["--mode", "matmuls", "--models", "dense_ae", "--batch-sizes", "8",
                                  "--steps-per-chunk", "2", "--chunks", "1", "--data", "random",
                                  "--peak-n", "512"])  # a CPU's default, 2048, took seconds
    report, cut_short = matmul_floor.run(args)
    assert cut_short is None
    assert "no --peer-python: the peer's columns are empty" in report
    summary = next(line for line in report.splitlines() if line.startswith("| dense_ae | 8 |"))
    cells = [cell.strip() for cell in summary.strip("|").split("|")]
    step, matmuls, rest, with_sgd = (float(cells[i]) for i in (4, 5, 6, 7))
    assert step > 0 and matmuls > 0 and abs(step - matmuls - rest) < 0.011 and with_sgd > 0
    assert abs(float(cells[8]) - (step - with_sgd)) < 0.011  # Adam over SGD, in the step
    summary_json = next(json.loads(line) for line in capsys.readouterr().out.splitlines()
                        if line.startswith('{"model": "dense_ae", "batch"'))
    assert summary_json["peak_n"] == 512  # the peaks beside the step and its products
    assert math.isfinite(summary_json["adam_over_sgd_alone_ms"])  # a difference of timings
    assert cells[9] == f"{summary_json['adam_over_sgd_alone_ms']:.2f}"
    assert cells[10] == f"{summary_json['adam_over_sgd_evicted_ms']:.2f}"
    fraction, bound = re.fullmatch(r"([\d.]+)% \((compute|memory)\)", cells[11]).groups()
    assert 0 < float(fraction) <= 100
    assert 0 < float(cells[12].rstrip("%")) <= 100  # the products' own rate, of the peak
    goal_step, goal = re.fullmatch(r"([\d.]+) \((\d+)%\)", cells[13]).groups()
    assert int(goal) == 100 * matmul_floor.ROOF_GOALS[bound]
    # a step at the goal runs faster than this one unless this one already reaches it
    assert (float(goal_step) < step) == (float(fraction) < int(goal))
    assert abs(float(goal_step) - matmuls - float(cells[14])) < 0.011
    assert cells[15:] == ["-"] * 4
    products = [line for line in report.splitlines() if line.startswith("| dense_ae | [")]
    assert len(products) >= 2 and all(" x " in line for line in products)
    assert "adam" in built and "sgd" in built


def test_chunks_that_vary_a_lot_and_chunks_longer_than_an_epoch_are_named():
    row = {"model": "dense_ae", "conv": None, "compute_dtype": "float32",
           "image_shape": [28, 28, 1], "batch": 128, "compile_s": 0.5, "step_ms": 0.3,
           "epoch_ms": 140.0, "img_per_s": 400000.0, "flops_per_step": 1.2e7,
           "bytes_per_step": 7.1e6, "intensity": 1.7, "achieved_gflops": 40.0,
           "achieved_gbytes_per_s": 23.0, "chunk_img_per_s": [400000, 410000, 395000]}
    steady_peer = {"img_per_s": 150000.0, "chunk_img_per_s": [150000.0, 149000.0]}
    assert "varied" not in report.table([(row, steady_peer)])
    busy_peer = {"img_per_s": 5947.0, "chunk_img_per_s": [10614.3, 1279.5]}
    assert report.table([(row, busy_peer)]).endswith(
        "Chunks that varied more than 1.5x (a busy moment?): dense_ae float32 28x28x1 width 1 "
        "batch 128 (peer: 1,280-10,614 "
        "images/s); the rates are their medians, rerun before quoting.")
    arrays = workloads.random_arrays((28, 28, 1), 256)
    with pytest.raises(workloads.BenchRefused, match=r"^--steps-per-chunk 3 is more than the 2 "
                       r"steps of an epoch at batch 128: give at most 2, or 'epoch'$"):
        bench.bench_model("dense_ae", 128, 3, 1, arrays, roofs=False)


def test_the_gpu_script_s_steps_pass_the_bench_s_checks_at_their_real_settings(tmp_path):
    """benchmarks/gpu.sh with PARSE_ONLY=1: each step's options parsed as on a GPU (a step
    the bench would refuse there fails it), nothing measured."""
    done = run_gpu_script(tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("== gpu.sh: ") == 5 and "failed" not in done.stderr


GPU_SETTINGS = ("EPOCH_BATCHES", "EPOCH_DTYPE", "VAE_BATCHES", "VAE_WIDTHS", "VAE_CONV")


def run_gpu_script(tmp_path, **settings: str) -> subprocess.CompletedProcess:
    """benchmarks/gpu.sh with PARSE_ONLY=1 and these settings, none of the caller's."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items()
           if k not in ("ONLY", "BUDGET_S", "OUT", "DRY_RUN", *GPU_SETTINGS)}
    env |= {"PARSE_ONLY": "1", "PYTHON": sys.executable, "REPORT": str(tmp_path / "report.md"),
            "OUT": str(tmp_path), "TFDS_DATA_DIR": str(tmp_path / "tfds"),
            **settings}  # a DRY_RUN's log and data go there, not into /tmp
    return subprocess.run(["bash", "benchmarks/gpu.sh"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("settings, said", [
    ({"ONLY": "growth  determinism"}, None),
    ({"ONLY": "growht"}, "gpu.sh: ONLY names no step growht: give some of epoch vae64 "
                         "determinism growth precision"),
    ({"ONLY": "*"}, "gpu.sh: ONLY names no step *:"),
    ({"BUDGET_S": "8m"}, "gpu.sh: BUDGET_S=8m is not whole seconds: give e.g. BUDGET_S=540"),
    ({"BUDGET_S": "30"}, "gpu.sh: BUDGET_S=30 leaves no step the minute it needs"),
    ({"DRY_RUN": "1"}, "gpu.sh: DRY_RUN=1 runs the tiny settings, PARSE_ONLY=1 checks the real "
                       "ones: give one")])
def test_the_gpu_script_runs_the_steps_only_names_and_refuses_bad_settings(
        tmp_path, settings, said):
    done = run_gpu_script(tmp_path, **settings)
    if said is None:
        assert done.returncode == 0, done.stderr[-2000:]
        assert [line.split()[2] for line in done.stderr.splitlines()
                if line.startswith("== gpu.sh: ")] == ["determinism", "growth"]
    else:
        assert done.returncode == 2 and done.stderr.startswith(said), done.stderr


def test_the_gpu_script_s_settings_reach_the_bench(tmp_path):
    """A setting given by the environment is the bench's option (refused by it there; two
    steps' settings in one run, each refused by its own step's check). VAE_CONV's is the
    option its step's command names (the bench refuses only the first bad option of a step,
    here --widths; its refusal of --conv fft is test_a_run_of_the_gpu_script_checks...'s):
    one run for the three settings, not one for VAE_CONV besides."""
    done = run_gpu_script(tmp_path, ONLY="epoch vae64", VAE_WIDTHS="0", EPOCH_DTYPE="float16",
                          VAE_CONV="fft")
    said = ("--widths='0'", "--compute-dtype", "fft")
    assert done.returncode == 1 and all(s in done.stderr for s in said), done.stderr[-2000:]
    assert "gpu.sh: the bench refuses the options of step(s)" in done.stderr
    [vae64] = [line for line in done.stderr.splitlines() if line.startswith("== gpu.sh: vae64 (")]
    assert " --widths 0 " in vae64 and " --conv fft " in vae64, vae64


def test_a_run_of_the_gpu_script_checks_every_step_s_options_before_running_any(
        tmp_path, fashion_tfds_dir):
    """A setting the bench refuses stops the whole run before its first step: no device
    time is spent on the steps before the refused one (epoch, before vae64; the other
    steps' checks are test_the_gpu_script_s_steps_pass_the_bench_s_checks...'s)."""
    done = run_gpu_script(tmp_path, DRY_RUN="1", PARSE_ONLY="0", VAE_CONV="fft",
                          TFDS_DATA_DIR=fashion_tfds_dir, ONLY="epoch vae64")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "gpu.sh: step vae64: python -m benchmarks.bench: error: --conv: unknown fft" in \
        done.stderr  # VAE_CONV, refused by vae64's own check
    assert done.stderr.rstrip().endswith("gpu.sh: the bench refuses the options of step(s) "
                                         "vae64 (above): nothing was run")
    assert "== gpu.sh: epoch (at" not in done.stderr and not (tmp_path / "report.md").read_text()


def test_the_gpu_script_without_fashion_mnist_reports_precision_skipped_not_refused(tmp_path):
    """Fashion-MNIST that does not load skips the precision matrix (the speed steps use
    random pixels): said so, and not taken for a step whose options the bench refused,
    which would stop every step."""
    done = run_gpu_script(tmp_path, DRY_RUN="1", PARSE_ONLY="0", ONLY="precision",
                          JAXAE_FASHION_MNIST_DIR=str(tmp_path / "nowhere"),
                          TFDS_DATA_DIR=str(tmp_path / "tfds"))
    assert done.returncode == 1, done.stderr[-2000:]
    assert "gpu.sh: Fashion-MNIST does not load here (above): random pixels" in done.stderr
    assert "refuses" not in done.stderr
    assert "failed, were skipped or were cut short: precision(no Fashion-MNIST)" in done.stderr


def test_a_gpu_step_stopped_by_sigterm_is_reported_cut_short_not_failed(
        tmp_path, fashion_tfds_dir):
    """A step's bench stopped by SIGTERM (a scheduler's) exits 143, as the limit's SIGINT
    makes it exit 130: cut short (it was counted a failure). (Fashion-MNIST prepared
    already: the script's check that it loads need not prepare it.)"""
    python = tmp_path / "python"  # the bench's runs end by SIGTERM; any other call is Python's
    python.write_text(f'#!/bin/bash\nif [ "$1" = -m ]; then kill -TERM $$; fi\n'
                      f'exec {shlex.quote(sys.executable)} "$@"\n')
    python.chmod(0o755)
    done = run_gpu_script(tmp_path, DRY_RUN="1", PARSE_ONLY="0", ONLY="determinism",
                          PYTHON=str(python), TFDS_DATA_DIR=fashion_tfds_dir)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "gpu.sh: these steps failed, were skipped or were cut short: determinism(cut " \
           "short)" in done.stderr
    assert "step determinism failed" not in done.stderr


def test_the_gpu_script_refuses_wheels_made_for_another_python(tmp_path):
    """Wheels carried for another Python would fail to install with pip's words alone: the
    script names both versions and the --prepare that makes the right ones."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    (tmp_path / "benchmarks").mkdir()
    shutil.copy(os.path.join(root, "benchmarks", "gpu.sh"), tmp_path / "benchmarks")
    (tmp_path / ".whl").mkdir()
    (tmp_path / ".whl" / "dm_tree-0.1.10-cp399-cp399-any.whl").write_bytes(b"")
    (tmp_path / ".whl" / "PYTHON_VERSION").write_text("3.99\n")
    env = {k: v for k, v in os.environ.items() if k not in ("DRY_RUN", "PARSE_ONLY", "OUT")}
    done = subprocess.run(["bash", "benchmarks/gpu.sh"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env={**env, "PYTHON": sys.executable})
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert done.returncode == 1
    assert done.stderr.startswith(
        f"gpu.sh: the wheels in .whl/ are for Python 3.99, {sys.executable} is {here}: rerun "
        f"WHEEL_PYTHON={here} bash benchmarks/gpu.sh --prepare"), done.stderr
    done = subprocess.run(["bash", "benchmarks/gpu.sh"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env={**env, "PYTHON": str(tmp_path / "nope")})
    assert done.returncode == 1 and done.stderr.startswith(
        f"gpu.sh: {tmp_path / 'nope'} does not run: give PYTHON=<a Python 3.99"), done.stderr


@pytest.mark.parametrize("steps, trained, said", [
    (1000, 468, "--steps 1000 is more than an epoch at batch 128: each run trained one "
                "epoch (468 steps)"),
    (200, 200, None)])
def test_the_determinism_mode_says_when_a_run_trained_fewer_steps_than_asked(
        monkeypatch, capsys, steps, trained, said):
    from benchmarks import determinism

    monkeypatch.setattr(determinism, "spawn", lambda *args: {
        "steps": trained, "sha256": "ab" * 32, "step_ms": 1.0})
    text, _ = determinism.run(bench_args.parse_args(["--mode", "determinism", "--models",
                                                     "vae", "--steps", str(steps)]))
    if said:
        assert said in text and said in capsys.readouterr().out
    else:
        assert "more than an epoch" not in text
    assert f"| vae | {trained} | default |" in text


def test_fashion_mnist_that_does_not_load_is_one_line_naming_the_bench_s_options(monkeypatch):
    def missing(*args, **kwargs):
        raise FileNotFoundError("fashion_mnist is not in /x: give --config.data.tfds_dir\nmore")
    monkeypatch.setattr(workloads, "load_dataset", missing)
    with pytest.raises(workloads.BenchRefused,
                       match=r"^Fashion-MNIST does not load \(fashion_mnist "
                       r"is not in /x: give --tfds-dir\): give --tfds-dir, or "
                       r"\$JAXAE_FASHION_MNIST_DIR \(its IDX files\), or --data random$"):
        workloads.BenchData("fashion_mnist").arrays(workloads.FASHION_SHAPE, 128)
    arrays, source = workloads.BenchData("auto").arrays(workloads.FASHION_SHAPE, 128)
    assert source.startswith("random pixels") and arrays["image"].shape[1:] == (28, 28, 1)
    measured = []  # a run that also grows the images: refused before its first row
    monkeypatch.setattr(bench, "bench_model", lambda model, batch, *a, **k:
                        measured.append(model) or measured_row(model, batch))
    with pytest.raises(workloads.BenchRefused, match=r"^Fashion-MNIST does not load"):
        bench.throughput(bench_args.parse_args(["--models", "dense_ae", "--image-sizes", "32,28",
                                                "--no-roofs"]))
    assert measured == []


def test_a_split_run_says_what_is_per_device_and_a_cpu_run_what_it_left_out(monkeypatch):
    monkeypatch.setattr(bench, "bench_model", lambda model, batch, *a, **k:
                        measured_row(model, batch))
    args = bench_args.parse_args(["--models", "dense_ae", "--no-roofs", "--data", "random",
                                  "--compute-dtype", "float32,tf32"])
    text, _ = bench.throughput(args)
    assert text.startswith("tf32 left out: a CPU has no TensorFloat-32. Data: ")
    assert "split over" not in text
    args.devices = 2  # as --devices 2 where JAX sees two
    text, _ = bench.throughput(args)
    assert ("Each batch split over 2 devices: FLOPs, bytes and step memory are the whole "
            "batch's") in text


def test_the_precision_matrix_times_steps_over_every_device_as_it_trains(monkeypatch):
    from benchmarks import precision_matrix

    timed = []
    monkeypatch.setattr(bench, "bench_model", lambda model, batch, *a, **k:
                        timed.append(k["devices"]) or measured_row(model, batch))
    monkeypatch.setattr(precision_matrix, "train_figure", lambda *args: (0.3, 1))
    args = bench_args.parse_args(["--mode", "precision", "--models", "dense_ae", "--data", "random",
                                  "--compute-dtype", "float32,tf32,bfloat16", "--no-roofs"])
    text, _ = precision_matrix.run(args)
    assert timed == [jax.device_count()] * 2  # float32 and bfloat16; tf32 left out on a CPU
    assert text.startswith("tf32 left out: a CPU has no TensorFloat-32. Seed 0, batch 128 "
                           "over every device")


def test_a_peer_that_fails_midway_leaves_the_rows_measured_and_says_so(monkeypatch, capsys):
    """A peer crash after hours of scaled rows loses none of them: the rows from its model on
    are measured without it, and the report says why their peer columns are empty."""
    def failing_peer(*args, **kwargs):
        raise workloads.BenchRefused("the peer's step-bench of dense_ae (peer.py) failed with exit "
                                     "status 1: peer crashed: out of memory")

    monkeypatch.setattr(bench, "bench_model", lambda model, batch, *a, **k:
                        measured_row(model, batch))
    monkeypatch.setattr(bench, "bench_peer", failing_peer)
    monkeypatch.setattr(bench_args, "check_peer_torch", lambda *args: None)
    monkeypatch.setattr(bench_args, "check_peer_script", lambda *args: None)
    args = bench_args.parse_args(["--models", "dense_ae,dae", "--no-roofs", "--data", "random",
                                  "--peer-python", "python3", "--peer-script", __file__])
    text, cut_short = bench.throughput(args)
    assert not cut_short and "| dense_ae |" in text and "| dae |" in text
    assert text.rstrip().endswith("The peer failed (the peer's step-bench of dense_ae (peer.py) "
                                  "failed with exit status 1: peer crashed: out of memory): the "
                                  "rows from its model on were measured without it.")
    assert capsys.readouterr().out.count("the rows from here on have no peer") == 1


def test_the_roofs_of_several_devices_are_their_sum(monkeypatch):
    from jaxae.training import parallel

    mesh = parallel.data_mesh()
    meter = roofline.RoofMeter(64, 3 * 4096, mesh=mesh)
    devices = jax.device_count()
    assert [a.shape for a, _ in meter._operands] == [(devices, n, n) for n in (64, 48, 32)]
    clock = iter(range(100))  # each call takes 1 s
    monkeypatch.setattr(roofline.time, "perf_counter", lambda: float(next(clock)))
    assert meter.peak_flops() == devices * 2 * 64**3
    assert meter.bandwidth() == 3 * devices * 3 * 4096 * roofline.STREAM_LOOP


def test_the_throughput_mode_splits_each_batch_over_the_devices(tmp_path, monkeypatch, capsys):
    """As train.py splits it: `--devices` (default all) devices, the header naming them; a
    batch they do not split is refused before anything runs (that refusal in this process,
    with JAX made to see two devices: a third process would only repeat the start-up)."""
    env = {**os.environ, "XLA_FLAGS": with_test_flags("--xla_force_host_platform_device_count=2")}
    command = [sys.executable, "-m", "benchmarks.bench", "--models", "dense_ae", "--chunks", "1",
               "--steps-per-chunk", "2", "--peak-n", "256", "--batch-sizes", "32", "--data",
               "random"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("# cpu x 2 (cpu;")
    machine, command_said = done.stdout.splitlines()[:2]  # a log of it names what wrote it
    assert re.search(r"\. Code: jaxae commit [0-9a-f]{12}", machine), machine
    assert command_said.startswith("# Command: ") and "python -m benchmarks.bench" in \
        command_said and "--devices=2" in command_said, command_said
    [row] = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    fraction = row["fraction_of_roof"]  # None only where every chunk beat the roof
    assert row["devices"] == 2 and ((fraction is None and row["roof_errors"])
                                    or 0 < fraction <= 1)
    written = str(tmp_path / "b.md")  # and a log names the report it wrote, last
    one = subprocess.run(command + ["--devices", "1", "--no-roofs", "--write", written],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0 and one.stdout.startswith("# cpu (1 of 2 devices used) (cpu;")
    assert one.stdout.rstrip().endswith(f"# wrote {written}") and os.path.isfile(written)
    monkeypatch.setattr(jax, "device_count", lambda: 2)  # as the processes above saw
    with pytest.raises(SystemExit) as uneven:
        bench.main_or_refuse(command[3:-4] + ["--batch-sizes", "33"])
    said = capsys.readouterr()
    assert uneven.value.code == 2 and said.err.startswith(
        "python -m benchmarks.bench: error: --batch-sizes 33 does not split over 2 devices: "
        "give multiples of 2, or --devices to a count that divides it") and said.out == ""


def test_a_workload_whose_steps_do_not_fit_the_free_memory_is_skipped_in_one_line(
        monkeypatch, capsys):
    """Its compiled chunk's buffers are compared with the device's free memory before it
    runs: out of memory, the row is skipped with a line that says why (an out-of-memory
    traceback lost every row before); with no row left, nothing is written."""
    from jaxae.training import memory

    args = bench_args.parse_args(["--models", "dense_ae", "--no-roofs", "--data", "random",
                                  "--steps-per-chunk", "2", "--chunks", "1",
                                  "--batch-sizes", "32"])
    monkeypatch.setattr(memory, "available_bytes", lambda device: (1000, "available host memory"))
    with pytest.raises(workloads.BenchRefused, match="no workload was measured"):
        bench.throughput(args)
    [line] = [x for x in capsys.readouterr().out.splitlines() if x.startswith("# dense_ae")]
    assert re.fullmatch(r"# dense_ae at \(28, 28, 1\), width 1: its steps at batch 32: that "
                        r"needs at least [\d.]+ (KiB|MiB), more than the 1.0 KiB of available "
                        r"host memory: skipped \(give smaller --batch-sizes, --widths or "
                        r"--image-sizes\)", line), line


def test_the_bench_says_where_it_read_fashion_mnist(monkeypatch, capsys):
    """A --tfds-dir that holds no prepared copy is prepared into: the bench's output says
    where the images came from (the report's command leaves the machine's path out)."""
    where = "TFDS jaxae_images/fashion_mnist:1.0.0 in /typo/jaxae_images (prepared now from IDX"
    loaded = types.SimpleNamespace(train_images=np.zeros((4, 28, 28, 1), np.uint8),
                                   train_labels=np.zeros(4, np.int32), source=where)
    monkeypatch.setattr(workloads, "load_dataset", lambda name, tfds_dir: loaded)
    arrays, source = workloads.BenchData("fashion_mnist", "/typo").arrays(
        workloads.FASHION_SHAPE, 128)
    assert source == "Fashion-MNIST" and arrays["image"].shape == (4, 28, 28, 1)
    assert f"# Fashion-MNIST: {where}" in capsys.readouterr().out.splitlines()


def test_the_report_says_why_a_row_has_no_peer(monkeypatch):
    """The peer runs its own models at Fashion-MNIST's size: a conv VAE row (none of its)
    reads "-" in its columns, and the report says why."""
    monkeypatch.setattr(bench, "bench_model", lambda model, batch, *a, **k:
                        measured_row(model, batch))
    monkeypatch.setattr(bench, "bench_peer", lambda python, script, model, batch, *a:
                        {"model": model, "framework": "torch", "batch": batch,
                         "img_per_s": 1000.0, "chunk_img_per_s": [1000.0]})
    monkeypatch.setattr(bench_args, "check_peer_torch", lambda *args: None)
    monkeypatch.setattr(bench_args, "check_peer_script", lambda *args: None)
    said = ("The peer's columns read \"-\" where it has no such model, or at other images than "
            "Fashion-MNIST's 28x28x1 or other widths than 1")
    for models, why in (("dense_ae", False), ("dense_ae,conv_vae", True)):
        args = bench_args.parse_args(["--models", models, "--no-roofs", "--data", "random",
                                      "--peer-python", "python3", "--peer-script", __file__])
        text, _ = bench.throughput(args)
        assert (said in text) == why, text


def test_a_row_whose_binding_roof_wavered_or_was_beaten_is_flagged_under_the_table():
    """A fraction of the roof under a peak read at 77 and at 220 GFLOP/s between chunks, or
    beside a chunk over the roof, is said to be unsure; a steady roof, or a wavering one that
    does not bind, is not."""
    steady = {**measured_row("vae", 128), "bound": "compute", "fraction_of_roof": 0.6,
              "chunk_peak_gflops": [440.0, 452.0, 461.0],
              "chunk_bandwidth_gbytes_per_s": [100.0, 300.0, 250.0], "roof_errors": []}
    wavering = {**steady, "model": "conv_ae", "batch": 16, "image_shape": [32, 32, 3],
                "chunk_peak_gflops": [77.0, 220.0, 180.0], "fraction_of_roof": 0.954}
    beaten = {**steady, "model": "dae", "roof_errors": ["chunk 2: 114.8% of the roof"]}
    assert "Binding roofs" not in report.table([(steady, None)])
    # off the CPU the device program's bytes bind: the host's overcount is no busy moment
    gpu = {**steady, "roof_errors": ["chunk 1: 230.0% of the roof"],
           "device_bytes_per_step": 2e6, "device_bytes_bound": "compute",
           "device_bytes_fraction_of_roof": 0.4, "device_bytes_roof_errors": []}
    assert "Binding roofs" not in report.table([(gpu, None)])
    assert "a chunk over the roof" in report.table(
        [({**gpu, "device_bytes_roof_errors": ["chunk 1: 101.0%"]}, None)])
    text = report.table([(steady, None), (wavering, None), (beaten, None)])
    assert text.endswith(
        "Binding roofs whose readings between chunks varied more than 1.5x, or that a chunk "
        "beat (a busy moment?): conv_ae float32 32x32x3 width 1 batch 16 (peak 77-220 "
        "GFLOP/s), dae float32 28x28x1 width 1 batch 128 (a chunk over the roof); those rows' "
        "fractions of the roof are unsure.")


def test_the_matmuls_mode_flags_a_step_faster_than_its_products_jaxaes_or_the_peers():
    row = {"model": "dae", "step_ms": 3.0, "matmuls_ms": 2.5, "peer_step_ms": 9.2,
           "peer_matmuls_ms": 36.4}
    assert matmul_floor.mismeasured([row]) == ["dae (peer)"]
    assert matmul_floor.mismeasured([{**row, "step_ms": 2.0}]) == ["dae (jaxae)", "dae (peer)"]
    assert matmul_floor.mismeasured([{**row, "peer_matmuls_ms": 4.0}]) == []
    assert matmul_floor.mismeasured([{**row, "peer_step_ms": None}]) == []  # no peer run


@pytest.mark.parametrize("rates, expected", [([100.0, 300.0, 200.0], 250.0),  # its own
                                             ([100.0, 400.0, 300.0, 200.0], 200.0)])
def test_the_peer_s_rate_is_its_median_chunk_as_jaxae_s_is(monkeypatch, rates, expected):
    """Of an even count of chunks, the slower of the middle two, as `median_chunk` takes
    jaxae's (the peer's own median of [100, 200, 300, 400], 250, would favour it); of an odd
    count, the peer's own figure."""
    commands = []
    monkeypatch.setattr(bench, "peer_result", lambda command, what: commands.append(command)
                        or {"torch": "2.13.0", "img_per_s": 250.0, "chunk_img_per_s": rates})
    row = bench.bench_peer("python", "peer.py", "dense_ae", 128, 10, len(rates), 2)
    assert row["img_per_s"] == expected
    assert commands[0][-2:] == ["--init", "glorot"]  # jaxae's workload's: the same model
    if len(rates) % 2 == 0:  # the chunk jaxae's rule picks of the same rates
        assert rates[bench.median_chunk([1 / r for r in rates])] == expected


def test_the_commit_recorded_is_jaxaes_not_that_of_a_repository_around_an_install(
        tmp_path, monkeypatch):
    """jaxae installed in a virtual environment inside one's own project had recorded the
    project's commit (and its changes as jaxae's '+dirty')."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=a", "-c",
                               "user.email=a@b", *args], capture_output=True, text=True,
                              check=True).stdout.strip()

    git("init", "-q")
    (tmp_path / "jaxae").mkdir()
    (tmp_path / "jaxae" / "x.py").write_text("")
    git("add", "-A")
    git("commit", "-qm", "x")
    monkeypatch.setattr(provenance, "PACKAGE", str(tmp_path / "jaxae"))  # a clone
    assert provenance.git_commit() == git("rev-parse", "HEAD")
    (tmp_path / "jaxae" / "y.py").write_text("")
    assert provenance.git_commit().endswith("+dirty")
    installed = tmp_path / ".venv" / "lib" / "site-packages" / "jaxae"  # an install in it
    installed.mkdir(parents=True)
    monkeypatch.setattr(provenance, "PACKAGE", str(installed))
    assert (provenance.git_commit(), provenance.uncommitted_files()) == ("", [])


def test_a_throughput_run_whose_reader_ends_keeps_the_row_it_was_printing(monkeypatch):
    """`bench | head -1`: the second row's line met the closed pipe, a traceback lost every
    row measured; the row is kept, and the run stops there as SIGPIPE would stop it."""
    monkeypatch.setattr(bench, "bench_model", lambda model, batch_size, *a, **k:
                        measured_row(model, batch_size))
    monkeypatch.setattr(sys, "stdout", FailingOutput(1))
    args = bench_args.parse_args(["--models", "conv_ae", "--batch-sizes", "8,16,32", "--no-roofs",
                                  "--data", "random"])
    text, cut_short = bench.throughput(args)
    assert cut_short == signal.SIGPIPE
    assert "| 8 |" in text and "| 16 |" in text and "| 32 |" not in text
    assert text.rstrip().endswith("Cut short by SIGPIPE: the workloads after these rows were "
                                  "not measured.")
