"""The parity report's arithmetic: means over seeds, the sign of the shortfall, and the first
epoch at which jaxae reaches the peer's final figure."""

import json
import os
import sys
import time

import jax
import pytest

from benchmarks import determinism, parity, precision_matrix, quality, same_draws_parity
from jaxae import build
from jaxae.data import sources
from jaxae.experiments.common import load_config
from jaxae.training import steps
from tests.conftest import write_fashion_slice


def _run(values: list[float], step_s: float = 10.0) -> dict:
    epochs = [{"epoch": i + 1, "value": v, "wall_s": step_s * (i + 1)}
              for i, v in enumerate(values)]
    return {"value": values[-1], "wall_s": epochs[-1]["wall_s"], "epochs": epochs}


def test_lower_is_better_shortfall_is_relative_to_the_peer_mean():
    pairing = parity.PAIRINGS["dense"]
    row = parity.compare("dense", pairing, [_run([0.40, 0.33]), _run([0.40, 0.35])],
                         [_run([0.50, 0.30], 5.0), _run([0.50, 0.30], 5.0)])
    assert row["jaxae"] == pytest.approx(0.34) and row["peer"] == pytest.approx(0.30)
    assert row["jaxae_worse_by"] == pytest.approx(0.04 / 0.30)
    assert row["jaxae_std"] == pytest.approx(0.0141421, rel=1e-4) and row["peer_std"] == 0
    assert row["jaxae_reaches_peer_final_at_epoch"] is None  # 0.33 never reaches 0.30
    assert "± 0.0141" in parity.table([row])


def test_higher_is_better_elbo_reached_at_the_first_good_epoch():
    pairing = parity.PAIRINGS["vae"]
    row = parity.compare("vae", pairing, [_run([-280.0, -262.0, -260.0])],
                         [_run([-290.0, -270.0, -264.0])])
    assert row["jaxae_worse_by"] == pytest.approx(-4.0 / 264.0)  # negative: jaxae is better
    assert row["jaxae_reaches_peer_final_at_epoch"] == 2
    assert row["jaxae_time_to_peer_final_s"] == 20.0
    assert "epoch 2, 20 s" in parity.table([row])


TEST_PAIRING = parity.Pairing("test", 1, 512, "glorot", "mse", "test_mse_per_pixel",
                              "test MSE")


@pytest.fixture(scope="module")
def pairing_runs(fashion_tfds_dir, tmp_path_factory) -> dict:
    """TEST_PAIRING's runs (seed 0) that the tests below read, each trained once for them
    all: "plain" (its one epoch), "longer" (an extra epoch) and "checked" (the extra epoch
    checked four times)."""
    folder = tmp_path_factory.mktemp("parity_runs")
    return {name: parity.run_jaxae(TEST_PAIRING, str(folder / name), fashion_tfds_dir, 0,
                                   **options)
            for name, options in (("plain", {}), ("longer", {"extra_epochs": 1}),
                                  ("checked", {"extra_epochs": 1,
                                               "checks_per_extra_epoch": 4}))}


def test_extra_epochs_time_the_target_without_changing_the_reported_epoch(pairing_runs):
    """The extra epoch only extends the run: the pairing's last epoch is the same bits."""
    plain, longer = pairing_runs["plain"], pairing_runs["longer"]
    assert [e["epoch"] for e in plain["epochs"]] == [1]
    assert [e["epoch"] for e in longer["epochs"]] == [1, 2]
    assert longer["value"] == plain["value"] == longer["epochs"][0]["value"]
    assert longer["epochs"][1]["value"] < longer["value"]  # it kept learning
    assert longer["wall_s"] == longer["epochs"][0]["wall_s"]


