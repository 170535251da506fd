"""'ibp': interval bound propagation for l-infinity balls (Gowal et al. 2018)."""
import tensorflow as tf

from gloro_local.bounds.linf import (IntervalPass, interval_specification_bounds,
                                     specification, worst_logits_from_margins)
from gloro_local.bounds.strategies.base import Bound, Margins, initial_box_ball, register
from gloro_local.bounds.worst_logits import bottom_logit
from gloro_local.layers import BoundState


def interval_pass(propagation):
    """The walk's boxes as the ``IntervalPass`` of the l-infinity bound functions."""
    pen = propagation.penultimate
    return IntervalPass([(a.lo, a.hi) for a in propagation.activations], (pen.lo, pen.hi),
                        pen.centre)


def margins_from_lower_bounds(network, propagation, reference, lower):
    """``Margins`` from lower bounds m (B, K) of z_j - z_i: z*_i = z_j - m_i,
    bottom = max_{i != j} z*_i; the Lipschitz fields are ones (no norm is used)."""
    pen = propagation.penultimate
    logits = network.logit_layer.affine(pen.centre)
    worst = worst_logits_from_margins(logits, lower, reference)
    ones = tf.ones_like(logits[:, 0])
    return Margins(logits, worst, bottom_logit(worst, reference), ones, ones, [], [],
                   propagation)


def reference_and_spec(network, propagation, reference):
    """(j, spec): the reference class (the prediction when None) and the rows
    e_j - e_i of every class against it, (B, K, K)."""
    if reference is None:
        logits = network.logit_layer.affine(propagation.penultimate.centre)
        reference = tf.argmax(logits, axis=-1, output_type=tf.int32)
    spec = specification(reference, network.num_classes,
                         propagation.penultimate.centre.dtype)
    return reference, spec


@register
class IntervalBound(Bound):
    """The box [x - eps, x + eps] through every layer, no ball: linear layers
    mid' = A mid + b, rad' = |A| rad; activations [act(lo), act(hi)] (exact for
    monotone ones); the margin z_j - z_i is bounded below over the penultimate box
    exactly: m_i = (w_j - w_i).mid - |w_j - w_i|.rad + b_j - b_i."""

    name = "ibp"
    norm = "linf"
    tracks_masks = False
    uses_norms = False

    def initial_state(self, x, epsilon):
        return initial_box_ball(x, epsilon)

    def linear_step(self, seam, state, layer_norm):
        # the general box image (not the uniform one of the input box): the same
        # arithmetic, to the last bit, as the standalone ``bounds.linf.ibp`` pass
        lo, hi = seam.box(state.lo, state.hi)
        return BoundState(seam.affine(state.centre), lo, hi, state.radius)

    def lower_bounds(self, network, propagation, epsilon, reference, spec, context):
        """m (B, K): lower bounds of spec . z over the ball (this bound: IBP)."""
        return interval_specification_bounds(network, interval_pass(propagation), spec)

    def logit_step(self, network, propagation, epsilon, reference, context):
        reference, spec = reference_and_spec(network, propagation, reference)
        lower = self.lower_bounds(network, propagation, epsilon, reference, spec, context)
        return margins_from_lower_bounds(network, propagation, reference, lower)
