"""Interval bound propagation (IBP) of an l-infinity box through a SeamNetwork."""
from typing import List, NamedTuple, Tuple

import tensorflow as tf

from gloro_local.bounds.linf.specification import specification
from gloro_local.layers import ActivationSeam, LinearSeam
from gloro_local.layers.seam import per_sample


class IntervalPass(NamedTuple):
    """What one interval pass found.

    pre_activation: per activation seam, in network order, the (lo, hi) box of its input.
    penultimate: the (lo, hi) box at the input of the logit layer.
    centre: the clean penultimate features (the input of the logit layer at x).
    """

    pre_activation: List[Tuple[tf.Tensor, tf.Tensor]]
    penultimate: Tuple[tf.Tensor, tf.Tensor]
    centre: tf.Tensor


def as_inputs(x, epsilon):
    """x as a floating tensor (integers cast to float32) and epsilon in its dtype,
    broadcastable against x: a scalar, or per sample (B,) reshaped to (B, 1, ...)."""
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        x = tf.cast(x, "float32")
    epsilon = tf.cast(epsilon, x.dtype)
    if epsilon.shape.rank == 1:
        epsilon = per_sample(epsilon, x)
    elif epsilon.shape.rank != 0:
        raise ValueError("epsilon must be a scalar or one value per sample (B,). "
                         f"Received: epsilon of shape {tuple(epsilon.shape)}")
    return x, epsilon


def input_box(x, epsilon, clip=None):
    """The box [x - eps, x + eps], intersected with [clip[0], clip[1]] when given."""
    lo, hi = x - epsilon, x + epsilon
    if clip is None:
        return lo, hi
    if len(clip) != 2 or not clip[0] <= clip[1]:
        raise ValueError(f"clip must be a pair (low, high) with low <= high. Received: "
                         f"clip={clip!r}")
    low, high = (tf.cast(bound, x.dtype) for bound in clip)
    return tf.clip_by_value(lo, low, high), tf.clip_by_value(hi, low, high)


def ibp(network, x, epsilon, clip=None):
    """Interval bound propagation of the box [x - eps, x + eps] through ``network``.

    Linear seam: mid' = A mid + b, rad' = |A| rad (mid, rad: the box's midpoint and
    half-width); activation seam: [act(lo), act(hi)] (``bound_box``, exact for monotone
    activations); shape seam: reshape. The logit layer is not applied.

    Args:
        network: a ``SeamNetwork``.
        x: inputs, shape (B,) + network.input_shape; the pass runs in x's dtype.
        epsilon: the l-infinity radius, a scalar or one per sample (B,).
        clip: None, or (low, high) to intersect the input box with (e.g. (0., 1.)).

    Returns:
        an ``IntervalPass``.
    """
    x, epsilon = as_inputs(x, epsilon)
    lo, hi = input_box(x, epsilon, clip)
    pre_activation = []
    for seam in network.seams[:-1]:
        if isinstance(seam, LinearSeam):
            lo, hi = seam.box(lo, hi)
        elif isinstance(seam, ActivationSeam):
            pre_activation.append((lo, hi))
            lo, hi = seam.bound_box(lo, hi)
        else:
            lo, hi = seam.reshape(lo), seam.reshape(hi)
    return IntervalPass(pre_activation, (lo, hi), network.features(x))


def interval_specification_bounds(network, interval_pass, spec):
    """Lower bounds of spec . logits over the penultimate box, exact over that box:

        g . mid - |g| . rad + spec . b,   g = W^T spec  (rows of the logit layer's adjoint)

    Args:
        network: the ``SeamNetwork`` the pass ran through.
        interval_pass: an ``IntervalPass``.
        spec: specification rows, shape (B, S, K).

    Returns:
        (B, S) lower bounds.
    """
    lo, hi = interval_pass.penultimate
    spec = tf.cast(spec, lo.dtype)
    layer = network.logit_layer
    rows = tf.shape(spec)[1]
    flat = tf.reshape(spec, [-1, network.num_classes])
    g = tf.reshape(layer.linear_transpose(flat, network.input_shapes[-1]),
                   [-1, rows, lo.shape[-1]])
    mid, rad = (lo + hi) / 2.0, (hi - lo) / 2.0
    bias = layer.add_bias(tf.zeros([1, network.num_classes], lo.dtype))
    return (tf.einsum("bsd,bd->bs", g, mid) - tf.einsum("bsd,bd->bs", tf.abs(g), rad)
            + tf.einsum("bsk,k->bs", spec, bias[0]))


def ibp_margin_lower_bounds(network, interval_pass, reference):
    """IBP lower bounds m_i of z_j - z_i over the penultimate box, j = ``reference``:

        m_i = (w_j - w_i) . mid - |w_j - w_i| . rad + b_j - b_i,   m_j = 0.

    Returns:
        (B, K) margins (see ``specification``).
    """
    spec = specification(reference, network.num_classes, interval_pass.centre.dtype)
    return interval_specification_bounds(network, interval_pass, spec)
