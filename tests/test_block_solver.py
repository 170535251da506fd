"""LOBPCG (``block_solver.lobpcg``) against float64 SVDs, power iteration and edge cases."""
import numpy as np
import pytest
import tensorflow as tf

from conftest import explicit_matrix
from gloro_local.bounds import MaskedOperator, StoppingRule, power_iteration
from gloro_local.bounds.block_solver import lobpcg
from gloro_local.layers import Conv2D, Dense

BATCH = 6
RULE = StoppingRule(max_iterations=2000, tol=1e-4)
CASES = {
    "dense": (lambda: Dense(20), (30,)),
    "conv-same-s1": (lambda: Conv2D(3, 3, padding="same"), (6, 6, 2)),
    "conv-same-s2": (lambda: Conv2D(3, 3, strides=2, padding="same"), (6, 6, 2)),
    "conv-valid-s1": (lambda: Conv2D(3, 3, padding="valid"), (6, 6, 2)),
    "conv-valid-s2": (lambda: Conv2D(3, 3, strides=2, padding="valid"), (6, 6, 2)),
}


def build(name):
    make, input_shape = CASES[name]
    layer = make()
    layer.build((None,) + input_shape)
    return layer, input_shape


def random_masks(layer, input_shape, rng, batch=BATCH):
    out_shape = tuple(layer.compute_output_shape((batch,) + input_shape))
    in_mask = (rng.uniform(size=(batch,) + input_shape) < 0.6).astype(np.float32)
    out_mask = (rng.uniform(size=out_shape) < 0.6).astype(np.float32)
    return in_mask, out_mask


def exact_sigmas(layer, input_shape, in_mask, out_mask):
    """Top singular value of M_out A M_in per sample, from the explicit float64 matrix."""
    sigmas = []
    for b in range(len(in_mask)):
        operator = MaskedOperator(layer, input_shape, in_mask[b:b + 1],
                                  None if out_mask is None else out_mask[b:b + 1])
        matrix = explicit_matrix(operator.forward, input_shape)
        sigmas.append(np.linalg.svd(matrix, compute_uv=False)[0])
    return np.array(sigmas)


def start(input_shape, seed, batch=BATCH):
    return tf.random.stateless_normal((batch,) + input_shape, seed=[seed, 0])


