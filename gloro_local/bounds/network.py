"""A Keras layer list seen through the seam: which layers are linear, their shapes."""
import tensorflow as tf

from gloro_local.layers import LinearSeam, as_seam
from gloro_local.layers.dense import DenseSeam


class SeamNetwork:
    """The layers of ``f`` as seam objects, with the input shape of every layer.

    The last layer must be a Dense logit layer with at least two units on flat features
    (the worst-case logits compare pairs of its rows). ``hidden`` lists the indices of
    the other linear layers, whose spectral norms enter the Lipschitz product.

    Args:
        layers: the Keras layers, in order (e.g. ``f.layers`` of a Sequential).
        input_shape: the per-sample input shape, without the batch axis.
    """

    def __init__(self, layers, input_shape):
        if not layers:
            raise ValueError("The network has no layers.")
        self.layers = list(layers)
        self.seams = [as_seam(layer) for layer in self.layers]
        self.input_shape = tuple(input_shape)
        self.input_shapes = []
        shape = (None,) + self.input_shape
        for layer in self.layers:
            self.input_shapes.append(tuple(shape[1:]))
            shape = tuple(layer.compute_output_shape(shape))
        self.output_shape = tuple(shape[1:])
        self._check_logit_layer()
        self.hidden = [i for i, seam in enumerate(self.seams[:-1])
                       if isinstance(seam, LinearSeam)]
        self.compiled = {}

    def _check_logit_layer(self):
        last = self.layers[-1]
        described = f"{type(last).__name__} ({last.name!r})"
        if not isinstance(self.seams[-1], DenseSeam):
            raise ValueError("The last layer must be a Dense logit layer. Received: "
                             f"{described}.")
        if len(self.input_shapes[-1]) != 1:
            raise ValueError(
                "The Dense logit layer needs flat features (add a Flatten layer before "
                f"it). Received: input shape {self.input_shapes[-1]} for {described}.")
        if self.output_shape[-1] < 2:
            raise ValueError("The logit layer needs at least 2 classes to compare. "
                             f"Received: {self.output_shape[-1]} unit(s) in {described}.")

    @property
    def num_classes(self):
        return self.output_shape[-1]

    @property
    def logit_layer(self):
        return self.seams[-1]

    def features(self, x):
        """The clean pass through every layer but the logit layer, in the dtype of x."""
        for seam in self.seams[:-1]:
            x = seam.affine(x) if isinstance(seam, LinearSeam) else seam.call(x)
        return x

    def logits(self, x):
        """The clean logits, computed through the seams in the dtype of ``x``."""
        return self.logit_layer.affine(self.features(x))

    def hidden_layers(self):
        """(seam, input_shape) for every hidden linear layer, in order."""
        return [(self.seams[i], self.input_shapes[i]) for i in self.hidden]

    def check_input(self, x):
        """Raises ValueError when ``x`` is not a batch of inputs of the network's shape."""
        shape = tuple(x.shape)
        if len(shape) != len(self.input_shape) + 1 or any(
                want is not None and got is not None and want != got
                for want, got in zip(self.input_shape, shape[1:])):
            raise ValueError(
                f"Expected inputs of shape (batch,) + {self.input_shape}, got {shape}.")
        return tf.convert_to_tensor(x)
