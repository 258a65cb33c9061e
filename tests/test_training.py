"""Training on real images: reproducibility, exact checkpoints and resume, learning, evaluation."""

import importlib
import json
import os
import sys
import threading
import time

import jax
import jax.numpy as jnp
import matplotlib.image
import numpy as np
import pytest

from jaxae import build, losses, tasks
from jaxae import config as config_lib
from jaxae.config import ConfigError
from jaxae.data import Split, Splits, batches
from jaxae.evaluation.evaluate import evaluate_workdir
from jaxae.evaluation.metrics import evaluate_split
from jaxae.evaluation.pictures import picture_indices
from jaxae.keys import VALIDATION_EVAL_STREAM, derive_keys
from jaxae.training import checkpoints, compiler, parallel, steps
from jaxae.training.batch_sources import ResidentSource
from jaxae.training.trainer import train_and_evaluate
from tests.conftest import tiny_model_source

MNIST = (28, 28, 1)


def parts(config, image_shape=MNIST, num_classes=10):
    """(model, task, objective) of a config, for images of `image_shape`."""
    model = build.make_model(config, image_shape, num_classes)
    return model, config_lib.make_task(config), build.make_objective(config, model)


def fresh_state(config, model, task, key, image_shape=MNIST):
    return steps.create_train_state(model, build.make_optimizer(config),
                                    task.input_shape(image_shape), key,
                                    build.init_scheme(config))


def leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]


def assert_bitwise_equal(a, b, what: str) -> None:
    for x, y in zip(leaves(a), leaves(b), strict=True):
        assert x.dtype == y.dtype and np.array_equal(x, y), f"{what} differ"


def metrics_lines(workdir) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_same_seed_same_bits_other_seed_other_bits_and_a_stopped_run_resumes_bitwise(
        tiny_config, tmp_path):
    """Two runs of one seed give the same bits, another seed others; a run stopped mid-way
    and resumed ends bitwise equal to the uninterrupted one (which serves both checks)."""
    # 16 steps per epoch: stopping at step 21 interrupts the second epoch mid-way.
    config = tiny_config(**{"task.name": "denoise"})
    first = train_and_evaluate(config, str(tmp_path / "a"))
    again = train_and_evaluate(config, str(tmp_path / "b"))
    assert_bitwise_equal(first.params, again.params, "parameters of two runs with one seed")
    records = metrics_lines(tmp_path / "a")
    assert records == metrics_lines(tmp_path / "b")
    train_records = [r for r in records if "train_loss" in r]
    assert train_records and all(np.isfinite(r["train_grad_norm"]) and r["train_grad_norm"] > 0
                                 for r in train_records)  # computed at every written step
    config.train.stop_after_steps = 21
    stopped = train_and_evaluate(config, str(tmp_path / "split"))
    assert int(stopped.step) == 21
    config.train.stop_after_steps = None
    resumed = train_and_evaluate(config, str(tmp_path / "split"))
    assert int(resumed.step) == int(first.step) == 32
    assert_bitwise_equal(first.params, resumed.params, "resumed and uninterrupted parameters")
    assert metrics_lines(tmp_path / "a") == metrics_lines(tmp_path / "split")
    config.seed = 1
    other = train_and_evaluate(config, str(tmp_path / "c"))
    assert not np.array_equal(leaves(first.params)[0], leaves(other.params)[0])


def test_orbax_round_trip_is_exact(tiny_config, tmp_path):
    config = tiny_config()
    model, task, objective = parts(config)
    state = fresh_state(config, model, task, jax.random.key(3))
    batch = {"image": jax.random.randint(jax.random.key(4), (32, *MNIST), 0, 256).astype("uint8"),
             "label": jax.numpy.zeros(32, "int32")}
    state, _ = steps.make_train_step(model, task, objective)(state, batch, jax.random.key(5))
    manager = checkpoints.make_manager(str(tmp_path))
    checkpoints.save_state(manager, state)
    manager.wait_until_finished()
    fresh = fresh_state(config, model, task, jax.random.key(99))
    restored = checkpoints.restore_state(manager, fresh)
    assert int(restored.step) == 1
    assert_bitwise_equal(state.params, restored.params, "restored parameters")
    assert_bitwise_equal(state.opt_state, restored.opt_state, "restored optimiser state")


def test_a_run_compiles_one_loop_and_evaluations_inside_epochs_leave_training_alone_and_resume(
        tiny_config, tmp_path, caplog):
    """16 steps per epoch logged every 6: chunks of 6, 6, 4, 2, 6, ... all run one program.
    Extra evaluation steps end chunks there (same bits: any chunk length does), write a
    record each and call the hook; a run stopped at one and resumed writes the same
    records as an uninterrupted one, each evaluation once."""
    config = tiny_config(**{"train.log_every_steps": 6})  # 16 steps per epoch, 32 in all
    with jax.log_compiles(True), caplog.at_level("WARNING"):
        plain = train_and_evaluate(config, str(tmp_path / "plain"))
    compiled = [r for r in caplog.records
                if "XLA compilation of jit(train_chunk)" in r.getMessage()]
    assert len(compiled) == 1
    assert [r["step"] for r in metrics_lines(tmp_path / "plain") if "train_loss" in r] == \
        [6, 12, 16, 18, 24, 30, 32]
    heard = []
    at = (5, 16, 20)  # 16 is an epoch's end: evaluated once
    whole = train_and_evaluate(config, str(tmp_path / "whole"), evaluate_at_steps=at,
                               on_evaluation=lambda *args: heard.append(args))
    assert_bitwise_equal(plain.params, whole.params, "parameters with and without them")
    assert [(step, epoch) for step, epoch, _ in heard] == [(5, 1), (16, 1), (20, 2), (32, 2)]
    records = [r for r in metrics_lines(tmp_path / "whole") if "test_loss" in r]
    assert [(r["step"], r["epoch"]) for r in records] == [(5, 1), (16, 1), (20, 2), (32, 2)]
    assert [r["test_loss"] for r in records] == [m["test_loss"] for *_, m in heard]
    assert records[0]["test_loss"] > records[-1]["test_loss"]
    assert [r for r in metrics_lines(tmp_path / "plain") if "test_loss" in r] == \
        [r for r in records if r["step"] % 16 == 0]

    config.train.stop_after_steps = 20
    train_and_evaluate(config, str(tmp_path / "split"), evaluate_at_steps=at)
    config.train.stop_after_steps = None
    resumed = train_and_evaluate(config, str(tmp_path / "split"), evaluate_at_steps=at)
    assert_bitwise_equal(whole.params, resumed.params, "resumed and uninterrupted parameters")
    assert metrics_lines(tmp_path / "whole") == metrics_lines(tmp_path / "split")
    with pytest.raises(ValueError, match=r"evaluate_at_steps=\[0.5, 3\]: give whole steps"):
        train_and_evaluate(config, str(tmp_path / "bad"), evaluate_at_steps=[3, 0.5])
    assert not os.path.exists(tmp_path / "bad")


def test_config_eval_every_steps_adds_evaluations_inside_epochs(tiny_config, tmp_path):
    config = tiny_config(**{"eval.every_steps": 12})  # 16 steps per epoch, 32 in all
    train_and_evaluate(config, str(tmp_path / "every"), evaluate_at_steps=(5,))
    records = [r for r in metrics_lines(tmp_path / "every") if "test_loss" in r]
    assert [(r["step"], r["epoch"]) for r in records] == [(5, 1), (12, 1), (16, 1), (24, 2),
                                                          (32, 2)]
    with pytest.raises(ConfigError, match="config.eval.every_steps=0"):
        train_and_evaluate(tiny_config(**{"eval.every_steps": 0}), str(tmp_path / "bad"))
    assert not os.path.exists(tmp_path / "bad")


