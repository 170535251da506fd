"""Certified bounds as pluggable strategies behind one interface (``Bound``); importing
this package registers the built-in ones."""
from gloro_local.bounds.strategies.base import (Bound, BoundContext, Margins, bound_names,
                                                get_bound, register)
from gloro_local.bounds.strategies.global_bound import GlobalBound
from gloro_local.bounds.strategies.gloro import GloroBound
from gloro_local.bounds.strategies.local import LocalBound, capped_sigmas
from gloro_local.bounds.strategies.local_layerwise import LocalLayerwiseBound
from gloro_local.bounds.strategies.relaxation_boxes import (LocalLayerwiseRelaxedBound,
                                                            LocalRelaxedBound)
from gloro_local.bounds.strategies.interval import IntervalBound
from gloro_local.bounds.strategies.crown_ibp import CrownIBPBound, CrownIBPL2Bound
from gloro_local.bounds.strategies.optimized import OptimizedBound

__all__ = ["Bound", "BoundContext", "CrownIBPBound", "CrownIBPL2Bound", "GlobalBound",
           "GloroBound", "IntervalBound", "LocalBound", "LocalLayerwiseBound",
           "LocalLayerwiseRelaxedBound", "LocalRelaxedBound", "Margins",
           "OptimizedBound", "bound_names", "capped_sigmas", "get_bound", "register"]
