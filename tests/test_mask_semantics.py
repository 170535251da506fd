"""Each layer says how masks of varying neurons map through it, and networks whose
layers the bounds cannot handle are refused when the model is built."""
import keras
import numpy as np
import pytest

import gloro_local as gl
from gloro_local.bounds import SeamNetwork, check_epsilon, propagate
from gloro_local.layers import (ActivationSeam, ClippedMaxMin, Conv2D, Dense, Flatten,
                                LinearSeam, MaxMin, ReLU, ReLUTheta)


def reported_example():
    """Dense(4) ReLU MaxMin Dense(2) MaxMin Dense(2): the ReLU kills neurons 0 and 1, and
    MaxMin pairs each dead neuron with a live one (0 with 2, 1 with 3)."""
    f = keras.Sequential([keras.Input((2,)), Dense(4), ReLU(), MaxMin(), Dense(2), MaxMin(),
                          Dense(2)])
    k1 = np.array([[0, 0, 1, 0], [0, 0, 0, 1]], np.float32)
    b1 = np.array([-10, -10, 0, 0], np.float32)
    k2 = np.zeros((4, 2), np.float32)
    k2[0, 0] = k2[1, 1] = 1
    for layer, weights in zip([f.layers[0], f.layers[3], f.layers[5]],
                              [(k1, b1), (k2, np.zeros(2, np.float32)),
                               (np.eye(2, dtype=np.float32), np.array([0, 0.2], np.float32))]):
        layer.set_weights(list(weights))
    return f


def test_reported_relu_then_maxmin_example_is_not_certified():
    f = reported_example()
    model = gl.LocalGloroNet(f, 0.35)
    x = np.array([[0.5, 0.1]], np.float32)
    counterexample = np.array([[0.2, 0.1]], np.float32)
    assert np.linalg.norm(counterexample - x) < 0.35
    assert np.argmax(f(counterexample)) != np.argmax(f(x))  # the class does change
    bounds = model.lipschitz_bounds(x, converge=True)
    assert bounds["local"][0] >= 1.0 - 1e-5  # the identity path through MaxMin moves
    for cheap in (True, False):
        certificate = model.certify(x, attack_steps=0, cheap_stages=cheap)
        assert not certificate.certified[0]


def test_pairwise_mask_marks_both_outputs_of_a_moving_pair():
    mask = np.array([[1, 0, 0, 0, 1, 0]], np.float32)  # pairs (0, 3), (1, 4), (2, 5)
    np.testing.assert_array_equal(MaxMin().map_mask(mask, None), [[1, 1, 0, 1, 1, 0]])
    own = np.array([[0, 1, 1, 1, 1, 1]], np.float32)
    np.testing.assert_array_equal(MaxMin().map_mask(mask, own), [[0, 1, 0, 1, 1, 0]])
    assert MaxMin().map_mask(None, None) is None
    assert not MaxMin.elementwise and not ClippedMaxMin.elementwise


def test_elementwise_mask_combines_with_the_incoming_one():
    mask = np.array([[1, 0, 1]], np.float32)
    own = np.array([[1, 1, 0]], np.float32)
    np.testing.assert_array_equal(ReLU().map_mask(mask, own), [[1, 0, 0]])
    np.testing.assert_array_equal(ReLUTheta().map_mask(None, own), own)
    assert ReLU.elementwise and ReLUTheta.elementwise


def masks_of(layers, input_shape, x, eps):
    f = keras.Sequential([keras.Input(input_shape)] + layers)
    network = SeamNetwork(f.layers, input_shape)
    norms = [seam.norm_upper_bound(shape) for seam, shape in network.hidden_layers()]
    return f, propagate(network, x, check_epsilon(eps), norms)


