"""Kernels: convolutions as matmuls, pooling as elementwise passes, bfloat16 matmuls; each
against the reference it replaces (values and gradients)."""

import functools
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxae import losses
from jaxae.kernels import conv, dense, fence, pooling, precision, random


def test_depth_to_space_places_channels_as_blocks():
    x = jnp.arange(16.0).reshape(1, 2, 2, 4)  # pixel (0, 0) holds channels 0..3
    out = pooling.depth_to_space(x, 2)[0, :, :, 0]
    np.testing.assert_array_equal(out[:2, :2], [[0, 1], [2, 3]])
    np.testing.assert_array_equal(out[2:, 2:], [[12, 13], [14, 15]])


def test_max_pool_keeps_the_ragged_edge():
    x = jnp.arange(49.0).reshape(1, 7, 7, 1)
    pooled = pooling.max_pool_ceil(x)
    assert pooled.shape == (1, 4, 4, 1)
    assert float(pooled[0, 3, 3, 0]) == 48.0  # the lone last pixel is its own window


# Every shape for the patches and taps (ours); XLA's own convolution needs only the padding
# it is handed checked, once per kind.
CONV_CASES = [  # (kernel_size, padding, size, features); 4 < 5 inputs: taps, 8: patches
    *[(k, p, s, f, "patches") for k, p, s in [((3, 3), "SAME", 28), ((3, 3), "VALID", 16),
                                             ((5, 5), "SAME", 14), ((3, 3), "SAME", 7),
                                             ((2, 3), "SAME", 9)] for f in (4, 8)],
    ((2, 3), "SAME", 9, 8, "xla"), ((3, 3), "VALID", 16, 4, "xla")]


@pytest.mark.parametrize("kernel_size, padding, size, features, implementation", CONV_CASES)
def test_conv_equals_flax_conv_with_the_same_parameters(kernel_size, padding, size, features,
                                                        implementation):
    """Values, and gradients for the parameters and the input (the hand-written backward
    pass of `conv.tap_conv2d` included)."""
    x = jax.random.normal(jax.random.key(1), (3, size, size, 5))
    reference = nn.Conv(features, kernel_size, padding=padding)
    params = reference.init(jax.random.key(2), x)
    ours = conv.Conv(features, kernel_size, padding, implementation=implementation)
    assert jax.tree.map(jnp.shape, jax.eval_shape(ours.init, jax.random.key(2), x)) == \
        jax.tree.map(jnp.shape, params)
    (ours_y, ours_grads), (ref_y, ref_grads) = (values_and_gradients(model.apply, params, x)
                                                for model in (ours, reference))
    np.testing.assert_allclose(ours_y, ref_y, rtol=1e-5, atol=1e-5)
    for ours_leaf, ref_leaf in zip(jax.tree.leaves(ours_grads), jax.tree.leaves(ref_grads),
                                   strict=True):
        np.testing.assert_allclose(ours_leaf, ref_leaf, rtol=1e-4, atol=1e-4)


def values_and_gradients(apply, params, x, transform=lambda x: x):
    """(output, gradients for the parameters and the input) of a loss on `apply(params, x)`,
    in one compiled program (op-by-op dispatch would compile every operation on its own)."""

    @jax.jit
    def run(params, x):
        loss = lambda p, x: (jnp.sin(apply(p, transform(x)) + 0.5) ** 2).sum()  # noqa: E731
        return apply(params, transform(x)), jax.grad(loss, (0, 1))(params, x)

    return run(params, x)


def test_unknown_conv_implementation_is_refused():
    x = jnp.zeros((1, 7, 7, 1))
    with pytest.raises(ValueError, match="implementation='fft'"):
        conv.Conv(2, implementation="fft").init(jax.random.key(0), x)


@pytest.mark.parametrize("size", [28, 14, 7])
def test_pooling_equals_flax(size):
    """Values, and (no ties in random normals) the gradient and the forward-mode tangent."""
    x = jax.random.normal(jax.random.key(0), (2, size, size, 3))
    flax_pool = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")  # noqa: E731
    dy = jax.random.normal(jax.random.key(1), flax_pool(x).shape)

    dx = jax.random.normal(jax.random.key(2), x.shape)  # forward mode: the tangent at the max

    @functools.partial(jax.jit, static_argnums=0)
    def value_gradient_and_tangent(pool, x, dy, dx):
        y, pullback = jax.vjp(pool, x)
        return y, pullback(dy)[0], jax.jvp(pool, (x,), (dx,))[1]

    ours, reference = (value_gradient_and_tangent(p, x, dy, dx)
                       for p in (pooling.max_pool_ceil, flax_pool))
    np.testing.assert_array_equal(ours[0], reference[0])
    np.testing.assert_array_equal(ours[1], reference[1])
    np.testing.assert_array_equal(ours[2], reference[2])