def test_checks_inside_the_extra_epochs_time_the_target_more_finely(pairing_runs):
    """Four checks an extra epoch (16 steps: at 4, 8, 12 and its end), none before: the
    pairing's epochs and their figures are those of a run without them."""
    plain, checked = pairing_runs["longer"], pairing_runs["checked"]
    assert [e["epoch"] for e in checked["epochs"]] == [1, 1.25, 1.5, 1.75, 2]
    assert [e["step"] for e in checked["epochs"]] == [16, 20, 24, 28, 32]
    assert [e["value"] for e in checked["epochs"][::4]] == \
        [e["value"] for e in plain["epochs"]]
    assert checked["value"] == plain["value"]
    walls = [e["wall_s"] for e in checked["epochs"]]
    evaluations = [e["evaluation_s"] for e in checked["epochs"]]
    assert walls == sorted(walls) and evaluations == sorted(evaluations)
    assert evaluations[-1] > evaluations[0]  # each check's evaluation is counted


def test_a_pairing_whose_data_is_not_the_peers_is_refused(fashion_tfds_dir, tmp_path):
    pairing = parity.Pairing("test", 1, 60_000, "glorot", "mse", "test_mse_per_pixel",
                             "test MSE")
    with pytest.raises(RuntimeError, match="ran 16 steps in its first epoch, not 1875"):
        parity.run_jaxae(pairing, str(tmp_path), fashion_tfds_dir, 0)


@pytest.mark.parametrize("argv, said", [
    ([], "--peer-python PYTHON is required"),
    (["--peer-python", "python3"], "--peer-python needs --peer-script PATH"),
    (["--peer-python", "python3", "--peer-script", "/no/such/peer.py"], "does not exist"),
])
def test_the_peer_and_its_script_are_required(capsys, argv, said):
    with pytest.raises(SystemExit) as exit_info:
        parity.parse_args(argv)
    assert exit_info.value.code == 2
    assert said in capsys.readouterr().err


def test_the_table_file_is_checked_before_training(tmp_path, capsys):
    with_torch = tmp_path / "python"
    with_torch.write_text("#!/bin/sh\nexit 0\n")
    with_torch.chmod(0o755)
    report = tmp_path / "REPORT.md"
    report.write_text("# Benchmarks\n\n## cpu\n\na run\n")
    peer = ["--peer-python", str(with_torch), "--peer-script", __file__]
    for path, said in ((report, "holds a report's sections, which the table would replace"),
                       (tmp_path / "no" / "t.md", "the folder")):
        with pytest.raises(SystemExit):
            parity.parse_args([*peer, "--write", str(path)])
        assert f"--write {path}" in (err := capsys.readouterr().err) and said in err, err
    assert parity.parse_args([*peer, "--write", str(tmp_path / "t.md")]).write


def test_extra_epochs_runs_report_data_compile_and_evaluation_apart(pairing_runs, tmp_path,
                                                                     monkeypatch):
    pairing, run = TEST_PAIRING, pairing_runs["plain"]
    epoch = run["epochs"][0]
    assert epoch["compile_s"] > 0 and epoch["evaluation_s"] > 0 and epoch["data_s"] > 0
    assert epoch["data_s"] + epoch["compile_s"] + epoch["evaluation_s"] < epoch["wall_s"]
    # In a fresh process, as the time to quality runs it: the same figure, and the time
    # counted from the process's start, its start-up (Python, the imports) included; its
    # data prepared afresh from the IDX files, as the peer reads them each run (a set
    # prepared by an earlier run was read in a fraction of the time, unsaid). The IDX files
    # it reads hold fashion_tfds_dir's images (SLICE_SIZES: the first of each split), all a
    # run of the pairing reads: preparing all 70,000 took half the process's CPU.
    write_fashion_slice(str(tmp_path))
    monkeypatch.setenv(sources.env_var("fashion_mnist"), str(tmp_path))
    specs = []
    real = parity.run_reporting
    monkeypatch.setattr(parity, "run_reporting", lambda command, *args, **kwargs: (
        specs.append(json.loads(command[3])), real(command, *args, **kwargs))[1])
    fresh = parity.run_jaxae_process(pairing, None, 0)
    first = fresh["epochs"][0]
    assert fresh["value"] == run["value"]
    assert os.path.basename(specs[0]["tfds_dir"]).startswith("jaxae_quality_data_")
    assert not os.path.exists(specs[0]["tfds_dir"])  # prepared there, then removed
    assert 0 < first["startup_s"] < first["wall_s"] < fresh["process_s"]
    assert first["startup_s"] + first["data_s"] + first["compile_s"] < first["wall_s"]