def test_row_mask_is_the_product_of_an_elementwise_chain():
    """Dense -> ReLU -> ReLUTheta: a row is deleted when either activation holds its
    neuron constant."""
    x = np.array([[1.0, -1.0]], np.float32)
    f, prop = masks_of([Dense(3, use_bias=False), ReLU(), ReLUTheta(), Dense(2)], (2,), x,
                       0.01)
    f.layers[0].kernel.assign(np.array([[1.0, -1.0, 3.0], [0.0, 0.0, 0.0]], np.float32))
    f.layers[2].theta.assign(np.array([2.0, 2.0, 1.0], np.float32))
    network = SeamNetwork(f.layers, (2,))
    prop = propagate(network, x, check_epsilon(0.01), [3.2])
    relu, theta = (np.asarray(a.varying) for a in prop.activations)
    np.testing.assert_array_equal(relu, [[1, 0, 1]])
    np.testing.assert_array_equal(theta, [[1, 0, 0]])  # neuron 2 sits above theta
    np.testing.assert_array_equal(prop.out_masks[0], [[1, 0, 0]])


def test_row_mask_reaches_through_flatten_and_stops_at_maxmin():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(2, 4, 4, 1)).astype(np.float32)
    f, prop = masks_of([Conv2D(2, 3, padding="same", bias_initializer="ones"), Flatten(),
                        ReLU(), Dense(4), MaxMin(), ReLU(), Dense(3)], (4, 4, 1), x, 0.05)
    assert prop.out_masks[0] is not None and prop.out_masks[0].shape == (2, 4, 4, 2)
    np.testing.assert_array_equal(np.reshape(prop.out_masks[0], (2, -1)),
                                  prop.activations[0].varying)
    assert prop.out_masks[1] is None  # MaxMin ends the row mask of Dense(4)
    np.testing.assert_array_equal(prop.in_masks[1], prop.activations[0].varying)


class MissingAdjoint(LinearSeam, keras.layers.Layer):
    def linear(self, u):
        return u


class MissingMaskRule(ActivationSeam, keras.layers.Layer):
    def varying(self, lo, hi):
        return None

    def sparsity(self, lo, hi, lam_theta=0.0):
        return 0.0


@pytest.mark.parametrize("cls", [MissingAdjoint, MissingMaskRule])
def test_a_role_with_a_missing_method_cannot_be_built(cls):
    with pytest.raises(TypeError, match="abstract"):
        cls()


@pytest.mark.parametrize("layers, message", [
    ([Conv2D(2, 3)], "Dense logit layer"),
    ([Flatten(), Dense(1)], "at least 2 classes"),
    ([Dense(3)], "flat features"),
])
def test_logit_layers_the_bound_cannot_handle_are_refused(layers, message):
    f = keras.Sequential([keras.Input((5, 5, 1))] + layers)
    with pytest.raises(ValueError, match=message):
        gl.LocalGloroNet(f, 0.1)


@pytest.mark.parametrize("make", [lambda: ReLUTheta(theta_init=float("nan")),
                                  lambda: ReLUTheta(theta_init=-1.0),
                                  lambda: ClippedMaxMin(upper_init=float("inf")),
                                  lambda: ClippedMaxMin(1.0, lower_init=float("nan"))])
def test_thresholds_must_start_finite(make):
    with pytest.raises(ValueError, match="Received"):
        make()


@pytest.mark.parametrize("make", [lambda: Flatten(data_format="channels_first"),
                                  lambda: keras.layers.Flatten(data_format="channels_first")])
def test_channels_first_flatten_is_refused(make):
    """Flatten(channels_first) transposes before it flattens: not a pure reshape, so a row
    mask reshaped back would delete rows that move."""
    with pytest.raises(ValueError, match="channels_last"):
        f = keras.Sequential([keras.Input((3, 2)), Dense(2), make(), ReLU(), Dense(2)])
        gl.LocalGloroNet(f, 0.1)


def test_layers_created_under_channels_first_are_refused():
    try:
        keras.config.set_image_data_format("channels_first")
        for make in (lambda: Conv2D(2, 3), lambda: Flatten()):
            with pytest.raises(ValueError, match="channels_last"):
                make()
    finally:
        keras.config.set_image_data_format("channels_last")


def test_quantized_layers_are_refused():
    f = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6), ReLU(), Dense(3)])
    model = gl.LocalGloroNet(f, 0.1)
    f.layers[0].quantize("int8")
    with pytest.raises(ValueError, match="quantized"):
        model.certify(np.zeros((2, 4), np.float32))
