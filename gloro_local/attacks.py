"""Adversarial attacks: ``pgd_l2``, untargeted l2 PGD (see gloro_local.evaluation.pgd)."""
from gloro_local.evaluation.pgd import pgd_l2

__all__ = ["pgd_l2"]
