"""MaxMin with learnable clipping thresholds."""
import math

import keras
import tensorflow as tf

from gloro_local.layers.maxmin import MaxMin, check_channels, split_halves
from gloro_local.layers.seam import cast_like


@keras.saving.register_keras_serializable(package="gloro_local")
class ClippedMaxMin(MaxMin):
    """y = concat(min(max(a, b), A), max(min(a, b), B)), (a, b) the channel halves.

    A and B are learnable per element of a half (shape of the activation with half the
    channels, no batch axis), initialised to ``upper_init`` and ``lower_init``. Monotone in
    every argument, so the box rule applies the function to lo and hi. The max output is
    constant over the eps-ball when max(lo_a, lo_b) >= A, the min output when
    min(hi_a, hi_b) <= B; these give the column mask of the next layer.
    Sparsity hinge: mean(relu(min(hi_a, hi_b) - B)) + mean(relu(A - max(lo_a, lo_b))).

    Args:
        upper_init: initial A, a finite number (the reference uses 0.8-3.0 depending
            on the layer).
        lower_init: initial B, a finite number; defaults to -upper_init.
    """

    def __init__(self, upper_init=1.0, lower_init=None, **kwargs):
        super().__init__(**kwargs)
        self.upper_init = float(upper_init)
        self.lower_init = -self.upper_init if lower_init is None else float(lower_init)
        for name in ("upper_init", "lower_init"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"ClippedMaxMin needs a finite {name}. Received: "
                                 f"{name}={getattr(self, name)!r}")

    def build(self, input_shape):
        channels = input_shape[-1]
        check_channels(channels, type(self).__name__)
        shape = tuple(input_shape[1:-1]) + (channels // 2,)
        self.upper = self.add_weight(
            name="upper", shape=shape,
            initializer=keras.initializers.Constant(self.upper_init), trainable=True)
        self.lower = self.add_weight(
            name="lower", shape=shape,
            initializer=keras.initializers.Constant(self.lower_init), trainable=True)

    def call(self, inputs):
        a, b = split_halves(inputs)
        return tf.concat([tf.minimum(tf.maximum(a, b), cast_like(self.upper, a)),
                          tf.maximum(tf.minimum(a, b), cast_like(self.lower, a))], axis=-1)

    def varying(self, lo, hi):
        lo_a, lo_b = split_halves(lo)
        hi_a, hi_b = split_halves(hi)
        max_moves = tf.maximum(lo_a, lo_b) < cast_like(self.upper, lo)
        min_moves = tf.minimum(hi_a, hi_b) > cast_like(self.lower, hi)
        return tf.cast(tf.concat([max_moves, min_moves], axis=-1), hi.dtype)

    def sparsity(self, lo, hi, lam_theta=0.0):
        lo_a, lo_b = split_halves(lo)
        hi_a, hi_b = split_halves(hi)
        upper, lower = cast_like(self.upper, lo), cast_like(self.lower, hi)
        return (tf.reduce_mean(tf.nn.relu(tf.minimum(hi_a, hi_b) - lower))
                + tf.reduce_mean(tf.nn.relu(upper - tf.maximum(lo_a, lo_b))))

    def get_config(self):
        return {**super().get_config(), "upper_init": self.upper_init,
                "lower_init": self.lower_init}
