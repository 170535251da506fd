"""From an input batch to worst-case logits: the certificate's arithmetic in one place."""
from typing import List, NamedTuple, Optional

import tensorflow as tf

from gloro_local.bounds.local_norms import local_norms
from gloro_local.bounds.power_iteration import PowerIterationResult, StoppingRule
from gloro_local.bounds.propagation import Propagation, forward, propagate
from gloro_local.bounds.worst_logits import bottom_logit, pair_directions, worst_offsets
from gloro_local.layers import BoundState

BOUNDS = ("local", "global", "gloro")


class Margins(NamedTuple):
    """What a bound pass found for a batch.

    logits (B, K); worst (B, K): the worst-case logits z* relative to ``reference``
    (z*_j = z_j); bottom (B,): max_{i != j} z*_i; lipschitz (B,): product of the hidden
    layers' norms the bound used (local or global); global_lipschitz (B,): product of
    their global norms; sigmas: per hidden layer the (B,) norm used; power: per hidden
    layer the power-iteration result or None; propagation: the boxes and masks."""

    logits: tf.Tensor
    worst: tf.Tensor
    bottom: tf.Tensor
    lipschitz: tf.Tensor
    global_lipschitz: tf.Tensor
    sigmas: List[tf.Tensor]
    power: List[Optional[PowerIterationResult]]
    propagation: Propagation


def check_bound(bound):
    if bound not in BOUNDS:
        raise ValueError(f"bound must be one of {BOUNDS}, got {bound!r}.")
    return bound


def _product(factors, batch, dtype):
    total = tf.ones([batch], dtype)
    for factor in factors:
        total = total * factor
    return total


def _fully_varying(mask, batch):
    """(B,) True where ``mask`` keeps every neuron (None keeps all)."""
    if mask is None:
        return tf.ones([batch], tf.bool)
    return tf.reduce_min(mask, axis=tf.range(1, tf.rank(mask))) > 0.0


def capped_sigmas(power, global_per_sample, propagation, batch, require_converged=True):
    """The norms a certificate may use, per hidden layer: the global bound where no neuron
    of the layer is masked (the operator is then A itself) or, with
    ``require_converged``, where the layer's power iteration did not converge; else
    min(estimate, global bound). Without ``require_converged`` (a fixed number of steps:
    monitoring) every estimate is kept, capped."""
    sigmas = []
    for p, g, in_mask, out_mask in zip(power, global_per_sample, propagation.in_masks,
                                       propagation.out_masks):
        if p is None:
            sigmas.append(g)
            continue
        unmasked = tf.logical_and(_fully_varying(in_mask, batch),
                                  _fully_varying(out_mask, batch))
        use_global = (tf.logical_or(unmasked, tf.logical_not(p.converged))
                      if require_converged else unmasked)
        sigmas.append(tf.where(use_global, g, tf.minimum(tf.cast(p.sigma, g.dtype), g)))
    return sigmas


def compute_margins(network, x, epsilon, global_sigmas, bound, reference, starts,
                    budget, worst_steps=None, capped=False, box_gradient=True):
    """Propagates bounds and returns the worst-case logits of ``bound``.

    'local': r = eps * prod_l sigma_l(x) with masked per-sample norms (layers whose start
        vectors are None use their global norm); the last layer maximises over the ball
        of radius r intersected with the penultimate box.
    'global': the same with r = eps * prod_l ||W_l|| (BCP-style).
    'gloro': z*_i = z_i + eps * prod_l ||W_l|| * ||w_i - w_j|| (ball only, as GloRo).

    Args:
        network: ``SeamNetwork``. x: inputs. epsilon: validated scalar tensor; its dtype
            is the dtype of the propagation and power iteration (float32, or bfloat16
            for faster training); the logit layer and the worst case run in float32.
        global_sigmas: an upper bound (certification: sound) or an estimate (training)
            of the global norm of every hidden layer (scalars).
        reference: (B,) class j each sample is compared with (the label), or None for
            the predicted class argmax z.
        starts: per hidden layer, power-iteration start vectors or None ('local' only).
        budget: power-iteration steps (training) or a ``StoppingRule``.
        worst_steps: clipping steps of the worst-logit iteration (None: exact).
        capped: use ``capped_sigmas`` (inference and certification) rather than the raw,
            differentiable estimates (training).
        box_gradient: as in ``propagate`` (training option).
    """
    propagation = (forward if bound == "gloro" else propagate)(network, x, epsilon,
                                                               global_sigmas, box_gradient)
    pen = BoundState(*(tf.cast(t, tf.float32) for t in propagation.penultimate))
    batch = tf.shape(pen.centre)[0]
    dtype = pen.centre.dtype
    epsilon = tf.cast(epsilon, dtype)
    global_per_sample = [tf.fill([batch], tf.cast(s, dtype)) for s in global_sigmas]
    global_lipschitz = _product(global_per_sample, batch, dtype)
    power = [None] * len(global_sigmas)
    sigmas = global_per_sample
    if bound == "local":
        power = local_norms(network, propagation, starts, budget)
        sigmas = (capped_sigmas(power, global_per_sample, propagation, batch,
                                isinstance(budget, StoppingRule)) if capped
                  else [g if p is None else p.sigma for p, g in zip(power, global_per_sample)])
    lipschitz = _product(sigmas, batch, dtype)
    logit_layer = network.logit_layer
    logits = logit_layer.affine(pen.centre)
    if reference is None:
        reference = tf.argmax(logits, axis=-1, output_type=tf.int32)
    directions = pair_directions(tf.cast(logit_layer.kernel, dtype), reference)
    radius = epsilon * lipschitz
    if bound == "gloro":
        offsets = radius[:, None] * tf.norm(directions, axis=-1)
    else:
        offsets, _ = worst_offsets(directions, (pen.lo - pen.centre)[:, None, :],
                                   (pen.hi - pen.centre)[:, None, :], radius, worst_steps)
    is_reference = tf.one_hot(reference, tf.shape(logits)[-1], on_value=True,
                              off_value=False)
    worst = tf.where(is_reference, logits, logits + offsets)
    return Margins(logits, worst, bottom_logit(worst, reference), lipschitz,
                   global_lipschitz, sigmas, power, propagation)
