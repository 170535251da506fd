"""The per-sample result of certification."""
from collections import Counter
from dataclasses import dataclass

import numpy as np

REASONS = ("global", "local", "attacked", "not converged", "tie", "wrong class",
           "bound too loose")


@dataclass
class Certificate:
    """What ``certify`` found for each sample.

    prediction (B,): argmax of the clean logits. certified (B,): robust at ``epsilon``
    (and correct, when labels were given). reason (B,): why, one of REASONS — 'global' /
    'local' (certified by that bound), 'attacked' (PGD found a counterexample),
    'not converged' (the local power iteration did not reach the tolerance), 'tie' (the
    top logit is not unique), 'wrong class' (prediction != label), 'bound too loose'.
    bound (B,): the last bound computed for the sample, 'global', 'local' or 'none'.
    margin (B,): z_j - bottom of that bound (nan when none was computed).
    lipschitz (B,): the hidden layers' Lipschitz product of that bound (nan when none).
    global_lipschitz (B,): the product of the converged global norms.
    iterations (B, local layers): local power-iteration steps (0 where not run).
    """

    epsilon: float
    prediction: np.ndarray
    certified: np.ndarray
    reason: np.ndarray
    bound: np.ndarray
    margin: np.ndarray
    lipschitz: np.ndarray
    global_lipschitz: np.ndarray
    iterations: np.ndarray

    def counts(self):
        """Number of samples per reason."""
        return dict(Counter(self.reason.tolist()))

    def certified_accuracy(self, labels):
        """Fraction of samples that are certified and correctly classified (VRA)."""
        labels = np.asarray(labels).reshape(-1)
        return float(np.mean(self.certified & (self.prediction == labels)))
