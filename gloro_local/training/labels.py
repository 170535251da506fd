"""Label handling shared by losses and metrics."""
import tensorflow as tf


def class_ids(y, num_classes):
    """Integer class ids (B,) from integer labels (B,) / (B, 1) or one-hot labels (B, K).

    Raises InvalidArgumentError when a label is outside [0, num_classes).
    """
    y = tf.convert_to_tensor(y)
    if y.shape.rank == 2 and y.shape[-1] == num_classes and num_classes > 1:
        y = tf.argmax(y, axis=-1)
    y = tf.cast(tf.reshape(y, [-1]), tf.int32)
    checks = [tf.debugging.assert_non_negative(y, message="labels must be class ids >= 0"),
              tf.debugging.assert_less(y, num_classes,
                                       message=f"labels must be class ids < {num_classes}")]
    # in a graph, the checks must run before any op that indexes with the labels
    with tf.control_dependencies([c for c in checks if c is not None]):
        return tf.identity(y)
