"""The seam every layer implements (DESIGN.md section 4) and the bound state it carries.

A layer takes part in bound propagation through one of three roles:

* ``LinearSeam`` (Dense, Conv2D): a bias-free operator ``A`` with its exact adjoint, and
  ``propagate(state, lipschitz)`` that pushes the box and the ball through ``x -> A x + b``.
* ``ActivationSeam`` (ReLU, ReLUTheta, MaxMin, ClippedMaxMin): monotone box rule,
  ``varying(lo, hi)`` giving the mask I_V of neurons that may still move, and ``sparsity``.
* ``ShapeSeam`` (Flatten): reshapes centre, box and masks.
"""
from typing import NamedTuple

import tensorflow as tf


class BoundState(NamedTuple):
    """What is known about one layer's activation for a batch of eps-balls.

    centre: the clean activation (also the centre of the l2 ball), shape (B, ...).
    lo, hi: the interval box, same shape as centre; lo <= centre <= hi.
    radius: the l2 ball radius per sample, shape (B,).
    """

    centre: tf.Tensor
    lo: tf.Tensor
    hi: tf.Tensor
    radius: tf.Tensor


def cast_like(weight, x):
    """``weight`` in the dtype of ``x``: bounds may be computed in a lower precision
    (training only) than the float32 weights; a no-op when the dtypes agree."""
    return tf.cast(weight, x.dtype)


def per_sample(values, like):
    """Reshape per-sample scalars (B,) so they broadcast against ``like`` (B, ...)."""
    return tf.reshape(values, [-1] + [1] * (len(like.shape) - 1))


class LinearSeam:
    """Box and ball rules shared by every linear layer x -> A x + b.

    Box:  c' = A c + b, rad' = |A| rad, with c, rad the box's midpoint and half-width.
    Ball: m' = A m + b; neuron i moves at most r * ||A_i,:|| (``row_norms``).
    Intersection: hi = min(c' + rad', m' + r ||A_i||), lo = max(c' - rad', m' - r ||A_i||).
    The ball radius after the layer is r * ``lipschitz`` (the layer's global norm).

    Subclasses provide ``linear``, ``linear_transpose``, ``abs_linear``, ``row_norms`` and
    ``add_bias``.
    """

    def affine(self, x):
        """A x + b."""
        return self.add_bias(self.linear(x))

    def propagate(self, state, lipschitz):
        """Pushes ``state`` through the layer; ``lipschitz`` is ||A||_2 (a scalar)."""
        box_mid = self.affine((state.lo + state.hi) / 2.0)
        box_rad = self.abs_linear((state.hi - state.lo) / 2.0)
        centre = self.affine(state.centre)
        ball_rad = per_sample(state.radius, centre) * cast_like(self.row_norms(), centre)
        lo = tf.maximum(box_mid - box_rad, centre - ball_rad)
        hi = tf.minimum(box_mid + box_rad, centre + ball_rad)
        return BoundState(centre, lo, hi, state.radius * cast_like(lipschitz, centre))


class ActivationSeam:
    """Box rule, varying-neuron mask and sparsity hinge of an activation.

    The default box rule applies the activation to lo and hi, which is exact for
    monotone element-wise activations. ``masks_rows`` says whether ``varying`` may also
    delete rows of the preceding linear layer (true for element-wise activations, false
    for MaxMin, which mixes pairs of neurons and only yields column masks).
    """

    masks_rows = True

    def bound_box(self, lo, hi):
        return self.call(lo), self.call(hi)

    def propagate(self, state):
        """The activation is 1-Lipschitz in l2, so the ball radius is unchanged."""
        lo, hi = self.bound_box(state.lo, state.hi)
        return BoundState(self.call(state.centre), lo, hi, state.radius)


class ShapeSeam:
    """Reshaping layers: centre, box and masks are reshaped alike."""

    def reshape(self, x):
        return self.call(x)

    def propagate(self, state):
        return BoundState(self.reshape(state.centre), self.reshape(state.lo),
                          self.reshape(state.hi), state.radius)