def test_checkpoint_every_steps_saves_at_epoch_ends_too(tiny_config, tmp_path):
    """Steps that end an epoch are saved when checkpoint_every_steps says so, whatever
    checkpoint_every_epochs says (16 steps an epoch, 48 in all); checkpoint_every_epochs=2
    alone saves the end of every second epoch and the last step."""
    config = tiny_config(**{"train.num_epochs": 3, "train.checkpoint_every_epochs": 5,
                            "train.checkpoint_every_steps": 8, "train.keep_checkpoints": 10})
    train_and_evaluate(config, str(tmp_path / "run"))
    saved = sorted(int(name) for name in os.listdir(tmp_path / "run" / "checkpoints")
                   if name.isdigit())
    assert saved == [8, 16, 24, 32, 40, 48]
    every_two = tiny_config(**{"train.num_epochs": 3, "train.checkpoint_every_epochs": 2,
                               "train.keep_checkpoints": 10})
    train_and_evaluate(every_two, str(tmp_path / "two"))  # epoch 2's end, and the last step
    assert sorted(int(name) for name in os.listdir(tmp_path / "two" / "checkpoints")
                  if name.isdigit()) == [32, 48]


def test_short_training_lowers_the_test_loss(tiny_config, tmp_path):
    config = tiny_config(**{"data.train_size": 2048})
    keys = derive_keys(config.seed)
    model, task, objective = parts(config)
    initial = fresh_state(config, model, task, keys.init)
    data = build.load_data(config, keys.data)
    eval_step = steps.make_eval_step(model, task, objective)
    before = evaluate_split(eval_step, initial.params, data.test, 128, keys.eval)["loss"]
    trained = train_and_evaluate(config, str(tmp_path))
    after = evaluate_split(eval_step, trained.params, data.test, 128, keys.eval)["loss"]
    assert after < 0.6 * before, f"test MSE went from {before:.4f} to only {after:.4f}"


@pytest.mark.parametrize("overrides, input_row", [  # conv AE and VAE: tests/test_shapes.py
    ({"model": {"name": "deep_ae", "latent_dim": 30}}, None),
    ({"model.latent_dim": 940, "task.name": "denoise"}, "input\n(dropout 0.5)"),
    ({"model.latent_dim": 940, "task.name": "denoise", "task.corruption": "gaussian"},
     "input\n(noise std 0.3)"),
    ({"model": {"name": "superres"}, "objective.loss": "bce", "task.name": "superresolve",
      "task.factor": 4}, "input\n7x7"),
    ({"model": {"name": "cvae", "latent_dim": 4}, "eval.iwae_samples": (1,),
      "eval.iwae_images": 64}, None),
])
def test_every_model_trains_and_evaluates(tiny_config, tmp_path, overrides, input_row,
                                          monkeypatch, capsys):
    from jaxae.evaluation import evaluate as evaluate_lib
    from jaxae.keys import IWAE_STREAM

    config = tiny_config(**{"train.num_epochs": 1, "data.train_size": 64, "data.test_size": 64,
                            **overrides})
    train_and_evaluate(config, str(tmp_path))
    model = build.make_model(config, (28, 28, 1), 10)  # what the model declares decides
    code = "no code" if model.latent_shape is None else \
        "code " + "x".join(map(str, model.latent_shape))
    assert f" parameters, {code}) on fashion_mnist (" in capsys.readouterr().out.splitlines()[0]
    variational, conditional = model.variational, model.conditional
    iwae_keys = []  # the IWAE bounds draw from their own stream of the eval key
    bounds = evaluate_lib.iwae.iwae_bounds
    monkeypatch.setattr(evaluate_lib.iwae, "iwae_bounds", lambda *args, **kwargs: (
        iwae_keys.append(args[5]), bounds(*args, **kwargs))[1])
    # evaluation fields change at evaluation time: another k for the IWAE bound, on 32 images
    overrides = {"eval.iwae_samples": (2,), "eval.iwae_images": 32} if variational else {}
    result = evaluate_workdir(str(tmp_path), overrides=overrides)
    # the probe's training, the longest wait of a conditional model's evaluation, is said
    assert ("training a pixel classifier" in capsys.readouterr().out) == conditional
    if variational:
        expected = jax.random.fold_in(derive_keys(config.seed).eval, IWAE_STREAM)
        assert len(iwae_keys) == 1
        np.testing.assert_array_equal(jax.random.key_data(iwae_keys[0]),
                                      jax.random.key_data(expected))
    last_test = [r for r in metrics_lines(tmp_path) if "test_loss" in r][-1]
    assert result["step"] == 2 and result["test_images"] == 64
    assert result["counts"]["test_loss"] == 64  # over how many images each figure is
    assert result["draws"] == {"eval_batch_size": 128, "iwae_chunk": 50, "seed": 0}
    if variational:
        assert result["iwae_images"] == result["counts"]["test_iwae_k2"] == 32
        assert "test_iwae_k1" not in result
        # the likelihood the ELBO's nats are under, and the pixels it scores (grey or binary)
        assert (result["likelihood"], result["binarize"]) == ("bernoulli", "none")
        assert (result["loss"], result["beta"]) == ("negative_elbo", 1.0)  # what test_loss is
    else:
        assert "likelihood" not in result and result["loss"] == config.objective.loss
    assert result["test_loss"] == pytest.approx(last_test["test_loss"], rel=1e-6)
    if input_row:
        assert 0 < result["test_input_psnr"] < 30 and 0 < result["test_baseline_psnr"] < 40
        assert result["baseline"] == ("bicubic" if "7x7" in input_row else
                                           "masked median 3x3" if "dropout" in input_row
                                           else "median 3x3")
        if "dropout" in input_row:  # the plain median had scored below the input itself
            assert result["test_baseline_psnr"] > result["test_input_psnr"] + 3
        assert result.get("input_method") == ("nearest-neighbour upsampling"
                                              if "7x7" in input_row else None)  # what
        # test_input_psnr scores
        # the training record names its baseline too: a run reloaded after the baseline of
        # its task changed (the dropout's) is not labelled with the new one
        assert last_test["baseline"] == result["baseline"]
    else:
        assert "baseline" not in result and "baseline" not in last_test
    if variational and conditional:
        assert 0 <= result["cvae_samples_recognised"] <= 1
    picture = matplotlib.image.imread(os.path.join(tmp_path, "eval", "reconstructions.png"))
    rows = 4 if input_row else 2  # input and classical baseline above output and original
    assert picture.shape[0] >= 100 * rows and picture.shape[1] >= 900  # 10 images per row


