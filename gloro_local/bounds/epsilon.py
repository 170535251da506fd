"""Validation of the perturbation radius."""
import math

import keras
import tensorflow as tf


def check_epsilon(epsilon):
    """Returns epsilon as a floatx tensor; ValueError if it is not a finite number > 0.

    Python numbers and eager tensors are checked here; symbolic tensors inside a traced
    function are checked by a graph assertion.
    """
    dtype = keras.config.floatx()
    if isinstance(epsilon, (int, float)):
        if not math.isfinite(epsilon) or epsilon <= 0:
            raise ValueError(f"epsilon must be a finite number > 0, got {epsilon}.")
        return tf.constant(epsilon, dtype)
    eps = tf.cast(tf.convert_to_tensor(epsilon), dtype)
    if tf.executing_eagerly():
        value = float(eps.numpy())
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"epsilon must be a finite number > 0, got {value}.")
        return eps
    tf.debugging.assert_positive(eps, message="epsilon must be > 0")
    tf.debugging.assert_all_finite(eps, message="epsilon must be finite")
    return eps
