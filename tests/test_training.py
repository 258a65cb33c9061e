"""Training on real images: reproducibility, exact checkpoints and resume, learning, evaluation."""

import json
import os

import jax
import matplotlib.image
import ml_collections
import numpy as np
import pytest

from jaxae import baselines, checkpoints, losses, pipeline, steps
from jaxae.config import ConfigError
from jaxae.evaluation import evaluate_split, evaluate_workdir
from jaxae.experiments.common import load_config
from jaxae.models import build_model
from jaxae.objectives import is_variational
from jaxae.splits import load_splits
from jaxae.trainer import model_from_config, train_and_evaluate


def leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]


def assert_bitwise_equal(a, b, what: str) -> None:
    for x, y in zip(leaves(a), leaves(b), strict=True):
        assert x.dtype == y.dtype and np.array_equal(x, y), f"{what} differ"


def read_metrics(workdir) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_same_seed_same_bits_other_seed_other_bits(tiny_config, tmp_path):
    config = tiny_config(num_epochs=1, corruption="dropout")
    first = train_and_evaluate(config, str(tmp_path / "a"))
    again = train_and_evaluate(config, str(tmp_path / "b"))
    assert_bitwise_equal(first.params, again.params, "parameters of two runs with one seed")
    records = read_metrics(tmp_path / "a")
    assert records == read_metrics(tmp_path / "b")
    train_records = [r for r in records if "train_loss" in r]
    assert train_records and all(np.isfinite(r["train_grad_norm"]) and r["train_grad_norm"] > 0
                                 for r in train_records)  # computed at every written step
    config.seed = 1
    other = train_and_evaluate(config, str(tmp_path / "c"))
    assert not np.array_equal(leaves(first.params)[0], leaves(other.params)[0])


def test_orbax_round_trip_is_exact(tiny_config, tmp_path):
    config = ml_collections.FrozenConfigDict(tiny_config())
    model = build_model(config.model, config.latent_dim)
    state = steps.create_train_state(config, model, jax.random.key(3))
    batch = {"image": jax.random.randint(jax.random.key(4), (32, 28, 28), 0, 256).astype("uint8"),
             "label": jax.numpy.zeros(32, "int32")}
    state, _ = steps.make_train_step(config)(state, batch, jax.random.key(5))
    manager = checkpoints.make_manager(str(tmp_path))
    checkpoints.save(manager, state)
    manager.wait_until_finished()
    fresh = steps.create_train_state(config, model, jax.random.key(99))
    restored = checkpoints.restore(manager, fresh)
    assert int(restored.step) == 1
    assert_bitwise_equal(state.params, restored.params, "restored parameters")
    assert_bitwise_equal(state.opt_state, restored.opt_state, "restored optimiser state")


def test_stopped_and_resumed_run_ends_bitwise_equal_to_uninterrupted(tiny_config, tmp_path):
    # 16 steps per epoch: stopping at step 21 interrupts the second epoch mid-way.
    config = tiny_config(corruption="dropout")
    whole = train_and_evaluate(config, str(tmp_path / "whole"))
    config.stop_after_steps = 21
    stopped = train_and_evaluate(config, str(tmp_path / "split"))
    assert int(stopped.step) == 21
    config.stop_after_steps = None
    resumed = train_and_evaluate(config, str(tmp_path / "split"))
    assert int(resumed.step) == int(whole.step) == 32
    assert_bitwise_equal(whole.params, resumed.params, "resumed and uninterrupted parameters")
    assert read_metrics(tmp_path / "whole") == read_metrics(tmp_path / "split")


