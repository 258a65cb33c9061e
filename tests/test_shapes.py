"""Images of any shape: models, tasks, training, evaluation and pictures on arrays that are
not 28x28x1 (random pixels: these are shape tests; quality is measured on real images)."""

import os

import matplotlib.image
import numpy as np
import pytest

from jaxae.config import base_config
from jaxae.evaluation.evaluate import evaluate_workdir
from jaxae.training.trainer import train_and_evaluate
from tests.conftest import set_fields


def write_npz(path, image_shape, num_train=32, num_test=16, num_classes=3):
    rng = np.random.default_rng(0)
    np.savez(path, train_images=rng.integers(0, 256, (num_train, *image_shape), np.uint8),
             test_images=rng.integers(0, 256, (num_test, *image_shape), np.uint8),
             train_labels=rng.integers(0, num_classes, num_train),
             test_labels=rng.integers(0, num_classes, num_test),
             class_names=np.array([f"class {c}" for c in range(num_classes)]))
    return str(path)


def tiny_array_config(path, **overrides):
    config = base_config()
    set_fields(config, {"data.name": "npz", "data.path": path, "train.batch_size": 8,
                        "train.num_epochs": 1, "train.log_every_steps": 2,
                        "eval.batch_size": 8, "eval.num_images": 4, "eval.iwae_samples": (1,),
                        "eval.iwae_images": 8, "eval.manifold_size": 3, **overrides})
    return config


@pytest.mark.parametrize("model, image_shape, objective", [  # each model and shape once
    ({"name": "conv_ae", "conv": "patches"}, (32, 32, 3), {"objective.loss": "bce"}),
    ({"name": "conv_vae", "latent_dim": 2}, (64, 64, 1), {})])  # a VAE's: -ELBO
def test_conv_models_train_and_evaluate_on_other_shapes(tmp_path, image_shape, model,
                                                        objective):
    config = tiny_array_config(write_npz(tmp_path / "data.npz", image_shape), model=model,
                               **objective)
    workdir = str(tmp_path / "run")
    state = train_and_evaluate(config, workdir)
    assert int(state.step) == 4
    result = evaluate_workdir(workdir)
    assert result["test_images"] == 16 and np.isfinite(result["test_loss"])
    expected = {"reconstructions.png", "samples.png", "latent_scatter.png"}
    if model["name"] == "conv_vae":  # a 2-D latent: the manifold too
        expected.add("manifold.png")
        assert result["test_iwae_k1"] < 0
    assert set(result["pictures"]) == expected
    picture = matplotlib.image.imread(os.path.join(workdir, "eval", "reconstructions.png"))
    colour = np.abs(picture[..., 0] - picture[..., 1]).max() > 0.05
    assert colour == (image_shape[-1] == 3)  # colour images are drawn in colour


@pytest.mark.parametrize("model, num_test", [({"name": "dense_ae", "latent_dim": 1}, 16),
                                             ({"name": "dense_ae", "latent_dim": 3}, 1),
                                             ({"name": "vae", "latent_dim": 2}, 1)])
def test_a_one_dimensional_code_or_a_single_test_image_still_gets_its_scatter(
        tmp_path, capsys, model, num_test):
    """A 1-D code is drawn against the class; one test image has one principal direction.
    Pictures of more images than the test split has show those it has, and say so."""
    path = write_npz(tmp_path / "data.npz", (8, 8, 1), num_test=num_test)
    config = tiny_array_config(path, model=model)
    workdir = str(tmp_path / "run")
    train_and_evaluate(config, workdir)
    capsys.readouterr()
    result = evaluate_workdir(workdir, overrides={"eval.num_images": 12})
    note = (f"note: eval.num_images=12 is more than the test split's {num_test} images: the "
            f"pictures of test images show those {num_test}")
    assert (note in capsys.readouterr().out) == (num_test < 12)
    assert result["test_images"] == num_test
    assert "test_active_units" not in result  # a variance over one image is none
    assert "latent_scatter.png" in result["pictures"]
    assert os.path.isfile(os.path.join(workdir, "eval", "metrics.json"))
    assert matplotlib.image.imread(os.path.join(workdir, "eval", "latent_scatter.png")).ndim == 3


