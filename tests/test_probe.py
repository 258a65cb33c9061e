"""The classifier probe: a minimum number of steps makes it converge on a small training set."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxae.evaluation.probe import feature_scale, train_probe


def _blobs(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Ten well-separated Gaussian clusters in 5 dimensions: linearly separable classes."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, 5)) * 4.0
    labels = np.repeat(np.arange(10), n_per_class)
    return (centres[labels] + rng.normal(size=(len(labels), 5))).astype(np.float32), labels


def test_min_steps_lets_the_probe_converge_where_epochs_alone_do_not():
    x, y = _blobs(20, seed=0)  # 200 points: one step per epoch at batch 256
    key = jax.random.key(0)
    few = train_probe(x, y, key, epochs=2)
    enough = train_probe(x, y, key, epochs=2, min_steps=2000)
    assert enough.accuracy(x, y) > 0.95
    assert few.accuracy(x, y) < enough.accuracy(x, y) - 0.2


def test_min_steps_below_the_epochs_changes_nothing():
    x, y = _blobs(20, seed=1)
    key = jax.random.key(1)
    plain = train_probe(x, y, key, epochs=3)
    floor = train_probe(x, y, key, epochs=3, min_steps=2)
    for a, b in zip(jax.tree.leaves(plain.params), jax.tree.leaves(floor.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_feature_constant_in_training_does_not_outvote_the_others_at_test_time():
    """Five informative features and five that never vary in training (a border pixel):
    a faint value there at test time (1e-3, a generated image's background) leaves the
    predictions as they were (a borderline point may move), where dividing by the feature's
    own std made it a value of about 1,000 that decided the class."""
    x, y = _blobs(50, seed=2)
    train = np.concatenate([x, np.zeros_like(x)], axis=1)
    probe = train_probe(train, y, jax.random.key(2), epochs=2, min_steps=2000)
    faint = train.copy()
    faint[:, 5:] = 1e-3
    assert probe.accuracy(train, y) > 0.95
    assert np.mean(probe.predict(faint) == probe.predict(train)) >= 0.99
    std = np.asarray(probe.std)
    assert std[5:].min() >= 0.05 * np.median(np.std(x, axis=0))
    np.testing.assert_allclose(std[:5], np.std(train, axis=0)[:5] + 1e-6, rtol=1e-5)
    mostly_constant = np.concatenate([x, np.zeros((len(x), 45), np.float32)], axis=1)
    _, floored = feature_scale(jnp.asarray(mostly_constant))  # the median std is 0 here
    assert float(np.min(floored)) >= 0.05 * np.median(np.std(x, axis=0))
    # identical training images: nothing varies, and the floor is 0.05 of the features' unit
    # (it was 1e-6, and a faint change at test time decided the class)
    _, none_vary = feature_scale(jnp.full((20, 3), 0.5))
    np.testing.assert_allclose(none_vary, 0.05 + 1e-6, rtol=1e-6)


def test_class_sample_recognition_scores_samples_against_the_class_they_were_asked_for(
        tiny_config, monkeypatch):
    """Real test images standing in for a conditional model's samples: in the order asked
    for (per_class of class 0, then of class 1, ...) most are recognised; shifted by one
    class, almost none are."""
    from jaxae import build
    from jaxae.evaluation import evaluate, generation
    from jaxae.keys import derive_keys

    data = build.load_data(tiny_config(), derive_keys(0).data)
    images, labels = np.asarray(data.test.images), np.asarray(data.test.labels)
    per_class = 10
    asked = np.concatenate([images[labels == c][:per_class] for c in range(10)]) / 255.0
    scores = {}
    for shift in (0, per_class):
        samples = np.roll(asked, shift, axis=0)
        monkeypatch.setattr(generation, "class_samples", lambda *args, s=samples: s)
        scores[shift] = evaluate.class_sample_recognition(None, None, data, jax.random.key(0),
                                                          per_class)
    right, shifted = scores[0], scores[per_class]
    assert right["cvae_samples_recognised"] > 0.6 > 0.2 > shifted["cvae_samples_recognised"]
    assert right["cvae_probe_test_accuracy"] == shifted["cvae_probe_test_accuracy"] > 0.6
    assert right["cvae_samples_per_class"] == per_class
    assert right["cvae_probe_train_images"] == len(data.train) == 512
    in_memory = evaluate.class_sample_recognition(None, None, data, jax.random.key(0),
                                                  per_class, max_bytes=8 * 784 * 100)
    assert in_memory == shifted  # the bound is a streamed split's (`splits.spread_sample`)
