"""ReLU with a learnable per-neuron upper threshold."""
import math

import keras
import tensorflow as tf

from gloro_local.layers.seam import ElementwiseActivation, cast_like


@keras.saving.register_keras_serializable(package="gloro_local")
class ReLUTheta(ElementwiseActivation, keras.layers.Layer):
    """y = min(max(x, 0), theta), theta learnable per neuron (shape of the activation,
    no batch axis), initialised to ``theta_init`` and kept >= 0 by a NonNeg constraint.

    A neuron is constant over the eps-ball when its pre-activation box satisfies hi <= 0
    (stuck at 0) or lo >= theta (stuck at theta): varying(lo, hi) = [hi > 0 and lo < theta].
    Sparsity hinge: mean(relu(hi)) + lam_theta * mean(relu(theta - lo)).

    Args:
        theta_init: initial threshold, a finite number >= 0 (the paper uses 1.0).
    """

    def __init__(self, theta_init=1.0, **kwargs):
        super().__init__(**kwargs)
        self.theta_init = float(theta_init)
        if not math.isfinite(self.theta_init) or self.theta_init < 0:
            raise ValueError("ReLUTheta needs a finite theta_init >= 0. Received: "
                             f"theta_init={theta_init!r}")

    def build(self, input_shape):
        self.theta = self.add_weight(
            name="theta", shape=tuple(input_shape[1:]),
            initializer=keras.initializers.Constant(self.theta_init),
            constraint=keras.constraints.NonNeg(), trainable=True)

    def call(self, inputs):
        return tf.minimum(tf.nn.relu(inputs), cast_like(self.theta, inputs))

    def varying(self, lo, hi):
        return tf.cast(tf.logical_and(hi > 0.0, lo < cast_like(self.theta, lo)), hi.dtype)

    def sparsity(self, lo, hi, lam_theta=0.0):
        return (tf.reduce_mean(tf.nn.relu(hi))
                + lam_theta * tf.reduce_mean(tf.nn.relu(cast_like(self.theta, lo) - lo)))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "theta_init": self.theta_init}
