"""Clear errors for bad epsilon, wrong input shapes and layers bounds cannot handle."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from gloro_local.bounds import SeamNetwork, check_epsilon
from gloro_local.layers import ClippedMaxMin, Conv2D, Dense, MaxMin, ReLU, as_seam


@pytest.mark.parametrize("eps", [0, 0.0, -1, -0.5, float("nan"), float("inf"), -float("inf")])
def test_bad_epsilon(eps):
    with pytest.raises(ValueError, match="epsilon"):
        check_epsilon(eps)
    with pytest.raises(ValueError, match="epsilon"):
        check_epsilon(tf.constant(eps, tf.float32))


def test_good_epsilon_is_floatx():
    eps = check_epsilon(np.float64(0.25))
    assert eps.dtype == keras.config.floatx() and float(eps) == 0.25


def network():
    f = keras.Sequential([keras.Input((6, 6, 2)), Conv2D(4, 3), ReLU(),
                          keras.layers.Flatten(), Dense(3)])
    return SeamNetwork(f.layers, (6, 6, 2))


@pytest.mark.parametrize("shape", [(2, 6, 6), (2, 6, 6, 2, 1), (2, 6, 5, 2), (2, 6, 6, 3)])
def test_wrong_input_shape(shape):
    with pytest.raises(ValueError, match=r"\(6, 6, 2\)"):
        network().check_input(np.zeros(shape, np.float32))


def test_right_input_shape_passes():
    x = np.zeros((5, 6, 6, 2), np.float32)
    np.testing.assert_array_equal(network().check_input(x), x)


@pytest.mark.parametrize("layer", [keras.layers.BatchNormalization, keras.layers.MaxPooling2D,
                                   keras.layers.Dropout, keras.layers.LeakyReLU])
def test_unknown_layer_is_a_type_error_naming_it(layer):
    instance = layer(0.5) if layer is keras.layers.Dropout else layer()
    with pytest.raises(TypeError, match=layer.__name__):
        as_seam(instance)


@pytest.mark.parametrize("kwargs", [{"max_value": 6.0}, {"negative_slope": 0.1},
                                    {"threshold": 0.5}])
def test_keras_relu_with_arguments_is_refused(kwargs):
    with pytest.raises(TypeError, match="ReLU"):
        as_seam(keras.layers.ReLU(**kwargs))


def test_unknown_layer_in_network():
    layers = [Dense(4), keras.layers.BatchNormalization(), Dense(2)]
    with pytest.raises(TypeError, match="BatchNormalization"):
        SeamNetwork(layers, (3,))


@pytest.mark.parametrize("make", [lambda: Dense(4, activation="relu"),
                                  lambda: Conv2D(4, 3, activation="relu"),
                                  lambda: Conv2D(4, 3, dilation_rate=2),
                                  lambda: Conv2D(4, 3, data_format="channels_first")])
def test_gloro_linear_layer_arguments(make):
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize("layer", [keras.layers.Dense(4, activation="relu"),
                                   keras.layers.Conv2D(4, 3, activation="relu"),
                                   keras.layers.Conv2D(4, 3, dilation_rate=2)])
def test_keras_linear_layer_with_activation_via_as_seam(layer):
    with pytest.raises(ValueError):
        as_seam(layer)


def test_last_layer_must_be_linear():
    f = keras.Sequential([keras.Input((3,)), Dense(4), ReLU()])
    with pytest.raises(ValueError, match="last layer"):
        SeamNetwork(f.layers, (3,))


@pytest.mark.parametrize("layer", [MaxMin, ClippedMaxMin])
def test_maxmin_needs_even_channels(layer):
    with pytest.raises(ValueError, match="even"):
        keras.Sequential([keras.Input((5,)), layer()])
    with pytest.raises(ValueError, match="even"):
        layer()(np.zeros((2, 4, 4, 3), np.float32))
