"""The operator-norm bounds are sound (>= the exact norm of the explicit matrix), not
loose beyond a measured factor, float32-representable, and reject bad arguments."""
import numpy as np
import pytest
import tensorflow as tf
from conftest import explicit_matrix

from gloro_local.layers.operator_norms import (RELATIVE_MARGIN, conv2d_norm_bound,
                                               dense_norm_bound, with_margin)

SIZES = [(5, 5), (6, 7), (8, 8)]
KERNEL_SIZES = [(1, 1), (2, 2), (3, 3), (4, 4), (1, 3), (4, 2)]
# Worst bound / exact measured over this grid (36 random kernels per family from
# rng seed 0); each factor is the measured worst x 1.1, rounded up to 0.05. Stride 1 is
# loosest: on these small inputs the borders, which the circular embedding ignores,
# matter most ('valid' drops the most border outputs).
FACTORS = {  # (strides, padding): (factor, measured worst)
    (1, "same"): (1.45, 1.297),
    (1, "valid"): (1.75, 1.576),
    (2, "same"): (1.3, 1.169),
    (2, "valid"): (1.3, 1.161),
    ((1, 2), "same"): (1.4, 1.235),
    ((2, 1), "valid"): (1.5, 1.346),
    (3, "same"): (1.4, 1.233),
    (3, "valid"): (1.2, 1.080),
}


def exact_conv_norm(kernel, input_shape, strides, padding):
    """Top singular value of the explicit matrix of tf.nn.conv2d in float64."""
    k = tf.constant(kernel, tf.float64)
    matrix = explicit_matrix(
        lambda x: tf.nn.conv2d(tf.cast(x, tf.float64), k, strides, padding.upper()),
        input_shape)
    return np.linalg.svd(matrix, compute_uv=False)[0]


def conv_ratios(strides, padding, seed=0):
    """bound / exact over SIZES x KERNEL_SIZES x two random channel counts and kernels."""
    rng = np.random.default_rng(seed)
    ratios = []
    for size in SIZES:
        for kernel_size in KERNEL_SIZES:
            for _ in range(2):
                c_in, c_out = rng.integers(1, 5, size=2)
                kernel = rng.standard_normal(kernel_size + (c_in, c_out))
                input_shape = size + (c_in,)
                exact = exact_conv_norm(kernel, input_shape, strides, padding)
                bound = conv2d_norm_bound(kernel, input_shape, strides, padding)
                assert bound >= exact, (size, kernel.shape, bound, exact)
                ratios.append(bound / exact)
    return ratios


@pytest.mark.parametrize("strides, padding", list(FACTORS))
def test_conv_bound_is_sound_and_tight(strides, padding):
    factor, _ = FACTORS[strides, padding]
    worst = max(conv_ratios(strides, padding))
    assert worst <= factor, f"worst bound / exact {worst:.4f} > {factor}"


@pytest.mark.parametrize("shape", [(1, 7), (7, 1), (1, 1), (9, 4), (4, 9), (30, 30)])
def test_dense_bound_is_the_norm_plus_margin(shape):
    kernel = np.random.default_rng(1).standard_normal(shape)
    exact = np.linalg.svd(kernel, compute_uv=False)[0]
    bound = dense_norm_bound(kernel)
    assert exact <= bound <= exact * (1 + 2e-5)
    assert float(np.float32(bound)) == bound


def test_zero_kernels_give_zero():
    assert dense_norm_bound(np.zeros((5, 3))) == 0.0
    for strides, padding in [(1, "same"), (2, "valid"), ((2, 3), "same")]:
        assert conv2d_norm_bound(np.zeros((3, 3, 2, 4)), (6, 7, 2), strides, padding) == 0.0


@pytest.mark.parametrize("strides, padding",
                         [(1, "same"), (2, "same"), (2, "valid"), (3, "valid")])
def test_one_nonzero_tap_is_exact(strides, padding):
    kernel = np.zeros((4, 3, 2, 3))
    kernel[2, 1, 1, 0] = -1.7
    exact = exact_conv_norm(kernel, (8, 8, 2), strides, padding)
    np.testing.assert_allclose(exact, 1.7, rtol=1e-12)
    assert conv2d_norm_bound(kernel, (8, 8, 2), strides, padding) == with_margin(1.7)


