"""One pass of (centre, box, ball) and of the varying-neuron masks through every layer but
the logit layer."""
from typing import List, NamedTuple, Optional

import tensorflow as tf

from gloro_local.layers import ActivationSeam, BoundState, LinearSeam


class ActivationBox(NamedTuple):
    """An activation layer with the pre-activation box it saw and its own mask
    (``seam.varying``: outputs the layer itself may let move; None: all)."""

    seam: ActivationSeam
    lo: tf.Tensor
    hi: tf.Tensor
    varying: Optional[tf.Tensor]


class Propagation(NamedTuple):
    """What one propagation pass found.

    penultimate: the bound state at the input of the logit layer.
    in_masks, out_masks: per hidden linear layer, the column mask M_in (inputs that may
        move; the others are constant over the eps-ball and deleted) and the row mask
        M_out (outputs that reach the next layer only through element-wise activations
        and reshapes that hold them constant are deleted); None means no mask.
    activations: per activation layer, its pre-activation box and own mask.
    """

    penultimate: BoundState
    in_masks: List[Optional[tf.Tensor]]
    out_masks: List[Optional[tf.Tensor]]
    activations: List[ActivationBox]


def forward(network, x, epsilon, layer_norms, box_gradient=True):
    """The clean pass alone, with the ball radius eps * prod_l ||W_l|| (no box, no masks):
    all that the ball-only 'gloro' bound needs. The returned box is the point itself
    (``box_gradient`` is accepted for a common signature: there is no box)."""
    centre = network.features(tf.cast(x, epsilon.dtype))
    radius = tf.fill(tf.shape(centre)[:1], epsilon)
    for norm in layer_norms:
        radius = radius * tf.cast(norm, radius.dtype)
    hidden = len(layer_norms)
    return Propagation(BoundState(centre, centre, centre, radius), [None] * hidden,
                       [None] * hidden, [])


def propagate(network, x, epsilon, layer_norms, box_gradient=True):
    """Propagates the clean input, the box x +- eps, the ball (x, eps) and the mask of
    neurons that may move through ``network``.

    The mask follows the layers' own rules: a linear layer's outputs may all move; an
    activation maps the mask of its inputs to that of its outputs (``map_mask``); a
    reshape reshapes it. The mask reaching a linear layer is its column mask. The mask
    reached after a linear layer through element-wise activations (and reshapes) only is
    its row mask: those activations are 1-Lipschitz neuron by neuron, so a constant
    output needs no row. A pairwise activation (MaxMin) ends the row mask.

    Args:
        network: a ``SeamNetwork``.
        x: inputs, shape (B,) + network.input_shape.
        epsilon: the l2 radius (scalar tensor, already validated).
        layer_norms: an upper bound of the spectral norm of every hidden linear layer
            (list of scalars); the ball radius after layer l is eps * prod_{k<=l} ||W_k||,
            which feeds the masks.
        box_gradient: False stops the gradient at the box entering every linear layer,
            so the box of each layer is differentiable in that layer's weights alone
            (the penultimate box in the logit layer's worst case, each activation's box
            in the sparsity hinge) and backpropagation skips the box's path through the
            earlier layers (training option; the values are unchanged).

    Returns:
        a ``Propagation``.
    """
    x = tf.cast(x, epsilon.dtype)
    state = BoundState(x, x - epsilon, x + epsilon, tf.fill(tf.shape(x)[:1], epsilon))
    in_masks, out_masks, activations = [], [], []
    mask = None
    rows_open = False
    for seam in network.seams[:-1]:
        if isinstance(seam, LinearSeam):
            in_masks.append(mask)
            out_masks.append(None)
            if not box_gradient:
                state = state._replace(lo=tf.stop_gradient(state.lo),
                                       hi=tf.stop_gradient(state.hi))
            state = seam.propagate(state, layer_norms[len(in_masks) - 1])
            mask, rows_open, linear_shape = None, True, tf.shape(state.centre)
            continue
        if isinstance(seam, ActivationSeam):
            own = seam.varying(state.lo, state.hi)
            activations.append(ActivationBox(seam, state.lo, state.hi, own))
            mask = seam.map_mask(mask, own)
            rows_open = rows_open and seam.elementwise
            if rows_open and mask is not None:
                out_masks[-1] = tf.reshape(mask, linear_shape)
        else:
            mask = seam.map_mask(mask)
        state = seam.propagate(state)
    return Propagation(state, in_masks, out_masks, activations)
