"""Power iteration for the spectral norm of a (masked) linear operator, per sample."""
from typing import NamedTuple

import tensorflow as tf


class PowerIterationResult(NamedTuple):
    """sigma: (B,) estimates ||M_out A M_in u|| with unit u (never above the true norm);
    u: (B, ...) final unit input vectors; iterations: (B,) int32 steps taken by each sample;
    converged: (B,) bool, ||u_t+1 - u_t|| <= tol at the last step taken."""

    sigma: tf.Tensor
    u: tf.Tensor
    iterations: tf.Tensor
    converged: tf.Tensor


def _norm(x):
    return tf.sqrt(tf.reduce_sum(tf.square(x), axis=tf.range(1, tf.rank(x))))


def _broadcast(values, like):
    return tf.reshape(values, tf.concat([tf.shape(values), tf.ones(tf.rank(like) - 1,
                                                                    tf.int32)], axis=0))


def normalize(x):
    """x / ||x|| per sample; a sample whose norm is exactly 0 stays 0."""
    norm = _broadcast(_norm(x), x)
    return x / tf.where(norm > 0.0, norm, tf.ones_like(norm))


def _masked(x, mask):
    return x if mask is None else x * mask


class MaskedOperator:
    """B_x = M_out A M_in for one sample x, with adjoint M_in A^T M_out.

    Args:
        seam: a linear layer's seam (``linear``/``linear_transpose``).
        input_shape: the per-sample input shape of the layer.
        in_mask, out_mask: (B, ...) masks of 0/1, or None for no mask.
    """

    def __init__(self, seam, input_shape, in_mask=None, out_mask=None):
        self.seam = seam
        self.input_shape = tuple(input_shape)
        self.in_mask = in_mask
        self.out_mask = out_mask

    def forward(self, u):
        return _masked(self.seam.linear(_masked(u, self.in_mask)), self.out_mask)

    def adjoint(self, v):
        return _masked(self.seam.linear_transpose(_masked(v, self.out_mask),
                                                  self.input_shape), self.in_mask)

    def step(self, u):
        """u <- M_in A^T M_out A u / ||.|| for u with u = M_in u (as ``start`` returns);
        masks already applied are not applied again."""
        v = _masked(self.seam.linear(u), self.out_mask)
        return normalize(_masked(self.seam.linear_transpose(v, self.input_shape),
                                 self.in_mask))

    def start(self, u):
        """Masks ``u`` and normalises it; a sample whose masked vector vanished (a warm
        start supported only on neurons that became constant) restarts from a random
        vector, so that it cannot report sigma = 0 for a non-zero operator."""
        u = _masked(u, self.in_mask)
        fresh = _masked(tf.random.normal(tf.shape(u), dtype=u.dtype), self.in_mask)
        empty = _broadcast(_norm(u) == 0.0, u)
        return normalize(tf.where(empty, fresh, u))

    def sigma(self, u):
        """||M_out A M_in u|| for unit u, in float32 whatever dtype the iteration ran in;
        differentiable in the layer's weights."""
        u = tf.cast(tf.stop_gradient(u), tf.float32)
        in_mask, out_mask = (None if m is None else tf.cast(m, tf.float32)
                             for m in (self.in_mask, self.out_mask))
        return _norm(_masked(self.seam.linear(_masked(u, in_mask)), out_mask))


def power_iteration(operator, u, iterations, tol=None):
    """Runs power iteration on ``operator`` from start vectors ``u`` (B, ...).

    With ``tol`` None, exactly ``iterations`` steps run for every sample. With a tolerance,
    each sample stops (its vector is frozen) once ||u_t+1 - u_t|| <= tol, and the loop ends
    when every sample stopped or after ``iterations`` steps; ``converged`` says which
    samples met the tolerance. Iterations carry no gradient; only the final
    sigma = ||M_out A M_in u|| does (as GloRo does for its global bound).
    """
    u = tf.stop_gradient(operator.start(u))
    if tol is None:
        _, u = tf.while_loop(lambda t, u: t < iterations,
                             lambda t, u: (t + 1, tf.stop_gradient(operator.step(u))),
                             [tf.constant(0), u])
        batch = tf.shape(u)[0]
        return PowerIterationResult(operator.sigma(u), u, tf.fill([batch], iterations),
                                    tf.zeros([batch], tf.bool))
    batch = tf.shape(u)[0]
    tolerance = tf.constant(tol, u.dtype)
    steps = tf.zeros([batch], tf.int32)
    done = tf.zeros([batch], tf.bool)

    def cond(t, u, steps, done):
        return tf.logical_and(t < iterations, tf.logical_not(tf.reduce_all(done)))

    def body(t, u, steps, done):
        new_u = tf.stop_gradient(operator.step(u))
        moved = _norm(new_u - u)
        u = tf.where(_broadcast(done, u), u, new_u)
        steps = steps + tf.cast(tf.logical_not(done), tf.int32)
        done = tf.logical_or(done, moved <= tolerance)
        return t + 1, u, steps, done

    _, u, steps, done = tf.while_loop(cond, body, [tf.constant(0), u, steps, done])
    return PowerIterationResult(operator.sigma(u), u, steps, done)
