"""The seam: the three roles a layer can play in bound propagation, as abstract classes.

A bound pass walks the layers of a network and asks each one, through its role, what it
does to a batch of eps-balls. It never inspects a layer's type or guesses how indices line
up: everything it needs is one of the methods below.

* ``LinearSeam`` (Dense, Conv2D): ``x -> A x + b``. The bias-free operator ``A``
  (``linear``), its exact adjoint (``linear_transpose``), ``|A|`` (``abs_linear``), the
  l2 norm of every row (``row_norms``), the bias (``add_bias``) and a sound upper bound
  of ``||A||_2`` for a given input shape (``norm_upper_bound``).
* ``ActivationSeam`` (ReLU, ReLUTheta, MaxMin, ClippedMaxMin): a monotone, 1-Lipschitz
  (in l2) map with a box rule (``bound_box``), the mask of its own outputs that may move
  over the box (``varying``), how an incoming mask of varying inputs maps to a mask of
  varying outputs (``map_mask``), whether it acts element-wise (``elementwise``: only
  then may its mask delete rows of the linear layer before it) and a sparsity hinge.
* ``ShapeSeam`` (Flatten): a pure reshape (element k of the input is element k of the
  output); centre, box and masks are reshaped alike.

A mask is a 0/1 tensor of the activation's shape (batch first) where 0 marks a neuron that
takes the same value everywhere in the eps-ball, or None when every neuron may move.
"""
import abc
from typing import NamedTuple, Optional

import tensorflow as tf


class BoundState(NamedTuple):
    """What is known about one layer's activation for a batch of eps-balls.

    centre: the clean activation (also the centre of the l2 ball), shape (B, ...).
    lo, hi: the interval box, same shape as centre; lo <= centre <= hi.
    radius: the l2 ball radius per sample, shape (B,).
    half_width: None, or the scalar w of a box that is exactly centre +- w in every
        coordinate of every sample (the input box x +- eps, kept through reshapes): a
        linear layer then takes the box's image from one batch-1 pass of |A|
        (``uniform_box_radius``), and meets the ball in a batch-1 half-width.
    """

    centre: tf.Tensor
    lo: tf.Tensor
    hi: tf.Tensor
    radius: tf.Tensor
    half_width: Optional[tf.Tensor] = None


def cast_like(weight, x):
    """``weight`` in the dtype of ``x``: bounds may be computed in a lower precision
    (training only) than the float32 weights; a no-op when the dtypes agree."""
    return tf.cast(weight, x.dtype)


def per_sample(values, like):
    """Reshape per-sample scalars (B,) so they broadcast against ``like`` (B, ...)."""
    return tf.reshape(values, [-1] + [1] * (len(like.shape) - 1))


def combine_masks(mask, other):
    """The neurons varying in both masks (None means all vary)."""
    if mask is None:
        return other
    if other is None:
        return mask
    return mask * other


