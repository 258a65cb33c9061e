"""The README's library script runs as written, in a process of its own."""

import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_script(out: str) -> str:
    """The README's library script, writing under `out` (each test its own folder: two at
    once would share the script's /tmp/jaxae_library)."""
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    section = readme.split("## Use it as a library", 1)[1]
    script = re.search(r"```python\n(.*?)```", section, re.DOTALL)[1]
    assert "/tmp/jaxae_library" in script
    return script.replace("/tmp/jaxae_library", out)


def test_the_readmes_library_script_trains_checkpoints_and_samples_on_a_data_set_of_any_size(
        fashion_tfds_dir, tmp_path):
    """As written, on Fashion-MNIST; then, in the same process, on a reader's own 300 colour
    images (fewer than the 4,096 it first read): the script's loop takes full batches of
    whatever images it is given, and they train and sample too (small ones: their size is
    not what is checked)."""
    as_written = readme_script(str(tmp_path / "out")) + (
        "\nimport numpy as np\n"
        "assert samples.shape == (16, *data.image_shape) and np.isfinite(samples).all()\n"
        "print('samples', samples.shape)\n")
    line = 'data = load_dataset("fashion_mnist")'
    own = readme_script(str(tmp_path / "own"))
    assert line in own
    own = own.replace(line, (
        "import numpy as np\n"
        "from jaxae.data import from_arrays\n"
        "pixels = np.random.default_rng(0).integers(0, 256, (340, 4, 4, 3), np.uint8)\n"
        "data = from_arrays(pixels[:300], pixels[300:])"))
    own += "\nassert samples.shape == (16, 4, 4, 3) and np.isfinite(samples).all()\n"
    path = tmp_path / "library.py"
    path.write_text(as_written + "\nprint('own images')\n" + own)
    result = subprocess.run([sys.executable, str(path)], cwd=str(tmp_path), text=True,
                            capture_output=True, timeout=300,
                            env={**os.environ, "TFDS_DATA_DIR": fashion_tfds_dir})
    assert result.returncode == 0, result.stderr[-3000:]
    fashion, _, mine = result.stdout.partition("own images\n")
    nats = float(re.search(r"-ELBO after 300 steps: (\S+) nats", fashion)[1])
    assert 200 < nats < 400, result.stdout  # a 2-D VAE on Fashion-MNIST after 300 steps
    assert "samples (16, 28, 28, 1)" in fashion
    assert re.search(r"-ELBO after 300 steps: \S+ nats", mine), result.stdout


@pytest.mark.parametrize("overrides", [
    {"model": {"name": "vae", "latent_dim": 2}, "optim.schedule": "cosine"},
    {"task.name": "denoise", "model.latent_dim": 32, "data.subset": "random"},
    {"data.streaming": "stream"},  # larger than memory: StreamedBatches reads it from disk
])
def test_the_own_loop_example_trains_to_train_pys_bits(tiny_config, tmp_path, overrides):
    """examples/own_loop.py, jaxae's parts in a plain Python loop, ends where train.py does:
    the same splits, keys, initialisation, order and steps (sampling and corruption too)."""
    from examples import own_loop
    from jaxae.training.trainer import train_and_evaluate

    config = tiny_config(**{"data.train_size": 256, "train.num_epochs": 2, **overrides})
    trained = train_and_evaluate(config, str(tmp_path / "run"))
    if "data.streaming" in overrides:
        from jaxae import build
        from jaxae.keys import derive_keys

        assert build.load_data(config, derive_keys(config.seed).data).streamed
    mine = own_loop.train(config)
    assert int(mine.step) == int(trained.step) == 16
    for ours, theirs in zip(jax.tree.leaves(mine.params), jax.tree.leaves(trained.params),
                            strict=True):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))


def test_load_trained_gives_a_train_py_runs_model_and_parameters_whatever_its_optimiser(
        tiny_config, tmp_path):
    from jaxae.evaluation import generation
    from jaxae.evaluation.evaluate import load_trained
    from jaxae.training.trainer import train_and_evaluate

    config = tiny_config(**{"model": {"name": "vae", "latent_dim": 2},
                            "optim.name": "sgd", "train.stop_after_steps": 3})
    state = train_and_evaluate(config, str(tmp_path))
    run = load_trained(str(tmp_path))
    assert run.step == 3 and run.model.variational and run.config.optim.name == "sgd"
    assert jax.tree.all(jax.tree.map(np.array_equal, run.params, state.params))
    assert run.data.image_shape == (28, 28, 1) and len(run.data.train) == 512
    samples = generation.prior_samples(run.model, run.params, jax.random.key(0), 4)
    assert samples.shape == (4, 28, 28, 1)
    with pytest.raises(FileNotFoundError, match=r"has no checkpoint at step 2: it has steps 3"):
        load_trained(str(tmp_path), step=2)


def test_the_pca_baseline_fits_on_training_images_spread_over_the_split(
        tiny_config, tmp_path, capsys):
    import json

    from jaxae.training.trainer import train_and_evaluate
    from scripts import pca_baseline

    train_and_evaluate(tiny_config(**{"train.stop_after_steps": 1}), str(tmp_path))
    pca_baseline.main(["--workdir", str(tmp_path), "--k", "4", "--train-images", "100"])
    assert "# PCA fitted on 100 of the 512 training images, spread over them" in \
        capsys.readouterr().out
    record = json.loads((tmp_path / "eval" / "pca_baseline.json").read_text())
    assert record["train_images"] == 100 and set(record["pca"]) == {"4"}
    pca_baseline.main(["--workdir", str(tmp_path), "--k", "4"])  # 512 fit the default bound
    assert json.loads((tmp_path / "eval" / "pca_baseline.json").read_text())[
        "train_images"] == 512


