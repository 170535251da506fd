"""Linear relaxations of one activation layer over its pre-activation box.

A relaxation of y = act(z) over the box lo <= z <= hi is a pair of element-wise lines

    lower_slope * z + lower_intercept  <=  act(z)  <=  upper_slope * z + upper_intercept

that hold for every z in the box (tensors of the activation's input shape). The backward
pass (``backward.py``) substitutes them for the activation, one neuron at a time.
"""
from typing import NamedTuple

import tensorflow as tf

from gloro_local.layers import ReLU, ReLUTheta
from gloro_local.layers.adapters import KerasReLUAdapter
from gloro_local.layers.seam import cast_like


class Relaxation(NamedTuple):
    """Element-wise lines a_L z + b_L <= act(z) <= a_U z + b_U over a box (each of the
    activation's input shape, batch first)."""

    lower_slope: tf.Tensor
    lower_intercept: tf.Tensor
    upper_slope: tf.Tensor
    upper_intercept: tf.Tensor


def _adaptive_slope(lo, hi):
    """CROWN-IBP's lower slope of an unstable ReLU: 1 if hi >= -lo else 0 (the line of
    the two, a z with a in {0, 1}, that leaves the smaller area under relu)."""
    return tf.cast(hi >= -lo, lo.dtype)


def _lower_slope(lo, hi, lower_slope):
    """The given slopes clipped to [0, 1], or the adaptive ones when None."""
    if lower_slope is None:
        return _adaptive_slope(lo, hi)
    return tf.clip_by_value(tf.cast(lower_slope, lo.dtype), 0.0, 1.0)


def _safe_ratio(numerator, denominator):
    """numerator / denominator where denominator > 0, else 0 (gradient-safe)."""
    positive = denominator > 0.0
    return tf.where(positive, numerator / tf.where(positive, denominator, 1.0), 0.0)


def relu_relaxation(lo, hi, lower_slope=None):
    """The linear relaxation of y = relu(z) over lo <= z <= hi.

    With u+ = max(hi, 0) and l- = min(lo, 0):
    * upper line a_U (z - l-) with a_U = u+ / (u+ - l-): the chord through (lo, 0) and
      (hi, hi) for an unstable neuron (lo < 0 < hi), the identity for an active one
      (lo >= 0), zero for a dead one (hi <= 0) (the paper's optimal upper bound);
    * lower line a z: a in [0, 1] for an unstable neuron (``lower_slope`` clipped to
      [0, 1], or CROWN-IBP's adaptive a = 1[hi >= -lo] when None), a = 1 for an active
      one, a = 0 for a dead one.

    Args:
        lo, hi: the pre-activation box, same shape, lo <= hi.
        lower_slope: None or a tensor of the same shape (used on unstable neurons).

    Returns:
        a ``Relaxation``.
    """
    upper = tf.nn.relu(hi)
    lower = tf.minimum(lo, 0.0)
    upper_slope = _safe_ratio(upper, upper - lower)
    unstable = tf.logical_and(lo < 0.0, hi > 0.0)
    active = tf.cast(lo >= 0.0, lo.dtype)
    lower_slope = tf.where(unstable, _lower_slope(lo, hi, lower_slope), active)
    return Relaxation(lower_slope, tf.zeros_like(lo), upper_slope, -upper_slope * lower)


def relu_theta_relaxation(lo, hi, theta, lower_slope=None):
    """The linear relaxation of y = f(z) = min(relu(z), theta), theta >= 0, over [lo, hi].

    f is piecewise linear with kinks at 0 and theta only, so for any slope a the function
    f(z) - a z reaches its extremes over [lo, hi] at one of the points
    P = {lo, hi, clip(0, lo, hi), clip(theta, lo, hi)}, and

        a z + min_P (f - a z)  <=  f(z)  <=  a z + max_P (f - a z)   on [lo, hi]

    is sound for every a. Upper line: a = the chord slope c = (f(hi) - f(lo)) / (hi - lo)
    (0 on an empty box). Lower line: on neurons whose box crosses 0 (lo < 0 < hi) the
    slope a is ``lower_slope`` clipped to [0, 1] (None: the ReLU's adaptive
    1[hi >= -lo]); elsewhere f is concave on the box and its best lower line is the chord,
    a = c. Both lines are exact where f is affine on the box (dead, saturated at theta,
    or identity), and where hi <= theta they are the ReLU's relaxation.

    Args:
        lo, hi: the pre-activation box, same shape, lo <= hi.
        theta: the thresholds, broadcastable to lo.
        lower_slope: None or a tensor of lo's shape.

    Returns:
        a ``Relaxation``.
    """
    theta = tf.broadcast_to(cast_like(theta, lo), tf.shape(lo))

    def f(z):
        return tf.minimum(tf.nn.relu(z), theta)

    points = tf.stack([lo, hi, tf.clip_by_value(tf.zeros_like(lo), lo, hi),
                       tf.minimum(tf.maximum(theta, lo), hi)])
    values = f(points)
    inside = tf.cast(tf.logical_and(lo >= 0.0, lo < theta), lo.dtype)
    chord = tf.where(hi > lo, _safe_ratio(f(hi) - f(lo), hi - lo), inside)
    crosses_zero = tf.logical_and(lo < 0.0, hi > 0.0)
    slope = tf.where(crosses_zero, _lower_slope(lo, hi, lower_slope), chord)
    return Relaxation(slope, tf.reduce_min(values - slope * points, axis=0),
                      chord, tf.reduce_max(values - chord * points, axis=0))


def constant_relaxation(seam, lo, hi):
    """Slopes 0 and intercepts the layer's exact output box: bound_box(lo, hi).

    The interval (IBP) relaxation, sound for every monotone activation. It is the only
    per-neuron relaxation used for pairwise activations (MaxMin, ClippedMaxMin): their
    output k depends on input k and on its partner, so a line in input k alone cannot
    follow it (an upper line of max(a, b) in a must hold for every b of the box, a lower
    line of min(a, b) likewise) and the backward pass, which multiplies element-wise,
    has no slot for the partner's coefficient; slope 0 needs neither.
    """
    lower, upper = seam.bound_box(lo, hi)
    zeros = tf.zeros_like(lower)
    return Relaxation(zeros, lower, zeros, upper)


def is_relu(seam):
    """True for the ReLU seams: gloro_local's ReLU and the plain Keras ReLU adapter."""
    return isinstance(seam, (ReLU, KerasReLUAdapter))


def takes_lower_slope(seam):
    """True for the activations whose relaxation uses a lower slope (ReLU, ReLUTheta)."""
    return is_relu(seam) or isinstance(seam, ReLUTheta)


def activation_relaxation(seam, lo, hi, lower_slope=None):
    """The relaxation of activation ``seam`` over its pre-activation box [lo, hi].

    ReLU (gloro_local's and the plain Keras adapter): ``relu_relaxation``; ReLUTheta:
    ``relu_theta_relaxation`` with its thresholds; every other activation (MaxMin,
    ClippedMaxMin, ...): ``constant_relaxation``, which ignores ``lower_slope``.

    Returns:
        a ``Relaxation`` of lo's shape.
    """
    if is_relu(seam):
        return relu_relaxation(lo, hi, lower_slope)
    if isinstance(seam, ReLUTheta):
        return relu_theta_relaxation(lo, hi, seam.theta, lower_slope)
    return constant_relaxation(seam, lo, hi)
