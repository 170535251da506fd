"""What the paper plots: ReLU states per layer and the tightness of a bound."""
from typing import NamedTuple

import tensorflow as tf


class ReLUStates(NamedTuple):
    """Fractions of the neurons of one layer (averaged over the batch), summing to 1."""

    unstable: tf.Tensor
    active: tf.Tensor
    dead: tf.Tensor


def relu_states(boxes):
    """Per activation layer, the fractions of neurons whose pre-activation box is
    unstable (lo < 0 < hi), active (lo >= 0) or dead (hi <= 0), as seen by a ReLU
    (``relu_relaxation`` uses the same three cases).

    Args:
        boxes: a list of (lo, hi) pre-activation boxes (``IntervalPass.pre_activation``).

    Returns:
        a list of ``ReLUStates`` of scalars.
    """
    states = []
    for lo, hi in boxes:
        active = lo >= 0.0
        dead = tf.logical_and(hi <= 0.0, tf.logical_not(active))
        unstable = tf.logical_not(tf.logical_or(active, dead))
        states.append(ReLUStates(*(tf.reduce_mean(tf.cast(state, lo.dtype))
                                   for state in (unstable, active, dead))))
    return states


def tightness(margins_lower):
    """The paper's tightness measure per sample, (B,): the sum over the classes m of the
    upper bound of the worst-case margin score z_m - z_j,

        sum_m s_m = -sum_m m_m   (m_j = 0 for ``specification`` rows);

    smaller is tighter.
    """
    return -tf.reduce_sum(margins_lower, axis=-1)