def test_short_training_lowers_the_test_loss(tiny_config, tmp_path):
    config = tiny_config(train_size=2048)
    frozen = ml_collections.FrozenConfigDict(config)
    keys = pipeline.derive_keys(config.seed)
    model = build_model(config.model, config.latent_dim)
    initial = steps.create_train_state(frozen, model, keys.init)
    data = load_splits(config, keys.data)
    eval_step = steps.make_eval_step(frozen, model)
    before = evaluate_split(eval_step, initial.params, data.test, 128, keys.eval)["loss"]
    trained = train_and_evaluate(config, str(tmp_path))
    after = evaluate_split(eval_step, trained.params, data.test, 128, keys.eval)["loss"]
    assert after < 0.6 * before, f"test MSE went from {before:.4f} to only {after:.4f}"


@pytest.mark.parametrize("overrides, input_row", [
    (dict(model="conv_ae", latent_dim=128, loss="bce"), None),
    (dict(model="deep_ae", latent_dim=30), None),
    (dict(latent_dim=940, corruption="dropout"), "input\n(dropout)"),
    (dict(latent_dim=940, corruption="gaussian"), "input\n(gaussian)"),
    (dict(model="superres", loss="bce", superres_factor=4), "input\n7x7"),
    (dict(model="conv_vae", latent_dim=4, iwae_samples=(1, 5), iwae_images=64), None),
    (dict(model="cvae", latent_dim=4, iwae_samples=(1,), iwae_images=64), None),
])
def test_every_model_trains_and_evaluates(tiny_config, tmp_path, overrides, input_row):
    config = tiny_config(num_epochs=1, train_size=64, test_size=64, **overrides)
    train_and_evaluate(config, str(tmp_path))
    result = evaluate_workdir(str(tmp_path))
    last_test = [r for r in read_metrics(tmp_path) if "test_loss" in r][-1]
    assert result["step"] == 2 and result["test_images"] == 64
    assert result["test_loss"] == pytest.approx(last_test["test_loss"], rel=1e-6)
    if config.corruption != "none" or config.model == "superres":
        assert 0 < result["test_input_psnr"] < 30 and 0 < result["test_baseline_psnr"] < 40
    if config.model == "cvae":
        assert 0 <= result["cvae_samples_recognised"] <= 1
    picture = matplotlib.image.imread(os.path.join(tmp_path, "eval", "reconstructions.png"))
    rows = 4 if input_row else 2  # input and classical baseline above output and original
    assert picture.shape[0] >= 100 * rows and picture.shape[1] >= 900  # 10 images per row


def test_resuming_a_workdir_with_another_model_is_refused(tiny_config, tmp_path):
    train_and_evaluate(tiny_config(num_epochs=1, train_size=64), str(tmp_path))
    with pytest.raises(ConfigError, match="holds a run with latent_dim=10, but the config says 2"):
        train_and_evaluate(tiny_config(num_epochs=1, train_size=64, latent_dim=2), str(tmp_path))


def test_evaluating_an_empty_workdir_says_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no run"):
        evaluate_workdir(str(tmp_path))


def test_validation_split_is_carved_deterministically_and_evaluated(tiny_config, tmp_path):
    config = tiny_config(num_epochs=1, val_size=128)
    keys = pipeline.derive_keys(config.seed)
    data = load_splits(config, keys.data)
    again = load_splits(config, keys.data)
    assert len(data.train) == 384 and len(data.val) == 128
    np.testing.assert_array_equal(data.val.images, again.val.images)
    train_rows = {row.tobytes() for row in data.train.images}
    assert not any(row.tobytes() in train_rows for row in data.val.images)
    train_and_evaluate(config, str(tmp_path))
    assert "val_loss" in read_metrics(tmp_path)[-1]


def test_static_binarization_is_one_fixed_bernoulli_draw(tiny_config):
    config = tiny_config(binarize="static")
    keys = pipeline.derive_keys(config.seed)
    data = load_splits(config, keys.data)
    assert set(np.unique(data.train.images)) == {0, 255}
    np.testing.assert_array_equal(data.train.images, load_splits(config, keys.data).train.images)
    grey = load_splits(tiny_config(), keys.data).train.images / 255.0
    # each pixel is on with probability equal to its intensity
    np.testing.assert_allclose((data.train.images / 255.0).mean(), grey.mean(), atol=0.005)


