"""The per-sample result of certification."""
from collections import Counter
from dataclasses import dataclass
from typing import Optional

import numpy as np

REASONS = ("global", "local", "ibp", "crown_ibp", "optimized", "attacked", "not converged",
           "tie", "wrong class", "bound too loose")


@dataclass(repr=False)
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
    radius (B,) or None: the certified radius (``certified_radius``: the largest eps at
    which the sample is certified), nan where it was not computed; None when no radius
    was computed (``certify`` alone).

    ``repr`` is a one-line summary: the number of samples, epsilon, the certified count
    and fraction (the VRA when labels were given), the counts by reason and, with radii,
    their mean and median; the arrays stay available as fields.
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
    radius: Optional[np.ndarray] = None

    def __repr__(self):
        n = int(np.size(self.certified))
        certified = int(np.sum(self.certified))
        fraction = f"{certified / n:.2%}" if n else "n/a"
        counts = self.counts()
        reasons = ", ".join(f"{reason}: {counts[reason]}" for reason in REASONS
                            if reason in counts)
        text = (f"Certificate(samples={n}, epsilon={self.epsilon:.6g}, "
                f"certified={certified} ({fraction}), reasons={{{reasons}}}")
        if self.radius is not None:
            radius = np.asarray(self.radius, np.float64)
            radius = radius[~np.isnan(radius)]
            if radius.size:
                text += (f", radius: mean {np.mean(radius):.4g}, median "
                         f"{np.median(radius):.4g} over {radius.size} samples")
        return text + ")"

    def counts(self):
        """Number of samples per reason."""
        return dict(Counter(self.reason.tolist()))

    def certified_accuracy(self, labels):
        """Fraction of samples that are certified and correctly classified (VRA)."""
        labels = np.asarray(labels).reshape(-1)
        return float(np.mean(self.certified & (self.prediction == labels)))