def test_pooling_sends_the_gradient_to_the_first_of_tied_maxima():
    """Row-major first, as PyTorch's MaxPool2d; each window's gradient is not split."""
    x = jnp.array([[1.0, 5.0, 0.0, 0.0, 2.0],
                   [5.0, 5.0, 0.0, 0.0, 2.0]])[None, :, :, None]  # windows: 5s, 0s, ragged 2s
    dy = jnp.array([[10.0, 20.0, 30.0]])[None, :, :, None]
    pullback = jax.jit(lambda x, dy: jax.vjp(pooling.max_pool_ceil, x)[1](dy)[0])
    grad = pullback(x, dy)[0, :, :, 0]
    np.testing.assert_array_equal(grad, [[0, 10, 20, 0, 30],
                                         [0, 0, 0, 0, 0]])


@pytest.mark.parametrize("first", [0, 3])
def test_the_pooling_index_is_kept_in_memory_between_the_passes(first):
    """On CPU the compiled gradient of both poolings keeps the conditional that stops XLA
    recomputing the first-maximum index inside each corner's select
    (`fence.computed_once`); either branch gives the index back unchanged."""
    index = jnp.array([[first, 1], [2, 4]], jnp.int8)
    np.testing.assert_array_equal(jax.jit(fence.computed_once)(index), index)
    assert jax.jit(fence.computed_once)(index[:0]).shape == (0, 2)  # nothing to keep
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 4))
    kernel = jax.random.normal(jax.random.key(1), (3, 3, 4, 4))
    same = ((1, 1), (1, 1))

    def gradient_program(pool):
        return jax.jit(jax.grad(lambda x: (pool(x) ** 2).sum())).lower(x).compile().as_text()

    fused = lambda x: conv.relu_max_pool_conv2d(x, kernel, jnp.zeros(4), same)  # noqa: E731
    for program in map(gradient_program, (pooling.max_pool_2x2, fused)):
        assert ("conditional(" in program) == (jax.default_backend() == "cpu")


@pytest.mark.parametrize("first", [0.0, -0.0, 1.5, np.nan])
def test_a_fenced_float_comes_back_bit_for_bit(first):
    """Whichever branch the first value picks, every bit pattern survives: -0.0 stays
    negative (x + 0.0 would make it 0.0) and NaNs keep their payload."""
    x = np.array([first, -0.0, 2.0, -np.inf, np.nan, 1e-45], np.float32)
    out = np.asarray(jax.jit(fence.computed_once)(jnp.asarray(x)))
    np.testing.assert_array_equal(out.view(np.int32), x.view(np.int32))
    flags = jnp.asarray(x > 0)  # and a mask keeps its dtype and values
    np.testing.assert_array_equal(jax.jit(fence.computed_once)(flags), flags)


def test_a_tap_convolutions_sum_is_computed_once_for_its_readers():
    """On CPU the taps' sum stays behind the conditional in the compiled program, so the
    loss, its exponential and its gradient read it rather than each re-summing nine slices
    of the [B, H, W, 9F] product; off the CPU there is no conditional."""
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 16))
    kernel = jax.random.normal(jax.random.key(1), (3, 3, 16, 4))
    same = ((1, 1), (1, 1))

    def loss(x, kernel):
        logits = conv.tap_conv2d(x, kernel, same)
        return (jnp.maximum(logits, 0) + jnp.log1p(jnp.exp(-jnp.abs(logits)))).sum()

    program = jax.jit(jax.grad(loss, 1)).lower(x, kernel).compile().as_text()
    assert ("conditional(" in program) == (jax.default_backend() == "cpu")


