"""Dense layer with the linear seam."""
import keras
import numpy as np
import tensorflow as tf

from gloro_local.layers.operator_norms import dense_norm_bound
from gloro_local.layers.seam import LinearSeam, cast_like
from gloro_local.layers.validation import reject_unsupported


class DenseSeam(LinearSeam):
    """Linear seam of x -> x K + b (Keras kernel K has shape (in, out), so A = K^T).

    linear(u) = u K, linear_transpose(v) = v K^T, abs_linear(r) = r |K|,
    row_norms()_i = ||K_:,i||_2 (the norm of the weights into output neuron i),
    norm_upper_bound() = the top singular value of K in float64, rounded up.
    """

    def linear(self, u):
        return tf.matmul(u, cast_like(self.kernel, u))

    def linear_transpose(self, v, input_shape=None):
        return tf.matmul(v, cast_like(self.kernel, v), transpose_b=True)

    def abs_linear(self, r):
        return tf.matmul(r, tf.abs(cast_like(self.kernel, r)))

    def row_norms(self):
        """In float64, so that tiny weights cannot underflow their squares to 0."""
        return tf.norm(tf.cast(self.kernel, tf.float64), axis=0)

    def add_bias(self, z):
        return z + cast_like(self.bias, z) if self.use_bias else z

    def norm_upper_bound(self, input_shape=None):
        """||K||_2 (a Dense layer acts on the last axis, so any input shape has the same
        norm), computed eagerly from the current kernel."""
        return dense_norm_bound(np.asarray(self.kernel.numpy(), np.float64))


@keras.saving.register_keras_serializable(package="gloro_local")
class Dense(DenseSeam, keras.layers.Dense):
    """Fully connected layer ``y = x K + b`` that takes part in bound propagation.

    Same arguments as ``keras.layers.Dense`` except that ``activation`` must stay linear:
    activations are separate layers so that their masks can be computed.

    Args:
        units: number of output neurons.
        use_bias: whether to add a bias b.
        kernel_initializer, bias_initializer, kernel_regularizer, ...: as in Keras.
    """

    def __init__(self, units, **kwargs):
        reject_unsupported(type(self).__name__, kwargs)
        super().__init__(units, **kwargs)