def test_the_own_loop_example_takes_a_config_file_as_train_py_does():
    from examples import own_loop

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    by_file = own_loop.load_config_file(os.path.join(root, "configs", "test.py"))
    assert by_file.to_json() == own_loop.load_config_file("test").to_json()
    shown = subprocess.run([sys.executable, os.path.join(root, "examples", "own_loop.py"),
                            "--help"], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and "usage: python examples/own_loop.py CONFIG.py" in \
        shown.stdout


def test_the_own_loop_example_says_a_wrong_config_in_one_line(tmp_path):
    """As train.py does: it had ended in tracebacks (ModuleNotFoundError, AttributeError,
    ConfigError)."""
    from examples import own_loop

    bare = tmp_path / "bare.py"
    bare.write_text("x = 1\n")
    zero = tmp_path / "zero.py"
    zero.write_text("from jaxae.configs.test import get_config as test\n\n\ndef get_config():\n"
                    "    c = test()\n    c.train.batch_size = 0\n    return c\n")
    for argv, said in [(["nope"], "error: 'nope' is no config file and no shipped config's "
                                  "name: give a config file, e.g. configs/test.py"),
                       ([str(bare)], f"error: config file {str(bare)!r} defines no get_config()"),
                       ([str(zero)], "error: config.train.batch_size=0 must be a positive")]:
        with pytest.raises(SystemExit) as caught:
            own_loop.main(argv)
        assert str(caught.value).startswith(said), caught.value


def test_the_own_loop_example_runs_a_config_that_imports_its_neighbour(tmp_path, monkeypatch):
    """A config's `import` of a module beside it (as train.py loads it) failed there with a
    bare ModuleNotFoundError."""
    from examples import own_loop

    (tmp_path / "neighbour_sizes.py").write_text("CODE = 3\n")
    (tmp_path / "cfg.py").write_text("import neighbour_sizes\nfrom jaxae.configs import test\n"
                                     "\n\ndef get_config():\n    config = test.get_config()\n"
                                     "    config.model.latent_dim = neighbour_sizes.CODE\n"
                                     "    return config\n")
    monkeypatch.setattr(sys, "path", list(sys.path))  # the folder it adds, taken away after
    monkeypatch.chdir("/")
    try:
        assert own_loop.load_config_file(str(tmp_path / "cfg.py")).model.latent_dim == 3
    finally:
        sys.modules.pop("neighbour_sizes", None)


def test_the_own_loop_example_finds_a_model_file_beside_its_config_from_any_folder(
        tmp_path, monkeypatch):
    """examples/my_config.py names "my_models.py:DeeperVAE", beside it: found from another
    folder, as train.py finds it, and the model builds."""
    from examples import own_loop
    from jaxae import build
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    monkeypatch.chdir(tmp_path)
    config = own_loop.load_config_file(os.path.join(root, "examples", "my_config.py"))
    assert config.model.name == f"{os.path.join(root, 'examples', 'my_models.py')}:DeeperVAE"
    assert type(build.make_model(config, (28, 28, 1), 10)).__name__ == "DeeperVAE"


def test_my_parts_keep_their_contracts_and_a_data_set_takes_fields_of_its_own(monkeypatch):
    """examples/my_parts.py (docs/extending.md): its task and likelihood pass the checks made
    before compiling, its loss too, and its data set's own parameters are config.data fields
    (set in a config file; a misspelt one refused)."""
    from examples import own_loop
    from jaxae import build, models, objectives
    from jaxae import config as config_lib

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    monkeypatch.chdir("/")
    config = own_loop.load_config_file(os.path.join(root, "examples", "my_parts_config.py"))
    parts = os.path.join(root, "examples", "my_parts.py")
    assert (config.task.name, config.objective.likelihood) == (f"{parts}:Inpaint",
                                                               f"{parts}:Laplace")
    config_lib.validate(config)
    task, model, _, objective = build.run_objects(config, (28, 28, 1), 10)
    assert task.hole == 10 and objective.likelihood.laplace_scale == 0.1
    dense = models.build_model({"name": "dense_ae", "latent_dim": 4}, image_shape=(28, 28, 1))
    l1 = objectives.LOSSES.get(f"{parts}:l1")
    build.check_objective(objectives.Reconstruction(l1), dense, (28, 28, 1), "objective.loss")
    with config.unlocked():  # as a config file may set it (open until the config is loaded)
        config.data.name, config.data.size = f"{parts}:gradients", 12
        config.data.train_size = config.data.test_size = None
    config_lib.validate(config)
    data = build.load_data(config, jax.random.key(0))
    assert data.image_shape == (12, 12, 1) and (len(data.train), len(data.test)) == (500, 100)
    with config.unlocked():
        config.data.siez = 12
    with pytest.raises(config_lib.ConfigError, match=r"^config.data.siez is neither a field of "
                                                     r"config.data nor one the data set '.*"
                                                     r"my_parts.py:gradients' reads: did you "
                                                     r"mean 'size'\? the data set reads count, "
                                                     r"size$"):
        config_lib.validate(config)


def test_the_own_loop_example_refuses_a_field_its_run_would_ignore_as_train_py_does(
        tiny_config):
    from examples import own_loop
    from jaxae import config as config_lib

    with pytest.raises(config_lib.ConfigError, match=r"^config.objective.beta_warmup_steps=100 "
                                                     r"is set, but model 'dense_ae' minimises "
                                                     r"objective.loss"):
        own_loop.train(tiny_config(**{"objective.beta_warmup_steps": 100}))