RELU_MAX_POOL_CASES = [  # (kernel_size, padding, size, channels, features, fused)
    ((3, 3), "SAME", 28, 1, 4, True),  # an encoder's first layer
    ((3, 3), "SAME", 14, 5, 8, True),  # the input's gradient too
    ((3, 3), "VALID", 16, 2, 4, True),  # 14x14 out
    ((2, 3), "SAME", 10, 3, 3, True),  # uneven pads
    ((5, 5), "SAME", 12, 2, 6, True),
    ((3, 3), "SAME", 7, 2, 4, False),  # a ragged edge: conv, then ReLU, then pooling
    ((3, 3), "SAME", 14, 8, 4, False),  # more inputs than outputs: taps, then pooling
]


@pytest.mark.parametrize("kernel_size, padding, size, channels, features, fused",
                         RELU_MAX_POOL_CASES)
def test_relu_max_pool_conv_equals_flax_conv_relu_and_pool(kernel_size, padding, size,
                                                          channels, features, fused):
    """Conv(relu_max_pool=True) against nn.Conv, ReLU and nn.max_pool ('SAME': a ragged
    edge kept): values and gradients, and the fused kernel taken exactly where it applies."""
    x = jax.random.normal(jax.random.key(1), (3, size, size, channels))
    reference_conv = nn.Conv(features, kernel_size, padding=padding)
    reference = lambda p, x: nn.max_pool(nn.relu(reference_conv.apply(p, x)), (2, 2),  # noqa: E731
                                         strides=(2, 2), padding="SAME")
    params = reference_conv.init(jax.random.key(2), x)
    params = jax.tree.map(lambda p: p + 0.1, params)  # biases away from 0: ReLU matters
    ours = conv.Conv(features, kernel_size, padding, relu_max_pool=True)
    ours_y, ours_grads = values_and_gradients(ours.apply, params, x)
    ref_y, ref_grads = values_and_gradients(reference, params, x)
    assert ours_y.shape == ref_y.shape
    np.testing.assert_allclose(ours_y, ref_y, rtol=1e-5, atol=1e-5)
    for ours_leaf, ref_leaf in zip(jax.tree.leaves(ours_grads), jax.tree.leaves(ref_grads),
                                   strict=True):
        np.testing.assert_allclose(ours_leaf, ref_leaf, rtol=1e-4, atol=1e-4)
    program = str(jax.make_jaxpr(lambda p: ours.apply(p, x))(params))
    assert ("relu_max_pool_conv2d" in program) == fused


def test_the_fused_pooling_sends_the_gradient_to_the_first_of_tied_maxima():
    """A constant image: every window's four outputs tie; the first (top left) gets it all,
    as `pooling.max_pool_2x2` and PyTorch's MaxPool2d do."""
    x = jnp.ones((1, 4, 4, 1))
    kernel, bias = jnp.zeros((1, 1, 1, 2)), jnp.array([1.0, -1.0])  # channel 1: ReLU shut
    dy = jnp.ones((1, 2, 2, 2))

    @jax.jit  # one compiled program (op-by-op dispatch compiles every operation on its own)
    def value_and_gradients(x, kernel, bias, dy):
        y, pullback = jax.vjp(lambda b: conv.relu_max_pool_conv2d(x, kernel, b,
                                                                   ((0, 0), (0, 0))), bias)
        dx = jax.vjp(lambda x: conv.relu_max_pool_conv2d(x, kernel + 1.0, bias + 0.5,
                                                           ((0, 0), (0, 0))),
                     x)[1](dy)[0]
        return y, pullback(dy)[0], dx

    y, dbias, dx = value_and_gradients(x, kernel, bias, dy)
    np.testing.assert_array_equal(y[..., 0], 1.0)
    np.testing.assert_array_equal(y[..., 1], 0.0)
    np.testing.assert_array_equal(dbias, [4.0, 0.0])
    dx = dx[0, :, :, 0]
    np.testing.assert_array_equal(dx, [[2, 0, 2, 0], [0, 0, 0, 0], [2, 0, 2, 0], [0, 0, 0, 0]])


UPSAMPLED_CASES = [  # (kernel_size, padding, size, factor, features); 1: factor**2 outputs
    *[(k, p, s, r, f, "patches") for k, p, s, r in [  # < 5 inputs, by taps
        ((3, 3), "SAME", 14, 2), ((3, 3), "VALID", 8, 2), ((3, 3), "SAME", 4, 2),
        ((3, 3), "SAME", 5, 3), ((5, 5), "VALID", 6, 2), ((2, 2), "SAME", 5, 2)]
      for f in (4, 1)],
    ((3, 3), "VALID", 8, 2, 4, "xla"), ((2, 2), "SAME", 5, 2, 1, "xla")]


