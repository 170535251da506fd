"""A Keras layer list seen through the seam: which layers are linear, their shapes."""
import tensorflow as tf

from gloro_local.bounds.input_checks import GRAPH_ERROR_MARKER, check_finite

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

    def check_shape(self, shape):
        """ValueError when a (batch,) + input shape contradicts the network's; unknown
        dimensions (None) pass."""
        shape = tf.TensorShape(shape)
        if shape.rank is not None and (shape.rank != len(self.input_shape) + 1 or any(
                want != got for want, got in zip(self.input_shape, shape[1:])
                if got is not None)):
            raise ValueError(f"Expected inputs of shape (batch,) + {self.input_shape}. "
                             f"Received: inputs of shape {tuple(shape)}.")

    def check_input(self, x):
        """``x`` as a floating tensor (integers are cast to float32), checked to be a batch
        of finite inputs of the network's shape.

        A static shape that contradicts the network's raises ValueError here; dimensions
        unknown while tracing (Keras traces ``predict`` with relaxed shapes) and the
        values are checked by graph assertions (InvalidArgumentError carrying a
        ``GRAPH_ERROR_MARKER`` message) or, eagerly, by ValueError.
        """
        x = tf.convert_to_tensor(x)
        if not x.dtype.is_floating:  # e.g. uint8 images: their values, as floats
            x = tf.cast(x, "float32")
        self.check_shape(x.shape)
        if x.shape.rank is None or not x.shape[1:].is_fully_defined():
            message = (f"{GRAPH_ERROR_MARKER}expected inputs of shape (batch,) + "
                       f"{self.input_shape}.")
            rank = len(self.input_shape) + 1
            shape = tf.shape(x)
            padded = tf.concat([shape, tf.zeros([rank], tf.int32)], 0)[1:rank]
            same = tf.logical_and(tf.equal(tf.size(shape), rank), tf.reduce_all(
                tf.equal(padded, tf.constant(self.input_shape, tf.int32))))
            with tf.control_dependencies([tf.debugging.Assert(same, [message])]):
                x = tf.identity(x)
        return check_finite(x)
