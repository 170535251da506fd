"""ReLU with the activation seam."""
import keras
import tensorflow as tf

from gloro_local.layers.seam import ElementwiseActivation


@keras.saving.register_keras_serializable(package="gloro_local")
class ReLU(ElementwiseActivation, keras.layers.Layer):
    """y = max(x, 0), element-wise.

    A neuron whose pre-activation box has hi <= 0 is constant (0) over the eps-ball:
    varying(lo, hi) = [hi > 0]. Sparsity hinge: mean(relu(hi)).
    """

    def call(self, inputs):
        return tf.nn.relu(inputs)

    def varying(self, lo, hi):
        return tf.cast(hi > 0.0, hi.dtype)

    def sparsity(self, lo, hi, lam_theta=0.0):
        return tf.reduce_mean(tf.nn.relu(hi))

    def compute_output_shape(self, input_shape):
        return input_shape
