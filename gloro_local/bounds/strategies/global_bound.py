"""'global': the box-and-ball bound with global layer norms (BCP-style)."""
import tensorflow as tf

from gloro_local.bounds.strategies.base import Bound, initial_box_ball, register
from gloro_local.bounds.strategies.l2_logits import global_per_sample, l2_margins


@register
class GlobalBound(Bound):
    """Box x +- eps and ball (x, eps) through every layer (``LinearSeam.propagate``:
    box rule, ball rule, intersection; activations: exact monotone box rule), ball radius
    r_l = eps * prod_{k<=l} ||W_k||; the logit layer maximises over the penultimate ball
    of radius eps * prod_l ||W_l|| intersected with the penultimate box."""

    name = "global"

    def initial_state(self, x, epsilon):
        return initial_box_ball(x, epsilon)

    def linear_step(self, seam, state, layer_norm):
        return seam.propagate(state, layer_norm)

    def ball_step(self, seam, state, layer_norm):
        return seam.propagate(state, layer_norm, box=False)

    def logit_step(self, network, propagation, epsilon, reference, context):
        batch = tf.shape(propagation.penultimate.centre)[0]
        sigmas = global_per_sample(context, batch, tf.float32)
        return l2_margins(network, propagation, epsilon, reference, sigmas, sigmas,
                          [None] * len(sigmas), context.worst_steps, ball_only=False)
