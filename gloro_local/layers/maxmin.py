"""MaxMin (GroupSort with groups of 2) over channel halves."""
import keras
import tensorflow as tf

from gloro_local.layers.seam import ActivationSeam


def check_channels(channels):
    """Raises ValueError unless the channel count is known and even."""
    if channels is None or channels % 2:
        raise ValueError(f"MaxMin needs an even number of channels, got {channels}.")


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
    [min(lo_a, lo_b), min(hi_a, hi_b)]. It never makes a neuron constant:
    varying() is None (all varying) and the sparsity hinge is 0.
    """

    masks_rows = False

    def build(self, input_shape):
        check_channels(input_shape[-1])

    def call(self, inputs):
        a, b = split_halves(inputs)
        return tf.concat([tf.maximum(a, b), tf.minimum(a, b)], axis=-1)

    def varying(self, lo, hi):
        return None

    def sparsity(self, lo, hi, lam_theta=0.0):
        return tf.constant(0.0, hi.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape
