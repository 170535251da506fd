"""Per-sample spectral norms of the masked hidden layers: the local Lipschitz factors."""
import tensorflow as tf

from gloro_local.bounds.block_solver import lobpcg
from gloro_local.bounds.power_iteration import MaskedOperator, StoppingRule, power_iteration


def masked_norm(operator, start, budget):
    """The norm of one ``MaskedOperator`` from ``start``: ``lobpcg`` for a 'lobpcg'
    ``StoppingRule``, ``power_iteration`` for a 'power' rule or a number of steps.
    Returns a ``PowerIterationResult``."""
    converges = isinstance(budget, StoppingRule) and budget.solver == "lobpcg"
    return (lobpcg if converges else power_iteration)(operator, start, budget)


def local_norms(network, propagation, starts, budget):
    """Masked power iteration for every hidden linear layer whose start vectors are given.

    Args:
        network: the ``SeamNetwork``.
        propagation: the ``Propagation`` that produced the masks.
        starts: per hidden layer, start vectors (B,) + input shape, or None to use the
            layer's global norm instead (always sound: ||M_out A M_in|| <= ||A||).
        budget: as in ``power_iteration`` (steps, or a ``StoppingRule``, whose ``solver``
            picks ``lobpcg`` or ``power_iteration``).

    Returns:
        per hidden layer a ``PowerIterationResult`` or None.
    """
    results = []
    dtype = propagation.penultimate.centre.dtype
    for (seam, shape), start, in_mask, out_mask in zip(
            network.hidden_layers(), starts, propagation.in_masks, propagation.out_masks):
        if start is None:
            results.append(None)
            continue
        operator = MaskedOperator(seam, shape, in_mask, out_mask)
        results.append(masked_norm(operator, tf.cast(start, dtype), budget))
    return results
