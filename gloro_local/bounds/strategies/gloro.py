"""'gloro': the GloRo net's bound (Leino et al. 2021), the ball alone with global norms."""
import tensorflow as tf

from gloro_local.bounds.strategies.base import Bound, register
from gloro_local.bounds.strategies.l2_logits import global_per_sample, l2_margins
from gloro_local.layers import BoundState


@register
class GloroBound(Bound):
    """z*_i = z_i + eps * prod_l ||W_l|| * ||w_i - w_j||: the clean pass and the ball
    radius r_l = eps * prod_{k<=l} ||W_k||, no box and no masks (the cheapest bound)."""

    name = "gloro"
    tracks_masks = False

    def initial_state(self, x, epsilon):
        return BoundState(x, x, x, tf.fill(tf.shape(x)[:1], epsilon))

    def linear_step(self, seam, state, layer_norm):
        centre = seam.affine(state.centre)
        return BoundState(centre, centre, centre,
                          state.radius * tf.cast(layer_norm, centre.dtype))

    def activation_step(self, seam, state):
        centre = seam.call(state.centre)
        return BoundState(centre, centre, centre, state.radius)

    def logit_step(self, network, propagation, epsilon, reference, context):
        batch = tf.shape(propagation.penultimate.centre)[0]
        sigmas = global_per_sample(context, batch, tf.float32)
        return l2_margins(network, propagation, epsilon, reference, sigmas, sigmas,
                          [None] * len(sigmas), context.worst_steps, ball_only=True)
