"""How well a 2-D picture keeps the classes apart (leave-one-out k-NN accuracy), PCA's picture
of the pixels it is compared with, and the latent scatter's panel that shows both."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from jaxae.data import load_dataset
from jaxae.data.splits import Split, Splits
from jaxae.evaluation import embedding, pictures


@pytest.fixture(scope="module")
def fashion_slice(fashion_tfds_dir):
    """Real Fashion-MNIST images (the session's slice: the tests take a few hundred)."""
    return load_dataset("fashion_mnist", tfds_dir=fashion_tfds_dir)


def test_neighbour_accuracy_on_a_hand_example():
    points = np.array([[0.0, 0], [1, 0], [3, 0], [6, 0], [10, 0]])
    labels = np.array([0, 0, 1, 1, 0])
    # nearest other point: 1 (class 0, right), 0 (right), 1 (class 0, wrong), 3 (right),
    # 6 (class 1, wrong)
    assert embedding.neighbour_accuracy(points, labels, k=1) == pytest.approx(3 / 5)
    # three neighbours: 0 -> {1, 3, 6}: 0, 1, 1 -> class 1, wrong; 1 -> {0, 3, 6}: wrong;
    # 3 -> {1, 0, 6}: 0, 0, 1 -> wrong; 6 -> {3, 1, 10}: 1, 0, 0 -> wrong; 10 -> {6, 3, 1}:
    # 1, 1, 0 -> wrong
    assert embedding.neighbour_accuracy(points, labels, k=3) == 0.0
    apart = np.concatenate([np.zeros((6, 2)), np.full((6, 2), 100.0)])
    apart += np.random.default_rng(0).normal(size=apart.shape)
    assert embedding.neighbour_accuracy(apart, np.repeat([0, 1], 6)) == 1.0
    with pytest.raises(ValueError, match="5 points cannot be scored by their 5 nearest"):
        embedding.neighbour_accuracy(points, labels)


def test_the_nearest_others_are_by_distance_then_index_as_a_full_search_finds_them():
    """The k-d tree's neighbours, and where the k-th distance is shared beyond the k (a
    grid of codes, a collapsed code's duplicates), the lower index: as a stable sort of
    all distances gives them."""
    rng = np.random.default_rng(3)
    spread = rng.normal(size=(400, 2))
    cases = {"spread": spread, "grid": np.round(spread * 2),
             "collapsed": np.where(rng.random((400, 1)) < 0.4, 0.0, spread)}
    for name, points in cases.items():
        squared = ((points[:, None] - points[None]) ** 2).sum(axis=2)
        np.fill_diagonal(squared, np.inf)
        for k in (1, 5):
            expected = np.sort(np.argsort(squared, axis=1, kind="stable")[:, :k], axis=1)
            found = np.sort(embedding.nearest_others(points, k), axis=1)
            np.testing.assert_array_equal(found, expected, err_msg=f"{name}, k={k}")
    labels = rng.integers(0, 3, 400)
    diverged = cases["grid"].copy()
    diverged[::7] = np.nan  # a diverged code's points: misses, and no one's neighbours
    kept = np.ones(400, bool)
    kept[::7] = False
    assert embedding.neighbour_accuracy(diverged, labels) == pytest.approx(
        embedding.neighbour_accuracy(cases["grid"][kept], labels[kept]) * kept.sum() / 400)
    diverged[6:] = np.inf  # 6 points drawn: none has 5 neighbours drawn
    assert embedding.neighbour_accuracy(diverged, labels) == 0.0


def test_pixel_pca_points_are_the_test_pixels_on_the_training_pixels_two_leading_directions(
        fashion_slice):
    data = fashion_slice
    train, test = data.train_images[:300], data.test_images[:200]
    points = embedding.pixel_pca_points(train, test)
    x = train.reshape(300, -1) / 255.0
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    expected = (test.reshape(200, -1) / 255.0 - mean) @ vt[:2].T
    assert points.shape == (200, 2)
    np.testing.assert_allclose(np.abs(points), np.abs(expected), atol=2e-3)  # up to sign
    # on real images PCA's picture keeps classes apart far above chance (10 classes), and the
    # same points with their labels shuffled fall to about chance
    labels = data.test_labels[:200]
    assert embedding.neighbour_accuracy(points, labels) > 0.35
    shuffled = np.random.default_rng(0).permutation(labels)
    assert embedding.neighbour_accuracy(points, shuffled) < 0.2


def test_the_latent_scatters_pca_panel_is_headed_by_each_pictures_accuracy(fashion_slice):
    data = fashion_slice
    split = Split(data.test_images[:100], data.test_labels[:100])
    splits = Splits(Split(data.train_images[:400], data.train_labels[:400]), None, split,
                    data.class_names, "test")
    pixels = embedding.pixel_pca_points(splits.train.images, split.images)
    codes = np.stack([split.labels, split.labels], axis=1) + 0.01 * np.arange(100)[:, None]
    mine, theirs = (brute_force_accuracy(p, split.labels, 5) for p in (codes, pixels))
    assert mine > theirs + 0.2  # codes that sort by class: each caption must be its own
    caption, panel = pictures.pixel_pca_panel(codes, splits, "z_mean (2-D)")
    assert caption == f"z_mean (2-D): 5-NN class accuracy {mine:.1%} over 100 test images"
    assert panel.caption == ("PCA of the pixels (fitted on 400 training images): 5-NN class "
                             f"accuracy {theirs:.1%} over 100 test images")
    np.testing.assert_array_equal(panel.points_Nx2, pixels)
    few = Splits(splits.train, None, Split(split.images[:5], split.labels[:5]),
                 data.class_names, "test")
    assert pictures.pixel_pca_panel(codes[:5], few, "codes") == ("", None)
    one_class = Splits(splits.train, None, Split(split.images, np.zeros(100, np.int32)),
                       data.class_names, "test")
    caption, panel = pictures.pixel_pca_panel(codes, one_class, "codes")
    assert caption == "" and panel.caption == "PCA of the pixels (fitted on 400 training images)"
    # a class of 5 test images or fewer: its points' 5 neighbours are mostly other classes'
    # whatever the picture (6 images of 5 classes scored 0.0%): no score, and why
    sparse = Splits(splits.train, None, Split(split.images[:12], np.arange(12) % 5),
                    data.class_names, "test")
    caption, panel = pictures.pixel_pca_panel(codes[:12], sparse, "codes")
    assert caption == "" and panel.caption == (
        "PCA of the pixels (fitted on 400 training images); no 5-NN class accuracy: a class "
        "has 2 test images, 5 neighbours need more")


def brute_force_accuracy(points: np.ndarray, labels: np.ndarray, k: int) -> float:
    distances = np.linalg.norm(points[:, None] - points[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    nearest = np.argsort(distances, axis=1, kind="stable")[:, :k]
    votes = np.stack([np.bincount(labels[n], minlength=labels.max() + 1) for n in nearest])
    return float((votes.argmax(axis=1) == labels).mean())


def test_neighbour_accuracy_over_chunks_and_far_from_the_origin_is_the_brute_force_one(
        monkeypatch):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 103)
    points = rng.normal(size=(103, 2)) + labels[:, None] * 0.8
    monkeypatch.setattr(embedding, "_CHUNK", 16)  # 7 chunks, the last of 7 points
    expected = brute_force_accuracy(points, labels, 5)
    assert embedding.neighbour_accuracy(points, labels) == pytest.approx(expected)
    assert embedding.neighbour_accuracy(points + 1e5, labels) == pytest.approx(expected)
    with pytest.raises(ValueError, match=r"^neighbour_accuracy was given 103 points and 100 "
                                         r"labels: give one label per point"):
        embedding.neighbour_accuracy(points, labels[:100])


def test_pixel_pca_points_fit_on_the_first_training_images_and_project_in_chunks(monkeypatch):
    rng = np.random.default_rng(2)
    train = rng.integers(0, 256, (50, 4, 4, 1), np.uint8)
    test = rng.integers(0, 256, (40, 4, 4, 1), np.uint8)
    monkeypatch.setattr(embedding, "PCA_FIT_IMAGES", 30)
    monkeypatch.setattr(embedding, "_CHUNK", 16)
    points = embedding.pixel_pca_points(train, test)
    x = train[:30].reshape(30, -1) / 255.0  # the first 30 only
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    expected = (test.reshape(40, -1) / 255.0 - mean) @ vt[:2].T
    np.testing.assert_allclose(np.abs(points), np.abs(expected), atol=1e-4)


def test_pcas_svd_runs_on_one_blas_thread_and_gives_the_threads_back():
    """OpenBLAS's threads spin while they wait for each other: on a busy machine an
    evaluation's picture stalled for seconds in the SVD of PCA_FIT_IMAGES images. In a
    process of its own: the OpenBLAS the SVD runs on (scipy's) is loaded by the first one."""
    code = textwrap.dedent("""
        import json
        import jax, jax.numpy as jnp, numpy as np
        from threadpoolctl import threadpool_info
        from jaxae.evaluation import pca

        def pools():
            return sorted((p["filepath"], p["num_threads"]) for p in threadpool_info()
                          if p["user_api"] == "blas")

        before, during, svd = pools(), [], jnp.linalg.svd

        def recording(*args, **kwargs):
            out = jax.block_until_ready(svd(*args, **kwargs))
            during.append(pools())
            return out

        jnp.linalg.svd = recording
        pca.fit(np.random.default_rng(0).random((50, 8), np.float32), 2)
        print(json.dumps([before, during, pools()]))""")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert done.returncode == 0, done.stderr[-2000:]
    before, [during], after = json.loads(done.stdout)
    assert [path for path, _ in during] == [path for path, _ in after]  # every one, limited
    assert {threads for _, threads in during} == {1}
    assert {threads for _, threads in after} == {threads for _, threads in before}  # back


def test_a_pca_baseline_of_more_components_than_its_rows_allow_is_refused():
    """Five rows have at most five principal directions: a fit gives what there is (a
    scatter of few codes still gets its points), but a baseline named k=8 that used five
    was reported as PCA-8."""
    from jaxae.evaluation import pca

    rows = np.random.default_rng(0).random((5, 10), dtype=np.float32)
    assert pca.fit(rows, 8).components.shape == (5, 10)
    assert [k for k, _ in pca.clipped_reconstructions(rows, rows, [2, 5])] == [2, 5]
    low_rank = 0.5 + 0.05 * rows[:, :3] @ rows[:3]  # 5 rows of rank 3 (with their mean)
    (_, kept), = pca.clipped_reconstructions(low_rank, low_rank, [3])
    np.testing.assert_allclose(kept, low_rank, atol=1e-5)  # three directions give them back
    assert pca.two_columns(np.ones((3, 3))).shape == (3, 2)  # a scatter's first two
    with pytest.raises(ValueError, match="PCA with k=8 components: 5 training rows of 10 "
                                         "values have at most 5: give a k of at most 5"):
        list(pca.clipped_reconstructions(rows, rows, [2, 8]))


@pytest.mark.parametrize("train_shape", [(1, 4, 4, 1), (6, 1, 1, 1)])
def test_pixel_pca_points_are_two_columns_where_the_pixels_have_one_direction(train_shape):
    """One training image, or images of one pixel, have one principal direction: the
    latent scatter's panel indexed a second column and evaluate.py ended in an IndexError."""
    rng = np.random.default_rng(3)
    train = rng.integers(0, 256, train_shape, np.uint8)
    test = rng.integers(0, 256, (5, *train_shape[1:]), np.uint8)
    points = embedding.pixel_pca_points(train, test)
    assert points.shape == (5, 2) and not points[:, 1].any()
