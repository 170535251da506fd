"""'optimized': the one-step optimised relaxation of "Loss Landscape Matters" (eq. 6)."""
from gloro_local.bounds.linf import backward_bounds, optimized_lower_slopes
from gloro_local.bounds.strategies.base import register
from gloro_local.bounds.strategies.crown_ibp import CrownIBPBound
from gloro_local.bounds.strategies.interval import interval_pass


@register
class OptimizedBound(CrownIBPBound):
    """CROWN-IBP whose lower slopes of unstable ReLUs start at a ~ U[0, 1] and take one
    projected sign-gradient step on the robust loss,
        a = clip(a0 - eta sign(grad_a L(m(a))), 0, 1),
    the slopes then fixed (no gradient through the step). Any slopes in [0, 1] give a
    sound relaxation. ``context.seed`` seeds a0 (None: a fresh draw per call, as in
    training); ``context.eta`` is the step."""

    name = "optimized"

    def relaxed_bounds(self, network, propagation, epsilon, spec, context):
        boxes = interval_pass(propagation).pre_activation
        slopes = optimized_lower_slopes(network, context.inputs, epsilon, spec, boxes,
                                        eta=context.eta, seed=context.seed, norm=self.norm)
        return backward_bounds(network, context.inputs, epsilon, spec, boxes,
                               norm=self.norm, lower_slopes=slopes)
