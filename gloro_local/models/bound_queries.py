"""Per-sample Lipschitz bounds and certificates of a LocalGloroNet."""
import numpy as np

from gloro_local.bounds import (CertificateGlobals, StoppingRule, bound_pass,
                                certificate_globals)
from gloro_local.bounds.passes import local_bound
from gloro_local.models.certify import certify, check_inputs


class BoundQueries:
    """``lipschitz_bounds``: local and global Lipschitz products, per-layer norms and the
    fraction of varying neurons, per sample; ``certify``: the certificate."""

    def certify(self, x, y=None, **kwargs):
        """Certificates for ``x`` (see ``gloro_local.models.certify.certify``)."""
        return certify(self, x, y, **kwargs)

    def lipschitz_bounds(self, x, converge=False, tol=1e-4, max_iterations=2000,
                         batch_size=256, radius="global", boxes="interval"):
        """Per-sample bounds of the hidden layers' Lipschitz product at ``model.epsilon``.

        Returns a dict of numpy arrays: 'local' (B,) prod_l sigma_l(x) with masked norms,
        'global' (B,) prod_l ||W_l||, 'sigmas' (B, layers) the norms used (global norm for
        layers outside ``local_layers``), 'global_sigmas' (layers,), 'varying'
        (B, activations) the fraction of neurons that may move, 'iterations'
        (B, local layers) and 'converged' (B,) of the local power iteration.

        With ``converge=True`` these are the certificate's numbers: sound global norms and
        each sample's local iteration from the layers' top singular vectors, computed
        from the weights (``certificate_globals``), until the ``StoppingRule(
        max_iterations, tol)`` holds, capped by the global norms. Otherwise a quick
        monitoring estimate: the model's stored global estimates and vectors, and
        ``power_iterations`` steps per sample.

        ``radius='layerwise'`` gives the numbers of 'local_layerwise' (the ball entering
        each layer has the local radius of the layers before it; ``local_bound``) in
        place of the paper's 'global' radius; ``boxes='relaxation'`` those of the bounds
        whose boxes are also intersected with CROWN's l2 bounds.
        """
        bound = local_bound(radius, boxes)
        x, _ = check_inputs(self, x)
        if converge:
            globals_ = certificate_globals(self.network, self.seed)
            budget = StoppingRule(int(max_iterations), tol)
        else:
            globals_ = CertificateGlobals(
                [float(s) for s in self.global_norms.norms(self.hidden_seams(), 0)],
                list(self.global_norms.iterates))
            budget = self.power_iterations
        run = bound_pass(self.network, bound, self.local_layers, budget, self.seed)
        parts = []
        for begin in range(0, max(x.shape[0], 1), batch_size):  # empty x: one empty batch
            batch = x[begin:begin + batch_size]
            parts.append(run(batch, float(self.epsilon.numpy()), globals_.sigmas,
                             np.zeros(batch.shape[0], np.int32), globals_.vectors))
        summary = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        return {"local": summary["lipschitz"],
                "global": np.full(x.shape[0], np.prod(globals_.sigmas), np.float32),
                "sigmas": summary["sigmas"], "global_sigmas": np.array(globals_.sigmas),
                "varying": summary["varying"], "iterations": summary["iterations"],
                "converged": summary["converged"]}

    def certified_radius(self, x, y=None, **kwargs):
        """The largest eps at which each sample is certified, (B,) numpy
        (``gloro_local.models.certified_radius.certified_radius``: the closed form
        min_{i != j} (z_j - z_i) / (prod_l ||W_l|| ||w_j - w_i||) for bound='gloro',
        bisection on eps for 'global' and 'local', the default)."""
        from gloro_local.models.certified_radius import certified_radius
        return certified_radius(self, x, y, **kwargs)
