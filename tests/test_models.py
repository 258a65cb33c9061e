"""Model shapes and sizes: the material's layer sizes, checked by parameter count."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxae import conv, models


def _init(model, shape=(2, 28, 28, 1)):
    x = jnp.zeros(shape)
    params = jax.jit(model.init)(jax.random.key(0), x)["params"]
    return params, model.apply({"params": params}, x)


def _count(params) -> int:
    return sum(leaf.size for leaf in jax.tree.leaves(params))


@pytest.mark.parametrize("name, latent_dim, num_params", [
    ("dense_ae", 10, 784 * 10 + 10 + 10 * 784 + 784),  # 16,474, as the PyTorch peer
    ("dense_ae", 940, 784 * 940 + 940 + 940 * 784 + 784),
    ("conv_ae", 128, 4385),  # the PyTorch peer's count for the same layers
    ("deep_ae", 30, 2 * (784 * 1000 + 1000 * 500 + 500 * 250 + 250 * 30)
     + 1000 + 500 + 250 + 30 + 250 + 500 + 1000 + 784),
])
def test_autoencoders_map_images_to_logits_of_the_same_shape(name, latent_dim, num_params):
    params, logits = _init(models.build_model(name, latent_dim))
    assert logits.shape == (2, 28, 28, 1)
    assert _count(params) == num_params


def test_conv_code_is_4x4x8():
    model = models.conv_ae(128)
    params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    code = model.apply(params, jnp.zeros((3, 28, 28, 1)), method=model.encode)
    assert code.shape == (3, 4, 4, 8)


def test_dense_code_has_latent_dim():
    model = models.dense_ae(7)
    params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    assert model.apply(params, jnp.zeros((5, 28, 28, 1)), method=model.encode).shape == (5, 7)


@pytest.mark.parametrize("factor", [2, 4])
def test_superres_maps_low_resolution_to_28x28(factor):
    _, logits = _init(models.build_model("superres", 1, factor), (2, 28 // factor, 28 // factor, 1))
    assert logits.shape == (2, 28, 28, 1)


def test_depth_to_space_places_channels_as_blocks():
    x = jnp.arange(16.0).reshape(1, 2, 2, 4)  # pixel (0, 0) holds channels 0..3
    out = models.depth_to_space(x, 2)[0, :, :, 0]
    np.testing.assert_array_equal(out[:2, :2], [[0, 1], [2, 3]])
    np.testing.assert_array_equal(out[2:, 2:], [[12, 13], [14, 15]])


def test_max_pool_keeps_the_ragged_edge():
    x = jnp.arange(49.0).reshape(1, 7, 7, 1)
    pooled = models.max_pool_ceil(x)
    assert pooled.shape == (1, 4, 4, 1)
    assert float(pooled[0, 3, 3, 0]) == 48.0  # the lone last pixel is its own window


def test_unknown_model_name_is_rejected():
    with pytest.raises(ValueError, match="unknown model 'vit'"):
        models.build_model("vit", 10)


@pytest.mark.parametrize("implementation", ["patches", "xla"])
@pytest.mark.parametrize("features", [4, 8])  # fewer outputs than the 5 inputs (by taps), more
@pytest.mark.parametrize("kernel_size, padding, size", [
    ((3, 3), "SAME", 28), ((3, 3), "VALID", 16), ((5, 5), "SAME", 14), ((3, 3), "SAME", 7),
    ((2, 3), "SAME", 9)])
def test_conv_equals_flax_conv_with_the_same_parameters(kernel_size, padding, size, features,
                                                        implementation):
    """Values, and gradients for the parameters and the input (the hand-written backward
    pass of `conv.tap_conv2d` included)."""
    x = jax.random.normal(jax.random.key(1), (3, size, size, 5))
    reference = nn.Conv(features, kernel_size, padding=padding)
    params = reference.init(jax.random.key(2), x)
    ours = conv.Conv(features, kernel_size, padding, implementation=implementation)
    assert jax.tree.map(jnp.shape, ours.init(jax.random.key(2), x)) == \
        jax.tree.map(jnp.shape, params)
    np.testing.assert_allclose(ours.apply(params, x), reference.apply(params, x),
                               rtol=1e-5, atol=1e-5)
    grads = lambda model: jax.grad(  # noqa: E731
        lambda p, x: (jnp.sin(model.apply(p, x)) ** 2).sum(), (0, 1))(params, x)
    for ours_leaf, ref_leaf in zip(jax.tree.leaves(grads(ours)),
                                   jax.tree.leaves(grads(reference)), strict=True):
        np.testing.assert_allclose(ours_leaf, ref_leaf, rtol=1e-4, atol=1e-4)


def test_unknown_conv_implementation_is_refused():
    x = jnp.zeros((1, 7, 7, 1))
    with pytest.raises(ValueError, match="implementation='fft'"):
        conv.Conv(2, implementation="fft").init(jax.random.key(0), x)


def test_conv_models_have_the_same_parameters_with_either_implementation():
    x = jnp.zeros((2, 28, 28, 1))
    trees = [jax.tree.map(jnp.shape, models.build_model("conv_vae", 16, conv=c).init(
        {"params": jax.random.key(0)}, x)) for c in conv.IMPLEMENTATIONS]
    assert trees[0] == trees[1]


@pytest.mark.parametrize("size", [28, 14, 7])
def test_pooling_equals_flax(size):
    """Values, and (no ties in random normals) the gradient."""
    x = jax.random.normal(jax.random.key(0), (2, size, size, 3))
    flax_pool = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")  # noqa: E731
    np.testing.assert_array_equal(models.max_pool_ceil(x), flax_pool(x))
    dy = jax.random.normal(jax.random.key(1), flax_pool(x).shape)
    np.testing.assert_array_equal(jax.vjp(models.max_pool_ceil, x)[1](dy)[0],
                                  jax.vjp(flax_pool, x)[1](dy)[0])


def test_pooling_sends_the_gradient_to_the_first_of_tied_maxima():
    """Row-major first, as PyTorch's MaxPool2d; each window's gradient is not split."""
    x = jnp.array([[1.0, 5.0, 0.0, 0.0, 2.0],
                   [5.0, 5.0, 0.0, 0.0, 2.0]])[None, :, :, None]  # windows: 5s, 0s, ragged 2s
    dy = jnp.array([[10.0, 20.0, 30.0]])[None, :, :, None]
    grad = jax.vjp(models.max_pool_ceil, x)[1](dy)[0][0, :, :, 0]
    np.testing.assert_array_equal(grad, [[0, 10, 20, 0, 30],
                                         [0, 0, 0, 0, 0]])


@pytest.mark.parametrize("implementation", ["patches", "xla"])
@pytest.mark.parametrize("features", [4, 1])  # 1: factor**2 sub-pixel outputs < 5 inputs, taps
@pytest.mark.parametrize("kernel_size, padding, size, factor", [
    ((3, 3), "SAME", 14, 2), ((3, 3), "VALID", 8, 2), ((3, 3), "SAME", 4, 2),
    ((3, 3), "SAME", 5, 3), ((5, 5), "VALID", 6, 2), ((2, 2), "SAME", 5, 2)])
def test_upsampled_conv_equals_flax_conv_of_the_upsampled_input(kernel_size, padding, size,
                                                               factor, features,
                                                               implementation):
    """Conv(upsample=k) computes at the low resolution; values and gradients must be those of
    nn.Conv applied to the nearest up-sampling (np.repeat) of the input."""
    x = jax.random.normal(jax.random.key(1), (3, size, size, 5))
    upsample = lambda x: jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)  # noqa: E731
    reference = nn.Conv(features, kernel_size, padding=padding)
    params = reference.init(jax.random.key(2), upsample(x))
    ours = conv.Conv(features, kernel_size, padding, implementation=implementation,
                     upsample=factor)
    assert jax.tree.map(jnp.shape, ours.init(jax.random.key(2), x)) == \
        jax.tree.map(jnp.shape, params)

    def loss_and_grads(apply):
        return jax.value_and_grad(lambda p, x: (apply(p, x) ** 2).sum(), (0, 1))(params, x)

    ours_loss, ours_grads = loss_and_grads(ours.apply)
    ref_loss, ref_grads = loss_and_grads(lambda p, x: reference.apply(p, upsample(x)))
    np.testing.assert_allclose(ours.apply(params, x), reference.apply(params, upsample(x)),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours_loss, ref_loss, rtol=1e-5)
    for ours_leaf, ref_leaf in zip(jax.tree.leaves(ours_grads), jax.tree.leaves(ref_grads),
                                   strict=True):
        np.testing.assert_allclose(ours_leaf, ref_leaf, rtol=1e-4, atol=1e-3)


def test_an_upsampled_conv_that_splits_blocks_is_refused():
    x = jnp.zeros((1, 4, 4, 1))  # 3x3 VALID over 8x8 gives 6x6: whole 2x2 blocks, fine
    conv.Conv(2, (3, 3), "VALID", upsample=2).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="not whole 2x2 blocks"):  # 2x2 VALID gives 7x7
        conv.Conv(2, (2, 2), "VALID", upsample=2).init(jax.random.key(0), x)


def test_conv_ae_gradients_agree_between_patches_and_xla():
    """The whole conv AE (taps, patches, sub-pixel layers, pooling) against XLA's convolutions
    with the same parameters: the hand-written backward passes inside it, end to end."""
    x = jax.random.uniform(jax.random.key(0), (2, 28, 28, 1))
    patches, xla = (models.build_model("conv_ae", 128, conv=c) for c in ("patches", "xla"))
    params = patches.init(jax.random.key(1), x)

    def grads(model):
        return jax.grad(lambda p: jnp.sin(model.apply(p, x)).sum())(params)

    for ours, reference in zip(jax.tree.leaves(grads(patches)), jax.tree.leaves(grads(xla)),
                               strict=True):
        np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5)


def test_tap_conv_gradients_keep_the_input_dtypes():
    """A bfloat16 input under a float32 kernel: each gradient has its primal's dtype."""
    x = jnp.ones((1, 5, 5, 8), jnp.bfloat16)
    kernel = jnp.ones((3, 3, 8, 2), jnp.float32)
    y, backward = jax.vjp(lambda x, k: conv.tap_conv2d(x, k, ((1, 1), (1, 1))), x, kernel)
    dx, dkernel = backward(jnp.ones_like(y))
    assert (dx.dtype, dkernel.dtype) == (jnp.bfloat16, jnp.float32)