def test_an_older_step_evaluated_keeps_the_newest_evaluation_another_model_resumed_is_refused(
        tiny_config, tmp_path, capsys):
    """An older step's evaluation goes beside the newest one's, never over it; the run,
    finished, refuses to be resumed with another model."""
    settings = {"data.train_size": 64, "data.test_size": 64}
    config = tiny_config(**settings)
    saved = []
    train_and_evaluate(config, str(tmp_path), on_saved=lambda: saved.append(
        sorted(os.listdir(tmp_path / "checkpoints"))))
    assert saved == [["2", "4"]]  # called once, with the last checkpoint on disk
    start = capsys.readouterr().out.splitlines()[0]  # the model, its size and its code
    assert start.startswith("dense_ae (16,474 parameters, code 10) on fashion_mnist (")
    assert "64 train / 64 test images of 28x28x1, 2 steps per epoch, 4 steps in all" in start
    train_and_evaluate(config, str(tmp_path))  # again: the run is complete, and says so
    again = capsys.readouterr().out
    assert "the run has trained 4 steps and train.num_epochs=2 asks for 4: nothing to train" \
        in again
    assert "steps per epoch" not in again  # what it would train, after "nothing to train"
    assert "(a larger train.num_epochs trains it on)" in again  # a library's words, not
    assert "--config" not in again and "evaluate.py" not in again  # train.py's flags
    with pytest.raises(FileNotFoundError) as caught:
        evaluate_workdir(str(tmp_path), 3)
    assert str(caught.value) == (f"{str(tmp_path)!r} has no checkpoint at step 3: it has steps "
                                 "2, 4")
    with pytest.raises(FileNotFoundError) as caught:
        evaluate_workdir(str(tmp_path), 1)  # older than the oldest kept
    assert str(caught.value).endswith("it has steps 2, 4 (a run keeps its newest "
                                      "train.keep_checkpoints=3)")
    assert not (tmp_path / "eval_step_3").exists()  # a refused evaluation makes no folder
    with pytest.raises(FileNotFoundError, match=r"^--step=0 names no checkpoint: give a step "
                                                r"of 1 or more"):
        evaluate_workdir(str(tmp_path), 0)
    assert evaluate_workdir(str(tmp_path))["step"] == 4
    newest = (tmp_path / "eval" / "metrics.json").read_bytes()
    older = evaluate_workdir(str(tmp_path), 2)
    assert older["step"] == 2
    with open(tmp_path / "eval_step_2" / "metrics.json") as f:
        assert json.load(f)["test_loss"] == older["test_loss"]
    assert (tmp_path / "eval_step_2" / "reconstructions.png").is_file()
    assert (tmp_path / "eval" / "metrics.json").read_bytes() == newest  # not overwritten
    with pytest.raises(ConfigError, match="holds a run with model.latent_dim=10, but the "
                                          "config says 2: use a new --workdir"):
        train_and_evaluate(tiny_config(**settings, **{"model.latent_dim": 2}), str(tmp_path))


def test_evaluating_an_empty_workdir_says_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no run"):
        evaluate_workdir(str(tmp_path))
    (tmp_path / "checkpoints" / "16").mkdir(parents=True)  # its config.json lost
    with pytest.raises(FileNotFoundError, match="holds checkpoints but no config.json, which "
                                                "says what model and data they are of"):
        evaluate_workdir(str(tmp_path))
    (tmp_path / "checkpoints" / "16").rmdir()
    (tmp_path / "checkpoints").rmdir()
    (tmp_path / "strided").mkdir()
    (tmp_path / "strided" / "config.json").write_text("{}")
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "config.json").write_text("{}")
    typo = str(tmp_path / "stridd")
    with pytest.raises(FileNotFoundError) as caught:  # a misspelt workdir is not "no run"
        evaluate_workdir(typo)
    assert str(caught.value) == (f"{typo!r} does not exist: did you mean "
                                 f"{str(tmp_path / 'strided')!r}? runs beside it: strided, vae")
    with pytest.raises(FileNotFoundError, match="does not exist: pass the --workdir that "
                                                "train.py trained into"):
        evaluate_workdir(str(tmp_path / "nothing" / "here"))
    with pytest.raises(FileNotFoundError, match=f"did you mean {str(tmp_path / 'strided')!r}"):
        evaluate_workdir(typo + os.sep)  # a trailing slash


def test_a_validation_split_is_carved_deterministically_and_the_task_floors_computed_once(
        tiny_config, tmp_path, monkeypatch):
    """A validation split is carved from the training images, the same at every load, and
    evaluated. The input's and the median filter's PSNR do not depend on the parameters:
    the trainer's floor step runs once per split's batch, and every evaluation reports the
    figures the full eval step gives."""
    config = tiny_config(**{"model.latent_dim": 940, "task.name": "denoise",
                            "data.val_size": 128, "train.num_epochs": 3})
    keys = derive_keys(config.seed)
    data = build.load_data(config, keys.data)
    again = build.load_data(config, keys.data)
    assert len(data.train) == 384 and len(data.val) == 128
    np.testing.assert_array_equal(data.val.images, again.val.images)
    train_rows = {row.tobytes() for row in data.train.images}
    assert not any(row.tobytes() in train_rows for row in data.val.images)
    calls = []
    make_floor_step = steps.make_floor_step

    def counted(task):
        floor_step = make_floor_step(task)
        return lambda batch, key: calls.append(1) or floor_step(batch, key)

    monkeypatch.setattr(steps, "make_floor_step", counted)
    state = train_and_evaluate(config, str(tmp_path))
    assert len(calls) == 2 + 1  # test: 256 images, val: 128, in batches of 128; once each
    assert "val_loss" in metrics_lines(tmp_path)[-1]
    model, task, objective = parts(config)
    full = steps.make_eval_step(model, task, objective)
    records = [r for r in metrics_lines(tmp_path) if "test_loss" in r]
    assert len(records) == 3
    val_key = jax.random.fold_in(keys.eval, VALIDATION_EVAL_STREAM)
    for prefix, split, key in (("test", data.test, keys.eval), ("val", data.val, val_key)):
        expected = evaluate_split(full, state.params, split, 128, key)
        for record in records:
            for floor in ("input_psnr", "baseline_psnr"):
                assert record[f"{prefix}_{floor}"] == pytest.approx(expected[floor], rel=1e-6)
        assert records[-1][f"{prefix}_loss"] == pytest.approx(expected["loss"], rel=1e-6)
        assert 0 < expected["input_psnr"] < 40 and 0 < expected["baseline_psnr"] < 40


def test_static_binarization_is_one_fixed_bernoulli_draw(tiny_config):
    config = tiny_config(**{"data.binarize": "static"})
    keys = derive_keys(config.seed)
    data = build.load_data(config, keys.data)
    assert set(np.unique(data.train.images)) == {0, 255}
    np.testing.assert_array_equal(data.train.images,
                                  build.load_data(config, keys.data).train.images)
    grey = build.load_data(tiny_config(), keys.data).train.images / 255.0
    # each pixel is on with probability equal to its intensity
    np.testing.assert_allclose((data.train.images / 255.0).mean(), grey.mean(), atol=0.005)


def last_update_size(config, workdir) -> float:
    """Size of the parameter change made by a run's last step (stopped one step short, then
    resumed: the two checkpoints differ by exactly that step)."""
    total = config.train.num_epochs * batches.steps_per_epoch(config.data.train_size,
                                                              config.train.batch_size)
    config.train.stop_after_steps = total - 1
    before = leaves(train_and_evaluate(config, workdir).params)
    config.train.stop_after_steps = None
    after = leaves(train_and_evaluate(config, workdir).params)
    return float(np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(after, before, strict=True))))


def test_cosine_schedule_decays_the_step_to_zero_over_the_run(tiny_config, tmp_path):
    # 4 steps: the cosine rate of the last one is lr * (1 + cos(3 pi / 4)) / 2 = 0.15 lr
    settings = {"train.num_epochs": 1, "data.train_size": 128, "data.test_size": 64}
    cosine_settings = {**settings, "optim.schedule": "cosine"}
    constant = last_update_size(tiny_config(**settings), str(tmp_path / "constant"))
    cosine = last_update_size(tiny_config(**cosine_settings), str(tmp_path / "cosine"))
    assert 0 < cosine < 0.3 * constant, (cosine, constant)
    with pytest.raises(ConfigError, match="holds a run with optim.schedule='constant'"):
        train_and_evaluate(tiny_config(**cosine_settings), str(tmp_path / "constant"))


