"""A Keras layer list seen through the seam: which layers are linear, their shapes."""
import tensorflow as tf

from gloro_local.layers import ActivationSeam, LinearSeam, ShapeSeam, as_seam


class SeamNetwork:
    """The layers of ``f`` as seam objects, with the input shape of every layer.

    The last layer must be linear (the logit layer). ``hidden`` lists the indices of the
    other linear layers, whose spectral norms enter the Lipschitz product.

    Args:
        layers: the Keras layers, in order (e.g. ``f.layers`` of a Sequential).
        input_shape: the per-sample input shape, without the batch axis.
    """

    def __init__(self, layers, input_shape):
        if not layers:
            raise ValueError("The network has no layers.")
        self.layers = list(layers)
        self.seams = [as_seam(layer) for layer in self.layers]
        if not isinstance(self.seams[-1], LinearSeam):
            raise ValueError(
                f"The last layer must be a Dense logit layer, got "
                f"{type(self.layers[-1]).__name__} ({self.layers[-1].name!r}).")
        self.input_shape = tuple(input_shape)
        self.input_shapes = []
        shape = (None,) + self.input_shape
        for layer in self.layers:
            self.input_shapes.append(tuple(shape[1:]))
            shape = tuple(layer.compute_output_shape(shape))
        self.output_shape = tuple(shape[1:])
        self.hidden = [i for i, seam in enumerate(self.seams[:-1])
                       if isinstance(seam, LinearSeam)]

    @property
    def num_classes(self):
        return self.output_shape[-1]

    @property
    def logit_layer(self):
        return self.seams[-1]

    def hidden_layers(self):
        """(seam, input_shape) for every hidden linear layer, in order."""
        return [(self.seams[i], self.input_shapes[i]) for i in self.hidden]

    def activations(self):
        return [seam for seam in self.seams if isinstance(seam, ActivationSeam)]

    def is_shape(self, index):
        return isinstance(self.seams[index], ShapeSeam)

    def check_input(self, x):
        """Raises ValueError when ``x`` is not a batch of inputs of the network's shape."""
        shape = tuple(x.shape)
        if len(shape) != len(self.input_shape) + 1 or any(
                want is not None and got is not None and want != got
                for want, got in zip(self.input_shape, shape[1:])):
            raise ValueError(
                f"Expected inputs of shape (batch,) + {self.input_shape}, got {shape}.")
        return tf.convert_to_tensor(x)
