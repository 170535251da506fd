"""Certification, attacks and evaluation reports."""
from gloro_local.evaluation.certificate import REASONS, Certificate
from gloro_local.evaluation.certify import certify
from gloro_local.evaluation.pgd import pgd_l2

__all__ = ["Certificate", "REASONS", "certify", "pgd_l2"]
