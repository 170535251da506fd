"""Checks of input values that work both eagerly and inside traced Keras steps.

Eagerly a bad value raises ValueError at once. Inside a traced function (``fit``,
``evaluate``, ``predict``) it is a graph assertion whose message starts with
``GRAPH_ERROR_MARKER``; ``graph_error_message`` finds that message again in the long
InvalidArgumentError TensorFlow raises, so the model can re-raise it as one line.
"""
import contextlib
import re
import warnings

import numpy as np

import tensorflow as tf

GRAPH_ERROR_MARKER = "gloro_local: "
_WARNED = set()  # sources check_images has warned about
_MESSAGE = re.compile(re.escape(GRAPH_ERROR_MARKER) + r"(.+?\.)(?:[\s\]]|$)")


def check_finite(x, what="inputs"):
    """``x`` if every value is finite; ValueError (eager) or a graph assertion otherwise."""
    message = f"{what} contain NaN or Inf"
    if tf.executing_eagerly():
        if not bool(tf.reduce_all(tf.math.is_finite(x))):
            raise ValueError(f"{message[0].upper()}{message[1:]}.")
        return x
    return tf.debugging.assert_all_finite(x, f"{GRAPH_ERROR_MARKER}{message}.")


def graph_error_message(error):
    """The first marked message inside an InvalidArgumentError, or None."""
    found = _MESSAGE.search(str(error))
    return None if found is None else found.group(1)


@contextlib.contextmanager
def one_line_errors(where=lambda: ""):
    """Re-raises a marked graph assertion as ``ValueError(message + where())`` without the
    graph trace; any other error passes unchanged."""
    try:
        yield
    except tf.errors.InvalidArgumentError as error:
        message = graph_error_message(error)
        if message is None:
            raise
        raise ValueError(f"{message[0].upper()}{message[1:].rstrip('. ')}{where()}.") from None


def check_images(x, source="inputs"):
    """Warns once per ``source`` when images do not look like floats in [0, 1]: an integer
    dtype (uint8 pixels in 0..255) or values far outside [0, 1] (below -0.5 or above 1.5).
    The library's models and epsilons assume [0, 1] pixels; 0..255 images train and
    certify a different problem without an error. Returns ``x`` unchanged."""
    array = np.asarray(x)
    reason = None
    if np.issubdtype(array.dtype, np.integer):
        reason = f"has integer dtype {array.dtype}"
    elif array.size and (array.min() < -0.5 or array.max() > 1.5):
        reason = f"has values in [{array.min():g}, {array.max():g}]"
    if reason and source not in _WARNED:
        _WARNED.add(source)
        warnings.warn(f"{source} {reason}, but gloro_local expects float images in [0, 1] "
                      "(divide uint8 pixels by 255).", UserWarning, stacklevel=2)
    return x
