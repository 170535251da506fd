"""The paper architectures: layer shapes, activations, initialisation, lookup by name."""
import math

import numpy as np
import pytest

import gloro_local as gl
from gloro_local import architectures
from gloro_local.bounds import SeamNetwork
from gloro_local.layers import ClippedMaxMin, Conv2D, Dense, Flatten, MaxMin, ReLU, ReLUTheta

MNIST, CIFAR, TINY = (28, 28, 1), (32, 32, 3), (64, 64, 3)
LINF = ("SMALL", "SMALL*", "MEDIUM", "LARGE", "LARGE*")  # the l-infinity papers' networks
ACTIVATION_TYPES = {"relu": ReLU, "relu_theta": ReLUTheta, "maxmin": MaxMin,
                    "clipped_maxmin": ClippedMaxMin}


def shapes(model):
    """Output shapes (no batch axis) of the linear and Flatten layers, in order."""
    return [tuple(layer.output.shape[1:]) for layer in model.layers
            if isinstance(layer, (Conv2D, Dense, Flatten))]


# Small* is 2C2F and Medium is 4C3F (test_linf_networks_that_coincide_reuse_the_builder)
@pytest.mark.parametrize("name, input_shape, classes, expected", [
    ("2C2F", MNIST, 10, [(14, 14, 16), (7, 7, 32), (1568,), (100,), (10,)]),
    ("4C3F", MNIST, 10, [(28, 28, 32), (14, 14, 32), (14, 14, 64), (7, 7, 64), (3136,),
                         (512,), (512,), (10,)]),
    ("4C3F", CIFAR, 10, [(32, 32, 32), (16, 16, 32), (16, 16, 64), (8, 8, 64), (4096,),
                         (512,), (512,), (10,)]),
    ("6C2F", CIFAR, 10, [(32, 32, 32), (32, 32, 32), (16, 16, 32), (16, 16, 64),
                         (16, 16, 64), (8, 8, 64), (4096,), (512,), (10,)]),
    ("8C2F", TINY, 200, [(64, 64, 64), (64, 64, 64), (31, 31, 64), (31, 31, 128),
                         (31, 31, 128), (14, 14, 128), (14, 14, 256), (6, 6, 256), (9216,),
                         (256,), (200,)]),
    ("7C1F", MNIST, 10, [(28, 28, 32), (28, 28, 32), (14, 14, 32), (14, 14, 64),
                         (14, 14, 64), (7, 7, 64), (7, 7, 128), (6272,), (10,)]),
    ("small", MNIST, 10, [(14, 14, 16), (14, 14, 32), (6272,), (100,), (10,)]),
    ("small", CIFAR, 10, [(16, 16, 16), (16, 16, 32), (8192,), (100,), (10,)]),
    ("small_star", CIFAR, 10, [(16, 16, 16), (8, 8, 32), (2048,), (100,), (10,)]),
    ("medium", CIFAR, 10, [(32, 32, 32), (16, 16, 32), (16, 16, 64), (8, 8, 64), (4096,),
                           (512,), (512,), (10,)]),
    ("large", MNIST, 10, [(28, 28, 64), (28, 28, 64), (14, 14, 128), (14, 14, 128),
                          (14, 14, 128), (25088,), (512,), (10,)]),
    ("large", CIFAR, 10, [(32, 32, 64), (32, 32, 64), (16, 16, 128), (16, 16, 128),
                          (16, 16, 128), (32768,), (512,), (10,)]),
    ("large*", MNIST, 10, [(28, 28, 64), (14, 14, 128), (14, 14, 128), (14, 14, 128),
                           (25088,), (512,), (10,)]),
    ("cnn_large_star", CIFAR, 10, [(32, 32, 64), (16, 16, 128), (16, 16, 128),
                                   (16, 16, 128), (32768,), (512,), (10,)]),
])
def test_layer_shapes_match_the_papers(name, input_shape, classes, expected):
    model = architectures.get(name, input_shape=input_shape, num_classes=classes)
    assert shapes(model) == expected


INPUTS = {"mnist": (MNIST, 10), "cifar": (CIFAR, 10), "tiny_imagenet": (TINY, 200)}


@pytest.mark.parametrize("activation", architectures.ACTIVATIONS)
@pytest.mark.parametrize("name, input_shape, classes", [
    pytest.param(name, *INPUTS[data], id=f"{name}-{data}")
    for name in sorted(architectures.ARCHITECTURES) for data in INPUTS
    if not (name in LINF and data == "tiny_imagenet")])  # the l-inf papers: MNIST, CIFAR, SVHN
