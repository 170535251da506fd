"""Checks of input values that work both eagerly and inside traced Keras steps.

Eagerly a bad value raises ValueError at once. Inside a traced function (``fit``,
``evaluate``, ``predict``) it is a graph assertion whose message starts with
``GRAPH_ERROR_MARKER``; ``graph_error_message`` finds that message again in the long
InvalidArgumentError TensorFlow raises, so the model can re-raise it as one line.
"""
import contextlib
import re

import tensorflow as tf

GRAPH_ERROR_MARKER = "gloro_local: "
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