def _peer_run(values, train_s=10.0, eval_s=1.0, startup_s=5.0):
    epochs, wall = [], 0.0
    for i, v in enumerate(values):
        wall += train_s + eval_s
        epochs.append({"epoch": i + 1, "value": v, "wall_s": wall,
                       "train_s": train_s * (i + 1), "evaluation_s": eval_s * (i + 1)})
    return {"value": values[-1], "wall_s": wall, "epochs": epochs,
            "process_s": wall + startup_s}


def _jaxae_run(values, step_s=4.0):
    epochs = [{"epoch": i + 1, "value": v, "wall_s": 10.0 + step_s * (i + 1),
               "startup_s": 1.0, "data_s": 3.0, "compile_s": 6.0,
               "evaluation_s": 0.5 * (i + 1)}
              for i, v in enumerate(values)]
    return {"value": values[-1], "wall_s": epochs[-1]["wall_s"], "epochs": epochs}


def test_time_to_quality_counts_both_sides_from_their_start():
    pairing = parity.PAIRINGS["conv"]  # lower is better
    row = quality.time_to_target(pairing, _jaxae_run([0.40, 0.31, 0.29]),
                                 _peer_run([0.35, 0.30]))
    assert row["target"] == 0.30 and row["jaxae_epoch"] == 3
    assert row["jaxae_from_start_s"] == 22.0 and row["peer_from_start_s"] == 27.0
    assert row["jaxae_train_s"] == pytest.approx(22.0 - 1.0 - 3.0 - 6.0 - 1.5)
    assert row["peer_startup_data_s"] == 5.0 and row["peer_train_s"] == 20.0
    assert row["speedup_from_start"] == pytest.approx(27.0 / 22.0)
    assert "| 3 | 22.0 | 1.0 | 3.0 | 6.0 | 1.5 | 10.5 | 27.0 | 5.0 | 20.0 | 2.0 | 1.23x | 1.90x |" \
        in quality.table([{"model": "conv_ae", "seed": 0, **row}])
    never = quality.time_to_target(pairing, _jaxae_run([0.40, 0.35]), _peer_run([0.30]))
    assert never["jaxae_epoch"] is None
    assert "not reached" in quality.table([{"model": "conv_ae", "seed": 1, **never}])
    # Over seeds: the median and range of the seeds that reached it, each seed's epoch.
    faster = quality.time_to_target(pairing, _jaxae_run([0.40, 0.29], step_s=2.0),
                                    _peer_run([0.35, 0.30]))
    rows = [{"model": "conv_ae", "seed": s, **r} for s, r in enumerate((row, never, faster))]
    summary = quality.summary(rows).splitlines()[-1]
    low, high = sorted([27.0 / 22.0, 27.0 / 14.0])
    assert summary.startswith(f"| conv_ae | 3 | {(low + high) / 2:.2f}x ({low:.2f}-{high:.2f}x)")
    assert summary.endswith(f"| 3, -, 2 ({pairing.epochs}) |")
    with pytest.raises(ValueError, match="no time-to-quality pairing"):
        quality.pairing_name("dae")


def test_the_precision_matrix_differences_and_speed_ups():
    row = {"model": "vae", "config": "vae_fashion_2d", "epochs": 10,
           "label": "test ELBO (nats)", "figures": {"float32": -264.5, "bfloat16": -265.0},
           "step_ms": {"float32": 3.0, "bfloat16": 2.0},
           "fraction_of_roof": {"float32": 0.6, "bfloat16": None}}
    line = precision_matrix.table([row], ["float32", "bfloat16"]).splitlines()[-1]
    assert line == ("| vae | `vae_fashion_2d` | 10 | test ELBO (nats) | -264.5000 | -265.0000 | "
                    "-0.5000 | 3.00 | 2.00 | 60.0% | n/a | 1.50x |")


