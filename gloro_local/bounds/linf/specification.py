"""The margin specification (every class against the reference) and the worst-case logits
it gives."""
import tensorflow as tf


def specification(reference, num_classes, dtype="float32"):
    """Rows e_j - e_i for every class i, j = ``reference`` per sample: (B, K, K).

    Row i of sample b is e_j - e_i, so spec . z = z_j - z_i; row j is zero, so its bound
    is exactly 0 and the margins of every class keep their class index (the paper's
    C(y) = I - 1 e_y^T up to the sign: here a positive margin means j wins).

    Args:
        reference: class indices j, shape (B,).
        num_classes: K.
        dtype: the floating dtype of the rows.
    """
    reference = tf.convert_to_tensor(reference)
    if reference.shape.rank != 1 or not reference.dtype.is_integer:
        raise ValueError("reference must be integer class indices of shape (B,). "
                         f"Received: reference of shape {tuple(reference.shape)} and dtype "
                         f"{reference.dtype.name}")
    own = tf.one_hot(reference, num_classes, dtype=dtype)
    return own[:, None, :] - tf.eye(num_classes, dtype=dtype)[None]


def worst_logits_from_margins(logits, margins_lower, reference):
    """z*_i = z_j - m_i (and z*_j = z_j, as m_j = 0), with m_i <= min (z_j - z_i) over
    the perturbation set: a logit i can never beat z_j by more than z*_i - z_j.

    The GloRo bottom logit is max_{i != j} z*_i, so x is certified iff z_j > bottom iff
    m_i > 0 for every i != j.

    Args:
        logits: the clean logits z, (B, K).
        margins_lower: m, (B, K), from the rows of ``specification``.
        reference: j, (B,).

    Returns:
        (B, K) worst-case logits.
    """
    own = tf.gather(logits, reference, axis=1, batch_dims=1)
    return own[:, None] - tf.cast(margins_lower, logits.dtype)
