"""Losses against hand-computed values, and the statistics of the corruptions."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxae import losses
from jaxae.tasks import baselines


def test_sigmoid_is_the_logistic_function_to_float32_rounding():
    x = np.linspace(-40.0, 40.0, 400_001, dtype=np.float32)
    exact = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    values = np.asarray(jax.jit(losses.sigmoid)(x), np.float64)
    np.testing.assert_allclose(values, exact, rtol=0, atol=2e-7)
    assert values.min() == 0.0 and values.max() == 1.0  # never outside [0, 1]
    slopes = np.asarray(jax.jit(jax.vmap(jax.grad(losses.sigmoid)))(x), np.float64)
    np.testing.assert_allclose(slopes, exact * (1 - exact), rtol=0, atol=2e-7)


def test_mse_hand_computed():
    logits = jnp.zeros((1, 2, 2, 1))  # sigmoid(0) = 0.5 everywhere
    targets = jnp.array([0.0, 1.0, 0.5, 0.25]).reshape(1, 2, 2, 1)
    # (0.25 + 0.25 + 0 + 0.0625) / 4
    np.testing.assert_allclose(losses.mse(logits, targets), [0.140625], rtol=1e-6)


def test_bce_with_logits_hand_computed():
    logits = jnp.array([0.0, 2.0, -3.0]).reshape(1, 3, 1, 1)
    targets = jnp.array([1.0, 1.0, 0.25]).reshape(1, 3, 1, 1)
    # -log(0.5) = 0.693147; log(1 + e^-2) = 0.126928;
    # -(0.25 log sigmoid(-3) + 0.75 log sigmoid(3)) = 0.25 * 3.048587 + 0.75 * 0.048587
    expected = (0.6931472 + 0.1269280 + 0.7985874) / 3
    np.testing.assert_allclose(losses.bce_with_logits(logits, targets), [expected], rtol=1e-5)


def test_bce_with_logits_is_finite_for_saturated_logits():
    logits = jnp.array([100.0, -100.0, 100.0, -100.0]).reshape(4, 1, 1, 1)
    targets = jnp.array([1.0, 0.0, 0.0, 1.0]).reshape(4, 1, 1, 1)
    np.testing.assert_allclose(losses.bce_with_logits(logits, targets), [0, 0, 100, 100],
                               atol=1e-6)
    grads = jax.grad(lambda z: losses.bce_with_logits(z, targets).sum())(logits)
    assert np.all(np.isfinite(grads))


def test_bce_with_logits_gradient_is_sigmoid_minus_target_also_at_a_logit_of_zero():
    """d/dl = sigmoid(l) - t, over the mean's 1/pixels; at exactly 0 it was t lower (the max's
    gradient 0.5 there, |l|'s 1): an ESPCN's glorot init gives 0.5% of pixels logits of 0."""
    logits = jnp.array([0.0, 0.0, 0.0, 3.0, -2.0, 0.0]).reshape(1, 1, 6, 1)
    targets = jnp.array([0.0, 0.5, 1.0, 0.2, 0.7, 0.3]).reshape(1, 1, 6, 1)
    grads = jax.grad(lambda z: losses.bce_with_logits(z, targets).sum())(logits)
    np.testing.assert_allclose(grads.ravel() * 6, (jax.nn.sigmoid(logits) - targets).ravel(),
                               atol=1e-7)


def test_losses_are_per_image():
    logits = jnp.stack([jnp.zeros((28, 28, 1)), jnp.full((28, 28, 1), 5.0)])
    targets = jnp.ones((2, 28, 28, 1))
    assert losses.mse(logits, targets).shape == (2,)
    assert losses.mse(logits, targets)[0] > losses.mse(logits, targets)[1]


def test_psnr_hand_computed():
    images = jnp.full((1, 4, 4, 1), 0.6)
    targets = jnp.full((1, 4, 4, 1), 0.5)  # MSE 0.01 -> 20 dB
    np.testing.assert_allclose(losses.psnr(images, targets), [20.0], rtol=1e-5)
    assert float(losses.psnr(targets, targets)[0]) == pytest.approx(100.0)  # the cap, not inf


@pytest.mark.parametrize("rate", [0.5, 0.2])
def test_dropout_zeroes_the_requested_fraction(rate):
    images = jnp.full((100, 1000), 0.5)  # 10^5 pixels
    noisy = losses.dropout_noise(jax.random.key(0), images, rate, rescale=False)
    zeroed = float(jnp.mean(noisy == 0))
    assert abs(zeroed - rate) < 0.01, f"{zeroed:.4f} of the pixels zeroed, asked for {rate}"
    assert set(np.unique(np.asarray(noisy))) == {0.0, 0.5}  # kept pixels unchanged


@pytest.mark.parametrize("p", [0.5, 0.3, 0.9])
def test_bernoulli_16bit_draws_each_half_word_with_probability_p(p):
    draws = np.asarray(losses.bernoulli_16bit(jax.random.key(3), p, (500, 2001)))
    assert draws.shape == (500, 2001) and draws.dtype == bool  # odd rows: half a word unused
    sigma = math.sqrt(p * (1 - p) / (500 * 1000))
    for half in (draws[:, 0:2000:2], draws[:, 1:2000:2]):  # a word's high and low halves
        assert abs(half.mean() - p) < 5 * sigma, f"{half.mean():.4f} True, asked for {p}"
    same = (draws[:, 0:2000:2] == draws[:, 1:2000:2]).mean()  # independent halves agree
    assert abs(same - (p * p + (1 - p) ** 2)) < 10 * sigma  # with probability p^2 + (1-p)^2


def test_bernoulli_16bit_at_the_ends_and_per_key():
    # 2^20 draws: a threshold one too high would give p = 0 about 16 Trues
    assert bool(losses.bernoulli_16bit(jax.random.key(0), 1.0, (1024, 1024)).all())
    assert not bool(losses.bernoulli_16bit(jax.random.key(0), 0.0, (1024, 1024)).any())
    a, b = (np.asarray(losses.bernoulli_16bit(jax.random.key(k), 0.5, (8, 784))) for k in (1, 2))
    np.testing.assert_array_equal(a, losses.bernoulli_16bit(jax.random.key(1), 0.5, (8, 784)))
    assert not np.array_equal(a, b)


def test_dropout_rescale_divides_kept_pixels():
    images = jnp.full((100, 1000), 0.25)
    noisy = losses.dropout_noise(jax.random.key(0), images, 0.5, rescale=True)
    assert set(np.unique(np.asarray(noisy))) == {0.0, 0.5}
    np.testing.assert_allclose(float(noisy.mean()), 0.25, rtol=0.02)  # expectation preserved


def test_a_rescaled_dropout_input_is_shown_and_scored_at_its_pixels_own_values():
    """Kept pixels divided by 1 - rate reach 2 (rate 0.5): clipped to [0, 1] the picture's
    input row, its PSNR floor and the median baseline of it were whitened."""
    from jaxae.tasks import Denoise

    images = jax.random.randint(jax.random.key(3), (4, 28, 28, 1), 0, 256).astype(jnp.uint8)
    for rate in (0.5, 0.3):
        plain, scaled = (Denoise(dropout_rate=rate, dropout_rescale=r) for r in (False, True))
        unscaled, _ = plain.make_example(images, jax.random.key(1))
        rescaled, _ = scaled.make_example(images, jax.random.key(1))  # the same pixels dropped
        assert float(rescaled.max()) > 1.0
        np.testing.assert_allclose(scaled.input_as_image(rescaled, (28, 28, 1)), unscaled,
                                   atol=1e-6)
        np.testing.assert_allclose(scaled.baseline(rescaled, (28, 28, 1)),
                                   plain.baseline(unscaled, (28, 28, 1)), atol=1e-6)
        assert "kept x" in scaled.input_label((28, 28, 1))
        assert "kept" not in plain.input_label((28, 28, 1))
    assert scaled.input_label((28, 28, 1)) == "input\n(dropout 0.3,\nkept x1.43, drawn x1)"


def test_corruptions_are_functions_of_the_key():
    images = jnp.full((8, 28, 28, 1), 0.5)
    key, other = jax.random.key(1), jax.random.key(2)
    for corrupt in (lambda k: losses.dropout_noise(k, images, 0.5, False),
                    lambda k: losses.gaussian_noise(k, images, 0.3)):
        np.testing.assert_array_equal(corrupt(key), corrupt(key))
        assert not np.array_equal(corrupt(key), corrupt(other))


def test_gaussian_noise_std_and_clipping():
    images = jnp.full((100, 1000), 0.5)
    noisy = losses.gaussian_noise(jax.random.key(0), images, std=0.1)  # clipping at 5 sigma
    np.testing.assert_allclose(float(jnp.std(noisy)), 0.1, rtol=0.02)
    np.testing.assert_allclose(float(jnp.mean(noisy)), 0.5, atol=0.002)
    wide = losses.gaussian_noise(jax.random.key(0), images, std=2.0)
    assert float(wide.min()) == 0.0 and float(wide.max()) == 1.0


def test_gaussian_noise_on_host_float64_images_is_the_float32_draw_unwarned(recwarn):
    """uint8 / 255.0 on the host is float64: JAX had warned of a float64 draw truncated."""
    pixels = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 1), np.uint8)
    noisy = losses.gaussian_noise(jax.random.key(0), pixels / 255.0, 0.3)
    np.testing.assert_array_equal(noisy, losses.gaussian_noise(
        jax.random.key(0), jnp.asarray(pixels / 255.0, jnp.float32), 0.3))
    assert not [w for w in recwarn if "float64" in str(w.message)]


def test_downsample_averages_blocks():
    image = jnp.arange(16.0).reshape(1, 4, 4, 1)
    expected = np.array([[2.5, 4.5], [10.5, 12.5]]).reshape(1, 2, 2, 1)
    np.testing.assert_allclose(losses.downsample(image, 2), expected)
    assert losses.downsample(jnp.zeros((3, 28, 28, 1)), 4).shape == (3, 7, 7, 1)


def test_median_of_9_is_the_median_of_every_binary_pattern():
    """By the 0-1 principle a compare-exchange network that finds the median of every 0/1
    input finds it for every input: all 512 patterns are checked."""
    patterns = (np.arange(512)[:, None] >> np.arange(9)) & 1  # [512, 9]
    values = [jnp.asarray(patterns[:, i], jnp.float32) for i in range(9)]
    np.testing.assert_array_equal(baselines.median_of_9(values), np.median(patterns, axis=1))


def test_the_sorting_network_sorts_every_binary_pattern():
    """By the 0-1 principle, a compare-exchange network that sorts every 0/1 input of nine
    sorts every input of nine: all 512 patterns are checked."""
    patterns = (np.arange(512)[:, None] >> np.arange(9)) & 1
    values = [jnp.asarray(patterns[:, i], jnp.float32) for i in range(9)]
    np.testing.assert_array_equal(np.stack(baselines._exchanged(values, baselines.SORT_9), 1),
                                  np.sort(patterns, axis=1))


def test_the_masked_median_fills_each_zero_from_its_non_zero_neighbours():
    rng = np.random.default_rng(0)
    images = rng.integers(1, 9, (3, 7, 6, 2)).astype(np.float32) / 8
    images[rng.random(images.shape) < 0.5] = 0.0
    images[0, :3, :3, 0] = 0.0  # a corner with no kept neighbour
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))
    windows = np.stack([padded[:, i:i + 7, j:j + 6] for i in range(3) for j in range(3)], -1)
    expected = images.copy()
    for index in np.argwhere(images == 0):
        index = tuple(index)
        kept = windows[index][windows[index] > 0]
        expected[index] = np.median(kept) if kept.size else 0.0
    assert expected[0, 0, 0, 0] == 0.0 and (expected[images == 0] > 0).mean() > 0.9
    np.testing.assert_allclose(baselines.masked_median_3x3(jnp.asarray(images)), expected,
                               rtol=1e-6)
    # bit for bit the median of a sort (how it was computed before the sorting network)
    ordered = np.sort(np.where(windows > 0, windows, np.inf), axis=-1)
    count = (windows > 0).sum(-1, keepdims=True)
    low = np.take_along_axis(ordered, np.maximum(count - 1, 0) // 2, axis=-1)[..., 0]
    high = np.take_along_axis(ordered, count // 2, axis=-1)[..., 0]
    by_sort = np.where(images > 0, images, np.where(count[..., 0] > 0, (low + high) / 2, 0))
    np.testing.assert_array_equal(baselines.masked_median_3x3(jnp.asarray(images)),
                                  by_sort.astype(np.float32))


def test_the_bicubic_baseline_reproduces_a_quadratic_as_bicubic_interpolation_does():
    """Cubic convolution (Keys, a = -0.5) is exact on quadratics away from the edges, where
    bilinear interpolation is off by 1.5e-3 here: the baseline named bicubic is bicubic."""
    size = 14

    def quadratic(x):
        return 0.1 + 0.8 * ((x - 5.0) / 10) ** 2

    rows = quadratic(np.arange(size, dtype=np.float64))  # one value per row of the image
    image = np.broadcast_to(rows[:, None], (size, size))[None, ..., None].astype(np.float32)
    upsampled = np.asarray(baselines.bicubic_upsampling(jnp.asarray(image), 28, 28))
    at = (np.arange(28) + 0.5) / 2 - 0.5  # each output row's place among the input rows
    inside = (at >= 2) & (at <= size - 3)
    np.testing.assert_allclose(upsampled[0, inside, :, 0],
                               np.broadcast_to(quadratic(at[inside])[:, None], (inside.sum(), 28)),
                               atol=1e-6)


def test_a_gaussian_blur_is_scipy_s_truncated_at_three_sigma_with_edges_replicated():
    """The classical denoising baseline's blur: scipy.ndimage's, truncated at 3 sigma."""
    from scipy import ndimage

    from jaxae.experiments import quality

    images = np.random.default_rng(0).random((2, 12, 10, 1), dtype=np.float32)
    for sigma in (1.0, 2.0):
        np.testing.assert_allclose(
            quality.gaussian_blur(jnp.asarray(images), sigma),
            ndimage.gaussian_filter(images, (0, sigma, sigma, 0), mode="nearest", truncate=3.0),
            atol=1e-6)


def test_median_filter_equals_numpy_with_edges_replicated():
    images = np.random.default_rng(0).integers(0, 5, (3, 7, 6, 1)).astype(np.float32) / 4
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    windows = np.stack([padded[:, i:i + 7, j:j + 6] for i in range(3) for j in range(3)])
    np.testing.assert_array_equal(baselines.median_filter_3x3(jnp.asarray(images)),
                                  np.median(windows, axis=0))

