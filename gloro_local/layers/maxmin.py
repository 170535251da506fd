"""MaxMin (GroupSort with groups of 2) over channel halves."""
import keras
import tensorflow as tf

from gloro_local.layers.seam import ActivationSeam, combine_masks


def check_channels(channels, layer="MaxMin"):
    """Raises ValueError unless the channel count is known and even."""
    if channels is None or channels % 2:
        raise ValueError(f"{layer} needs an even number of channels. Received: {channels}")


def split_halves(x):
    """Splits the last axis into halves (a, b); the channel count must be even."""
    channels = x.shape[-1]
    check_channels(channels)
    return x[..., : channels // 2], x[..., channels // 2:]


@keras.saving.register_keras_serializable(package="gloro_local")
class MaxMin(ActivationSeam, keras.layers.Layer):
    """y = concat(max(a, b), min(a, b)) with (a, b) the two halves of the last axis.

    A permutation within each pair, hence 1-Lipschitz in l2 and monotone in each
    argument, so the box rule is exact: [max(lo_a, lo_b), max(hi_a, hi_b)] and
    [min(lo_a, lo_b), min(hi_a, hi_b)]. It never makes a neuron constant: varying() is
    None (all varying) and the sparsity hinge is 0.

    It is not element-wise: both outputs of a pair depend on both of its inputs, so an
    output may move when either input of its pair moves (``map_mask``), and its masks
    only delete columns of the next linear layer, never rows of the previous one.
    """

    elementwise = False

    def build(self, input_shape):
        check_channels(input_shape[-1], type(self).__name__)

    def call(self, inputs):
        a, b = split_halves(inputs)
        return tf.concat([tf.maximum(a, b), tf.minimum(a, b)], axis=-1)

    def varying(self, lo, hi):
        return None

    def map_mask(self, mask, own):
        """Output k and its partner move when input k or its partner moves, and the
        layer's own mask does not hold them constant."""
        if mask is None:
            return own
        a, b = split_halves(mask)
        either = tf.maximum(a, b)
        return combine_masks(tf.concat([either, either], axis=-1), own)

    def sparsity(self, lo, hi, lam_theta=0.0):
        return tf.constant(0.0, hi.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape
