"""From an input batch to worst-case logits: one walk and one logit step of a bound."""
import tensorflow as tf

from gloro_local.bounds.propagation import walk
from gloro_local.bounds.strategies import BoundContext, Margins, bound_names, get_bound

BOUNDS = bound_names("l2")


def check_bound(bound, norm="l2"):
    """The name of ``bound`` (a registered name or a ``Bound``); ValueError for an unknown
    bound or one of another norm."""
    return get_bound(bound, norm).name


def compute_margins(network, x, epsilon, global_sigmas, bound, reference, starts,
                    budget, worst_steps=None, capped=False, box_gradient=True, beta=1.0,
                    eta=1.0, seed=None, box_layers=None, iteration_dtype=None):
    """Walks ``bound`` through ``network`` and returns its worst-case logits (``Margins``).

    The l2 bounds ('local', 'global', 'gloro', and the 'crown_ibp_l2' baseline) and the
    l-infinity ones ('ibp', 'crown_ibp', 'optimized') live in
    ``gloro_local.bounds.strategies``; the l2 ones:
    'local': r = eps * prod_l sigma_l(x) with masked per-sample norms (layers whose start
        vectors are None use their global norm); the last layer maximises over the ball
        of radius r intersected with the penultimate box.
    'local_layerwise': as 'local', but the ball entering each layer has the local radius
        eps * prod_{k<l} sigma_k(x) of the layers before it (tighter boxes and masks).
    'global': the same with r = eps * prod_l ||W_l|| (BCP-style).
    'gloro': z*_i = z_i + eps * prod_l ||W_l|| * ||w_i - w_j|| (ball only, as GloRo).

    Args:
        network: ``SeamNetwork``. x: inputs. epsilon: validated scalar tensor; its dtype
            is the dtype of the propagation and power iteration (float32, or bfloat16
            for faster training); the logit layer and the worst case run in float32.
        global_sigmas: an upper bound (certification: sound) or an estimate (training)
            of the global norm of every hidden layer (scalars).
        bound: a registered bound name or a ``Bound``.
        reference: (B,) class j each sample is compared with (the label), or None for
            the predicted class argmax z.
        starts: per hidden layer, power-iteration start vectors or None ('local' and
            'local_layerwise' only).
        budget: power-iteration steps (training) or a ``StoppingRule``.
        worst_steps: clipping steps of the worst-logit iteration (None: exact).
        capped: use ``capped_sigmas`` (inference and certification) rather than the raw,
            differentiable estimates (training).
        box_gradient, box_layers: as in ``walk`` (training options).
        beta, eta, seed: options of the linear-relaxation bounds (``BoundContext``).
        iteration_dtype: dtype of the per-sample power iterations (None: epsilon's);
            'bfloat16' under a float32 walk is training_dtype='mixed'.
    """
    bound = get_bound(bound)
    x = tf.cast(x, epsilon.dtype)
    context = BoundContext(global_sigmas, starts, budget, worst_steps, capped, x, beta, eta,
                           seed, iteration_dtype)
    propagation = walk(network, bound, x, epsilon, global_sigmas, box_gradient, context,
                       box_layers)
    return bound.logit_step(network, propagation, epsilon, reference, context)


__all__ = ["BOUNDS", "Margins", "check_bound", "compute_margins"]