@pytest.mark.parametrize("kernel_size, padding, size, factor, features, implementation",
                         UPSAMPLED_CASES)
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
    assert jax.tree.map(jnp.shape, jax.eval_shape(ours.init, jax.random.key(2), x)) == \
        jax.tree.map(jnp.shape, params)
    ours_y, ours_grads = values_and_gradients(ours.apply, params, x)
    ref_y, ref_grads = values_and_gradients(reference.apply, params, x, transform=upsample)
    np.testing.assert_allclose(ours_y, ref_y, rtol=1e-5, atol=1e-5)
    for ours_leaf, ref_leaf in zip(jax.tree.leaves(ours_grads), jax.tree.leaves(ref_grads),
                                   strict=True):
        np.testing.assert_allclose(ours_leaf, ref_leaf, rtol=1e-4, atol=1e-3)


def test_an_upsampled_conv_that_splits_blocks_is_refused():
    x = jnp.zeros((1, 4, 4, 1))  # 3x3 VALID over 8x8 gives 6x6: whole 2x2 blocks, fine
    conv.Conv(2, (3, 3), "VALID", upsample=2).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="not whole 2x2 blocks"):  # 2x2 VALID gives 7x7
        conv.Conv(2, (2, 2), "VALID", upsample=2).init(jax.random.key(0), x)


@pytest.mark.parametrize("conv2d, channels, features",
                         [(conv.tap_conv2d, 8, 2), (conv.patch_conv2d, 2, 8)])
def test_hand_written_conv_gradients_keep_the_input_dtypes(conv2d, channels, features):
    """A bfloat16 input under a float32 kernel: each gradient has its primal's dtype."""
    x = jnp.ones((1, 5, 5, channels), jnp.bfloat16)
    kernel = jnp.ones((3, 3, channels, features), jnp.float32)

    @jax.jit
    def gradients(x, kernel):
        y, backward = jax.vjp(lambda x, k: conv2d(x, k, ((1, 1), (1, 1))), x, kernel)
        return backward(jnp.ones_like(y))

    dx, dkernel = gradients(x, kernel)
    assert (dx.dtype, dkernel.dtype) == (jnp.bfloat16, jnp.float32)


def _rounded(x: jax.Array) -> jax.Array:
    return x.astype(jnp.bfloat16).astype(jnp.float32)


@pytest.mark.parametrize("outputs", [24, 3])  # a wide kernel and a narrow one
def test_bfloat16_matmul_and_its_gradients_are_float32_matmuls_of_rounded_operands(outputs):
    """Products of bfloat16 values are exact in float32, so only the order of the float32
    sums may differ from a float32 matmul of the rounded operands."""
    x = jax.random.normal(jax.random.key(0), (16, 40))
    w = jax.random.normal(jax.random.key(1), (40, outputs))
    g = jax.random.normal(jax.random.key(2), (16, outputs))

    @jax.jit
    def value_and_gradients(x, w, g):
        y, pullback = jax.vjp(precision.bfloat16_matmul, x, w)
        return y, *pullback(g)

    y, dx, dw = value_and_gradients(x, w, g)
    assert y.dtype == dx.dtype == dw.dtype == jnp.float32
    np.testing.assert_allclose(y, _rounded(x) @ _rounded(w), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, _rounded(g) @ _rounded(w).T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw, _rounded(x).T @ _rounded(g), rtol=1e-5, atol=1e-5)
    assert not np.allclose(y, x @ w, rtol=1e-5, atol=1e-5)  # the rounding is real


