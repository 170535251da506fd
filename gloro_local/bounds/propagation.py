"""One walk of a bound through every layer but the logit layer, with the masks of the
neurons that may move."""
from typing import Any, List, NamedTuple, Optional

import tensorflow as tf

from gloro_local.bounds.strategies import get_bound
from gloro_local.layers import ActivationSeam, BoundState, LinearSeam


class ActivationBox(NamedTuple):
    """An activation layer with the pre-activation box it saw and its own mask
    (``seam.varying``: outputs the layer itself may let move; None: all)."""

    seam: ActivationSeam
    lo: tf.Tensor
    hi: tf.Tensor
    varying: Optional[tf.Tensor]


class Propagation(NamedTuple):
    """What one walk found.

    penultimate: the bound state at the input of the logit layer.
    in_masks, out_masks: per hidden linear layer, the column mask M_in (inputs that may
        move; the others are constant over the eps-ball and deleted) and the row mask
        M_out (outputs that reach the next layer only through element-wise activations
        and reshapes that hold them constant are deleted); None means no mask.
    activations: per activation layer, its pre-activation box and own mask (None when
        the bound tracks no masks).
    records: per hidden linear layer, what the bound's ``before_linear`` recorded once
        the layer's masks were final (None for bounds that record nothing).
    """

    penultimate: BoundState
    in_masks: List[Optional[tf.Tensor]]
    out_masks: List[Optional[tf.Tensor]]
    activations: List[ActivationBox]
    records: List[Optional[Any]] = ()


def walk(network, bound, x, epsilon, layer_norms, box_gradient=True, context=None,
         box_layers=None):
    """Walks ``bound`` (a ``Bound`` or its name) through ``network``: its initial state,
    then its step for every layer but the logit layer, recording every activation's
    pre-activation box and, when the bound tracks them, the masks of neurons that may
    move.

    The mask follows the layers' own rules: a linear layer's outputs may all move; an
    activation maps the mask of its inputs to that of its outputs (``map_mask``); a
    reshape reshapes it. The mask reaching a linear layer is its column mask. The mask
    reached after a linear layer through element-wise activations (and reshapes) only is
    its row mask: those activations are 1-Lipschitz neuron by neuron, so a constant
    output needs no row. A pairwise activation (MaxMin) ends the row mask. Both masks of
    hidden linear layer k are final when the walk reaches the next linear layer (or the
    logit layer): there it calls ``bound.before_linear(network, k, state, in_masks,
    out_masks, context)``, whose state goes on and whose record is kept. After every
    hidden linear layer's own step the bound may tighten its output box
    (``bound.after_linear``) before the activations see it.

    Args:
        network: a ``SeamNetwork``.
        bound: the ``Bound`` whose steps are taken.
        x: inputs, shape (B,) + network.input_shape.
        epsilon: the radius (scalar tensor, already validated); its dtype is the walk's.
        layer_norms: an upper bound of the spectral norm of every hidden linear layer
            (list of scalars), for bounds that use them (the l2 ball radius after layer
            l is eps * prod_{k<=l} ||W_k||, which feeds the masks).
        box_gradient: False stops the gradient at the box entering every linear layer,
            so the box of each layer is differentiable in that layer's weights alone
            (the penultimate box in the logit layer's worst case, each activation's box
            in the sparsity hinge) and backpropagation skips the box's path through the
            earlier layers (training option; the values are unchanged).
        context: the ``BoundContext`` handed to ``before_linear`` (None: none).
        box_layers: None, or how many hidden linear layers (the first ones) carry the
            box through; the later ones take ``bound.ball_step`` (the ball's bounds
            alone: sound and cheaper, looser where the box would have been tighter;
            training option).

    Returns:
        a ``Propagation``.
    """
    bound = get_bound(bound)
    state = bound.initial_state(tf.cast(x, epsilon.dtype), epsilon)
    in_masks, out_masks, activations, records = [], [], [], []

    def finish_layer(state):
        state, record = bound.before_linear(network, len(in_masks) - 1, state, in_masks,
                                            out_masks, context)
        records.append(record)
        return state

    mask = None
    rows_open = False
    for index, seam in enumerate(network.seams[:-1]):
        if isinstance(seam, LinearSeam):
            if in_masks:
                state = finish_layer(state)
            in_masks.append(mask)
            out_masks.append(None)
            if not box_gradient:
                state = state._replace(lo=tf.stop_gradient(state.lo),
                                       hi=tf.stop_gradient(state.hi))
            k = len(in_masks) - 1
            norm = layer_norms[k] if bound.uses_norms else None
            step = (bound.linear_step if box_layers is None or k < box_layers
                    else bound.ball_step)
            state = step(seam, state, norm)
            state = bound.after_linear(network, index, state, activations, epsilon, context)
            mask, rows_open, linear_shape = None, True, tf.shape(state.centre)
            continue
        if isinstance(seam, ActivationSeam):
            own = seam.varying(state.lo, state.hi) if bound.tracks_masks else None
            activations.append(ActivationBox(seam, state.lo, state.hi, own))
            if bound.tracks_masks:
                mask = seam.map_mask(mask, own)
                rows_open = rows_open and seam.elementwise
                if rows_open and mask is not None:
                    out_masks[-1] = tf.reshape(mask, linear_shape)
            state = bound.activation_step(seam, state)
        else:
            mask = seam.map_mask(mask)
            state = bound.shape_step(seam, state)
    if in_masks:
        state = finish_layer(state)
    return Propagation(state, in_masks, out_masks, activations, records)


def propagate(network, x, epsilon, layer_norms, box_gradient=True):
    """The walk of the l2 box-and-ball bound ('global', which 'local' shares): the
    clean input, the box x +- eps, the ball (x, eps) and the masks of neurons that may
    move (see ``walk``)."""
    return walk(network, "global", x, epsilon, layer_norms, box_gradient)