@pytest.mark.parametrize("name", ["default", "dae_gaussian", "superres", "vae_fashion_2d"])
def test_eval_step_sums_the_metrics_of_the_unmasked_images(name):
    """The compiled eval step (flat arrays, one program) against the loss functions applied
    image by image to the model's [B, H, W, C] output, padded images masked out."""
    config = importlib.import_module(f"jaxae.configs.{name}").get_config()
    model, task, objective = parts(config)
    params = fresh_state(config, model, task, jax.random.key(0)).params
    rng = np.random.default_rng(0)
    batch = {"image": rng.integers(0, 256, (6, *MNIST), dtype=np.uint8),
             "label": rng.integers(0, 10, 6).astype(np.int32),
             "mask": np.array([1, 1, 1, 1, 0, 0], np.float32)}
    key = jax.random.key(3)
    out = jax.device_get(steps.make_eval_step(model, task, objective)(params, batch, key))

    example_key, _ = jax.random.split(key)
    inputs, targets = task.make_example(batch["image"], example_key)
    logits, _ = model.apply({"params": params}, inputs, labels=batch["label"], sample=False)
    expected = {"mse": losses.mse(logits, targets), "bce": losses.bce_with_logits(logits, targets),
                "psnr": losses.psnr(losses.sigmoid(logits), targets)}
    if not model.variational:  # the loss the config names, not another
        expected["loss"] = expected[config.objective.loss]
    if task.shows_input:
        expected["input_psnr"] = losses.psnr(task.input_as_image(inputs, MNIST), targets)
        expected["baseline_psnr"] = losses.psnr(task.baseline(inputs, MNIST), targets)
    assert out["count"] == 4
    assert set(expected) <= set(out)
    assert ("input_psnr" in out) == (name in ("dae_gaussian", "superres"))
    for metric, per_image in expected.items():
        np.testing.assert_allclose(out[metric], np.sum(np.asarray(per_image)[:4]), rtol=1e-5,
                                   err_msg=metric)
    # without a mask, every image counts
    unmasked = {k: v[:4] for k, v in batch.items() if k != "mask"}
    alone = jax.device_get(steps.make_eval_step(model, task, objective)(params, unmasked, key))
    assert alone["count"] == 4
    for metric in expected:
        np.testing.assert_allclose(alone[metric], out[metric], rtol=1e-5, err_msg=metric)


def tiny_step(model_name: str, task: tasks.Task, learning_rate: float = 0.0):
    """(a state of a 4x4 model, its step jitted without donation, the model, a batch)."""
    import optax

    from jaxae import models, objectives

    model = models.build_model({"name": model_name, "latent_dim": 2}, image_shape=(4, 4, 1))
    objective = objectives.objective_for(model.variational, loss=losses.mse)
    state = steps.create_train_state(model, optax.sgd(learning_rate), (4, 4, 1),
                                     jax.random.key(0))
    images = np.random.default_rng(0).integers(0, 256, (8, 4, 4, 1), dtype=np.uint8)
    step = jax.jit(steps.train_step_fn(model, task, objective))
    return state, step, model, {"image": images, "label": np.zeros(8, np.int32)}