def test_builds_with_every_activation(name, input_shape, classes, activation):
    model = architectures.get(name, input_shape=input_shape, num_classes=classes,
                              activation=activation)
    assert model.output_shape == (None, classes)
    layers = [layer for layer in model.layers if not isinstance(layer, Flatten)]
    # linear, activation, linear, activation, ..., linear (the logit layer)
    assert all(isinstance(layer, (Conv2D, Dense)) for layer in layers[::2])
    assert all(type(layer) is ACTIVATION_TYPES[activation] for layer in layers[1::2])
    assert isinstance(layers[-1], Dense)
    network = SeamNetwork(model.layers, input_shape)
    assert len(network.hidden) == (len(layers) - 1) // 2


def test_forward_pass_runs():
    model = architectures.cnn_2C2F(activation="clipped_maxmin", seed=0)
    logits = model(np.random.default_rng(0).uniform(size=(3,) + MNIST).astype("float32"))
    assert logits.shape == (3, 10) and np.all(np.isfinite(logits))


def test_initialisation_statistics():
    model = architectures.cnn_4C3F(seed=0)
    for layer in model.layers:
        kernel = layer.kernel.numpy() if isinstance(layer, (Conv2D, Dense)) else None
        if isinstance(layer, Conv2D):
            k, filters = layer.kernel_size[0], layer.filters
            assert kernel.std() == pytest.approx(math.sqrt(2.0 / (k * k * filters)), rel=0.1)
            assert abs(kernel.mean()) < 0.1 * kernel.std()
            assert np.all(layer.bias.numpy() == 0.0)
        elif isinstance(layer, Dense):
            bound = 1.0 / math.sqrt(kernel.shape[0])
            for weights in (kernel, layer.bias.numpy()):
                assert np.all(np.abs(weights) <= bound)
            assert np.abs(kernel).max() > 0.95 * bound
            assert kernel.std() == pytest.approx(bound / math.sqrt(3.0), rel=0.1)


def test_seed_makes_weights_reproducible():
    first, second = (architectures.cnn_2C2F(seed=7) for _ in range(2))
    other = architectures.cnn_2C2F(seed=8)
    for a, b in zip(first.weights, second.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(first.layers[0].kernel.numpy(), other.layers[0].kernel.numpy())


def test_activation_parameters():
    theta = architectures.cnn_2C2F(theta_init=0.5).layers[1]
    assert isinstance(theta, ReLUTheta) and np.all(theta.theta.numpy() == 0.5)
    clipped = architectures.cnn_2C2F(activation="clipped_maxmin").layers[1]
    assert np.all(clipped.upper.numpy() == 1.0) and np.all(clipped.lower.numpy() == -1.0)


@pytest.mark.parametrize("name", LINF)
@pytest.mark.parametrize("input_shape", [MNIST, CIFAR], ids=["mnist", "cifar"])
def test_linf_networks_are_relu_seams_of_a_local_gloro_net(name, input_shape):
    """ReLU by default, and every layer a seam the local bound supports."""
    model = architectures.get(name, input_shape=input_shape)
    assert {type(layer) for layer in model.layers} == {Conv2D, Dense, Flatten, ReLU}
    net = gl.LocalGloroNet(model, 0.1)
    assert net.num_classes == 10
    assert len(net.network.hidden) == sum(isinstance(layer, ReLU) for layer in model.layers)


@pytest.mark.parametrize("name, same_as", [("small*", architectures.cnn_2C2F),
                                           ("medium", architectures.cnn_4C3F)])
def test_linf_networks_that_coincide_reuse_the_builder(name, same_as):
    model = architectures.get(name, seed=3)
    twin = same_as(seed=3, activation="relu")
    assert model.name == twin.name
    assert [type(layer) for layer in model.layers] == [type(layer) for layer in twin.layers]
    for a, b in zip(model.weights, twin.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_lookup_by_name():
    assert architectures.get("cnn_4c3f").name == "cnn_4C3F"
    assert architectures.get("CNN_Large_Star").name == "cnn_large_star"
    assert architectures.get("large*").name == "cnn_large_star"
    assert architectures.get("Small").name == "cnn_small"
    with pytest.raises(ValueError, match="2C2F, 4C3F, 6C2F, 8C2F, 7C1F, SMALL, SMALL\\*, "
                                         "MEDIUM, LARGE, LARGE\\*. Received: name='resnet'"):
        architectures.get("resnet")
    with pytest.raises(ValueError, match="relu, relu_theta, maxmin, clipped_maxmin"):
        architectures.cnn_2C2F(activation="tanh")
