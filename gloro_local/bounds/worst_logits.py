"""Worst-case logits over the intersection of an l2 ball and a box (BCP), and the bottom logit."""
import tensorflow as tf


def _faces(g, lower, upper):
    """The box face each coordinate of delta runs into when pushed along g."""
    return tf.where(g > 0.0, upper, lower)


def worst_offsets(directions, lower, upper, radius, steps=None):
    """Upper bounds of max g.delta over ||delta|| <= r, lower <= delta <= upper.

    ``lower <= 0 <= upper`` (the clean point lies in the box). The maximiser is
    delta = clip(t g, lower, upper) for the t that puts it on the sphere. The iteration
    keeps a set C of coordinates clipped to their face and spends the remaining budget
    sqrt(r^2 - ||b_C||^2) on the free ones along g_F; C only grows and always stays inside
    the optimum's clipped set, so every iterate's value
        g_C . b_C + sqrt(r^2 - ||b_C||^2) ||g_F||
    is >= the maximum (it never under-estimates), and it equals the maximum once C stops
    changing (at most d + 1 steps).

    Args:
        directions: g, shape (B, K, d).
        lower, upper: box offsets from the clean point, shape (B, 1, d) or (B, K, d).
        radius: r, shape (B,).
        steps: number of clipping steps; None iterates until C is stable (exact).

    Returns:
        (values (B, K), steps_taken (scalar int32)).
    """
    g = directions
    faces = _faces(g, lower, upper) * tf.ones_like(g)
    r2 = tf.reshape(tf.square(radius), [-1, 1])
    abs_g, abs_b = tf.abs(g), tf.abs(faces)
    g2, faces2 = tf.square(g), tf.square(faces)  # loop invariants, squared once
    limit = tf.constant(g.shape[-1] + 1 if steps is None else steps, tf.int32)

    def evaluate(clipped):
        budget = tf.maximum(r2 - tf.reduce_sum(tf.where(clipped, faces2, 0.0), -1), 0.0)
        free_norm = tf.sqrt(tf.reduce_sum(tf.where(clipped, 0.0, g2), -1) + 1e-30)
        return tf.sqrt(budget + 1e-30), free_norm

    def cond(t, clipped, changed):
        return tf.logical_and(t < limit, changed)

    def body(t, clipped, changed):
        scale, free_norm = evaluate(clipped)
        newly = tf.logical_or(clipped, scale[..., None] * abs_g >= abs_b * free_norm[..., None])
        return t + 1, newly, tf.reduce_any(tf.not_equal(newly, clipped))

    clipped = tf.zeros_like(g, dtype=tf.bool)
    taken, clipped, _ = tf.while_loop(cond, body, [tf.constant(0), clipped, tf.constant(True)])
    clipped = tf.stop_gradient(clipped)
    scale, free_norm = evaluate(clipped)
    values = tf.reduce_sum(tf.where(clipped, g * faces, 0.0), -1) + scale * free_norm
    return values, taken


def pair_directions(kernel, reference):
    """g_i = w_i - w_j for every class i, with j = ``reference`` per sample: (B, K, d).

    ``kernel`` is the logit layer's Keras kernel of shape (d, K), so w_i = kernel[:, i].
    """
    w = tf.transpose(kernel)
    return w[None, :, :] - tf.gather(w, reference)[:, None, :]


def worst_logits(logits, offsets):
    """z*_i = z_i + max_delta (w_i - w_j).delta: the largest value logit i can reach
    relative to class j's logit anywhere in the perturbation set."""
    return logits + offsets


def bottom_logit(worst, reference):
    """The GloRo bottom logit max_{i != j} z*_i, with i == j masked by index: (B,)."""
    others = tf.one_hot(reference, tf.shape(worst)[-1], on_value=False, off_value=True)
    lowest = tf.fill(tf.shape(worst), tf.constant(float("-inf"), worst.dtype))
    return tf.reduce_max(tf.where(others, worst, lowest), axis=-1)