def test_a_step_descends_the_batch_mean_loss_and_reports_the_gradients_norm():
    """Plain SGD moves the parameters by the learning rate times the gradient of the mean
    loss over the batch (of a sum, the batch size would scale the learning rate), and
    grad_norm is that gradient's global L2 norm."""
    import optax

    state, step, model, batch = tiny_step("dense_ae", tasks.Reconstruct(), learning_rate=0.1)
    x = batch["image"].astype(np.float32) / 255.0

    def mean_loss(params):
        logits, _ = model.apply({"params": params}, x, labels=None, sample=False)
        return losses.mse(logits, x).mean()

    grads = jax.grad(mean_loss)(state.params)
    stepped, metrics = step(state, batch, jax.random.key(1))
    for new, old, grad in zip(leaves(stepped.params), leaves(state.params), leaves(grads),
                              strict=True):
        np.testing.assert_allclose(new, old - 0.1 * grad, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(metrics["grad_norm"], optax.tree.norm(grads), rtol=1e-5)
    np.testing.assert_allclose(metrics["loss"], mean_loss(state.params), rtol=1e-6)


def test_each_step_draws_its_own_corruption_and_a_vaes_code_is_sampled():
    """The step's key is fold_in(key, step): a denoiser's next step with the same key masks
    other pixels (a fixed mask would teach the model to undo one mask); a VAE trains on
    z's samples, so another key gives another loss at the same parameters."""
    state, step, _, batch = tiny_step("dense_ae", tasks.Denoise())  # learning rate 0
    key = jax.random.key(1)
    after_one, first = step(state, batch, key)
    _, second = step(after_one, batch, key)
    assert float(first["loss"]) != float(second["loss"])
    state, step, _, batch = tiny_step("vae", tasks.Reconstruct())
    one, other = (step(state, batch, jax.random.key(k))[1] for k in (1, 2))
    assert float(one["recon_nats"]) != float(other["recon_nats"])


def test_split_means_draw_each_batchs_key_and_count_only_the_images_of_the_split():
    """Batch i draws from fold_in(key, i), so no two batches share their noise and batch 0
    draws what the pictures show; a padded last batch's filler images are not counted."""
    from jaxae.data.splits import Split
    from jaxae.evaluation.metrics import split_means

    images = np.arange(5, dtype=np.uint8).reshape(5, 1, 1, 1) * 10
    drawn = []

    def step(batch, key):
        drawn.append(jax.random.key_data(key))
        mask = batch["mask"]
        return {"count": mask.sum(), "pixel": (batch["image"][:, 0, 0, 0] * mask).sum()}

    key = jax.random.key(7)
    means = split_means(step, Split(images, np.zeros(5, np.int32)), 4, key)
    assert means == {"pixel": 20.0}  # (0 + 10 + 20 + 30 + 40) / 5
    np.testing.assert_array_equal(drawn, [jax.random.key_data(jax.random.fold_in(key, i))
                                          for i in (0, 1)])


def test_a_corrupting_task_without_a_baseline_shows_its_input():
    """A task of one's own that corrupts its input but has no classical baseline: the eval
    step scores the input (no baseline), and the reconstruction picture shows its row."""
    import dataclasses

    from jaxae.data.splits import Split
    from jaxae.evaluation.pictures import reconstruction_rows
    from jaxae.tasks import Task

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Darken(Task):
        def corrupt(self, targets, key):
            return targets * 0.5

    config = importlib.import_module("jaxae.configs.default").get_config()
    model, _, objective = parts(config)
    task = Darken()
    params = fresh_state(config, model, task, jax.random.key(0)).params
    images = np.random.default_rng(0).integers(0, 256, (4, *MNIST), dtype=np.uint8)
    batch = {"image": images, "label": np.zeros(4, np.int32)}
    out = jax.device_get(steps.make_eval_step(model, task, objective)(params, batch,
                                                                      jax.random.key(3)))
    targets = images.astype(np.float32) / 255
    assert "baseline_psnr" not in out
    np.testing.assert_allclose(out["input_psnr"], np.sum(losses.psnr(targets * 0.5, targets)),
                               rtol=1e-5)
    split = Split(images, np.arange(4, dtype=np.int32))
    rows = reconstruction_rows(model, task, params, split, jax.random.key(3), 4)
    assert [label for label, _ in rows] == ["input", "output", "original"]
    np.testing.assert_allclose(rows[0][1], targets[picture_indices(split.labels, 4)] * 0.5)


def test_an_epoch_order_is_jax_random_permutation():
    """The CPU path (sort keys drawn by JAX, sorted by NumPy) gives the order
    jax.random.permutation draws, also at sizes with one sort round and with none; and it
    keeps tied keys in their order, as XLA's stable sort does."""
    key = jax.random.key(5)
    for size, epoch in ((0, 0), (1, 0), (100, 3), (60_000, 0), (60_000, 7)):
        expected = jax.random.permutation(jax.random.fold_in(key, epoch), size)
        order = batches.epoch_permutation(key, epoch, size)
        assert isinstance(order, np.ndarray) and order.dtype == np.int32
        np.testing.assert_array_equal(order, expected)
    tied = np.random.default_rng(0).integers(0, 4, (2, 1000)).astype(np.uint32)
    by_xla = jax.numpy.arange(1000)
    for row in tied:
        _, by_xla = jax.lax.sort_key_val(jax.numpy.asarray(row), by_xla)
    np.testing.assert_array_equal(batches.sort_by_rounds(tied), by_xla)


def test_the_next_epochs_order_is_sorted_while_this_one_trains(monkeypatch):
    """The in-memory source sorts epoch e + 1's order in a thread of its own once epoch e
    starts, none past the run's last step, its JAX part dispatched from the main thread
    (under that thread's JAX settings: a run resumed at an epoch's start draws the same); each
    epoch's order is still epoch_permutation's, and a failed draw fails that epoch's chunk."""
    size, batch, per_epoch = 40, 8, 5
    split = Split(np.arange(size, dtype=np.uint8).reshape(size, 1, 1, 1),
                  np.arange(size, dtype=np.int32))
    data = Splits(split, None, split, tuple("abc"), "arrays")
    started, sorted_in, start, sort = [], [], batches.start_permutation, batches.sort_by_rounds

    def recorded_start(key, epoch, num_examples):
        started.append((epoch, threading.current_thread() is threading.main_thread()))
        return start(key, epoch, num_examples)

    def recorded_sort(keys):
        sorted_in.append(threading.current_thread() is threading.main_thread())
        if len(sorted_in) == 5:  # the second source's epoch 1
            raise RuntimeError("a failed sort")
        return sort(keys)

    monkeypatch.setattr(batches, "start_permutation", recorded_start)
    monkeypatch.setattr(batches, "sort_by_rounds", recorded_sort)
    key = jax.random.key(4)
    with jax.threefry_partitionable(False):  # a setting of this thread alone
        source = ResidentSource(data, key, parallel.data_mesh(), batch, per_epoch,
                                3 * per_epoch)
        try:
            for step in range(0, 3 * per_epoch, 2):
                _, order, first = source.chunk(step, 2)
                assert first == step % per_epoch
                np.testing.assert_array_equal(
                    order, jax.random.permutation(jax.random.fold_in(key, step // per_epoch),
                                                  size))
        finally:
            source.close()
    assert started == [(0, True), (1, True), (2, True)] and sorted_in == [False] * 3
    source = ResidentSource(data, key, parallel.data_mesh(), batch, per_epoch, 2 * per_epoch)
    source.chunk(0, 2)
    with pytest.raises(RuntimeError, match="a failed sort"):
        source.chunk(per_epoch, 2)
    source.close()


def test_a_batch_holds_the_rows_the_epoch_order_names():
    """gather_batch (flat-row gathers) gives exactly the indexed images and labels."""
    rng = np.random.default_rng(0)
    arrays = {"image": rng.integers(0, 256, (40, 5, 6, 3), dtype=np.uint8),
              "label": rng.integers(0, 10, (40,), dtype=np.int32)}
    order = rng.permutation(40).astype(np.int32)
    batch = jax.jit(batches.gather_batch, static_argnums=3)(arrays, order, 2, 8)
    rows = order[16:24]
    assert batch["image"].shape == (8, 5, 6, 3) and batch["image"].dtype == np.uint8
    np.testing.assert_array_equal(batch["image"], arrays["image"][rows])
    np.testing.assert_array_equal(batch["label"], arrays["label"][rows])


def test_a_binarising_denoising_task_draws_its_targets_and_its_noise_from_two_keys():
    """One key for both reads the same bits twice: the dropout then keeps pixel 2j exactly
    where the binarised target of pixel j is on."""
    from jaxae.data.batches import to_float

    images = np.random.default_rng(0).integers(0, 256, (4, *MNIST), dtype=np.uint8)
    key = jax.random.key(5)
    task = tasks.Denoise(binarize_targets=True)
    inputs, targets = task.make_example(images, key)
    binarize_key, corrupt_key = jax.random.split(key)
    np.testing.assert_array_equal(
        targets, jax.random.bernoulli(binarize_key, to_float(images)).astype(np.float32))
    np.testing.assert_array_equal(inputs, task.corrupt(targets, corrupt_key))


def test_a_task_refuses_scaled_images_and_a_shape_it_cannot_run_at():
    images = np.random.default_rng(0).integers(0, 256, (4, *MNIST), dtype=np.uint8)
    key = jax.random.key(0)
    inputs, targets = tasks.Reconstruct().make_example(images, key)
    assert float(targets.max()) == images.max() / 255.0
    with pytest.raises(TypeError, match=r"images must be uint8 \(0..255\), as the data sets "
                                        "give them, not float32"):
        tasks.Reconstruct().make_example(images / np.float32(255.0), key)
    with pytest.raises(ValueError, match="factor=3 does not divide the 28x28 images: use one "
                                         "of 2, 4, 7, 14, 28"):
        tasks.SuperResolve(factor=3).make_example(images, key)
    for factor in (1, 0, -2):
        with pytest.raises(ValueError, match=f"factor={factor} must be a whole number of 2 or "
                                             "more that divides the 28x28 images: use one of 2"):
            tasks.SuperResolve(factor=factor).make_example(images, key)
    with pytest.raises(ValueError, match=r"factor=2 does not divide the 5x7 images: no factor "
                                         r"of 2 or more divides both 5 and 7: resize the images "
                                         r"\(config.data.image_size\)"):  # not "use one of none"
        tasks.SuperResolve(factor=2).check((5, 7, 1))
    # NumPy's numbers (a sweep over np.arange, np.linspace) are the Python numbers they hold
    assert tasks.SuperResolve(factor=np.int64(4)) == tasks.SuperResolve(factor=4)
    tasks.SuperResolve(factor=np.int64(4)).check(MNIST)
    noisy = tasks.Denoise(dropout_rate=np.float32(0.25), noise_std=np.float64(0.5))
    assert (noisy.dropout_rate, noisy.noise_std) == (0.25, 0.5)
    assert type(noisy.dropout_rate) is float and noisy == tasks.Denoise(dropout_rate=0.25,
                                                                         noise_std=0.5)
    with pytest.raises(ValueError, match=r"^dropout_rescale='False' must be True or False$"):
        tasks.Denoise(dropout_rescale="False")  # a string, which would count as true


@pytest.mark.parametrize("labels, count, shown", [
    ([1, 0, 1, 0, 1], 3, [0, 1, 2]),  # the first images show every class
    ([0, 0, 0, 0, 1, 1, 2, 2, 2], 4, [0, 1, 4, 6]),  # class by class: each class's first
    ([0] * 8 + [1] * 8, 6, [0, 1, 2, 8, 9, 10]),  # ... and in turns (it was 5 of class 0)
    ([0, 0, 1, 1, 2, 2, 3, 3], 3, [0, 1, 2]),  # more classes than pictures: the first ones
    ([0, 0, 0, 1, 1, 1, 2, 2], 2, [0, 3]),  # ... unless all of one class
    ([5, 5, 5], 2, [0, 1]),
])
def test_the_pictures_show_every_class_that_fits(labels, count, shown):
    assert picture_indices(np.array(labels), count).tolist() == shown


def test_a_denoising_autoencoder_s_samples_perturb_codes_of_the_inputs_it_was_trained_on():
    """The generation picture of a DAE encodes its task's corrupted images (shown as a row),
    not clean images it never saw."""
    from jaxae.data import from_arrays, make_splits
    from jaxae.evaluation import generation
    from jaxae.evaluation.pictures import sample_rows

    config = importlib.import_module("jaxae.configs.dae_dropout").get_config()
    model, task, _ = parts(config)
    params = fresh_state(config, model, task, jax.random.key(0)).params
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, *MNIST), dtype=np.uint8)
    labels = np.arange(20) % 10
    data = make_splits(from_arrays(images, images, labels, labels), jax.random.key(1))
    key, task_key = jax.random.key(2), jax.random.key(3)
    _, rows = sample_rows(model, params, data, key, 10, task, task_key)
    # the reconstruction picture's order: input, the three draws, original
    assert rows[0][0].startswith("input") and rows[-1][0] == "original"
    assert [name.split("\n")[-1] for name, _ in rows[1:4]] == ["draw 1", "draw 2", "draw 3"]
    shown = np.asarray(data.test.images)[picture_indices(data.test.labels, 10)]
    np.testing.assert_array_equal(rows[-1][1], shown / 255.0)
    inputs, _ = task.make_example(shown, task_key)
    np.testing.assert_array_equal(rows[0][1], np.asarray(task.input_as_image(inputs, MNIST)))
    first = jax.random.fold_in(key, 0)
    np.testing.assert_array_equal(
        rows[1][1], generation.perturbed_code_samples(model, params, inputs, first))
    clean = generation.perturbed_code_samples(model, params, batches.to_float(shown), first)
    assert not np.array_equal(rows[1][1], clean)
    with pytest.raises(ValueError, match="task Denoise draws the inputs .*: give task_key="):
        sample_rows(model, params, data, key, 10, task)
    # a task that draws nothing needs no key: its codes are of the clean images
    _, plain = sample_rows(model, params, data, key, 10, tasks.Reconstruct())
    np.testing.assert_array_equal(plain[0][1], clean)