def test_the_bfloat16_dense_layer_rounds_its_matmul_and_keeps_float32_parameters():
    x = jax.random.normal(jax.random.key(0), (4, 30))
    plain_layer, mixed_layer = (precision.dense_layer(d)(8) for d in ("float32", "bfloat16"))
    params = plain_layer.init(jax.random.key(1), x)
    assert jax.tree.map(jnp.shape, mixed_layer.init(jax.random.key(1), x)) == \
        jax.tree.map(jnp.shape, params)
    assert precision.dense_layer("float32").keywords == {"dot_general": dense.dot_general}
    plain, mixed = plain_layer.apply(params, x), mixed_layer.apply(params, x)
    expected = _rounded(x) @ _rounded(params["params"]["kernel"]) + params["params"]["bias"]
    np.testing.assert_allclose(mixed, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(plain, x @ params["params"]["kernel"]
                                  + params["params"]["bias"])
    assert not np.array_equal(mixed, plain)


def test_a_narrow_dense_matmul_has_the_matmuls_values_and_gradients():
    """`dense.narrow_matmul` (a [K, N] kernel, N <= NARROW_OUTPUTS < K) against x @ w:
    the same product, and gradients equal up to the order of the sums."""
    x = jax.random.normal(jax.random.key(0), (16, 40))
    w = jax.random.normal(jax.random.key(1), (40, 3))
    g = jax.random.normal(jax.random.key(2), (16, 3))
    y, pullback = jax.vjp(dense.narrow_matmul, x, w)
    expected, expected_pullback = jax.vjp(lambda x, w: x @ w, x, w)
    np.testing.assert_array_equal(y, expected)
    for got, want in zip(pullback(g), expected_pullback(g), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_a_narrow_dense_matmul_differentiates_in_forward_mode_as_the_matmul():
    """Forward mode, vmap and second derivatives through `dense.narrow_matmul` give what they
    give through x @ w (a researcher's decoder Jacobian or Hessian must not fail)."""
    x = jax.random.normal(jax.random.key(0), (6, 40))
    w = jax.random.normal(jax.random.key(1), (40, 3))
    narrow = lambda x, w: jnp.sum(jnp.tanh(dense.narrow_matmul(x, w)) ** 2)  # noqa: E731
    plain = lambda x, w: jnp.sum(jnp.tanh(x @ w) ** 2)  # noqa: E731
    transforms = {
        "jvp": lambda f: lambda x, w: jax.jvp(f, (x, w), (x * 0.5, w * 2.0)),
        "jacfwd": lambda f: jax.jacfwd(f, (0, 1)),
        "hessian": lambda f: jax.hessian(f, 1),
        "vmap of grad": lambda f: jax.vmap(jax.grad(f, 1), (0, None)),
    }
    for name, transform in transforms.items():
        xs = jnp.stack([x, -x]) if name == "vmap of grad" else x
        got, want = (jax.jit(transform(f))(xs, w) for f in (narrow, plain))
        for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5, err_msg=name)


def test_a_narrow_kernels_gradient_is_computed_transposed_on_the_cpu():
    """On CPU the compiled kernel gradient of a narrow Dense layer is laid out [N, K] in
    memory (XLA computes a [K, N] one several times slower); a wide layer keeps XLA's own.
    Without the barrier in `dense.kernel_gradient` XLA lays the narrow one out [K, N]."""
    x = jax.random.normal(jax.random.key(0), (16, 40))

    def kernel_gradient_dots(outputs: int) -> list[str]:
        layer = precision.dense_layer("float32")(outputs)
        params = layer.init(jax.random.key(1), x)
        loss = lambda p, x: (layer.apply(p, x) ** 2).sum()  # noqa: E731
        program = jax.jit(jax.grad(loss)).lower(params, x).compile().as_text()
        return re.findall(r"= (f32\[\d+,\d+\]\{\d,\d\}) dot\(", program)

    on_cpu = jax.default_backend() == "cpu"
    assert dense.is_narrow((40, 3)) == on_cpu and not dense.is_narrow((40, 24))
    narrow = kernel_gradient_dots(3)
    transposed = "f32[3,40]{1,0}" in narrow or "f32[40,3]{0,1}" in narrow
    assert transposed == on_cpu and ("f32[40,3]{1,0}" in narrow) != on_cpu
    assert "f32[40,24]{1,0}" in kernel_gradient_dots(24)


def test_the_float32_dot_general_leaves_other_matmuls_to_xla():
    """Only a float32 [B, K] x [K, N] narrow matmul takes `narrow_matmul`: a batched
    contraction, a bfloat16 one or a wide kernel is `lax.dot_general` itself."""
    def takes_narrow_path(a, b, numbers=dense.DENSE_CONTRACTION) -> bool:
        jaxpr = jax.make_jaxpr(lambda a, b: dense.dot_general(a, b, numbers))(a, b)
        return "custom_jvp_call" in str(jaxpr)

    on_cpu = jax.default_backend() == "cpu"
    assert takes_narrow_path(jnp.ones((4, 40)), jnp.ones((40, 2))) == on_cpu
    assert not takes_narrow_path(jnp.ones((4, 40)), jnp.ones((40, 24)))
    assert not takes_narrow_path(jnp.ones((4, 40), jnp.bfloat16),
                                 jnp.ones((40, 2), jnp.bfloat16))
    assert not takes_narrow_path(jnp.ones((2, 4, 40)), jnp.ones((40, 2)),
                                 (((2,), (0,)), ((), ())))


def test_the_bfloat16_dot_general_leaves_other_contractions_to_xla():
    a, b = jnp.ones((2, 3, 4)), jnp.ones((4, 5))
    out = precision.bfloat16_dot_general(a, b, (((2,), (0,)), ((), ())))
    assert out.shape == (2, 3, 5) and out.dtype == jnp.float32


def test_an_unknown_compute_dtype_is_refused():
    with pytest.raises(ValueError, match="compute dtype 'float16': choose one of float32"):
        precision.dense_layer("float16")


@pytest.mark.parametrize("shape", [(1,), (3,), (128, 392), (7, 5, 3)])
def test_unrolled_threefry_bits_are_jax_random_bits(shape):
    for key in (jax.random.key(0), jax.random.key(2**31 + 5), jax.random.PRNGKey(7)):
        expected = jax.random.bits(key, shape, jnp.uint32)
        np.testing.assert_array_equal(jax.jit(random.bits32, static_argnums=1)(key, shape),
                                      expected)


def test_unrolled_threefry_falls_back_for_other_generators():
    key = jax.random.key(0, impl="rbg")
    np.testing.assert_array_equal(random.bits32(key, (4, 5)),
                                  jax.random.bits(key, (4, 5), jnp.uint32))


def test_the_dropout_mask_keeps_its_bits():
    """The mask of `losses.bernoulli_16bit` as it was first written (two 16-bit halves of
    each `jax.random.bits` word, high half first): the DAE's figures depend on these bits."""
    key, shape = jax.random.key(3), (4, 28, 28, 1)
    words = jax.random.bits(key, (4, 392), jnp.uint32)
    halves = jnp.stack([words >> 16, words & 0xFFFF], axis=-1).reshape(4, -1)
    expected = (halves[:, :784] < 2**15).reshape(shape)
    np.testing.assert_array_equal(jax.jit(losses.bernoulli_16bit, static_argnums=(1, 2))(
        key, 0.5, shape), expected)


@pytest.mark.parametrize("features, upsample, relu_max_pool",
                         [(8, 1, False), (2, 1, False), (8, 2, False), (2, 2, False),
                          (8, 1, True)])
def test_a_bfloat16_conv_is_the_float32_conv_of_rounded_operands(features, upsample,
                                                                 relu_max_pool):
    """Patches (4 -> 8) and taps (4 -> 2), plain, up-sampled and with its pooling fused
    (`conv.relu_max_pool_conv2d`): with operands already representable in bfloat16, the
    plain bfloat16 layer differs from the float32 one only by the order of its float32 sums,
    forward and in both gradients, with the same parameters; an up-sampled one also rounds
    its summed kernel taps to bfloat16 (2^-9 relative each)."""
    x = _rounded(jax.random.normal(jax.random.key(0), (2, 6, 6, 4)))
    layers = [conv.Conv(features, (3, 3), "SAME", upsample=upsample, compute_dtype=d,
                        relu_max_pool=relu_max_pool) for d in ("float32", "bfloat16")]
    params = jax.jit(layers[0].init)(jax.random.key(1), x)  # compiled once, not op by op
    assert jax.tree.map(jnp.shape, jax.eval_shape(layers[1].init, jax.random.key(1), x)) == \
        jax.tree.map(jnp.shape, params)
    params = jax.jit(functools.partial(jax.tree.map, _rounded))(params)

    @jax.jit  # one compiled program (op-by-op dispatch compiles every operation on its own)
    def values_and_pullbacks(params, x):
        outputs = []
        for layer in layers:
            y, pullback = jax.vjp(lambda p, x, layer=layer: layer.apply(p, x), params, x)
            g = _rounded(jax.random.normal(jax.random.key(2), y.shape))
            outputs.append((y, *pullback(g)))
        return outputs

    outputs = values_and_pullbacks(params, x)
    for ours, reference in zip(jax.tree.leaves(outputs[1]), jax.tree.leaves(outputs[0]),
                               strict=True):
        tolerance = 1e-5 if upsample == 1 else 2e-2
        np.testing.assert_allclose(ours, reference, rtol=tolerance, atol=tolerance)


def test_a_fenced_value_differentiates_as_itself():
    """Whichever branch its first value picks: the bitcast of the other branch has a zero
    derivative, which a forward pass of the kernels differentiated by JAX would have met."""
    def f(x):
        return jnp.sum(fence.computed_once(x) ** 2)

    for first in (2.0, 0.0):
        x = jnp.array([first, 3.0])
        np.testing.assert_array_equal(jax.grad(f)(x), 2 * x)
        np.testing.assert_array_equal(jax.jvp(fence.computed_once, (x,), (jnp.ones(2),))[1],
                                      jnp.ones(2))


@pytest.mark.parametrize("channels, features", [(5, 3), (3, 5)])  # taps, patches
def test_a_convs_second_derivative_is_xlas(channels, features):
    """Forward over reverse (`jax.hessian`) runs through the written backward passes; the
    tap path refused it where its forward rule called the function it defines."""
    x = jax.random.normal(jax.random.key(0), (1, 4, 4, channels))
    layers = [conv.Conv(features, implementation=i) for i in ("patches", "xla")]
    params = layers[0].init(jax.random.key(1), x)
    hessians = [jax.jit(jax.hessian(lambda x, layer=layer: jnp.sum(
        jnp.tanh(layer.apply(params, x)) ** 2)))(x) for layer in layers]
    np.testing.assert_allclose(hessians[0], hessians[1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("compute_dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("features, upsample, relu_max_pool",
                         [(8, 1, False), (2, 1, False), (8, 2, False), (8, 1, True)])
def test_every_conv_path_gives_gradients_of_its_operands_dtypes(compute_dtype, features,
                                                                upsample, relu_max_pool):
    """Patches, taps, up-sampled and fused, a bfloat16 input under float32 parameters and
    under bfloat16 ones: each gradient has the dtype of what it is the gradient of."""
    x = jnp.ones((1, 4, 4, 4), jnp.bfloat16)
    for param_dtype in (jnp.float32, jnp.bfloat16):
        layer = conv.Conv(features, upsample=upsample, relu_max_pool=relu_max_pool,
                          compute_dtype=compute_dtype, param_dtype=param_dtype)
        params = layer.init(jax.random.key(0), x)
        grads = jax.jit(jax.grad(lambda p, x, layer=layer: jnp.sum(
            layer.apply(p, x).astype(jnp.float32)), (0, 1)))(params, x)
        assert jax.tree.map(lambda g: g.dtype, grads) == \
            jax.tree.map(lambda v: v.dtype, (params, x))


def test_the_xla_conv_promotes_mixed_dtypes_as_the_patches_do():
    """A bfloat16 input under float32 parameters runs in float32 with either implementation
    (lax refused operands of two dtypes, so `conv="xla"` decided whether a batch ran)."""
    x = jax.random.normal(jax.random.key(0), (1, 5, 5, 3)).astype(jnp.bfloat16)
    layers = [conv.Conv(4, implementation=i) for i in ("patches", "xla")]
    params = layers[0].init(jax.random.key(1), x)
    outputs = [layer.apply(params, x) for layer in layers]
    assert outputs[0].dtype == outputs[1].dtype == jnp.float32
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)


def test_a_conv_takes_what_nn_conv_takes_down_to_an_empty_output():
    """An int kernel size is a square kernel; a VALID layer with nothing left to pool gives
    an empty output with either implementation (the fused path failed to concatenate)."""
    x = jax.random.normal(jax.random.key(0), (1, 5, 5, 3))
    square = conv.Conv(4, 3)
    params = square.init(jax.random.key(1), x)
    np.testing.assert_array_equal(square.apply(params, x), conv.Conv(4, (3, 3)).apply(params, x))
    for implementation in conv.IMPLEMENTATIONS:
        empty, _ = conv.Conv(8, (3, 3), "VALID", implementation=implementation,
                             relu_max_pool=True).init_with_output(jax.random.key(0),
                                                                  jnp.ones((1, 2, 2, 3)))
        assert empty.shape == (1, 0, 0, 8)


def test_unrolled_threefry_refuses_a_batch_of_keys_as_jax_does():
    keys = jax.random.split(jax.random.key(0), 2)
    with pytest.raises(ValueError, match="single key"):
        jax.random.bits(keys, (2,), jnp.uint32)
    with pytest.raises(ValueError, match="single key"):
        random.bits32(keys, (2,))
