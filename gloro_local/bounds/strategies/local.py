"""'local': the paper's bound, per-sample norms of the masked hidden layers."""
import tensorflow as tf

from gloro_local.bounds.local_norms import local_norms
from gloro_local.bounds.power_iteration import StoppingRule, unmasked
from gloro_local.bounds.strategies.base import register
from gloro_local.bounds.strategies.global_bound import GlobalBound
from gloro_local.bounds.strategies.l2_logits import global_per_sample, l2_margins


def capped_sigmas(power, global_per_sample, in_masks, out_masks, batch,
                  require_converged=True):
    """The norms a certificate may use, per hidden layer: the global bound where no neuron
    of the layer is masked (the operator is then A itself) or, with
    ``require_converged``, where the layer's power iteration did not converge; else
    min(estimate, global bound). Without ``require_converged`` (a fixed number of steps:
    monitoring) every estimate is kept, capped."""
    sigmas = []
    for p, g, in_mask, out_mask in zip(power, global_per_sample, in_masks, out_masks):
        if p is None:
            sigmas.append(g)
            continue
        plain = unmasked(in_mask, out_mask, batch)
        use_global = (tf.logical_or(plain, tf.logical_not(p.converged))
                      if require_converged else plain)
        sigmas.append(tf.where(use_global, g, tf.minimum(tf.cast(p.sigma, g.dtype), g)))
    return sigmas


@register
class LocalBound(GlobalBound):
    """The walk of 'global' (its boxes and ball decide which neurons are constant), then
    r(x) = eps * prod_l sigma_l(x) with sigma_l(x) = ||M_out,l A_l M_in,l||_2 by
    per-sample masked power iteration (layers without start vectors: the global norm);
    in certification each sigma_l(x) is capped by the global norm and replaced by it
    where the layer did not converge (``capped_sigmas``). The logit layer maximises
    over the ball of radius r(x) intersected with the penultimate box."""

    name = "local"
    per_sample_norms = True

    def logit_step(self, network, propagation, epsilon, reference, context):
        batch = tf.shape(propagation.penultimate.centre)[0]
        global_sigmas = global_per_sample(context, batch, tf.float32)
        power = local_norms(network, propagation, context.starts, context.budget,
                            global_sigmas, context.iteration_dtype)
        if context.capped:
            sigmas = capped_sigmas(power, global_sigmas, propagation.in_masks,
                                   propagation.out_masks, batch,
                                   isinstance(context.budget, StoppingRule))
        else:
            sigmas = [g if p is None else tf.cast(p.sigma, tf.float32)
                      for p, g in zip(power, global_sigmas)]
        return l2_margins(network, propagation, epsilon, reference, sigmas, global_sigmas,
                          power, context.worst_steps, ball_only=False)
