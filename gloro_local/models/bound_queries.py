"""Per-sample Lipschitz bounds of a LocalGloroNet, on request converged."""
import numpy as np
import tensorflow as tf

from gloro_local.bounds import compute_margins
from gloro_local.evaluation.certify import certify


def _per_sample_mean(mask):
    return tf.reduce_mean(mask, axis=tf.range(1, tf.rank(mask)))


class BoundQueries:
    """``lipschitz_bounds``: local and global Lipschitz products, per-layer norms and the
    fraction of varying neurons, per sample; ``certify``: the sound certificate."""

    def certify(self, x, y=None, **kwargs):
        """Sound certificates for ``x`` (see ``gloro_local.evaluation.certify``)."""
        return certify(self, x, y, **kwargs)

    def lipschitz_bounds(self, x, converge=False, tol=1e-3, max_iterations=2000,
                         batch_size=256):
        """Per-sample bounds of the hidden layers' Lipschitz product at ``model.epsilon``.

        Returns a dict of numpy arrays: 'local' (B,) prod_l sigma_l(x) with masked norms,
        'global' (B,) prod_l ||W_l||, 'sigmas' (B, layers) the masked norms (global norm
        for layers outside ``local_layers``), 'global_sigmas' (layers,), 'varying'
        (B, activations) the fraction of neurons that may move, 'iterations'
        (B, local layers) and 'converged' (B,) of the local power iteration.
        With ``converge=True`` the global vectors are converged first and each sample's
        local iteration runs from random vectors to ||u_t+1 - u_t|| <= tol (at most
        ``max_iterations``); otherwise ``power_iterations`` steps from random vectors.
        """
        seams = self.hidden_seams()
        if converge:
            global_sigmas, _ = self.global_norms.converge(seams, tol=1e-6)
            budget = dict(iterations=max_iterations, tol=tol)
        else:
            global_sigmas = self.global_norms.norms(seams, 0)
            budget = dict(iterations=self.power_iterations, tol=None)
        x = self.network.check_input(np.asarray(x, np.float32))
        epsilon = tf.convert_to_tensor(self.epsilon)
        parts = []
        for begin in range(0, int(x.shape[0]), batch_size):
            batch = x[begin:begin + batch_size]
            starts = self.starts(batch.shape[0])
            result = compute_margins(self.network, batch, epsilon, global_sigmas, "local",
                                     None, starts, **budget)
            parts.append(_summary(result))
        summary = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        summary["global_sigmas"] = np.array([float(s) for s in global_sigmas])
        return summary


def _summary(result):
    power = [p for p in result.power if p is not None]
    batch = int(result.lipschitz.shape[0])
    return {
        "local": result.lipschitz.numpy(),
        "global": result.global_lipschitz.numpy(),
        "sigmas": np.stack([s.numpy() for s in result.sigmas], axis=1),
        "varying": np.stack([np.ones(batch) if a.varying is None
                             else _per_sample_mean(a.varying).numpy()
                             for a in result.propagation.activations], axis=1),
        "iterations": np.stack([p.iterations.numpy() for p in power], axis=1)
        if power else np.zeros((batch, 0), np.int32),
        "converged": np.all(np.stack([p.converged.numpy() for p in power], axis=1), axis=1)
        if power else np.ones(batch, bool),
    }
