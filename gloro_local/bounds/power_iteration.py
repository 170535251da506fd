"""The one power-iteration engine: spectral norms of (masked) linear operators, per sample.

Training runs a fixed number of steps (warm-started from stored vectors); the epoch-end
convergence of the global vectors, ``lipschitz_bounds`` and certification run the same
loop until a ``StoppingRule`` holds for each sample.
"""
from typing import NamedTuple

import tensorflow as tf

FALLBACK_SEED = (7919, 104729)


class StoppingRule(NamedTuple):
    """When a sample's power iteration has converged.

    A step from u_t computes sigma_t = ||M_out A M_in u_t|| and u_t+1. The step is
    *settled* when ||u_t+1 - u_t|| <= ``tol`` and |sigma_t - sigma_t-1| <= ``rtol`` *
    sigma_t; the sample has converged after ``patience`` settled steps in a row (one
    small step can be a plateau on the way from a lower singular value). The loop stops
    for every sample after ``max_iterations`` steps; a sample that had not converged then
    is reported as such.
    """

    max_iterations: int = 2000
    tol: float = 1e-3
    rtol: float = 1e-5
    patience: int = 5

    def check(self):
        """Raises ValueError for a rule that could never stop or never start."""
        if int(self.max_iterations) < 1:
            raise ValueError(f"max_iterations must be >= 1. Received: {self.max_iterations}")
        if not self.tol > 0 or not self.rtol > 0:
            raise ValueError(f"tol and rtol must be > 0. Received: tol={self.tol}, "
                             f"rtol={self.rtol}")
        if int(self.patience) < 1:
            raise ValueError(f"patience must be >= 1. Received: {self.patience}")
        return self


class PowerIterationResult(NamedTuple):
    """sigma: (B,) ||M_out A M_in u|| with unit u (never above the true norm); u: (B, ...)
    final unit input vectors; iterations: (B,) int32 steps taken by each sample;
    converged: (B,) bool, the sample met the ``StoppingRule`` (False with a fixed budget)."""

    sigma: tf.Tensor
    u: tf.Tensor
    iterations: tf.Tensor
    converged: tf.Tensor


def norms(x):
    """||x|| per sample: (B,)."""
    return tf.sqrt(tf.reduce_sum(tf.square(x), axis=tf.range(1, tf.rank(x))))


def _broadcast(values, like):
    return tf.reshape(values, tf.concat([tf.shape(values), tf.ones(tf.rank(like) - 1,
                                                                    tf.int32)], axis=0))


def normalize(x):
    """x / ||x|| per sample; a sample whose norm is exactly 0 stays 0."""
    norm = _broadcast(norms(x), x)
    return x / tf.where(norm > 0.0, norm, tf.ones_like(norm))


def _masked(x, mask):
    return x if mask is None else x * mask


def fixed_start(input_shape, batch, seed, dtype=tf.float32):
    """One standard normal vector of ``input_shape`` drawn from ``seed`` (a pair), repeated
    for every sample: a sample's start never depends on the batch it sits in."""
    vector = tf.random.stateless_normal(tuple(input_shape), seed=seed, dtype=dtype)
    return tf.tile(vector[None], tf.concat([[batch], tf.ones(len(input_shape), tf.int32)], 0))


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
        """(u', sigma) with sigma = ||M_out A u|| and u' = M_in A^T M_out A u / ||.||, for u
        with u = M_in u (as ``start`` returns); masks already applied are not applied
        again."""
        v = _masked(self.seam.linear(u), self.out_mask)
        return (normalize(_masked(self.seam.linear_transpose(v, self.input_shape),
                                  self.in_mask)), norms(v))

    def start(self, u):
        """Masks ``u`` and normalises it; a sample whose masked vector vanished (a warm
        start supported only on neurons that became constant) restarts from a fixed
        seeded vector, so that it cannot report sigma = 0 for a non-zero operator."""
        u = _masked(u, self.in_mask)
        fresh = _masked(fixed_start(self.input_shape, tf.shape(u)[0], FALLBACK_SEED,
                                    u.dtype), self.in_mask)
        empty = _broadcast(norms(u) == 0.0, u)
        return normalize(tf.where(empty, fresh, u))

    def sigma(self, u):
        """||M_out A M_in u|| for unit u, in float32 whatever dtype the iteration ran in;
        differentiable in the layer's weights."""
        u = tf.cast(tf.stop_gradient(u), tf.float32)
        in_mask, out_mask = (None if m is None else tf.cast(m, tf.float32)
                             for m in (self.in_mask, self.out_mask))
        return norms(_masked(self.seam.linear(_masked(u, in_mask)), out_mask))


def power_iteration(operator, u, budget):
    """Runs power iteration on ``operator`` from start vectors ``u`` (B, ...).

    ``budget`` is an int (exactly that many steps for every sample: training) or a
    ``StoppingRule`` (each sample's vector is frozen once it converged; the loop ends when
    every sample converged or after ``max_iterations`` steps). Iterations carry no
    gradient; only the final sigma = ||M_out A M_in u|| does (as GloRo does for its global
    bound).
    """
    u = tf.stop_gradient(operator.start(u))
    batch = tf.shape(u)[0]
    if not isinstance(budget, StoppingRule):
        _, u = tf.while_loop(lambda t, u: t < budget,
                             lambda t, u: (t + 1, tf.stop_gradient(operator.step(u)[0])),
                             [tf.constant(0), u])
        return PowerIterationResult(operator.sigma(u), u, tf.fill([batch], int(budget)),
                                    tf.zeros([batch], tf.bool))
    tol = tf.constant(budget.tol, u.dtype)
    rtol = tf.constant(budget.rtol, u.dtype)

    def cond(t, u, previous, streak, steps, done):
        return tf.logical_and(t < budget.max_iterations,
                              tf.logical_not(tf.reduce_all(done)))

    def body(t, u, previous, streak, steps, done):
        new_u, sigma = operator.step(u)
        new_u = tf.stop_gradient(new_u)
        settled = tf.logical_and(norms(new_u - u) <= tol,
                                 tf.abs(sigma - previous) <= rtol * sigma)
        streak = tf.where(settled, streak + 1, 0)
        u = tf.where(_broadcast(done, u), u, new_u)
        previous = tf.where(done, previous, sigma)
        steps = steps + tf.cast(tf.logical_not(done), tf.int32)
        done = tf.logical_or(done, streak >= budget.patience)
        return t + 1, u, previous, streak, steps, done

    zeros = tf.zeros([batch], tf.int32)
    initial = [tf.constant(0), u, tf.fill([batch], tf.constant(-1.0, u.dtype)), zeros,
               zeros, tf.zeros([batch], tf.bool)]
    _, u, _, _, steps, done = tf.while_loop(cond, body, initial)
    return PowerIterationResult(operator.sigma(u), u, steps, done)
