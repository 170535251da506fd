"""The convolutional networks of the GloRo and local-Lipschitz papers, and the Small / Small* /
Medium / Large / Large* networks of the l-infinity papers (Gowal et al., 2018; CROWN-IBP;
"Loss Landscape Matters", appendix A), as keras.Sequential.

Every builder takes ``(input_shape=(28, 28, 1), num_classes=10, activation=..., seed=None,
theta_init=1.0)`` (activation 'relu_theta' by default, 'relu' for the l-infinity networks,
which use ReLU); an activation layer follows every layer but the last (Flatten counts as no
layer). Convolutions use 'same' padding unless stated: an output of ceil(n / stride) per
side, which is what PyTorch's padding=1 gives for kernel 3 at any stride and kernel 4 at
stride 2 on even inputs (kernel 4 at stride 1 is the exception: n - 1 there, n here).
Initialisation as the reference code: conv kernels normal with std sqrt(2 / (k * k * C_out)),
conv biases 0; dense kernels and biases uniform in +-1/sqrt(fan_in) (PyTorch's nn.Linear
default).
"""
import math

import keras

from gloro_local.layers import ClippedMaxMin, Conv2D, Dense, Flatten, MaxMin, ReLU, ReLUTheta

ACTIVATIONS = ("relu", "relu_theta", "maxmin", "clipped_maxmin")


def _activation(name, theta_init):
    if name == "relu":
        return ReLU()
    if name == "relu_theta":
        return ReLUTheta(theta_init=theta_init)
    if name == "maxmin":
        return MaxMin()
    return ClippedMaxMin(upper_init=1.0)


def _seeded(seed, k):
    return None if seed is None else seed + k


def _layer(spec, fan_in, seed):
    """A Conv2D or Dense layer from ``('conv', filters, kernel, strides[, padding])`` or
    ``('dense', units)``, initialised as the reference code."""
    if spec[0] == "conv":
        _, filters, kernel, strides, *padding = spec
        std = math.sqrt(2.0 / (kernel * kernel * filters))
        return Conv2D(filters, kernel, strides=strides,
                      padding=padding[0] if padding else "same",
                      kernel_initializer=keras.initializers.RandomNormal(0.0, std, seed=seed),
                      bias_initializer="zeros")
    bound = 1.0 / math.sqrt(fan_in)
    return Dense(spec[1],
                 kernel_initializer=keras.initializers.RandomUniform(-bound, bound, seed=seed),
                 bias_initializer=keras.initializers.RandomUniform(
                     -bound, bound, seed=_seeded(seed, 1)))


def _build(name, specs, input_shape, num_classes, activation, seed, theta_init):
    """Sequential of ``specs`` + a Flatten before the first dense layer + the logit layer."""
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"Unknown activation {activation!r}; use one of {', '.join(ACTIVATIONS)}.")
    model = keras.Sequential([keras.Input(tuple(input_shape))], name=name)
    shape = (None,) + tuple(input_shape)
    specs = list(specs) + [("dense", num_classes)]
    for k, spec in enumerate(specs):
        if spec[0] == "dense" and len(shape) > 2:
            model.add(Flatten())
            shape = (None, math.prod(shape[1:]))
        layer = _layer(spec, shape[-1], _seeded(seed, 2 * k))
        model.add(layer)
        shape = layer.compute_output_shape(shape)
        if k < len(specs) - 1:
            model.add(_activation(activation, theta_init))
    return model


def cnn_2C2F(input_shape=(28, 28, 1), num_classes=10, activation="relu_theta", seed=None,
             theta_init=1.0):
    """conv16 k4 s2, conv32 k4 s2, flatten, dense100, dense(num_classes).

    MNIST: 14x14x16, 7x7x32, 1568, 100, 10.
    """
    specs = [("conv", 16, 4, 2), ("conv", 32, 4, 2), ("dense", 100)]
    return _build("cnn_2C2F", specs, input_shape, num_classes, activation, seed, theta_init)


