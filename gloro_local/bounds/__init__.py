"""Bound propagation, spectral norms (global and per-sample masked) and worst-case logits."""
from gloro_local.bounds.block_solver import lobpcg
from gloro_local.bounds.epsilon import check_epsilon
from gloro_local.bounds.global_norms import GlobalNorms
from gloro_local.bounds.local_norms import local_norms
from gloro_local.bounds.margins import BOUNDS, Margins, check_bound, compute_margins
from gloro_local.bounds.network import SeamNetwork
from gloro_local.bounds.passes import bound_pass, logits_pass
from gloro_local.bounds.power_iteration import (SOLVERS, MaskedOperator, PowerIterationResult,
                                                StoppingRule, normalize, power_iteration)
from gloro_local.bounds.propagation import ActivationBox, Propagation, propagate, walk
from gloro_local.bounds.sound_norms import (CertificateGlobals, certificate_globals,
                                            check_weights, sound_global_norms)
from gloro_local.bounds.strategies import Bound, BoundContext, bound_names, get_bound, register
from gloro_local.bounds.start_vectors import (fixed_start, random_start, top_singular_vectors,
                                              warm_start)
from gloro_local.bounds.worst_logits import (bottom_logit, pair_directions, worst_logits,
                                             worst_offsets)

__all__ = ["ActivationBox", "BOUNDS", "Bound", "BoundContext", "bound_names", "get_bound",
           "register", "walk", "SOLVERS", "CertificateGlobals", "GlobalNorms", "Margins",
           "MaskedOperator", "PowerIterationResult", "Propagation", "SeamNetwork",
           "StoppingRule", "bottom_logit", "bound_pass", "certificate_globals",
           "check_bound", "check_epsilon", "check_weights", "compute_margins",
           "fixed_start", "lobpcg", "local_norms", "logits_pass", "normalize", "pair_directions",
           "power_iteration", "propagate", "random_start", "sound_global_norms",
           "top_singular_vectors", "warm_start", "worst_logits", "worst_offsets"]
