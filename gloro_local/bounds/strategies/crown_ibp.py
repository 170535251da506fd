"""'crown_ibp': CROWN's backward linear relaxation with IBP pre-activation boxes
(Zhang et al. 2020), l-infinity; 'crown_ibp_l2': the same pass closed in l2."""
from gloro_local.bounds.linf import backward_bounds
from gloro_local.bounds.strategies.base import register
from gloro_local.bounds.strategies.global_bound import GlobalBound
from gloro_local.bounds.strategies.interval import (IntervalBound, interval_pass,
                                                    margins_from_lower_bounds,
                                                    reference_and_spec)


@register
class CrownIBPBound(IntervalBound):
    """IBP boxes for every pre-activation, then one backward pass from the margin rows
    e_j - e_i through the logit layer and the relaxed hidden layers (lower slopes: 1
    where hi >= -lo, else 0, CROWN-IBP's adaptive choice), closed as
        m_i >= Lambda_i . x - eps ||Lambda_i||_1 + c_i.
    With ``context.beta`` < 1 the margins are (1 - beta) m_IBP + beta m_CROWN, a convex
    combination of two lower bounds, itself a lower bound (the mixed loss of CROWN-IBP)."""

    name = "crown_ibp"

    def relaxed_bounds(self, network, propagation, epsilon, spec, context):
        """The backward pass's lower bounds of spec . z (this bound: adaptive slopes)."""
        boxes = interval_pass(propagation).pre_activation
        return backward_bounds(network, context.inputs, epsilon, spec, boxes, norm=self.norm)

    def lower_bounds(self, network, propagation, epsilon, reference, spec, context):
        relaxed = self.relaxed_bounds(network, propagation, epsilon, spec, context)
        beta = context.beta
        if isinstance(beta, (int, float)) and beta == 1.0:
            return relaxed
        interval = super().lower_bounds(network, propagation, epsilon, reference, spec,
                                        context)
        return (1.0 - beta) * interval + beta * relaxed


@register
class CrownIBPL2Bound(GlobalBound):
    """An l2 baseline: the boxes of the l2 box-and-ball walk ('global', with global
    norms), then CROWN's backward pass closed in l2:
        m_i >= Lambda_i . x - eps ||Lambda_i||_2 + c_i."""

    name = "crown_ibp_l2"

    def logit_step(self, network, propagation, epsilon, reference, context):
        reference, spec = reference_and_spec(network, propagation, reference)
        boxes = interval_pass(propagation).pre_activation
        lower = backward_bounds(network, context.inputs, epsilon, spec, boxes, norm="l2")
        return margins_from_lower_bounds(network, propagation, reference, lower)
