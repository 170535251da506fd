"""Evaluation reports, Lipschitz lower bounds and plots; certification, the certified
radius and PGD are re-exported here from ``gloro_local.models`` and ``gloro_local.attacks``."""
from gloro_local.attacks import pgd_l2, pgd_linf
from gloro_local.evaluation.lower_bound import (LipschitzGap, lipschitz_gap,
                                                lipschitz_lower_bound)
from gloro_local.evaluation.plots import (bound_ratio_figure, iterations_figure,
                                          radius_figure, save_plots)
from gloro_local.evaluation.report import Report, evaluate, evaluate_linf, pgd_accuracy
from gloro_local.models import REASONS, Certificate, certify
from gloro_local.models.certified_radius import certified_radius, gloro_radius

__all__ = ["Certificate", "LipschitzGap", "REASONS", "Report", "bound_ratio_figure",
           "certified_radius", "certify", "evaluate", "evaluate_linf", "gloro_radius", "iterations_figure",
           "lipschitz_gap", "lipschitz_lower_bound", "pgd_accuracy", "pgd_l2", "pgd_linf",
           "radius_figure", "save_plots"]
