"""Per-sample spectral norms of the masked hidden layers: the local Lipschitz factors."""
import tensorflow as tf

from gloro_local.bounds.power_iteration import MaskedOperator, power_iteration


def random_start(input_shape, batch, seed=None, dtype=tf.float32):
    """Standard normal start vectors, shape (batch,) + input_shape; with a ``seed`` pair
    they are reproducible (``tf.random.stateless_normal``)."""
    shape = tf.concat([[batch], list(input_shape)], 0)
    if seed is None:
        return tf.random.normal(shape, dtype=dtype)
    return tf.random.stateless_normal(shape, seed=seed, dtype=dtype)


def local_norms(network, propagation, starts, iterations, tol=None):
    """Masked power iteration for every hidden linear layer whose start vectors are given.

    Args:
        network: the ``SeamNetwork``.
        propagation: the ``Propagation`` that produced the masks.
        starts: per hidden layer, start vectors (B,) + input shape, or None to use the
            layer's global norm instead (always sound: ||M_out A M_in|| <= ||A||).
        iterations, tol: as in ``power_iteration``.

    Returns:
        per hidden layer a ``PowerIterationResult`` or None.
    """
    results = []
    for (seam, shape), start, in_mask, out_mask in zip(
            network.hidden_layers(), starts, propagation.in_masks, propagation.out_masks):
        if start is None:
            results.append(None)
            continue
        operator = MaskedOperator(seam, shape, in_mask, out_mask)
        dtype = propagation.penultimate.centre.dtype
        results.append(power_iteration(operator, tf.cast(start, dtype), iterations, tol))
    return results
