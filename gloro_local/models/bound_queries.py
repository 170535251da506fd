"""Per-sample Lipschitz bounds and certificates of a LocalGloroNet."""
import numpy as np

from gloro_local.bounds import StoppingRule, bound_pass, sound_global_norms
from gloro_local.models.certify import certify, check_inputs


class BoundQueries:
    """``lipschitz_bounds``: local and global Lipschitz products, per-layer norms and the
    fraction of varying neurons, per sample; ``certify``: the certificate."""

    def certify(self, x, y=None, **kwargs):
        """Certificates for ``x`` (see ``gloro_local.models.certify.certify``)."""
        return certify(self, x, y, **kwargs)

    def lipschitz_bounds(self, x, converge=False, tol=1e-3, rtol=1e-5, patience=5,
                         max_iterations=2000, batch_size=256):
        """Per-sample bounds of the hidden layers' Lipschitz product at ``model.epsilon``.

        Returns a dict of numpy arrays: 'local' (B,) prod_l sigma_l(x) with masked norms,
        'global' (B,) prod_l ||W_l||, 'sigmas' (B, layers) the norms used (global norm for
        layers outside ``local_layers``), 'global_sigmas' (layers,), 'varying'
        (B, activations) the fraction of neurons that may move, 'iterations'
        (B, local layers) and 'converged' (B,) of the local power iteration.

        With ``converge=True`` these are the certificate's numbers: sound global norms
        (``sound_global_norms``) and each sample's local iteration from fixed seeded
        vectors until the ``StoppingRule(max_iterations, tol, rtol, patience)`` holds,
        capped by the global norms. Otherwise a quick monitoring estimate: the model's
        stored global estimates and ``power_iterations`` steps per sample.
        """
        x, _ = check_inputs(self, x)
        if converge:
            global_sigmas = sound_global_norms(self.network)
            budget = StoppingRule(int(max_iterations), tol, rtol, int(patience))
        else:
            global_sigmas = [float(s) for s in self.global_norms.norms(self.hidden_seams(), 0)]
            budget = self.power_iterations
        run = bound_pass(self.network, "local", self.local_layers, budget, self.seed)
        parts = []
        for begin in range(0, x.shape[0], batch_size):
            batch = x[begin:begin + batch_size]
            parts.append(run(batch, float(self.epsilon.numpy()), global_sigmas,
                             np.zeros(batch.shape[0], np.int32)))
        summary = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        return {"local": summary["lipschitz"],
                "global": np.full(x.shape[0], np.prod(global_sigmas), np.float32),
                "sigmas": summary["sigmas"], "global_sigmas": np.array(global_sigmas),
                "varying": summary["varying"], "iterations": summary["iterations"],
                "converged": summary["converged"]}