def test_determinism_reports_whether_each_pair_repeats_and_the_cost():
    def runs(first, second, step_ms):
        return [{"steps": 200, "sha256": first * 64, "step_ms": step_ms},
                {"steps": 200, "sha256": second * 64, "step_ms": step_ms}]
    row = {"model": "conv_ae", "default": runs("a", "b", 2.0),
           "deterministic": runs("c", "c", 2.5), "default_step_ms": 2.0}
    lines = determinism.table([row]).splitlines()
    assert "| default |" in lines[2] and "| **no** |" in lines[2]
    assert "| yes | 2.500 | +25.0% |" in lines[3]
    assert "| yes | 2.500 | n/a |" in determinism.table([row], on_cpu=True).splitlines()[3]


@pytest.mark.parametrize("model_name", ["dense", "conv"])
def test_same_draws_layers_name_every_parameter_of_the_model(model_name):
    # The peer's layers, in its module order, land on these paths: each must exist with a
    # kernel and a bias, and together they must cover the model's whole tree.
    config = load_config(same_draws_parity.CONFIGS[model_name])
    model = build.make_model(config, (28, 28, 1), 10)
    shapes = jax.eval_shape(lambda: steps.init_params(model, (28, 28, 1), jax.random.key(0)))
    paths = {"/".join(str(k.key) for k in path[:-1])
             for path, _ in jax.tree_util.tree_flatten_with_path(shapes)[0]}
    assert paths == set(same_draws_parity.LAYERS[model_name])
    assert len(jax.tree.leaves(shapes)) == 2 * len(same_draws_parity.LAYERS[model_name])


def test_a_training_process_is_killed_when_its_caller_is_stopped(tmp_path):
    """A stop signal sent to the bench alone (gpu.sh's `timeout --signal=INT`) raised while
    it read a child's training: the child had run on, and the bench waited for its end."""
    pid_file = tmp_path / "pid"
    child = ("import json, os, time\n"
             f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
             "print(json.dumps({'epoch': 1, 'test_bce': 0.5}), flush=True)\n"
             "time.sleep(60)\n")

    def stop(record: dict) -> None:
        raise KeyboardInterrupt
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        parity.run_reporting([sys.executable, "-c", child], "peer", stop)
    assert time.monotonic() - start < 30
    with pytest.raises(ProcessLookupError):  # killed and reaped
        os.kill(int(pid_file.read_text()), 0)


def test_a_training_process_reports_each_epoch_as_it_runs(capsys):
    """`parity.run_reporting` echoes a note per epoch record while the child runs, and still
    returns the whole stdout (the result is its last line) and stderr."""
    child = ("import json, sys\n"
             "for e in (1, 2):\n"
             "    print(json.dumps({'epoch': e, 'test_bce': 0.5 / e}), flush=True)\n"
             "print(json.dumps({'epoch': 3, 'step': 70, 'test_bce': 0.125}))\n"
             "print('not a record'); print('a warning', file=sys.stderr)\n"
             "print(json.dumps({'epoch': 3, 'test_bce': 0.125, 'epochs': []}))\n")
    done = parity.run_reporting([sys.executable, "-c", child], "peer",
                                parity.epoch_note("test_bce"))
    assert done.returncode == 0 and done.stderr == "a warning\n"
    assert json.loads(done.stdout.splitlines()[-1])["epochs"] == []  # the result: no note
    assert capsys.readouterr().err.splitlines() == ["  peer: epoch 1: test_bce 0.5000",
                                                    "  peer: epoch 2: test_bce 0.2500",
                                                    "  peer: epoch 3, step 70: test_bce 0.1250"]