def last_update_size(config, workdir) -> float:
    """Size of the parameter change made by a run's last step (stopped one step short, then
    resumed: the two checkpoints differ by exactly that step)."""
    total = config.num_epochs * pipeline.steps_per_epoch(config.train_size, config.batch_size)
    config.stop_after_steps = total - 1
    before = leaves(train_and_evaluate(config, workdir).params)
    config.stop_after_steps = None
    after = leaves(train_and_evaluate(config, workdir).params)
    return float(np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(after, before, strict=True))))


def test_cosine_schedule_decays_the_step_to_zero_over_the_run(tiny_config, tmp_path):
    # 4 steps: the cosine rate of the last one is lr * (1 + cos(3 pi / 4)) / 2 = 0.15 lr
    settings = dict(num_epochs=1, train_size=128, test_size=64)
    constant = last_update_size(tiny_config(**settings), str(tmp_path / "constant"))
    cosine = last_update_size(tiny_config(lr_schedule="cosine", **settings),
                              str(tmp_path / "cosine"))
    assert 0 < cosine < 0.3 * constant, (cosine, constant)
    with pytest.raises(ConfigError, match="holds a run with lr_schedule='constant'"):
        train_and_evaluate(tiny_config(lr_schedule="cosine", **settings),
                           str(tmp_path / "constant"))


@pytest.mark.parametrize("name", ["default", "dae_gaussian", "superres", "vae_fashion_2d"])
def test_eval_step_sums_the_metrics_of_the_unmasked_images(name):
    """The compiled eval step (flat arrays, one program) against the loss functions applied
    image by image to the model's [B, 28, 28, 1] output, padded images masked out."""
    config = ml_collections.FrozenConfigDict(load_config(name))
    model = model_from_config(config)
    params = steps.create_train_state(config, model, jax.random.key(0)).params
    rng = np.random.default_rng(0)
    batch = {"image": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
             "label": rng.integers(0, 10, 6).astype(np.int32),
             "mask": np.array([1, 1, 1, 1, 0, 0], np.float32)}
    key = jax.random.key(3)
    out = jax.device_get(steps.make_eval_step(config, model)(params, batch, key))

    example_key, _ = jax.random.split(key)
    inputs, targets = pipeline.make_example(config, batch["image"], example_key)
    args = (inputs, None, batch["label"]) if is_variational(config) else (inputs,)
    logits = model.apply({"params": params}, *args)
    logits = logits[0] if is_variational(config) else logits  # z = z_mean
    expected = {"mse": losses.mse(logits, targets), "bce": losses.bce_with_logits(logits, targets),
                "psnr": losses.psnr(jax.nn.sigmoid(logits), targets)}
    if name in ("dae_gaussian", "superres"):
        expected["input_psnr"] = losses.psnr(baselines.input_as_image(config, inputs), targets)
        expected["baseline_psnr"] = losses.psnr(baselines.classical_baseline(config, inputs),
                                                targets)
    assert out["count"] == 4
    assert set(expected) <= set(out)
    for metric, per_image in expected.items():
        np.testing.assert_allclose(out[metric], np.sum(np.asarray(per_image)[:4]), rtol=1e-5,
                                   err_msg=metric)


def test_a_run_compiles_its_training_loop_once(tiny_config, tmp_path, caplog):
    """16 steps per epoch logged every 6: chunks of 6, 6, 4, 2, 6, ... all run one program."""
    config = tiny_config(num_epochs=2, log_every_steps=6)
    with jax.log_compiles(True), caplog.at_level("WARNING"):
        train_and_evaluate(config, str(tmp_path / "run"))
    compiled = [r for r in caplog.records
                if "XLA compilation of jit(train_chunk)" in r.getMessage()]
    assert len(compiled) == 1
    assert [r["step"] for r in read_metrics(tmp_path / "run") if "train_loss" in r] == \
        [6, 12, 16, 18, 24, 30, 32]
