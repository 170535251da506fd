"""The linear seam: linear_transpose is the exact adjoint of linear, bias stays out."""
import itertools
from functools import partial

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import explicit_matrix
from gloro_local.layers import Conv2D, Dense, as_seam


def conv_cases():
    for gloro, stride, padding, kernel, use_bias in itertools.product(
            (True, False), (1, 2), ("same", "valid"), (3, 4), (True, False)):
        cls = Conv2D if gloro else keras.layers.Conv2D
        layer = partial(cls, 3, kernel, strides=stride, padding=padding, use_bias=use_bias)
        yield pytest.param(layer, (7, 5, 2), id=f"{cls.__module__.split('.')[0]}-s{stride}-"
                                                f"{padding}-k{kernel}-bias{use_bias}")


def window_cases():
    """Stride 1 with kh * kw * c_in <= c_out: the adjoint by shifted windows."""
    for padding, kernel, shape in itertools.product(("same", "valid"), (3, 4),
                                                    ((7, 5, 1), (6, 8, 2))):
        layer = partial(Conv2D, 40, kernel, padding=padding)
        yield pytest.param(layer, shape, id=f"windows-{padding}-k{kernel}-c{shape[-1]}")


def dense_cases():
    for gloro, use_bias in itertools.product((True, False), (True, False)):
        cls = Dense if gloro else keras.layers.Dense
        yield pytest.param(partial(cls, 5, use_bias=use_bias), (7,),
                           id=f"{cls.__module__.split('.')[0]}-dense-bias{use_bias}")


def built_seam(make_layer, input_shape):
    layer = make_layer(bias_initializer=keras.initializers.RandomNormal(stddev=1.0))
    layer.build((None,) + input_shape)
    return as_seam(layer), layer


ALL_CASES = [*conv_cases(), *window_cases(), *dense_cases()]


@pytest.mark.parametrize("make_layer, input_shape", ALL_CASES)
def test_transpose_is_adjoint(make_layer, input_shape):
    seam, layer = built_seam(make_layer, input_shape)
    rng = np.random.default_rng(0)
    u = rng.standard_normal((4,) + input_shape).astype(np.float32)
    au = np.asarray(seam.linear(u), np.float64)
    v = rng.standard_normal(au.shape).astype(np.float32)
    atv = np.asarray(seam.linear_transpose(v, input_shape), np.float64)
    assert atv.shape == u.shape
    for b in range(len(u)):
        lhs, rhs = np.vdot(au[b], v[b]), np.vdot(u[b], atv[b])
        scale = np.linalg.norm(au[b]) * np.linalg.norm(v[b])
        assert abs(lhs - rhs) <= 1e-5 * scale


@pytest.mark.parametrize("make_layer, input_shape", list(window_cases()))
def test_window_adjoint_is_taken_and_equals_conv2d_transpose(make_layer, input_shape,
                                                              monkeypatch):
    seam, layer = built_seam(make_layer, input_shape)
    v = np.random.default_rng(2).standard_normal(
        (3,) + tuple(seam.linear(np.zeros((1,) + input_shape, np.float32)).shape[1:]))
    v = tf.constant(v, tf.float32)
    expected = tf.nn.conv2d_transpose(v, layer.kernel, (3,) + input_shape, 1,
                                      layer.padding.upper()).numpy()
    monkeypatch.setattr(tf.nn, "conv2d_transpose", lambda *args, **kwargs: pytest.fail())
    got = seam.linear_transpose(v, input_shape).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("make_layer, input_shape", ALL_CASES)
def test_linear_is_bias_free_and_matches_layer(make_layer, input_shape):
    seam, layer = built_seam(make_layer, input_shape)
    u = np.random.default_rng(1).standard_normal((3,) + input_shape).astype(np.float32)
    zero = np.zeros_like(u)
    np.testing.assert_array_equal(seam.linear(zero), np.zeros_like(layer(zero)))
    np.testing.assert_allclose(seam.affine(u), layer(u), rtol=1e-5, atol=1e-5)
    if layer.use_bias:
        assert np.abs(np.asarray(layer.bias)).max() > 0.0


@pytest.mark.parametrize("make_layer, input_shape", [*conv_cases(), *dense_cases()])
def test_abs_linear_and_row_norms_bound_the_matrix(make_layer, input_shape):
    seam, layer = built_seam(make_layer, input_shape)
    matrix = explicit_matrix(seam.linear, input_shape)
    abs_matrix = explicit_matrix(seam.abs_linear, input_shape)
    np.testing.assert_allclose(abs_matrix, np.abs(matrix), rtol=1e-5, atol=1e-6)
    out_shape = np.asarray(seam.linear(np.zeros((1,) + input_shape, np.float32))).shape[1:]
    row_norms = np.linalg.norm(matrix, axis=1).reshape(out_shape)
    assert np.all(row_norms <= np.asarray(seam.row_norms()) * (1 + 1e-5))
    # Some output neuron sees the whole filter (dense: every row), so the bound is attained.
    per_channel = row_norms.reshape(-1, out_shape[-1]).max(axis=0)
    np.testing.assert_allclose(per_channel, np.asarray(seam.row_norms()), rtol=1e-5)
