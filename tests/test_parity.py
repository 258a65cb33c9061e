"""The parity report's arithmetic: means over seeds, the sign of the shortfall, and the first
epoch at which jaxae reaches the peer's final figure."""

import pytest

from benchmarks import parity


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


def test_extra_epochs_time_the_target_without_changing_the_reported_epoch(fashion_tfds_dir,
                                                                           tmp_path):
    """The extra epoch only extends the run: the pairing's last epoch is the same bits."""
    pairing = parity.Pairing("test", 1, "glorot", "mse", "test_mse_per_pixel", "test MSE")
    plain = parity.run_jaxae(pairing, str(tmp_path / "a"), fashion_tfds_dir, 0)
    longer = parity.run_jaxae(pairing, str(tmp_path / "b"), fashion_tfds_dir, 0,
                              extra_epochs=1)
    assert [e["epoch"] for e in plain["epochs"]] == [1]
    assert [e["epoch"] for e in longer["epochs"]] == [1, 2]
    assert longer["value"] == plain["value"] == longer["epochs"][0]["value"]
    assert longer["epochs"][1]["value"] < longer["value"]  # it kept learning
    assert longer["wall_s"] == longer["epochs"][0]["wall_s"]


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
