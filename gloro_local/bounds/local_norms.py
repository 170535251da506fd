"""Per-sample spectral norms of the masked hidden layers: the local Lipschitz factors."""
import tensorflow as tf

from gloro_local.bounds.block_solver import lobpcg
from gloro_local.bounds.power_iteration import (MaskedOperator, PowerIterationResult,
                                                StoppingRule, power_iteration, unmasked)


def masked_norm(operator, start, budget, global_sigma=None):
    """The norm of one ``MaskedOperator`` from ``start``: ``lobpcg`` for a 'lobpcg'
    ``StoppingRule``, ``power_iteration`` for a 'power' rule or a number of steps.

    Under a ``StoppingRule`` with ``global_sigma`` (B,), the layer's sound global norm:
    when no mask deletes any neuron of any sample of the batch, M_out A M_in = A for
    every sample, and the certificate takes the global norm for such a layer in any case
    (``capped_sigmas``), so the iteration is skipped: sigma is the global norm, with 0
    steps, every sample converged and the start vectors handed back unchanged. Training
    (a number of steps) always iterates: taking the global estimate there instead of the
    per-sample iteration cost 11 points of certified accuracy (docs/results.md).
    Returns a ``PowerIterationResult``."""
    if not isinstance(budget, StoppingRule):
        return power_iteration(operator, start, budget)
    solver = lobpcg if budget.solver == "lobpcg" else power_iteration
    if global_sigma is None:
        return solver(operator, start, budget)
    batch = tf.shape(start)[0]

    def skipped():
        return PowerIterationResult(tf.cast(global_sigma, tf.float32), start,
                                    tf.zeros([batch], tf.int32), tf.ones([batch], tf.bool))

    if not operator.masks():
        return skipped()
    plain = tf.reduce_all(unmasked(operator.in_mask, operator.out_mask, batch))
    return tf.cond(plain, skipped, lambda: solver(operator, start, budget))


def local_norms(network, propagation, starts, budget, global_sigmas=None, dtype=None):
    """Masked power iteration for every hidden linear layer whose start vectors are given.

    Args:
        network: the ``SeamNetwork``.
        propagation: the ``Propagation`` that produced the masks.
        starts: per hidden layer, start vectors (B,) + input shape, or None to use the
            layer's global norm instead (always sound: ||M_out A M_in|| <= ||A||).
        budget: as in ``power_iteration`` (steps, or a ``StoppingRule``, whose ``solver``
            picks ``lobpcg`` or ``power_iteration``).
        global_sigmas: per hidden layer, (B,) sound global norms: under a
            ``StoppingRule`` a layer no mask touches in the batch takes its global norm
            (``masked_norm``); None: always iterate.
        dtype: the iterations' dtype (start vectors and masks are cast to it); None:
            the walk's.

    Returns:
        per hidden layer a ``PowerIterationResult`` or None.
    """
    results = []
    dtype = dtype or propagation.penultimate.centre.dtype
    global_sigmas = global_sigmas or [None] * len(starts)
    for (seam, shape), start, in_mask, out_mask, global_sigma in zip(
            network.hidden_layers(), starts, propagation.in_masks, propagation.out_masks,
            global_sigmas):
        if start is None:
            results.append(None)
            continue
        operator = MaskedOperator(seam, shape, in_mask, out_mask).cast(dtype)
        results.append(masked_norm(operator, tf.cast(start, dtype), budget, global_sigma))
    return results