@pytest.mark.parametrize("strides", [1, 2, (3, 1)])
def test_pointwise_conv_is_the_dense_norm(strides):
    channels = np.random.default_rng(2).standard_normal((4, 6))
    dense = dense_norm_bound(channels)
    conv = conv2d_norm_bound(channels[None, None], (5, 6, 4), strides, "same")
    assert abs(conv - dense) <= RELATIVE_MARGIN * dense


def test_with_margin_rounds_up_to_float32():
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.uniform(0, 10, 200), 10.0 ** rng.uniform(-30, 30, 200),
                             [1.0, 0.1, 3.0, 1e-40, float(np.float32(0.3))]])
    for value in values:
        target = value * (1 + RELATIVE_MARGIN)
        rounded = with_margin(value)
        assert isinstance(rounded, float)
        assert float(np.float32(rounded)) == rounded
        assert rounded >= target
        assert float(np.nextafter(np.float32(rounded), np.float32(-np.inf))) < target
    assert with_margin(0.0) == 0.0


@pytest.mark.parametrize("call, message", [
    (lambda: dense_norm_bound(np.ones(3)), "rank 2"),
    (lambda: dense_norm_bound(np.ones((2, 2, 2))), "rank 2"),
    (lambda: dense_norm_bound(np.zeros((0, 3))), "non-empty finite"),
    (lambda: dense_norm_bound(np.array([[1.0, np.nan]])), "non-empty finite"),
    (lambda: conv2d_norm_bound(np.ones((3, 3, 2)), (5, 5, 2), 1, "same"), "rank 4"),
    (lambda: conv2d_norm_bound(np.full((3, 3, 2, 1), np.inf), (5, 5, 2), 1, "same"),
     "non-empty finite"),
    (lambda: conv2d_norm_bound(np.ones((3, 3, 2, 1)), (5, 5, 3), 1, "same"), "3 channels"),
    (lambda: conv2d_norm_bound(np.ones((3, 3, 2, 1)), (5, 5), 1, "same"), "input_shape"),
    (lambda: conv2d_norm_bound(np.ones((3, 3, 2, 1)), (5, None, 2), 1, "same"),
     "input_shape"),
    (lambda: conv2d_norm_bound(np.ones((3, 3, 2, 1)), (0, 5, 2), 1, "same"), "input_shape"),
    (lambda: conv2d_norm_bound(np.ones((3, 3, 2, 1)), 5, 1, "same"), "input_shape"),
    (lambda: conv2d_norm_bound(np.ones((3, 3, 2, 1)), (5, 5, 2), 0, "same"), "strides"),
    (lambda: conv2d_norm_bound(np.ones((3, 3, 2, 1)), (5, 5, 2), (1, -2), "same"),
     "strides"),
    (lambda: conv2d_norm_bound(np.ones((3, 3, 2, 1)), (5, 5, 2), (1, 1, 1), "same"),
     "strides"),
    (lambda: conv2d_norm_bound(np.ones((3, 3, 2, 1)), (5, 5, 2), 1.5, "same"), "strides"),
    (lambda: conv2d_norm_bound(np.ones((3, 3, 2, 1)), (5, 5, 2), True, "same"), "strides"),
    (lambda: conv2d_norm_bound(np.ones((3, 3, 2, 1)), (5, 5, 2), 1, "causal"), "padding"),
    (lambda: conv2d_norm_bound(np.ones((3, 3, 2, 1)), (5, 5, 2), 1, None), "padding"),
    (lambda: conv2d_norm_bound(np.ones((3, 3, 2, 1)), (2, 5, 2), 1, "valid"),
     "at least as large"),
    (lambda: with_margin(-1.0), "non-negative"),
    (lambda: with_margin(float("nan")), "non-negative"),
])
def test_bad_arguments_are_rejected(call, message):
    with pytest.raises(ValueError, match=message) as error:
        call()
    assert "Received" in str(error.value)


def test_stride_two_bound_takes_the_smaller_torus():
    """A pinned value (the reviewer's case): the torus sized by the output count is
    tighter here than the one sized by the input support; both are sound."""
    kernel = np.array([-0.5, 0.4, 1.3, 0.9]).reshape(4, 1, 1, 1)
    bound = conv2d_norm_bound(kernel, (4, 1, 1), (2, 1), "same")
    exact = exact_conv_norm(kernel, (4, 1, 1), (2, 1), "same")
    assert bound >= exact
    np.testing.assert_allclose(bound, 1.78887, rtol=2e-5)  # input-support torus: 1.86817
