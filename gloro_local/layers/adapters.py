"""Gives plain Keras layers the seam, and rejects every layer the library does not know."""
import keras

from gloro_local.layers.conv2d import Conv2DSeam
from gloro_local.layers.dense import DenseSeam
from gloro_local.layers.relu import ReLU
from gloro_local.layers.seam import (ActivationSeam, ElementwiseActivation, LinearSeam,
                                     ShapeSeam)
from gloro_local.layers.validation import reject_unsupported, require_channels_last


class _KerasLayerAdapter:
    """Reads the wrapped Keras layer's attributes (kernel, bias, strides, ...) as its own."""

    def __init__(self, layer):
        self.layer = layer

    def __getattr__(self, name):
        return getattr(self.layer, name)


class KerasDenseAdapter(DenseSeam, _KerasLayerAdapter):
    """The Dense seam for a plain ``keras.layers.Dense`` (linear activation only)."""


class KerasConv2DAdapter(Conv2DSeam, _KerasLayerAdapter):
    """The Conv2D seam for a plain ``keras.layers.Conv2D`` (linear activation only)."""


class KerasFlattenAdapter(ShapeSeam, _KerasLayerAdapter):
    """The shape seam for a plain ``keras.layers.Flatten``."""


class KerasReLUAdapter(ElementwiseActivation, _KerasLayerAdapter):
    """The ReLU seam for a plain ``keras.layers.ReLU`` with default arguments or a
    ``keras.layers.Activation('relu')``."""

    varying = ReLU.varying
    sparsity = ReLU.sparsity


def _config_of(layer, *keys):
    config = layer.get_config()
    return {key: config.get(key) for key in keys}


def as_seam(layer):
    """Returns an object with the seam of ``layer``, or raises TypeError naming it.

    gloro_local layers are returned as they are; plain ``keras.layers.Dense``, ``Conv2D``,
    ``Flatten`` and ``ReLU`` are wrapped. Anything else is refused, since assuming an
    unknown layer is 1-Lipschitz could make certificates wrong.
    """
    if isinstance(layer, (LinearSeam, ActivationSeam, ShapeSeam)):
        return layer
    name = type(layer).__name__
    if type(layer) is keras.layers.Dense:
        reject_unsupported(name, _config_of(layer, "activation"))
        return KerasDenseAdapter(layer)
    if type(layer) is keras.layers.Conv2D:
        reject_unsupported(name, _config_of(
            layer, "activation", "data_format", "dilation_rate", "groups"))
        return KerasConv2DAdapter(layer)
    if type(layer) is keras.layers.Flatten:
        require_channels_last(layer)
        return KerasFlattenAdapter(layer)
    if type(layer) is keras.layers.ReLU:
        config = layer.get_config()
        if config.get("max_value") is None and not config.get("negative_slope") \
                and not config.get("threshold"):
            return KerasReLUAdapter(layer)
    if type(layer) is keras.layers.Activation and layer.activation is keras.activations.relu:
        return KerasReLUAdapter(layer)
    raise TypeError(
        f"Layer {layer.name!r} of type {name} is not supported by gloro_local bound "
        "propagation. Supported: gloro_local.layers.Dense, Conv2D, Flatten, ReLU, "
        "ReLUTheta, MaxMin, ClippedMaxMin and plain keras.layers.Dense, Conv2D, Flatten, "
        "ReLU (default arguments), Activation('relu').")