def test_colour_pictures_and_many_classes(tmp_path):
    """RGB grids (reconstructions, samples) and manifolds are drawn in colour; with more
    classes than a palette has colours, each class keeps its own colour and marker, and the
    legend (class names from the data) is drawn in columns."""
    from jaxae.evaluation import plots

    red = np.zeros((3, 8, 8, 3))
    red[..., 0] = 1.0
    plots.image_rows([("row", red)], "t", str(tmp_path / "rows.png"))
    plots.manifold(red.reshape(3, 1, 8, 8, 3).repeat(3, axis=1), np.arange(3), np.arange(3),
                   "t", str(tmp_path / "manifold.png"))
    for name in ("rows.png", "manifold.png"):
        picture = matplotlib.image.imread(str(tmp_path / name))
        assert np.abs(picture[..., 0] - picture[..., 1]).max() > 0.9, name
    names = tuple(f"class number {c}" for c in range(45))
    styles = plots.class_styles(len(names))
    assert len(set(styles)) == len(names)
    assert plots.class_styles(10) == [(matplotlib.colormaps["tab10"](c), "o") for c in range(10)]
    # 11 to 20 classes: tab20 paired a dark and a pale shade of each hue (pale ones lost on
    # white); tab10's colours, the second ten as triangles
    tab10 = [matplotlib.colormaps["tab10"](c) for c in range(10)]
    assert plots.class_styles(12) == [(tab10[c % 10], "o" if c < 10 else "^")
                                      for c in range(12)]
    assert plots.dot_size(10_000) == 3 and plots.dot_size(6) == 40  # a handful of points seen
    rng = np.random.default_rng(0)
    path = str(tmp_path / "scatter.png")
    plots.latent_scatter(rng.normal(size=(450, 2)), np.arange(450) % 45, names, "t", path,
                         ("a", "b"))
    assert matplotlib.image.imread(path).shape[1] > 850  # widened for two legend columns


def test_a_scatter_draws_each_point_once_and_no_class_always_over_the_others():
    """Drawn class by class the last class covered the rest where they overlap (Ankle boot
    over Sneaker): classes are spread over groups and take turns at being drawn last."""
    from jaxae.evaluation import plots

    labels = np.repeat([0, 1, 2], [600, 300, 100])
    groups = plots.draw_groups(labels)
    every = np.concatenate(groups)
    assert len(groups) == 20 and sorted(every.tolist()) == list(range(1000))
    last_quarter = np.concatenate(groups[-5:])
    np.testing.assert_allclose(np.bincount(labels[last_quarter]) / len(last_quarter),
                               [0.6, 0.3, 0.1], atol=0.03)
    assert {int(labels[group[-1]]) for group in groups} == {0, 1, 2}  # each drawn last
    assert all((np.diff(labels[group]) != 0).sum() <= 2 for group in groups)  # class blocks


