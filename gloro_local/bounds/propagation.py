"""One pass of (centre, box, ball) through every layer but the logit layer."""
from typing import List, NamedTuple, Optional

import tensorflow as tf

from gloro_local.layers import ActivationSeam, BoundState, LinearSeam, ShapeSeam


class ActivationBox(NamedTuple):
    """An activation layer with the pre-activation box it saw and its varying mask."""

    seam: ActivationSeam
    lo: tf.Tensor
    hi: tf.Tensor
    varying: Optional[tf.Tensor]


class Propagation(NamedTuple):
    """What one propagation pass found.

    penultimate: the bound state at the input of the logit layer.
    in_masks, out_masks: per hidden linear layer, the column mask M_in (constant inputs
        deleted) and row mask M_out (rows whose outputs feed constant neurons deleted);
        None means no mask (every neuron varies).
    activations: per activation layer, its pre-activation box and varying mask.
    """

    penultimate: BoundState
    in_masks: List[Optional[tf.Tensor]]
    out_masks: List[Optional[tf.Tensor]]
    activations: List[ActivationBox]


def _combine(mask, other):
    if mask is None:
        return other
    if other is None:
        return mask
    return mask * other


def forward(network, x, epsilon, layer_norms):
    """The clean pass alone, with the ball radius eps * prod_l ||W_l|| (no box, no masks):
    all that the ball-only 'gloro' bound needs. The returned box is the point itself."""
    centre = tf.cast(x, epsilon.dtype)
    for seam in network.seams[:-1]:
        centre = seam.affine(centre) if isinstance(seam, LinearSeam) else seam.call(centre)
    radius = tf.fill(tf.shape(centre)[:1], epsilon)
    for norm in layer_norms:
        radius = radius * tf.cast(norm, radius.dtype)
    hidden = len(layer_norms)
    return Propagation(BoundState(centre, centre, centre, radius), [None] * hidden,
                       [None] * hidden, [])


def propagate(network, x, epsilon, layer_norms):
    """Propagates the clean input, the box x +- eps and the ball (x, eps) through ``network``.

    Args:
        network: a ``SeamNetwork``.
        x: inputs, shape (B,) + network.input_shape.
        epsilon: the l2 radius (scalar tensor, already validated).
        layer_norms: global spectral norm of every hidden linear layer (list of scalars);
            the ball radius after layer l is eps * prod_{k<=l} ||W_k||, which feeds the masks.

    Returns:
        a ``Propagation``.
    """
    x = tf.cast(x, epsilon.dtype)
    state = BoundState(x, x - epsilon, x + epsilon,
                       tf.fill(tf.shape(x)[:1], epsilon))
    in_masks, out_masks, activations = [], [], []
    column_mask = None
    previous_linear = False
    for seam in network.seams[:-1]:
        if isinstance(seam, LinearSeam):
            in_masks.append(column_mask)
            out_masks.append(None)
            state = seam.propagate(state, layer_norms[len(in_masks) - 1])
            column_mask = None
            previous_linear = True
            continue
        if isinstance(seam, ActivationSeam):
            mask = seam.varying(state.lo, state.hi)
            activations.append(ActivationBox(seam, state.lo, state.hi, mask))
            if previous_linear and seam.masks_rows:
                out_masks[-1] = mask
            column_mask = _combine(column_mask, mask)
        elif isinstance(seam, ShapeSeam) and column_mask is not None:
            column_mask = seam.reshape(column_mask)
        state = seam.propagate(state)
        previous_linear = False
    return Propagation(state, in_masks, out_masks, activations)
