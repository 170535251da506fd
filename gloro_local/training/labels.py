"""Label handling shared by losses and metrics."""
import tensorflow as tf

from gloro_local.bounds.input_checks import GRAPH_ERROR_MARKER


def class_ids(y, num_classes):
    """Integer class ids (B,) from integer labels (B,) / (B, 1) or one-hot labels (B, K).

    Raises InvalidArgumentError (with a ``GRAPH_ERROR_MARKER`` message) when a label is
    fractional or outside [0, num_classes): nothing is truncated silently.
    """
    y = tf.convert_to_tensor(y)
    if y.shape.rank == 2 and y.shape[-1] == num_classes and num_classes > 1:
        y = tf.argmax(y, axis=-1)
    y = tf.reshape(y, [-1])
    checks = []
    if y.dtype.is_floating:
        checks.append(tf.debugging.assert_equal(
            y, tf.round(y), message=f"{GRAPH_ERROR_MARKER}labels must be integer class ids."))
    with tf.control_dependencies(checks):
        y = tf.cast(y, tf.int32)
    checks = [tf.debugging.assert_non_negative(
                  y, message=f"{GRAPH_ERROR_MARKER}labels must be class ids >= 0."),
              tf.debugging.assert_less(
                  y, num_classes,
                  message=f"{GRAPH_ERROR_MARKER}labels must be class ids < {num_classes}.")]
    # in a graph, the checks must run before any op that indexes with the labels
    with tf.control_dependencies([c for c in checks if c is not None]):
        return tf.identity(y)