def test_the_cpu_compiler_options_stay_on_the_cpu(monkeypatch):
    """XLA:CPU's options reach the CPU's programs only: another backend's XLA may not know
    them."""
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert compiler.compiler_options() == compiler.CPU_COMPILER_OPTIONS
    assert "xla_cpu_copy_insertion_use_region_analysis" in compiler.compiler_options()
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert compiler.compiler_options() == {}
    assert compiler.compiler_options("cpu") == compiler.CPU_COMPILER_OPTIONS  # asked for by name


def test_a_denoising_autoencoder_s_latent_scatter_places_codes_of_its_corrupted_inputs():
    """generation.encode with the task encodes corrupted inputs, batch i corrupted as
    evaluation's batch i is (steps' example key); without it, the clean images."""
    from jaxae.evaluation import generation

    config = importlib.import_module("jaxae.configs.dae_dropout").get_config()
    model, task, _ = parts(config)
    params = fresh_state(config, model, task, jax.random.key(0)).params
    images = np.random.default_rng(0).integers(0, 256, (12, *MNIST), dtype=np.uint8)
    labels = np.arange(12) % 10
    key = jax.random.key(5)
    codes = generation.encode(model, params, images, labels, 5, task, key)
    batch = {"image": jax.numpy.asarray(images[5:10])}
    inputs, _, _ = steps.eval_example(task, batch, jax.random.fold_in(key, 1))  # evaluation's
    np.testing.assert_allclose(
        codes[5:10], generation.deterministic_codes(model, params, inputs), rtol=1e-6)
    clean = generation.encode(model, params, images, labels, 5)
    assert codes.shape == clean.shape == (12, config.model.latent_dim)
    assert not np.allclose(codes, clean)
    with pytest.raises(ValueError, match=r"^task Denoise draws the inputs it encodes from the "
                                         r"images \(a corruption or a binarised draw\): give "
                                         r"task_key= \(a run's Keys.eval"):
        generation.encode(model, params, images, labels, 5, task)
    # under dynamic binarisation the model is given Bernoulli draws, not the grey images
    binarised = tasks.Reconstruct(binarize_targets=True)
    drawn = generation.encode(model, params, images, labels, 5, binarised, key)
    inputs, _, _ = steps.eval_example(binarised, batch, jax.random.fold_in(key, 1))
    assert set(np.unique(np.asarray(inputs))) == {0, 1}
    np.testing.assert_allclose(
        drawn[5:10], generation.deterministic_codes(model, params, inputs), rtol=1e-6)
    assert not np.allclose(drawn, clean)
    np.testing.assert_array_equal(generation.encode(model, params, images, labels, 5,
                                                    tasks.Reconstruct()), clean)


def test_the_eval_key_streams_share_no_key_with_its_batches():
    """The IWAE bounds' samples and the blur fit's corruption draw from streams of the eval
    key that no evaluation batch's key (fold_in(eval, i), and its two halves) reaches."""
    from jaxae.keys import BLUR_FIT_STREAM, IWAE_STREAM

    eval_key = derive_keys(0).eval

    def data(key) -> bytes:
        return np.asarray(jax.random.key_data(key)).tobytes()

    batch_keys = set()
    for i in range(64):
        key = jax.random.fold_in(eval_key, i)
        batch_keys |= {data(key), *map(data, jax.random.split(key))}
    iwae_key = jax.random.fold_in(eval_key, IWAE_STREAM)
    streams = {data(jax.random.fold_in(eval_key, BLUR_FIT_STREAM)), data(iwae_key),
               *(data(jax.random.fold_in(iwae_key, j)) for j in range(64))}
    assert len(streams) == 66 and not streams & batch_keys


def test_a_fresh_run_of_a_users_model_says_the_scheme_replaces_its_initialisers(
        tiny_config, tmp_path, capsys):
    from jaxae import build

    (tmp_path / "small_models.py").write_text(tiny_model_source(28, encoder_bias=-3.0))
    name = f"{tmp_path / 'small_models.py'}:Tiny"
    config = config_lib.base_config()
    assert build.init_scheme_note(config) is None  # jaxae's own dense_ae
    config.model.name = "jaxae.models.autoencoders:DenseAE"  # the same class, by its module
    assert build.init_scheme_note(config) is None
    for scheme, bias in (("glorot", 0.0), ("lecun", -3.0)):
        state = train_and_evaluate(tiny_config(**{
            "model": {"name": name, "latent_dim": 4, "init": scheme},
            "train.stop_after_steps": 1}), str(tmp_path / scheme))
        out = capsys.readouterr().out
        assert ("note: model.init='glorot' redraws every Dense/Conv kernel and bias of "
                "Tiny, replacing any initialisers its modules give; "
                "--config.model.init=lecun keeps them") in out.splitlines() or scheme != "glorot"
        assert ("note: model.init" in out) == (scheme == "glorot")
        assert np.allclose(state.params["encoder"]["bias"], bias, atol=0.01)  # one step taken


