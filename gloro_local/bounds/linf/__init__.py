"""l-infinity (and l2) linear-relaxation bounds over a SeamNetwork: interval bound
propagation, CROWN's backward pass with IBP boxes (CROWN-IBP), the one-step optimised
lower slopes of "Loss Landscape Matters" (eq. 6) and the diagnostics it plots."""
from gloro_local.bounds.linf.backward import NORMS, backward_bounds
from gloro_local.bounds.linf.diagnostics import ReLUStates, relu_states, tightness
from gloro_local.bounds.linf.interval import (IntervalPass, ibp, ibp_margin_lower_bounds,
                                              interval_specification_bounds)
from gloro_local.bounds.linf.optimized import (initial_slopes, optimized_lower_slopes,
                                               robust_cross_entropy)
from gloro_local.bounds.linf.relaxations import (Relaxation, activation_relaxation,
                                                 constant_relaxation, relu_relaxation,
                                                 relu_theta_relaxation, takes_lower_slope)
from gloro_local.bounds.linf.specification import specification, worst_logits_from_margins

__all__ = ["IntervalPass", "NORMS", "ReLUStates", "Relaxation", "activation_relaxation",
           "backward_bounds", "constant_relaxation", "ibp", "ibp_margin_lower_bounds",
           "initial_slopes", "interval_specification_bounds", "optimized_lower_slopes",
           "relu_relaxation", "relu_states", "relu_theta_relaxation", "robust_cross_entropy",
           "specification", "takes_lower_slope", "tightness", "worst_logits_from_margins"]
