"""scripts/config_results.py: the shipped configs' table, read from their runs' files, and
its place in RESULTS.md."""

import importlib.util
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys

import pytest

from jaxae.experiments.__main__ import main as report_main
from tests.conftest import FailingOutput

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script():
    spec = importlib.util.spec_from_file_location(
        "config_results", os.path.join(ROOT, "scripts", "config_results.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


config_results = load_script()
FULL = OSError(28, "No space left on device")  # a full disk under the output


def write_eval(workdir, metrics: dict, pca: dict | None = None) -> None:
    os.makedirs(os.path.join(workdir, "eval"))
    with open(os.path.join(workdir, "eval", "metrics.json"), "w") as f:
        json.dump(metrics, f)
    if pca is not None:
        with open(os.path.join(workdir, "eval", "pca_baseline.json"), "w") as f:
            json.dump({"pca": pca}, f)


def test_every_shipped_config_but_the_test_one_has_a_row():
    shipped = {s.name for s in config_results.CONFIGS}
    files = {name[:-3] for name in os.listdir(os.path.join(ROOT, "configs"))
             if name.endswith(".py") and not name.startswith("_")}
    # the CIFAR-10 and CelebA configs need downloads; test.py is a smoke test
    assert files - shipped == {"test", "conv_ae_cifar10", "conv_vae_cifar10",
                               "conv_ae_celeb_a", "conv_vae_celeb_a"}
    assert shipped <= files


def test_a_row_reads_its_figures_names_the_baseline_and_pca_and_the_table_names_the_machine(
        tmp_path):
    dae = next(s for s in config_results.CONFIGS if s.name == "dae_dropout")
    folder = next(s for s in config_results.CONFIGS if s.name == "conv_ae_folder")
    vae = next(s for s in config_results.CONFIGS if s.name == "conv_vae")
    write_eval(tmp_path / "dae", {"step": 4690, "dataset": "fashion_mnist",
                                  "test_images": 10000, "test_psnr": 20.06,
                                  "test_input_psnr": 10.73, "test_baseline_psnr": 9.77,
                                  "baseline": "median 3x3"})
    write_eval(tmp_path / "crops", {"step": 1500, "dataset": "folder", "test_images": 1200,
                                    "test_mse": 0.00351, "test_psnr": 27.81},
               {"512": {"test_mse": 0.00076, "test_psnr": 36.83}})
    write_eval(tmp_path / "vae", {"step": 4690, "dataset": "fashion_mnist", "test_images": 10000,
                                  "test_elbo": -252.5, "test_kl_nats": 14.4,
                                  "test_iwae_k1": -252.1, "test_iwae_k1000": -248.2,
                                  "counts": {"test_elbo": 10000, "test_kl_nats": 10000,
                                             "test_iwae_k1": 1000, "test_iwae_k1000": 1000}})
    about = {"command": "python scripts/config_results.py", "date": "2026-12-05",
             "machine": {"cpu": "AMD EPYC", "cores": 2, "memory_gib": 23.5, "jax": "0.10.2",
                         "devices": ["cpu:0"], "jaxae_commit": "0123456789abcdef"}}
    rows = {"dae_dropout": {**about, "flags": [], "train_seconds": 19.6, "eval_seconds": 4.0,
                            "figures": config_results.read_figures(dae, str(tmp_path / "dae"))},
            "conv_ae_folder": {**about, "flags": ["--config.data.path=data/photo_crops"],
                               "train_seconds": None, "eval_seconds": 6.0,
                               "figures": config_results.read_figures(folder,
                                                                      str(tmp_path / "crops"))},
            "conv_vae": {**about, "flags": [], "train_seconds": 29.0, "eval_seconds": 36.0,
                         "figures": config_results.read_figures(vae, str(tmp_path / "vae"))},
            "cvae": {**about, "flags": [], "train_seconds": None, "eval_seconds": 0.0,
                     "error": "error: data set | missing"}}
    text = config_results.table(rows)
    assert ("| `dae_dropout` | PSNR 20.1 dB, input PSNR 10.7 dB, median 3x3 PSNR 9.8 dB | "
            "fashion_mnist, 10,000 test images | 20 | 4 | 0123456789ab |") in text
    assert ("| `conv_ae_folder` | MSE 0.0035, PSNR 27.8 dB, PCA-512 PSNR 36.8 dB | folder, "
            "1,200 test images | - | 6 | 0123456789ab |") in text
    assert ("| `conv_vae` | ELBO -252.5 nats, KL 14.4 nats, IWAE k=1 -252.1 nats, IWAE k=1000 "
            "-248.2 nats | fashion_mnist, 10,000 test images (IWAE k=1, IWAE k=1000: the first "
            "1,000) | 29 | 36 | 0123456789ab |") in text  # the bounds' images said
    assert "| `cvae` | not run: error: data set \\| missing |" in text  # one cell
    cvae = next(s for s in config_results.CONFIGS if s.name == "cvae")
    write_eval(tmp_path / "cvae", {"step": 4690, "dataset": "fashion_mnist", "test_images": 10000,
                                   "test_elbo": -252.5, "cvae_samples_recognised": 0.905,
                                   "cvae_probe_test_accuracy": 0.871})
    figures = config_results.read_figures(cvae, str(tmp_path / "cvae"))
    assert (figures["samples recognised"], figures["probe accuracy"]) == (
        pytest.approx(90.5), pytest.approx(87.1))  # fractions printed in %
    assert "on 2026-12-05, on AMD EPYC, 2 cores" in text
    assert ("Overrides for the offline data: `--config.data.path=data/photo_crops` "
            "(conv_ae_folder).") in text


@pytest.fixture(scope="module")
def not_run(tmp_path_factory) -> tuple[pathlib.Path, dict[str, str]]:
    """(the --out folder, each config's exit message) of conv_vae_folder's run, then
    conv_ae_folder's into the same folder (the second keeps the first row), both without
    their photos: each train.py stops at once."""
    tmp = tmp_path_factory.mktemp("not_run")
    said = {}
    for name in ("conv_vae_folder", "conv_ae_folder"):
        with pytest.raises(SystemExit) as stopped:
            config_results.main(["--out", str(tmp / "results"), "--only", name,
                                 "--photos", str(tmp / "no_photos")])
        said[name] = str(stopped.value)
    return tmp / "results", said


def test_a_config_whose_data_is_missing_is_listed_as_not_run_and_only_keeps_the_others(
        not_run, tmp_path):
    out, said = not_run
    for name, message in said.items():
        assert re.match(rf"^error: 1 config\(s\) did not run: {name} ", message), message
    rows = json.loads((out / "configs" / "table.json").read_text())["rows"]
    assert list(rows) == ["conv_ae_folder", "conv_vae_folder"]  # in the configs' order
    row = rows["conv_ae_folder"]
    assert "no_photos" in row["error"] and "figures" not in row
    assert row["error"].endswith("(write the crops with python -m jaxae.data.photo_crops DIR "
                                 "and give --photos DIR)")
    assert row["commands"][0].startswith("python train.py --config=configs/conv_ae_folder.py")
    page_folder = shutil.copytree(out, tmp_path / "results")  # the fixture's folder unchanged
    report_main(["report", "--out", str(page_folder)])  # the configs' table alone makes a page
    page = (page_folder / "RESULTS.md").read_text()
    assert "## Shipped configs: test figures after training" in page
    assert "| `conv_ae_folder` | not run:" in page


def test_only_a_missing_data_sets_failure_names_where_its_data_comes_from(monkeypatch):
    """A stop or a fault is not about the data: the hint had been added to every failure."""
    shipped = next(s for s in config_results.CONFIGS if s.name == "conv_ae_mnist")
    for status, stderr, hinted in [(143, "", False), (1, "error: training stopped at step 3: "
                                                         "train_loss became nan", False),
                                   (1, "error: data set mnist is not prepared in x", True)]:
        monkeypatch.setattr(config_results, "run_command",
                            lambda _, status=status, stderr=stderr: (status, stderr))
        error = config_results.run_commands(shipped, "w", [])["error"]
        assert error.endswith("--mnist-data-dir DIR)") == hinted, error


def test_a_measured_row_is_kept_when_its_rerun_cannot_run(not_run, tmp_path, capsys):
    """The README's command on a fresh clone, whose MNIST digits are not there, replaced
    the published rows with "not run" and exited 0."""
    out = shutil.copytree(not_run[0], tmp_path / "results")  # its row, made a measured one
    table = out / "configs" / "table.json"
    rows = json.loads(table.read_text())["rows"]
    measured = {**rows["conv_ae_folder"], "date": "2026-12-01T00:00:00+00:00",
                "train_seconds": 53.0, "eval_seconds": 15.0,
                "figures": {"MSE": 0.0035, "PSNR": 27.8, "PCA": 36.8, "pca_k": 512,
                            "step": 900, "images": "folder, 1,200 test images"}}
    del measured["error"]
    table.write_text(json.dumps({"rows": {"conv_ae_folder": measured}}))
    capsys.readouterr()
    with pytest.raises(SystemExit, match=r"^error: 1 config\(s\) did not run: conv_ae_folder"):
        config_results.main(["--out", str(out), "--only", "conv_ae_folder",
                             "--photos", str(tmp_path / "no_photos")])
    said = capsys.readouterr()
    assert said.err.splitlines()[-1].startswith(
        "warning: conv_ae_folder did not run (error: image folder ")
    assert said.out.rstrip().endswith(  # where the table is, last
        f"wrote {out / 'configs' / 'table.md'} and table.json beside it")
    kept = json.loads(table.read_text())["rows"]["conv_ae_folder"]
    assert {k: v for k, v in kept.items() if k != "last_failure"} == measured
    assert "no_photos" in kept["last_failure"]["error"]
    assert "| `conv_ae_folder` | MSE 0.0035, PSNR 27.8 dB" in \
        (out / "configs" / "table.md").read_text()


@pytest.mark.parametrize("only", ["default,nope", ",", ""])
def test_unknown_configs_are_refused_before_anything_runs(only, capsys):
    with pytest.raises(SystemExit):
        config_results.parse_args(["--only", only])
    assert "give names, comma-separated, from default, conv_ae_fashion" in \
        capsys.readouterr().err


@pytest.mark.parametrize("how", ["signal", "sigpipe", "exit 1"])
def test_after_a_stop_no_other_command_of_the_config_starts(monkeypatch, how):
    """A stop during train.py had let evaluate.py run in full (minutes of IWAE bounds, past
    a scheduler's grace period) before the script ended. train.py ended by SIGPIPE (the
    output they share lost its reader: `| head`) stopped with a checkpoint: a stop too, not
    a failed config (its row had said "not run"); so is one that failed (exit 1) where the
    line saying so cannot be written either: the output they share failed them both."""
    shipped = next(s for s in config_results.CONFIGS if s.name == "default")
    stopped, ran = [], []

    def run_command(command):
        ran.append(command[0])
        if how == "signal":
            stopped.append(signal.SIGTERM)  # as the command ran, which it ended too
            return -signal.SIGTERM, "SIGTERM received: stopping, with a checkpoint"
        if how == "sigpipe":
            return -signal.SIGPIPE, "the output's reader ended (a pipe into `head`, say): ..."
        return 1, "error: the output cannot be written (No space left on device): stopped"

    def full(error: OSError) -> None:  # this script's own watch (`main`'s), as it fails
        stopped.append(signal.SIGPIPE)
    monkeypatch.setattr(config_results, "run_command", run_command)
    stdout = FailingOutput(1 if how == "exit 1" else 10, FULL)
    monkeypatch.setattr(sys, "stdout", stdout)
    with config_results.output.watched(full):
        assert config_results.run_commands(shipped, "w", [], stopped)["error"] == "stopped"
    assert ran == ["train.py"] and stopped == [signal.SIGTERM if how == "signal" else
                                               signal.SIGPIPE]
    assert "failed" not in "".join(stdout.written)  # a stop is no failure


def test_a_full_disk_under_the_output_ends_the_script_with_status_1_before_any_command(
        monkeypatch, tmp_path):
    """Its output on a full disk (`> /dev/full`) had made a false "not run" row; a reader
    gone ends it as SIGPIPE does, but a full disk is an error's status (train.py's too)."""
    ran = []
    monkeypatch.setattr(config_results, "run_command", lambda command: ran.append(command))
    monkeypatch.setattr(sys, "stdout", FailingOutput(0, FULL))
    with pytest.raises(SystemExit) as ended:
        config_results.main(["--only", "default", "--out", str(tmp_path)])
    assert ended.value.code == 1 and ran == []
    assert not (tmp_path / "configs").exists()


@pytest.mark.parametrize("stop, to_the_group", [("SIGTERM", True), ("SIGINT", True),
                                                ("SIGTERM", False)])
def test_a_stop_waits_for_the_running_command_and_reaches_it_once(tmp_path, stop,
                                                                  to_the_group):
    """A scheduler's SIGTERM had ended the script alone, its train.py training on into a log
    cut off from it. The signal is said and recorded, the command ends as the signal told it
    (sent to the group: a terminal's Ctrl-C, `timeout`) or as it would (sent to the script
    alone), never stopped a second time by a signal passed on."""
    child = tmp_path / "child.py"
    child.write_text(
        "import os, signal, sys, time\n"
        "got = []\n"
        "for sig in (signal.SIGTERM, signal.SIGINT):\n"
        "    signal.signal(sig, lambda signum, frame: got.append(signum))\n"
        "print('ready', file=sys.stderr, flush=True)\n"
        f"go, deadline = {str(tmp_path / 'go')!r}, time.monotonic() + 60\n"
        "while not got and not os.path.exists(go) and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
        "time.sleep(0.5)  # a second one would come meanwhile\n"
        "print('child got', [signal.Signals(s).name for s in got], file=sys.stderr)\n"
        "sys.exit(3)\n")
    script = (f"import signal, sys; sys.path.insert(0, {ROOT!r})\n"
              "for sig in (signal.SIGINT, signal.SIGTERM):  # as a shell starts it\n"
              "    signal.signal(sig, signal.SIG_DFL)\n"
              "from tests import test_config_results as t\n"
              "with t.config_results.stops_after_the_command() as stopped:\n"
              f"    status, _ = t.config_results.run_command([{str(child)!r}])\n"
              "print(status, stopped)")
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert parent.stderr.readline() == "ready\n"
    (os.killpg if to_the_group else os.kill)(parent.pid, getattr(signal, stop))
    said = f"{stop} received: config_results.py stops once the running command has ended (the " \
        "signal stops it too where it reached it: a terminal's Ctrl-C, a scheduler's stop, " \
        f"kill -- -{parent.pid}); the rows measured are kept\n"
    lines = [parent.stderr.readline()]  # the script's line, said at once
    if lines[0] != said:  # (the child's may come first, on a busy machine)
        lines.append(parent.stderr.readline())
    (tmp_path / "go").touch()  # a child the signal did not reach runs to its end now
    out, err = parent.communicate(timeout=60)
    assert (parent.returncode, out) == (0, f"3 [{getattr(signal, stop).value}]\n")
    assert sorted(lines + err.splitlines(keepends=True)) == sorted([
        said, f"child got {[stop] if to_the_group else []}\n"])
