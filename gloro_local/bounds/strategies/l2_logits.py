"""The logit step shared by the l2 bounds: worst-case logits over a ball (and box)."""
import tensorflow as tf

from gloro_local.bounds.strategies.base import Margins
from gloro_local.bounds.worst_logits import bottom_logit, pair_directions, worst_offsets
from gloro_local.layers import BoundState


def product(factors, batch, dtype):
    """prod_l factors_l, per sample (B,)."""
    total = tf.ones([batch], dtype)
    for factor in factors:
        total = total * factor
    return total


def penultimate(propagation):
    """The penultimate bound state in float32 (the logit layer always runs in float32)."""
    return BoundState(*(None if t is None else tf.cast(t, tf.float32)
                        for t in propagation.penultimate))


def global_per_sample(context, batch, dtype):
    """Each hidden layer's global norm, repeated per sample."""
    return [tf.fill([batch], tf.cast(s, dtype)) for s in context.global_sigmas]


def l2_margins(network, propagation, epsilon, reference, sigmas, global_sigmas, power,
               worst_steps, ball_only):
    """Worst-case logits for the l2 ball of radius r = eps * prod_l sigmas_l around the
    penultimate features:
        z*_i = z_i + max_delta (w_i - w_j).delta,   z*_j = z_j,
    over ||delta|| <= r (``ball_only``, GloRo: = z_i + r ||w_i - w_j||) or over the ball
    intersected with the penultimate box (``worst_offsets``, exact for
    ``worst_steps=None``)."""
    pen = penultimate(propagation)
    batch = tf.shape(pen.centre)[0]
    dtype = pen.centre.dtype
    lipschitz = product(sigmas, batch, dtype)
    logit_layer = network.logit_layer
    logits = logit_layer.affine(pen.centre)
    if reference is None:
        reference = tf.argmax(logits, axis=-1, output_type=tf.int32)
    directions = pair_directions(tf.cast(logit_layer.kernel, dtype), reference)
    radius = tf.cast(epsilon, dtype) * lipschitz
    if ball_only:
        offsets = radius[:, None] * tf.norm(directions, axis=-1)
    else:
        offsets, _ = worst_offsets(directions, (pen.lo - pen.centre)[:, None, :],
                                   (pen.hi - pen.centre)[:, None, :], radius, worst_steps)
    is_reference = tf.one_hot(reference, tf.shape(logits)[-1], on_value=True,
                              off_value=False)
    worst = tf.where(is_reference, logits, logits + offsets)
    return Margins(logits, worst, bottom_logit(worst, reference), lipschitz,
                   product(global_sigmas, batch, dtype), sigmas, power, propagation)