def cnn_4C3F(input_shape=(28, 28, 1), num_classes=10, activation="relu_theta", seed=None,
             theta_init=1.0):
    """conv32 k3 s1, conv32 k4 s2, conv64 k3 s1, conv64 k4 s2, flatten, dense512, dense512,
    dense(num_classes).

    MNIST: 28x28x32, 14x14x32, 14x14x64, 7x7x64, 3136, 512, 512, 10.
    """
    specs = [("conv", 32, 3, 1), ("conv", 32, 4, 2), ("conv", 64, 3, 1), ("conv", 64, 4, 2),
             ("dense", 512), ("dense", 512)]
    return _build("cnn_4C3F", specs, input_shape, num_classes, activation, seed, theta_init)


def cnn_6C2F(input_shape=(28, 28, 1), num_classes=10, activation="relu_theta", seed=None,
             theta_init=1.0):
    """conv32 k3 s1, conv32 k3 s1, conv32 k4 s2, conv64 k3 s1, conv64 k3 s1, conv64 k4 s2,
    flatten, dense512, dense(num_classes).

    CIFAR-10: 32x32x32, 32x32x32, 16x16x32, 16x16x64, 16x16x64, 8x8x64, 4096, 512, 10.
    """
    specs = [("conv", 32, 3, 1), ("conv", 32, 3, 1), ("conv", 32, 4, 2),
             ("conv", 64, 3, 1), ("conv", 64, 3, 1), ("conv", 64, 4, 2), ("dense", 512)]
    return _build("cnn_6C2F", specs, input_shape, num_classes, activation, seed, theta_init)


def cnn_8C2F(input_shape=(28, 28, 1), num_classes=10, activation="relu_theta", seed=None,
             theta_init=1.0):
    """conv64 k3 s1, conv64 k3 s1, conv64 k4 s2 valid, conv128 k3 s1, conv128 k3 s1,
    conv128 k4 s2 valid, conv256 k3 s1, conv256 k4 s2 valid, flatten, dense256,
    dense(num_classes). The Tiny-ImageNet network of the local-Lipschitz paper.

    Tiny-ImageNet (64x64x3): 64, 64, 31, 31, 31, 14, 14, 6 (x6x256 = 9216), 256, 200.
    """
    specs = [("conv", 64, 3, 1), ("conv", 64, 3, 1), ("conv", 64, 4, 2, "valid"),
             ("conv", 128, 3, 1), ("conv", 128, 3, 1), ("conv", 128, 4, 2, "valid"),
             ("conv", 256, 3, 1), ("conv", 256, 4, 2, "valid"), ("dense", 256)]
    return _build("cnn_8C2F", specs, input_shape, num_classes, activation, seed, theta_init)


def cnn_7C1F(input_shape=(28, 28, 1), num_classes=10, activation="relu_theta", seed=None,
             theta_init=1.0):
    """conv32 k3 s1, conv32 k3 s1, conv32 k4 s2, conv64 k3 s1, conv64 k3 s1, conv64 k4 s2,
    conv128 k3 s1, flatten, dense(num_classes); all convolutions 'same'. (Our own 7-conv,
    1-dense design: 6C2F's convolutions, a 128-channel conv instead of the hidden dense.)

    MNIST: 28x28x32, 28x28x32, 14x14x32, 14x14x64, 14x14x64, 7x7x64, 7x7x128, 6272, 10.
    """
    specs = [("conv", 32, 3, 1), ("conv", 32, 3, 1), ("conv", 32, 4, 2),
             ("conv", 64, 3, 1), ("conv", 64, 3, 1), ("conv", 64, 4, 2), ("conv", 128, 3, 1)]
    return _build("cnn_7C1F", specs, input_shape, num_classes, activation, seed, theta_init)


def cnn_small(input_shape=(28, 28, 1), num_classes=10, activation="relu", seed=None,
              theta_init=1.0):
    """Small of the l-infinity papers: conv16 k4 s2, conv32 k4 s1, flatten, dense100,
    dense(num_classes).

    MNIST: 14x14x16, 14x14x32, 6272, 100, 10 ('same' padding; PyTorch's padding=1 gives
    13x13x32 = 5408 after the stride-1 kernel-4 convolution, and 'valid' 10x10x32).
    """
    specs = [("conv", 16, 4, 2), ("conv", 32, 4, 1), ("dense", 100)]
    return _build("cnn_small", specs, input_shape, num_classes, activation, seed, theta_init)


