"""Validation of the perturbation radius."""
import math
import numbers

import keras
import numpy as np
import tensorflow as tf


def _reject(epsilon, why):
    raise ValueError(f"epsilon must be {why}. Received: epsilon={epsilon!r} "
                     f"({type(epsilon).__name__}).")


def check_epsilon(epsilon):
    """Returns epsilon as a floatx tensor; ValueError unless it is a finite real number > 0.

    Accepted: Python and numpy real numbers, and real-valued scalar tensors or Keras
    variables. Refused: booleans (``True`` is not a radius), strings, complex numbers,
    None and non-scalars. Python numbers and eager tensors are checked here; symbolic
    tensors inside a traced function are checked by a graph assertion.
    """
    dtype = keras.config.floatx()
    if isinstance(epsilon, (bool, np.bool_)) or epsilon is None:
        _reject(epsilon, "a finite real number > 0")
    if isinstance(epsilon, numbers.Real):
        if not math.isfinite(epsilon) or epsilon <= 0:
            _reject(epsilon, "a finite number > 0")
        return tf.constant(float(epsilon), dtype)
    if not (isinstance(epsilon, (tf.Tensor, tf.Variable, keras.Variable, np.ndarray))):
        _reject(epsilon, "a finite real number > 0")
    kind = tf.as_dtype(epsilon.dtype)
    if not (kind.is_floating or kind.is_integer) or kind == tf.bool or len(epsilon.shape):
        _reject(epsilon, "a real scalar > 0")
    eps = tf.cast(tf.convert_to_tensor(epsilon), dtype)
    if tf.executing_eagerly():
        value = float(eps.numpy())
        if not math.isfinite(value) or value <= 0:
            _reject(value, "a finite number > 0")
        return eps
    tf.debugging.assert_positive(eps, message="epsilon must be > 0")
    tf.debugging.assert_all_finite(eps, message="epsilon must be finite")
    return eps