def test_a_users_model_whose_own_latent_dim_the_base_config_replaces_is_told_so(
        tiny_config, tmp_path, capsys):
    """Tiny declares latent_dim = 4; a config that leaves model.latent_dim at the base's 10
    builds it with 10 (as before), and the fresh run says so and how to keep 4."""
    from jaxae import build

    (tmp_path / "small_models.py").write_text(tiny_model_source(28))
    name = f"{tmp_path / 'small_models.py'}:Tiny"
    config = config_lib.base_config()
    assert build.replaced_defaults_note(config) is None  # jaxae's own dense_ae
    note = ("note: model.latent_dim=10 (the base config's default) replaces Tiny's own 4; "
            "--config.model.latent_dim=4 keeps it")
    config.model.name = name
    assert build.replaced_defaults_note(config) == note
    for chosen in (4, 12):  # the class's own value, or one the config chose
        config.model.latent_dim = chosen
        assert build.replaced_defaults_note(config) is None
    state = train_and_evaluate(tiny_config(**{"model.name": name,
                                              "train.stop_after_steps": 1}),
                               str(tmp_path / "run"))
    assert note in capsys.readouterr().out.splitlines()
    assert state.params["encoder"]["kernel"].shape == (784, 10)  # the config's value, built


@pytest.mark.parametrize("how", ["by its file", "imported first", "by its short name"])
def test_a_model_file_edited_between_two_runs_of_one_process_trains_as_edited(
        how, tiny_config, tmp_path, monkeypatch):
    """A notebook trains, its model file is edited, it trains again: the second run trained
    the class as first imported while environment.json recorded the edited file's hash (the
    run could then be neither resumed nor evaluated, a mismatch blamed on config.json); also
    where the notebook imported the file itself first, or names a class it registers."""
    import hashlib
    import importlib

    from jaxae import models

    for registry_field in ("_entries", "_origins", "_files"):  # undone after the test
        monkeypatch.setattr(models.MODELS, registry_field,
                            dict(getattr(models.MODELS, registry_field)))
    stem = f"edited_models_{how.replace(' ', '_')}"
    path = tmp_path / f"{stem}.py"
    source = tiny_model_source(28, registered_as=f"{stem}_ae" if how == "by its short name"
                               else None)
    path.write_text(source)
    if how != "by its file":  # the notebook's own `import edited_models`, then the edit
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.delitem(sys.modules, stem, raising=False)
        importlib.import_module(stem)
    name = f"{stem}_ae" if how == "by its short name" else f"{path}:Tiny"
    config = tiny_config(**{"model": {"name": name, "latent_dim": 4},
                            "train.stop_after_steps": 1})
    if how != "imported first":  # (imported first: edited before jaxae ever used it)
        first = train_and_evaluate(config, str(tmp_path / "first"))
        assert first.params["encoder"]["kernel"].shape == (784, 4)
    time.sleep(1.01)  # an edit a second later at least: the .pyc records whole seconds
    path.write_text(source.replace('name="encoder"', 'name="edited_encoder"'))
    second = train_and_evaluate(config, str(tmp_path / "second"))
    assert sorted(second.params) == ["decoder", "edited_encoder"]
    with open(tmp_path / "second" / "environment.json") as f:
        recorded = json.load(f)["code_sha256"]["model"]
    assert recorded == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_file_registering_a_partial_runs_again_without_a_clash(tmp_path, monkeypatch):
    """Run again after an edit, a module registering a functools.partial (whose qualname
    holds an address that changes from run to run) was refused as "registered already"."""
    from jaxae import models, registry

    for registry_field in ("_entries", "_origins", "_files"):  # undone after the test
        monkeypatch.setattr(models.MODELS, registry_field,
                            dict(getattr(models.MODELS, registry_field)))
    path = tmp_path / "partial_models.py"
    source = tiny_model_source(28) + (
        "\nimport functools\n\n\ndef make(**fields):\n    return Tiny(**fields)\n\n\n"
        "models.register_model('partial_ae')(functools.partial(make, latent_dim=3))\n")
    path.write_text(source)
    registry.import_location(str(path))
    first = models.MODELS.registered("partial_ae")
    time.sleep(1.01)
    path.write_text(source + "# edited\n")
    registry.import_location(str(path))
    assert models.MODELS.registered("partial_ae") is not first  # run again, replaced


def test_only_a_name_in_pythons_own_modules_is_refused_not_a_users_odd_class(tmp_path):
    """A user's class made by dataclasses.make_dataclass has __module__ 'types' (exec'd:
    'builtins'); refused as the standard library's, it was a user's task."""
    import dataclasses as dc

    from jaxae import registry

    made = dc.make_dataclass("Dim", [("factor", int, 2)])
    assert made.__module__ in ("types", "builtins")
    assert registry._not_pythons_own(made, str(tmp_path / "mtask.py"), "x", "task") is made
    with pytest.raises(registry.RegistryError, match="part of Python's standard library"):
        registry._not_pythons_own(os.system, "os", "os:system", "model")
    import shutil

    with pytest.raises(registry.RegistryError, match="part of Python's standard library"):
        registry._not_pythons_own(shutil.rmtree, shutil.__file__, "x", "data set")  # by file
    assert registry._not_pythons_own(np.add, np.__file__, "x", "loss") is np.add  # installed


def test_the_running_script_is_never_run_again(tmp_path):
    """A sweep script naming its own file's class, edited while it runs: it is used as first
    defined (running __main__ again would run the sweep again; it failed with a traceback)."""
    import types

    from jaxae import registry

    script = tmp_path / "sweep.py"
    script.write_text("RAN = 1\n")
    main = types.ModuleType("__main__")
    main.__file__, main.__spec__ = str(script), None
    assert registry._as_on_disk(main, str(script)) is main
    script.write_text("raise SystemExit('ran again')\n")
    assert registry._as_on_disk(main, str(script)) is main


def test_a_model_registered_by_the_running_script_is_warned_of(monkeypatch, capsys):
    """evaluate.py, another process, cannot import a name the training script registered
    itself: the run says so before it starts, with the two ways out."""
    from jaxae import models
    from jaxae.training import trainer

    for registry_field in ("_entries", "_origins", "_files"):  # undone after the test
        monkeypatch.setattr(models.MODELS, registry_field,
                            dict(getattr(models.MODELS, registry_field)))

    @models.register_model("script_registered_ae")
    class ScriptAE(models.Autoencoder):
        pass

    models.MODELS._origins["script_registered_ae"] = "__main__"
    config = config_lib.base_config()
    trainer._warn_of_script_registrations(config)
    assert capsys.readouterr().err == ""  # dense_ae: jaxae's own
    with config.unlocked():
        config.model.name = "script_registered_ae"
    trainer._warn_of_script_registrations(config)
    assert capsys.readouterr().err == (
        "warning: model 'script_registered_ae' is registered by the running script, which "
        "evaluate.py cannot import: evaluate this run with "
        "jaxae.evaluation.evaluate.evaluate_workdir from a script that registers it, or move "
        "the model into a module file and name it 'my_models.py:script_registered_ae'\n")


