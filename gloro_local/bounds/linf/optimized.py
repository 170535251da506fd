"""The paper's one-step optimised lower slopes (its eq. 6)."""
import tensorflow as tf

from gloro_local.bounds.linf.backward import backward_bounds
from gloro_local.bounds.linf.interval import as_inputs
from gloro_local.bounds.linf.relaxations import takes_lower_slope
from gloro_local.layers import ActivationSeam


def robust_cross_entropy(margins_lower):
    """CROWN-IBP's robust loss per sample, (B,): the cross-entropy of class j on the
    logits -m (upper bounds of z_i - z_j), for margins m of ``specification`` rows:

        CE(j, -m) = m_j + logsumexp_i(-m_i) = logsumexp_i(-m_i)   since m_j = 0.
    """
    return tf.reduce_logsumexp(-margins_lower, axis=-1)


def initial_slopes(network, boxes, seed=None):
    """a_0 ~ U[0, 1] of each slope-taking activation's input shape (None elsewhere), from
    ``tf.random.stateless_uniform`` with (seed, layer index) when ``seed`` is an int, or
    a fresh draw at every call (and every step of a compiled function) when None."""
    seams = [seam for seam in network.seams if isinstance(seam, ActivationSeam)]
    slopes = []
    for index, (seam, (lo, _)) in enumerate(zip(seams, boxes)):
        if not takes_lower_slope(seam):
            slopes.append(None)
        elif seed is None:
            slopes.append(tf.random.uniform(tf.shape(lo), dtype=lo.dtype))
        else:
            slopes.append(tf.random.stateless_uniform(tf.shape(lo), [seed, index],
                                                      dtype=lo.dtype))
    return slopes


def optimized_lower_slopes(network, x, epsilon, spec, boxes, eta=1.0, seed=None, norm="linf",
                           clip=None):
    """One projected sign-gradient step on the lower slopes (the paper's eq. 6):

        a = clip(a_0 - eta sign(grad_a L(m(a))), 0, 1),   a_0 ~ U[0, 1]

    where m(a) are the ``backward_bounds`` of ``spec`` with lower slopes a and L the
    robust cross-entropy (``robust_cross_entropy``) summed over the batch. The gradient
    is taken with respect to the slopes only (the boxes are held fixed), and the result
    is returned under ``stop_gradient``: sign() is piecewise constant, so the paper's
    final objective L(m(a_hat)) has no gradient through the step, and training
    differentiates the bound at the fixed slopes. With eta >= 1 (the paper's range)
    every slope with a non-zero gradient lands on 0 or 1; slopes with a zero gradient
    (stable neurons, neurons no specification row reaches) keep a_0. The other
    relaxation variables stay as in CROWN-IBP and the paper's section 5: the upper
    chord u+ / (u+ - l-) (z - l-) and the lower intercept 0, with the IBP relaxation
    for every layer's pre-activation box.

    Args:
        network, x, epsilon, spec, boxes, norm, clip: as in ``backward_bounds``; with
            ``spec = specification(reference, K)`` L is the robust cross-entropy.
        eta: the step size, > 0.
        seed: None (a fresh a_0 at every call) or an int (a reproducible a_0).

    Returns:
        a list with one entry per activation seam: a (B, ...) tensor of slopes, or None
        for activations that take no lower slope; pass it to ``backward_bounds``.
    """
    if not eta > 0:
        raise ValueError(f"eta must be a positive step size. Received: eta={eta!r}")
    x, epsilon = as_inputs(x, epsilon)
    boxes = [(tf.stop_gradient(lo), tf.stop_gradient(hi)) for lo, hi in boxes]
    slopes = initial_slopes(network, boxes, seed)
    watched = [slope for slope in slopes if slope is not None]
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(watched)
        margins = backward_bounds(network, x, epsilon, spec, boxes, norm, slopes, clip)
        loss = tf.reduce_sum(robust_cross_entropy(margins))
    gradients = iter(tape.gradient(loss, watched, unconnected_gradients="zero"))
    eta = tf.cast(eta, x.dtype)
    return [None if slope is None else tf.stop_gradient(
        tf.clip_by_value(slope - eta * tf.sign(next(gradients)), 0.0, 1.0))
        for slope in slopes]