def cnn_small_star(input_shape=(28, 28, 1), num_classes=10, activation="relu", seed=None,
                   theta_init=1.0):
    """Small* of the l-infinity papers: conv16 k4 s2, conv32 k4 s2, flatten, dense100,
    dense(num_classes), which is ``cnn_2C2F`` layer for layer; this builds that network
    (the model keeps the name 'cnn_2C2F') with ReLU by default.

    MNIST: 14x14x16, 7x7x32, 1568, 100, 10.
    """
    return cnn_2C2F(input_shape, num_classes, activation, seed, theta_init)


def cnn_medium(input_shape=(28, 28, 1), num_classes=10, activation="relu", seed=None,
               theta_init=1.0):
    """Medium of the l-infinity papers: conv32 k3 s1, conv32 k4 s2, conv64 k3 s1, conv64 k4 s2,
    flatten, dense512, dense512, dense(num_classes), which is ``cnn_4C3F`` layer for layer;
    this builds that network (the model keeps the name 'cnn_4C3F') with ReLU by default.

    MNIST: 28x28x32, 14x14x32, 14x14x64, 7x7x64, 3136, 512, 512, 10.
    """
    return cnn_4C3F(input_shape, num_classes, activation, seed, theta_init)


def cnn_large(input_shape=(28, 28, 1), num_classes=10, activation="relu", seed=None,
              theta_init=1.0):
    """Large of the l-infinity papers: conv64 k3 s1, conv64 k3 s1, conv128 k3 s2,
    conv128 k3 s1, conv128 k3 s1, flatten, dense512, dense(num_classes).

    MNIST: 28x28x64, 28x28x64, 14x14x128, 14x14x128, 14x14x128, 25088, 512, 10.
    """
    specs = [("conv", 64, 3, 1), ("conv", 64, 3, 1), ("conv", 128, 3, 2),
             ("conv", 128, 3, 1), ("conv", 128, 3, 1), ("dense", 512)]
    return _build("cnn_large", specs, input_shape, num_classes, activation, seed, theta_init)


def cnn_large_star(input_shape=(28, 28, 1), num_classes=10, activation="relu", seed=None,
                   theta_init=1.0):
    """Large* of the l-infinity papers: conv64 k3 s1, conv128 k3 s2, conv128 k3 s1,
    conv128 k3 s1, flatten, dense512, dense(num_classes).

    MNIST: 28x28x64, 14x14x128, 14x14x128, 14x14x128, 25088, 512, 10.
    """
    specs = [("conv", 64, 3, 1), ("conv", 128, 3, 2), ("conv", 128, 3, 1),
             ("conv", 128, 3, 1), ("dense", 512)]
    return _build("cnn_large_star", specs, input_shape, num_classes, activation, seed,
                  theta_init)


ARCHITECTURES = {"2C2F": cnn_2C2F, "4C3F": cnn_4C3F, "6C2F": cnn_6C2F, "8C2F": cnn_8C2F,
                 "7C1F": cnn_7C1F, "SMALL": cnn_small, "SMALL*": cnn_small_star,
                 "MEDIUM": cnn_medium, "LARGE": cnn_large, "LARGE*": cnn_large_star}


def get(name, **kwargs):
    """The network called ``name`` ('2C2F', '4C3F', '6C2F', '8C2F', '7C1F', 'small',
    'small*', 'medium', 'large', 'large*'; a 'cnn_' prefix, '_star' for '*' and any case
    are accepted), built with ``kwargs``."""
    key = name.upper().removeprefix("CNN_").replace("_STAR", "*")
    if key not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture; known: {', '.join(ARCHITECTURES)}. "
                         f"Received: name={name!r}")
    return ARCHITECTURES[key](**kwargs)
