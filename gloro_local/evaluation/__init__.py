"""Certification, attacks, Lipschitz lower bounds and evaluation reports."""
from gloro_local.evaluation.certificate import REASONS, Certificate
from gloro_local.evaluation.certify import certify
from gloro_local.evaluation.lower_bound import (LipschitzGap, lipschitz_gap,
                                                lipschitz_lower_bound)
from gloro_local.evaluation.pgd import pgd_l2
from gloro_local.evaluation.plots import save_plots
from gloro_local.evaluation.report import Report, evaluate

__all__ = ["Certificate", "LipschitzGap", "REASONS", "Report", "certify", "evaluate",
           "lipschitz_gap", "lipschitz_lower_bound", "pgd_l2", "save_plots"]
