"""Evaluation reports, Lipschitz lower bounds and plots; certification and PGD are
re-exported here from ``gloro_local.models`` and ``gloro_local.attacks``."""
from gloro_local.attacks import pgd_l2
from gloro_local.evaluation.lower_bound import (LipschitzGap, lipschitz_gap,
                                                lipschitz_lower_bound)
from gloro_local.evaluation.plots import save_plots
from gloro_local.evaluation.report import Report, evaluate, pgd_accuracy
from gloro_local.models import REASONS, Certificate, certify

__all__ = ["Certificate", "LipschitzGap", "REASONS", "Report", "certify", "evaluate",
           "lipschitz_gap", "lipschitz_lower_bound", "pgd_accuracy", "pgd_l2", "save_plots"]
