"""The lean training step and the shrinking certification loop give the plain answers."""
import importlib

import numpy as np
import pytest
import tensorflow as tf

from gloro_local.bounds import MaskedOperator, StoppingRule, lobpcg, power_iteration
from gloro_local.layers import Conv2D, Dense

engine = importlib.import_module("gloro_local.bounds.shrinking_loop")


def conv_operator(batch, rng):
    layer = Conv2D(3, 3, strides=2, padding="same")
    layer.build((None, 6, 6, 2))
    in_mask = rng.integers(0, 2, (batch, 6, 6, 2)).astype(np.float32)
    out_mask = rng.integers(0, 2, (batch, 3, 3, 3)).astype(np.float32)
    return MaskedOperator(layer, (6, 6, 2), in_mask, out_mask)


def test_gram_step_is_the_certification_step_direction():
    rng = np.random.default_rng(0)
    operator = conv_operator(5, rng)
    u = operator.start(tf.constant(rng.standard_normal((5, 6, 6, 2)), tf.float32))
    np.testing.assert_allclose(operator.gram_step(u), operator.step(u)[0], atol=1e-6)


def test_fixed_budget_runs_exactly_that_many_gram_steps():
    rng = np.random.default_rng(1)
    operator = conv_operator(4, rng)
    start = tf.constant(rng.standard_normal((4, 6, 6, 2)), tf.float32)
    result = power_iteration(operator, start, 3)
    u = operator.start(start)
    for _ in range(3):
        u = operator.step(u)[0]
    np.testing.assert_allclose(result.u, u, atol=1e-6)
    np.testing.assert_allclose(result.sigma, operator.sigma(u), rtol=1e-6)
    assert list(result.iterations.numpy()) == [3] * 4


def spread_dense(batch):
    """A Dense layer with singular values 1, 0.99, 0.5, ...: samples whose mask keeps the
    first two input directions converge slowly, the others in a few steps."""
    rng = np.random.default_rng(2)
    left, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    values = np.array([1.0, 0.99, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    layer = Dense(8, use_bias=False)
    layer.build((None, 8))
    layer.kernel.assign((np.eye(8) * values @ left.T).astype(np.float32))
    in_mask = np.ones((batch, 8), np.float32)
    in_mask[batch // 2:, 1] = 0.0  # half the samples lose the near-tie: fast
    return MaskedOperator(layer, (8,), in_mask, None)


SOLVERS = {"power": power_iteration, "lobpcg": lobpcg}


@pytest.mark.parametrize("solver", SOLVERS)
def test_converged_samples_leave_the_loop(monkeypatch, solver):
    batch = 16
    operator = spread_dense(batch)
    sizes = []
    linear = operator.seam.linear
    monkeypatch.setattr(operator.seam, "linear",
                        lambda u: sizes.append(int(u.shape[0])) or linear(u))
    start = tf.constant(np.random.default_rng(3).standard_normal((batch, 8)), tf.float32)
    rule = StoppingRule(5000, 1e-6)
    result = SOLVERS[solver](operator, start, rule)
    assert np.all(result.converged)
    steps = result.iterations.numpy()
    assert steps[batch // 2:].mean() < steps[:batch // 2].mean()  # the tie is slower
    assert min(sizes) <= batch - np.sum(steps < steps.max())  # the finished ones left
    if solver == "power":  # one forward per step: compute far below batch * max steps
        assert steps[batch // 2:].max() < steps[:batch // 2].min()
        assert sum(sizes) < 0.75 * batch * steps.max()


@pytest.mark.parametrize("solver", SOLVERS)
def test_shrinking_loop_matches_each_sample_alone(monkeypatch, solver):
    batch = 16
    operator = spread_dense(batch)
    start = tf.constant(np.random.default_rng(4).standard_normal((batch, 8)), tf.float32)
    rule = StoppingRule(5000, 1e-6)
    solve = SOLVERS[solver]
    together = solve(operator, start, rule)
    for b in range(batch):
        alone = solve(operator.with_masks([operator.in_mask[b:b + 1]]), start[b:b + 1], rule)
        assert bool(alone.converged[0]) == bool(together.converged[b])
        if solver == "power":  # LOBPCG at tol 1e-6 runs near float32 rounding
            assert abs(int(alone.iterations[0]) - int(together.iterations[b])) <= 1
        assert float(together.sigma[b]) == pytest.approx(float(alone.sigma[0]), rel=1e-6)
    monkeypatch.setattr(engine, "COMPACT_FRACTION", 2.0)  # never leaves before the end
    frozen = solve(operator, start, rule)
    np.testing.assert_allclose(frozen.sigma, together.sigma, rtol=1e-6)
    np.testing.assert_array_equal(frozen.converged, together.converged)


@pytest.mark.parametrize("solver", SOLVERS)
def test_shrinking_loop_inside_tf_function(solver):
    operator = spread_dense(8)
    start = tf.constant(np.random.default_rng(5).standard_normal((8, 8)), tf.float32)
    rule = StoppingRule(5000, 1e-6)
    traced = tf.function(lambda s: SOLVERS[solver](operator, s, rule))(start)
    eager = SOLVERS[solver](operator, start, rule)
    np.testing.assert_allclose(traced.sigma, eager.sigma, rtol=1e-6)
    np.testing.assert_array_equal(traced.iterations, eager.iterations)
    exact = [np.linalg.svd(np.asarray(operator.seam.kernel).T * operator.in_mask[b],
                           compute_uv=False)[0] for b in range(8)]
    np.testing.assert_allclose(eager.sigma, exact, rtol=1e-4)


def test_training_sigma_is_the_masked_norm_in_either_dtype():
    """float32: exactly ``sigma``; bfloat16 (operator and masks in bfloat16, the sum of
    squares in float32): within 2^-8 relative of the float32 norm of the same vector, and
    so is its gradient in the kernel."""
    rng = np.random.default_rng(3)
    operator = conv_operator(6, rng)
    u = operator.start(tf.constant(rng.standard_normal((6, 6, 6, 2)), tf.float32))
    np.testing.assert_array_equal(operator.training_sigma(u), operator.sigma(u))
    low = MaskedOperator(operator.seam, operator.input_shape,
                         *(tf.cast(m, tf.bfloat16) for m in operator.masks()))
    u_low = tf.cast(u, tf.bfloat16)
    kernel = operator.seam.kernel
    with tf.GradientTape(persistent=True) as tape:
        fast, exact = low.training_sigma(u_low), operator.sigma(tf.cast(u_low, tf.float32))
        fast_sum, exact_sum = tf.reduce_sum(fast), tf.reduce_sum(exact)
    assert fast.dtype == tf.float32
    np.testing.assert_allclose(fast, exact, rtol=2.0 ** -8)
    gradients = [tape.gradient(value, kernel).numpy() for value in (fast_sum, exact_sum)]
    assert np.abs(gradients[0] - gradients[1]).max() <= 2.0 ** -7 * np.abs(gradients[1]).max()