def test_a_checkpoint_that_no_longer_fits_a_script_registered_model_names_its_code(
        tiny_config, tmp_path, monkeypatch):
    """A notebook's model redefined with other layers, then resumed: the mismatch blamed only
    an edited config.json (or another run's step), not the model's code, whose hash no run
    records outside a file."""
    from jaxae import models
    from jaxae.training.checkpoints import CheckpointMismatch

    for registry_field in ("_entries", "_origins", "_files"):  # undone after the test
        monkeypatch.setattr(models.MODELS, registry_field,
                            dict(getattr(models.MODELS, registry_field)))

    def notebook_ae(layer: str):  # a notebook cell defining and registering a model
        cell = tiny_model_source(28, registered_as="notebook_ae")
        exec(cell.replace('name="encoder"', f'name="{layer}"'), {"__name__": "__main__"})

    notebook_ae("encoder")
    config = tiny_config(**{"model": {"name": "notebook_ae", "latent_dim": 4},
                            "train.stop_after_steps": 1})
    train_and_evaluate(config, str(tmp_path))
    notebook_ae("encoder_2")  # the cell redefined and run again
    with pytest.raises(CheckpointMismatch) as caught:
        train_and_evaluate(tiny_config(**{"model": {"name": "notebook_ae", "latent_dim": 4}}),
                           str(tmp_path))
    assert str(caught.value).endswith(
        "the run's config.json and model code describe another model than that step's (a "
        "config.json edited since, a step of another run's, or the code of model "
        "'notebook_ae' changed since the run trained: only code in a file has its hash "
        "recorded): put back the run's own config.json or code, or move that step's folder "
        "out of the checkpoints")


def test_more_steps_than_a_run_counts_is_one_line_before_anything_is_written(tiny_config,
                                                                              tmp_path):
    config = tiny_config(**{"train.num_epochs": 200_000_000})  # 16 steps an epoch
    with pytest.raises(ConfigError, match=r"config.train.num_epochs=200000000 asks for "
                                          r"3,200,000,000 steps of 16 an epoch, more than a run "
                                          r"counts \(2,147,483,647\): use at most 134,217,727"):
        train_and_evaluate(config, str(tmp_path / "long"))
    assert not os.path.exists(tmp_path / "long")


def test_a_latent_scatter_of_many_classes_draws_those_its_points_have(tmp_path):
    """100,000 class names and 16 points: one scatter per class present (a call per named
    class took minutes), the PNG written."""
    import matplotlib.axes

    from jaxae.evaluation import plots

    calls = []
    scatter = matplotlib.axes.Axes.scatter

    def counted(self, *args, **kwargs):
        calls.append(True)
        return scatter(self, *args, **kwargs)

    path = str(tmp_path / "scatter.png")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(matplotlib.axes.Axes, "scatter", counted)
        plots.latent_scatter(np.random.default_rng(0).random((16, 2)), np.arange(16) * 5000,
                             tuple(str(i) for i in range(100_000)), "t", path, ("x", "y"))
    assert len(calls) == 16
    assert matplotlib.image.imread(path).shape[2] in (3, 4)


def test_the_validation_split_draws_noise_of_its_own():
    """The same images as validation and test split: each draws its own corruption (batch i
    of both drew fold_in(eval, i) before), so their figures differ by the draws alone."""
    from jaxae.data.splits import Split, Splits
    from jaxae.evaluation.metrics import evaluate_splits

    split = Split(np.zeros((8, 2, 2, 1), np.uint8), np.zeros(8, np.int32))
    data = Splits(split, split, split, ("a",), "zeros")

    def eval_step(params, batch, key):
        return {"draw": jnp.sum(jax.random.normal(key, (4,)) * batch["mask"]),
                "count": jnp.sum(batch["mask"])}

    out = evaluate_splits(eval_step, {}, data, 4, jax.random.key(0))
    assert out["val_draw"] != out["test_draw"]
    again = evaluate_splits(eval_step, {}, data, 4, jax.random.key(0))
    assert again == out  # and the same draws at every evaluation


def test_a_users_batchnorm_model_resumes_bitwise_and_evaluates_on_its_running_averages(
        tiny_config, tmp_path):
    """The running averages are part of the run: checkpointed, restored on a resume (which
    then ends bitwise equal to an uninterrupted run) and read by evaluate.py. The model is
    examples/my_models.py's NormedAE (BatchNorm and Dropout), named by its file."""
    examples = os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples")
    config = tiny_config(**{"model": {"name": os.path.join(examples, "my_models.py:NormedAE"),
                                      "latent_dim": 4, "hidden": 32}})
    whole = train_and_evaluate(config, str(tmp_path / "whole"))
    averages = jax.device_get(whole.model_state["batch_stats"]["norm"]["mean"])
    assert averages.shape == (32,) and np.abs(averages).max() > 0  # trained, not as made
    config.train.stop_after_steps = 21
    train_and_evaluate(config, str(tmp_path / "split"))
    config.train.stop_after_steps = None
    resumed = train_and_evaluate(config, str(tmp_path / "split"))
    assert int(resumed.step) == int(whole.step) == 32
    assert_bitwise_equal(whole.params, resumed.params, "resumed and uninterrupted parameters")
    assert_bitwise_equal(whole.model_state, resumed.model_state,
                         "resumed and uninterrupted running averages")
    assert metrics_lines(tmp_path / "whole") == metrics_lines(tmp_path / "split")
    evaluated = evaluate_workdir(str(tmp_path / "whole"))
    last = [r for r in metrics_lines(tmp_path / "whole") if "test_mse" in r][-1]
    assert evaluated["test_mse"] == last["test_mse"]  # the same averages as at training's end
    assert os.path.exists(tmp_path / "whole" / "eval" / "reconstructions.png")


def test_a_conditional_model_needs_two_trained_classes_and_names_the_untrained_ones():
    """The data's class names counted for the "two classes" check: training images of one
    class under two names trained a cvae that learnt no class's effect; classes without a
    training image gave samples of an untrained class input, counted in its figures."""
    import types

    config = config_lib.base_config()
    config.model = config_lib.ml_collections.ConfigDict({"name": "cvae", "latent_dim": 2})
    conditional = types.SimpleNamespace(conditional=True)  # what the model declares decides
    plain = types.SimpleNamespace(conditional=False)
    names = ("cat", "dog", "fox", "owl")
    with pytest.raises(ConfigError, match=r"^config.model \(cvae\) is conditional on the class, "
                                          r"but the training images hold 1 class \(cat\) of the "
                                          r"data's 4: give training images of two classes"):
        build.classes_note(config, conditional, np.zeros(8, np.int32), names)
    assert build.classes_note(config, conditional, np.array([0, 2, 0, 2]), names) == (
        "warning: 2 of the data's 4 classes have no training image (dog, owl): config.model "
        "(cvae)'s samples of them come from an untrained class input, and the figures over "
        "classes count them")
    assert build.classes_note(config, conditional, np.arange(8) % 4, names) is None
    assert build.classes_note(config, plain, np.zeros(8, np.int32), names) is None


def test_a_padded_image_with_an_infinite_figure_leaves_the_sums_finite():
    """Padding fills the last batch; a padded image's figure (a bound of -inf at a tiny
    Gaussian sigma, a NaN) is left out of the sums, where multiplying it by 0 made them NaN."""
    per_image = {"elbo": jnp.array([-2.0, -jnp.inf, jnp.nan]), "psnr": jnp.array([1.5, 2.5, 3.5])}
    batch = {"image": jnp.zeros((3, 2)), "mask": jnp.array([1.0, 0.0, 0.0])}
    sums = steps._masked_sums(per_image, batch)
    assert float(sums["elbo"]) == -2.0 and float(sums["psnr"]) == 1.5
    assert float(sums["count"]) == 1.0
