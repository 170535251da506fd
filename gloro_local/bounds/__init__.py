"""Bound propagation, spectral norms (global and per-sample masked) and worst-case logits."""
from gloro_local.bounds.epsilon import check_epsilon
from gloro_local.bounds.global_norms import GlobalNorms
from gloro_local.bounds.local_norms import local_norms, random_start
from gloro_local.bounds.margins import BOUNDS, Margins, check_bound, compute_margins
from gloro_local.bounds.network import SeamNetwork
from gloro_local.bounds.power_iteration import (MaskedOperator, PowerIterationResult,
                                                normalize, power_iteration)
from gloro_local.bounds.propagation import ActivationBox, Propagation, propagate
from gloro_local.bounds.worst_logits import (bottom_logit, pair_directions, worst_logits,
                                             worst_offsets)

__all__ = ["ActivationBox", "BOUNDS", "GlobalNorms", "Margins", "MaskedOperator",
           "PowerIterationResult", "Propagation", "SeamNetwork", "bottom_logit",
           "check_bound", "check_epsilon", "compute_margins", "local_norms", "normalize",
           "pair_directions", "power_iteration", "propagate", "random_start",
           "worst_logits", "worst_offsets"]