def check_unit_and_masked(result, in_mask):
    u = np.asarray(result.u)
    assert np.all(u[in_mask == 0] == 0.0)
    np.testing.assert_allclose(np.linalg.norm(u.reshape(len(u), -1), axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", CASES)
def test_lobpcg_matches_svd_per_sample(name):
    layer, input_shape = build(name)
    in_mask, out_mask = random_masks(layer, input_shape, np.random.default_rng(0))
    exact = exact_sigmas(layer, input_shape, in_mask, out_mask)
    assert np.all(exact > 0.0) and len(set(np.round(exact, 4))) == BATCH
    operator = MaskedOperator(layer, input_shape, in_mask, out_mask)
    for seed in range(2):
        result = lobpcg(operator, start(input_shape, seed), RULE)
        assert np.all(np.asarray(result.converged))
        assert np.all(np.asarray(result.iterations) < RULE.max_iterations)
        sigma = np.asarray(result.sigma, np.float64)
        np.testing.assert_allclose(sigma, exact, rtol=1e-4)
        assert np.all(sigma <= exact * (1 + 1e-6))
        check_unit_and_masked(result, in_mask)


@pytest.mark.parametrize("name", ["dense", "conv-same-s2"])
def test_lobpcg_in_tf_function_with_unknown_batch(name):
    layer, input_shape = build(name)
    in_mask, out_mask = random_masks(layer, input_shape, np.random.default_rng(1))
    exact = exact_sigmas(layer, input_shape, in_mask, out_mask)
    spec = tf.TensorSpec((None,) + input_shape, tf.float32)

    @tf.function(input_signature=[spec, spec,
                                  tf.TensorSpec((None,) + out_mask.shape[1:], tf.float32)])
    def run(u, m_in, m_out):
        return lobpcg(MaskedOperator(layer, input_shape, m_in, m_out), u, RULE)

    u = start(input_shape, 3)
    graph = run(u, in_mask, out_mask)
    eager = lobpcg(MaskedOperator(layer, input_shape, in_mask, out_mask), u, RULE)
    assert np.all(np.asarray(graph.converged))
    np.testing.assert_allclose(graph.sigma, exact, rtol=1e-4)
    np.testing.assert_allclose(graph.sigma, eager.sigma, rtol=1e-5)
    # graph and eager may round differently (fused ops): allow a step either way
    assert np.all(np.abs(np.asarray(graph.iterations) - np.asarray(eager.iterations)) <= 1)
    # another batch size through the same trace
    half = run(u[:3], in_mask[:3], out_mask[:3])
    np.testing.assert_allclose(half.sigma, exact[:3], rtol=1e-4)


def close_gap_layer(n_in=30, n_out=20, seed=0):
    """A Dense layer whose kernel has singular values 1, 0.999, then 0.9 .. 0.1."""
    rng = np.random.default_rng(seed)
    left, _ = np.linalg.qr(rng.standard_normal((n_in, n_in)))
    right, _ = np.linalg.qr(rng.standard_normal((n_out, n_out)))
    values = np.concatenate([[1.0, 0.999], np.linspace(0.9, 0.1, n_out - 2)])
    layer = Dense(n_out, use_bias=False)
    layer.build((None, n_in))
    layer.kernel.assign(((left[:, :n_out] * values) @ right.T).astype(np.float32))
    return layer, (n_in,)


def test_lobpcg_beats_power_iteration_on_a_close_gap():
    layer, input_shape = close_gap_layer()
    exact = np.linalg.svd(explicit_matrix(layer.linear, input_shape), compute_uv=False)
    np.testing.assert_allclose(exact[1] / exact[0], 0.999, rtol=1e-6)
    operator = MaskedOperator(layer, input_shape)
    rule = StoppingRule(max_iterations=20000, tol=1e-4)
    u = start(input_shape, 11, batch=8)
    power = tf.function(lambda u: power_iteration(operator, u, rule))(u)
    block = tf.function(lambda u: lobpcg(operator, u, rule))(u)
    assert np.all(np.asarray(power.converged)) and np.all(np.asarray(block.converged))
    power_steps = np.asarray(power.iterations)
    block_steps = np.asarray(block.iterations)
    assert block_steps.mean() < power_steps.mean() / 5
    assert block_steps.max() < np.median(power_steps) / 5
    np.testing.assert_allclose(block.sigma, power.sigma, rtol=1e-4)
    np.testing.assert_allclose(block.sigma, exact[0], rtol=1e-5)
    assert np.all(np.asarray(block.sigma) <= exact[0] * (1 + 1e-6))


def test_converged_samples_are_frozen():
    layer, input_shape = close_gap_layer(seed=1)
    operator = MaskedOperator(layer, input_shape)
    u = start(input_shape, 5, batch=8)
    full = lobpcg(operator, u, StoppingRule(max_iterations=2000, tol=1e-4))
    steps = np.asarray(full.iterations)
    assert np.all(np.asarray(full.converged)) and steps.min() < steps.max()
    cut = int(np.median(steps))
    early = lobpcg(operator, u, StoppingRule(max_iterations=cut, tol=1e-4))
    finished = steps <= cut
    assert finished.any() and not finished.all()
    np.testing.assert_array_equal(np.asarray(early.converged), finished)
    np.testing.assert_array_equal(np.asarray(early.u)[finished], np.asarray(full.u)[finished])
    np.testing.assert_array_equal(np.asarray(early.iterations)[finished], steps[finished])
    np.testing.assert_array_equal(np.asarray(early.iterations)[~finished], cut)


def test_trivial_samples_and_zero_starts():
    layer, input_shape = build("conv-same-s1")
    in_mask, out_mask = random_masks(layer, input_shape, np.random.default_rng(4))
    in_mask[1] = 0.0   # every input deleted
    out_mask[2] = 0.0  # every output deleted
    exact = exact_sigmas(layer, input_shape, in_mask, out_mask)
    trivial = np.isin(np.arange(BATCH), [1, 2])
    assert np.all(exact[trivial] == 0.0) and np.all(exact[~trivial] > 0.0)
    operator = MaskedOperator(layer, input_shape, in_mask, out_mask)
    u = np.asarray(start(input_shape, 6)).copy()
    u[3] = 0.0                                    # a zero start
    u[4] = (1.0 - in_mask[4]) * (np.abs(u[4]) + 1.0)  # a start on deleted inputs only
    result = lobpcg(operator, tf.constant(u), RULE)
    assert np.all(np.asarray(result.converged))
    sigma = np.asarray(result.sigma)
    np.testing.assert_array_equal(sigma[trivial], 0.0)
    np.testing.assert_array_equal(np.asarray(result.iterations)[trivial], 0)
    np.testing.assert_allclose(sigma[~trivial], exact[~trivial], rtol=1e-4)
    u_out = np.asarray(result.u)
    assert np.all(u_out[1] == 0.0) and not np.any(np.isnan(u_out))
    assert np.all(u_out[in_mask == 0] == 0.0)
    np.testing.assert_allclose(np.linalg.norm(u_out[~trivial].reshape(4, -1), axis=1), 1.0,
                               rtol=1e-5)


def test_all_masked_batch_and_no_masks():
    layer, input_shape = build("dense")
    zero = np.zeros((3,) + input_shape, np.float32)
    result = lobpcg(MaskedOperator(layer, input_shape, zero, None), start(input_shape, 7, 3),
                    RULE)
    np.testing.assert_array_equal(result.sigma, np.zeros(3))
    assert np.all(np.asarray(result.converged))
    exact = np.linalg.svd(explicit_matrix(layer.linear, input_shape), compute_uv=False)[0]
    result = lobpcg(MaskedOperator(layer, input_shape), start(input_shape, 8, 3), RULE)
    assert np.all(np.asarray(result.converged))
    np.testing.assert_allclose(result.sigma, exact, rtol=1e-4)


def test_a_collapsed_sample_is_not_converged():
    """The masked operator of sample 0 is zero (its only input feeds a zero row of K) but
    no mask is empty: the iteration collapses and must say so, with sigma 0 (= the true
    norm, never above it); sample 1 is a normal one."""
    layer = Dense(2, use_bias=False)
    layer.build((None, 3))
    layer.kernel.assign(np.array([[0.0, 0.0], [1.0, 2.0], [3.0, -1.0]], np.float32))
    in_mask = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]], np.float32)
    operator = MaskedOperator(layer, (3,), in_mask, None)
    exact = exact_sigmas(layer, (3,), in_mask, None)
    result = lobpcg(operator, tf.ones((2, 3)), RULE)
    np.testing.assert_array_equal(np.asarray(result.converged), [False, True])
    assert float(result.sigma[0]) == 0.0
    np.testing.assert_allclose(float(result.sigma[1]), exact[1], rtol=1e-5)
    assert not np.any(np.isnan(np.asarray(result.u)))


def test_sigma_is_differentiable_in_the_weights():
    """As for power iteration, the gradient flows through the final sigma = ||A u|| alone:
    for an unmasked Dense layer it is the outer product of the top singular vectors."""
    layer, input_shape = build("dense")
    with tf.GradientTape() as tape:
        result = lobpcg(MaskedOperator(layer, input_shape), start(input_shape, 9, 1),
                        StoppingRule(2000, 1e-6))
        sigma = result.sigma[0]
    gradient = np.asarray(tape.gradient(sigma, layer.kernel))
    left, _, right = np.linalg.svd(np.asarray(layer.kernel, np.float64))
    expected = np.outer(left[:, 0], right[0])
    expected *= np.sign(np.sum(expected * gradient))
    np.testing.assert_allclose(gradient, expected, atol=1e-4)


def test_rejects_a_step_budget():
    layer, input_shape = build("dense")
    with pytest.raises(TypeError):
        lobpcg(MaskedOperator(layer, input_shape), start(input_shape, 0), 10)
    with pytest.raises(ValueError):
        lobpcg(MaskedOperator(layer, input_shape), start(input_shape, 0), StoppingRule(0))