class LinearSeam(abc.ABC):
    """Box and ball rules shared by every linear layer x -> A x + b.

    Box:  c' = A c + b, rad' = |A| rad, with c, rad the box's midpoint and half-width;
    for the box centre +- w (``BoundState.half_width``) c' is the centre's image and
    rad' = w |A| 1, one pass of |A| over a single input of ones.
    Ball: m' = A m + b; neuron i moves at most r * ||A_i,:|| (``row_norms``).
    Intersection: hi = min(c' + rad', m' + r ||A_i||), lo = max(c' - rad', m' - r ||A_i||).
    Without the box (``propagate(..., box=False)``): lo, hi = m' -+ r ||A_i||, which also
    encloses every output reachable in the ball (looser where the box would be tighter).
    The ball radius after the layer is r * ``lipschitz`` (an upper bound of ||A||_2).
    """

    @abc.abstractmethod
    def linear(self, u):
        """A u for a batch u of shape (B,) + input shape."""

    @abc.abstractmethod
    def linear_transpose(self, v, input_shape):
        """A^T v, the exact adjoint of ``linear``, for a batch v of the output shape;
        ``input_shape`` is the per-sample input shape (convolutions need it)."""

    @abc.abstractmethod
    def abs_linear(self, r):
        """|A| r (the absolute values of A's entries applied to r >= 0)."""

    @abc.abstractmethod
    def row_norms(self):
        """Per output unit (channel for a convolution), an upper bound of the l2 norm of
        every row of A feeding it."""

    @abc.abstractmethod
    def add_bias(self, z):
        """z + b."""

    @abc.abstractmethod
    def norm_upper_bound(self, input_shape):
        """A float >= ||A||_2 for per-sample inputs of ``input_shape``, computed in
        float64 from the current weights (never a power-iteration estimate)."""

    def affine(self, x):
        """A x + b."""
        return self.add_bias(self.linear(x))

    def box(self, lo, hi):
        """The image of the box [lo, hi]: (c' - rad', c' + rad') with c' = A c + b and
        rad' = |A| rad, c and rad the box's midpoint and half-width (exact per unit)."""
        mid = self.affine((lo + hi) / 2.0)
        rad = self.abs_linear((hi - lo) / 2.0)
        return mid - rad, mid + rad

    def uniform_box_radius(self, half_width, like):
        """w |A| 1, the half-width of the image of any box c +- w (w a scalar, the same
        in every coordinate of every sample), from one pass of |A| over a single input of
        ones shaped like ``like[:1]``: shape (1,) + output shape."""
        return half_width * self.abs_linear(tf.ones_like(like[:1]))

    def propagate(self, state, lipschitz, box=True):
        """Pushes ``state`` through the layer; ``lipschitz`` is ||A||_2 (a scalar).
        ``box=False`` skips the box image (two of the three convolutions) and keeps the
        ball's bounds alone. A box centre +- w (``half_width``) and the balls, all
        centred on the clean point, intersect in c' -+ min(w |A| 1, r_max ||A_i||) with
        r_max the largest ball radius of the batch: one batch-1 half-width, exact when
        every sample has the same radius (the input ball eps), looser otherwise."""
        centre = self.affine(state.centre)
        row_norms = cast_like(self.row_norms(), centre)
        if box and state.half_width is not None:
            rad = self.uniform_box_radius(state.half_width, state.lo)
            rad = tf.minimum(rad, tf.reduce_max(state.radius) * row_norms)
            lo, hi = centre - rad, centre + rad
        else:
            ball_rad = per_sample(state.radius, centre) * row_norms
            lo, hi = centre - ball_rad, centre + ball_rad
            if box:
                box_lo, box_hi = self.box(state.lo, state.hi)
                lo, hi = tf.maximum(box_lo, lo), tf.minimum(box_hi, hi)
        return BoundState(centre, lo, hi, state.radius * cast_like(lipschitz, centre))


class ActivationSeam(abc.ABC):
    """A monotone activation that is 1-Lipschitz in l2.

    The box rule applies the activation to lo and hi (exact for monotone activations);
    the ball radius is unchanged. ``varying(lo, hi)`` marks the outputs that may move
    when the input ranges over the box; ``map_mask(mask, own)`` turns the mask of
    varying inputs into the mask of varying outputs.
    """

    elementwise = True

    @abc.abstractmethod
    def varying(self, lo, hi):
        """0/1 mask (B, ...) of outputs that may change for inputs in [lo, hi], or None
        when every output may change."""

    @abc.abstractmethod
    def map_mask(self, mask, own):
        """The mask of outputs that may move, from ``mask`` (inputs that may move, or
        None) and ``own`` (this layer's ``varying``): an output moves only if an input
        it depends on moves and the layer does not hold it constant."""

    @abc.abstractmethod
    def sparsity(self, lo, hi, lam_theta=0.0):
        """The hinge that rewards outputs held constant over the box (a scalar)."""

    def bound_box(self, lo, hi):
        return self.call(lo), self.call(hi)

    def propagate(self, state):
        """The activation is 1-Lipschitz in l2, so the ball radius is unchanged."""
        lo, hi = self.bound_box(state.lo, state.hi)
        return BoundState(self.call(state.centre), lo, hi, state.radius)


class ElementwiseActivation(ActivationSeam):
    """An activation applied to each neuron alone: output k depends on input k only, so
    output k moves iff input k moves and the activation does not hold it constant, and
    a constant output lets the linear layer before it drop the row feeding it."""

    elementwise = True

    def map_mask(self, mask, own):
        return combine_masks(mask, own)


class ShapeSeam(abc.ABC):
    """A pure reshape: element k of the input is element k of the output, so centre, box
    and masks are reshaped alike and the ball radius is unchanged (its Keras ``call``
    computes the reshape)."""

    def reshape(self, x):
        return self.call(x)

    def map_mask(self, mask):
        return None if mask is None else self.reshape(mask)

    def propagate(self, state):
        return BoundState(self.reshape(state.centre), self.reshape(state.lo),
                          self.reshape(state.hi), state.radius, state.half_width)
