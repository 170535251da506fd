"""'local_layerwise': the local bound with local ball radii at every layer."""
from typing import Any, NamedTuple, Optional

import tensorflow as tf

from gloro_local.bounds.local_norms import masked_norm
from gloro_local.bounds.power_iteration import MaskedOperator, StoppingRule
from gloro_local.bounds.strategies.base import register
from gloro_local.bounds.strategies.l2_logits import global_per_sample, l2_margins
from gloro_local.bounds.strategies.local import LocalBound, capped_sigmas

FORWARD_SLACK = 1e-3  # 10x the default stopping tolerance


class LayerRecord(NamedTuple):
    """What the layer-wise bound found for one hidden layer: ``sigma`` (B,) float32, the
    norm it used (and fed forward), and ``power`` the power-iteration result (None for a
    layer without start vectors, which uses its global norm)."""

    sigma: tf.Tensor
    power: Optional[Any]


@register
class LocalLayerwiseBound(LocalBound):
    """The local bound with layer-wise local radii.

    'local' decides the masks from boxes clipped by the ball of radius
    eps * prod_{k<l} ||W_k|| entering layer l. Here, once hidden layer k's masks
    M_in,k and M_out,k are final (``before_linear``), its masked norm
    sigma_k(x) = ||M_out,k A_k M_in,k||_2 is computed and the ball entering the next
    layer gets the radius

        r_k = r_{k-1} * sigma_k(x),    r_{-1} = eps,

    instead of r_{k-1} * ||W_k||: inputs of layer k that are constant over the ball do
    not move, and an output held constant by element-wise 1-Lipschitz activations
    (``out_masks``) does not move either, so the activations after layer k move by at
    most ||M_out,k A_k M_in,k delta|| <= r_{k-1} sigma_k(x) for ||delta|| <= r_{k-1}
    (a pairwise activation after the row mask is 1-Lipschitz in l2 as a whole). Layer
    k's own pre-activation ball still uses r_{k-1} * ||W_k|| (its masks are not known
    yet). Every box after the first layer is at most as wide as the walk of 'local'
    has it, so more neurons are constant and the masked norms are at most those of
    'local'; the logit layer uses r = eps * prod_k sigma_k(x) over the ball intersected
    with the penultimate box.

    The sigma_k(x) fed forward is the one the certificate uses: in certification
    (``context.capped``) each is capped by the layer's global bound and replaced by it
    where the layer did not converge under the ``StoppingRule`` or masks nothing
    (``capped_sigmas``); otherwise (training: fixed steps) the estimate capped by the
    global estimate, min(sigma_k, ||W_k||). In certification the radius fed forward is
    min(sigma_k (1 + FORWARD_SLACK), ||W_k||): a converged estimate approaches the exact
    norm from below, so the slack keeps the later balls from resting on its last digits
    (the final product r = eps prod_k sigma_k(x) is that of 'local'). Layers without
    start vectors use their global norm. The walk's layer norms must be the context's
    global norms (as ``compute_margins`` walks): the radius after layer k's activations,
    r_{k-1} * ||W_k||, is rescaled by the forwarded sigma_k(x) / ||W_k||.
    """

    name = "local_layerwise"

    def before_linear(self, network, k, state, in_masks, out_masks, context):
        if context is None:
            raise ValueError("The bound 'local_layerwise' needs a BoundContext (start "
                             "vectors and a budget) in its walk. Received: context=None")
        batch = tf.shape(state.centre)[0]
        global_sigma = global_per_sample(context, batch, tf.float32)[k]
        start = context.starts[k]
        if start is None:
            return state, LayerRecord(global_sigma, None)
        seam, shape = network.hidden_layers()[k]
        dtype = context.iteration_dtype or state.centre.dtype
        operator = MaskedOperator(seam, shape, in_masks[k], out_masks[k]).cast(dtype)
        power = masked_norm(operator, tf.cast(start, dtype), context.budget, global_sigma)
        if context.capped:
            sigma = capped_sigmas([power], [global_sigma], [in_masks[k]], [out_masks[k]],
                                  batch, isinstance(context.budget, StoppingRule))[0]
        else:
            sigma = tf.minimum(tf.cast(power.sigma, tf.float32), global_sigma)
        if context.capped:  # the ball fed forward never rests on an estimate's last digits
            forward = tf.minimum(sigma * (1.0 + FORWARD_SLACK), global_sigma)
        else:
            forward = sigma
        shrink = tf.math.divide_no_nan(forward, global_sigma)
        radius = state.radius * tf.cast(shrink, state.radius.dtype)
        return state._replace(radius=radius), LayerRecord(sigma, power)

    def logit_step(self, network, propagation, epsilon, reference, context):
        batch = tf.shape(propagation.penultimate.centre)[0]
        global_sigmas = global_per_sample(context, batch, tf.float32)
        sigmas = [record.sigma for record in propagation.records]
        power = [record.power for record in propagation.records]
        return l2_margins(network, propagation, epsilon, reference, sigmas, global_sigmas,
                          power, context.worst_steps, ball_only=False)