def test_large_images_get_a_picture_pixel_each_and_wrapped_blocks_stand_apart(tmp_path):
    from jaxae.evaluation import plots

    images = np.random.default_rng(0).random((6, 128, 128, 3))
    plots.image_rows([("output", images), ("original", images)], "t", str(tmp_path / "l.png"))
    assert matplotlib.image.imread(str(tmp_path / "l.png")).shape[1] >= 6 * 130
    rows = [("output", np.zeros((40, 4, 4, 1))), ("original", np.zeros((40, 4, 4, 1)))]
    plots.image_rows(rows, "t", str(tmp_path / "w.png"))
    picture = matplotlib.image.imread(str(tmp_path / "w.png"))[..., :3].min(-1)
    white_runs = [len(run) for run in "".join("w" if v > 0.99 else "." for v in
                  picture[:, picture.shape[1] // 2]).split(".") if run]
    assert max(white_runs[1:-1]) > 2 * min(white_runs[1:-1])  # between blocks: a wider gap


@pytest.mark.parametrize("task, model", [
    ({"task.name": "superresolve", "task.factor": 4}, {"name": "superres"}),
    ({"task.name": "denoise", "task.corruption": "gaussian"}, {"name": "dense_ae"}),
])
def test_tasks_and_dense_models_at_another_shape(tmp_path, task, model):
    config = tiny_array_config(write_npz(tmp_path / "data.npz", (16, 24, 3)), model=model,
                               **task)
    workdir = str(tmp_path / "run")
    train_and_evaluate(config, workdir)
    result = evaluate_workdir(workdir)
    assert 0 < result["test_input_psnr"] < 40 and 0 < result["test_baseline_psnr"] < 40


def test_a_factor_that_does_not_divide_the_images_is_one_line(tmp_path):
    from jaxae.config import ConfigError

    config = tiny_array_config(write_npz(tmp_path / "data.npz", (16, 24, 3)),
                               model={"name": "superres"}, **{"task.name": "superresolve",
                                                             "task.factor": 3})
    with pytest.raises(ConfigError, match=r"config.task.factor=3 does not divide the 16x24 "
                                          r"images: use one of 2, 4, 8"):
        train_and_evaluate(config, str(tmp_path / "run"))


def test_rows_of_many_images_wrap_into_blocks_of_equal_width(tmp_path):
    """40 images a row: three blocks of 14, 14 and 12 columns, each with both rows in order;
    the picture is no wider than one of 16 columns."""
    from jaxae.evaluation import plots

    images = np.linspace(0, 1, 40)[:, None, None, None] * np.ones((40, 4, 4, 1))
    blocks = plots.wrapped([("output", images), ("original", images)])
    assert [(label, len(row)) for label, row in blocks] == [
        ("output", 14), ("original", 14), ("output", 14), ("original", 14),
        ("output", 12), ("original", 12)]
    np.testing.assert_array_equal(np.concatenate([row for _, row in blocks[::2]]), images)
    assert plots.wrapped([("row", images[:16])])[0][1].shape == (16, 4, 4, 1)
    plots.image_rows([("output", images), ("original", images)], "t", str(tmp_path / "w.png"))
    plots.image_rows([("row", images[:16])], "t", str(tmp_path / "n.png"))
    wide, narrow = (matplotlib.image.imread(str(tmp_path / n)).shape for n in ("w.png", "n.png"))
    assert wide[1] <= narrow[1] and wide[0] > 3 * narrow[0]


def test_a_one_dimensional_codes_scatter_names_each_class_on_its_row(tmp_path, monkeypatch):
    """Its y axis is the class: its ticks were the class numbers, named only by colour in the
    legend."""
    import matplotlib.figure

    from jaxae.evaluation import plots

    ticks = []
    save = matplotlib.figure.Figure.savefig

    def saving(fig, *args, **kwargs):
        ticks.append([t.get_text() for t in fig.axes[0].get_yticklabels()])
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", saving)
    labels = np.arange(30) % 3
    points = np.stack([np.linspace(0, 1, 30), labels], axis=1)
    plots.latent_scatter(points, labels, ("T-shirt/top", "Trouser", "Pullover"), "t",
                         str(tmp_path / "s.png"), ("code[0]", "class"), y_is_class=True)
    assert ticks == [["T-shirt/top", "Trouser", "Pullover"]]


def test_a_manifold_keeps_every_image_pixel_and_its_ticks_read_as_the_grid_they_label(
        tmp_path, monkeypatch):
    """A grid of 128-pixel images was squeezed into a 16-inch figure (columns of pixels
    lost); ticks rounded to two digits made an even grid read uneven; an axis along which the
    codes do not vary gave rows all labelled alike, unexplained."""
    from jaxae.evaluation import plots

    assert plots.tick_labels(np.linspace(9.1, 20.5, 7)) == [
        "9.1", "11.0", "12.9", "14.8", "16.7", "18.6", "20.5"]
    assert plots.tick_labels(np.array([-1.64, -0.5, 0.0, 0.5, 1.64])) == [
        "-1.64", "-0.50", "0.00", "0.50", "1.64"]
    labels = {}
    save = matplotlib.figure.Figure.savefig

    def saving(fig, *args, **kwargs):
        ax = fig.axes[0]
        labels.update(x=ax.get_xlabel(), y=ax.get_ylabel())
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", saving)
    tiles = np.zeros((3, 13, 128, 128, 1))
    tiles[..., ::2, :, :] = 1.0  # stripes one image pixel high
    path = str(tmp_path / "manifold.png")
    plots.manifold(tiles, np.arange(13.0), np.zeros(3), "t", path)
    picture = matplotlib.image.imread(path)
    assert picture.shape[1] >= 13 * 128  # at least a picture pixel per image pixel
    assert picture.shape[0] < picture.shape[1] / 2  # the figure takes the grid's shape
    assert labels == {"x": "z[0]",
                      "y": "z[1]: one value, 0 (the codes do not vary along it)"}


def test_a_one_dimensional_codes_picture_spreads_each_class_into_a_band():
    """On one line per class, a class's points drew a solid bar from its least code to its
    largest: offsets without a draw spread them evenly over a band."""
    from jaxae.evaluation import pictures

    offsets = pictures.band_offsets(1000)
    assert np.abs(offsets).max() <= pictures.BAND / 2
    counts = np.histogram(offsets, bins=6, range=(-0.3, 0.3))[0]
    assert counts.min() >= 150 and counts.max() <= 184  # evenly spread
    assert np.array_equal(offsets, pictures.band_offsets(1000))

