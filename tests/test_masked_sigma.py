"""Masked per-sample power iteration and warm-started global norms against numpy's SVD."""
import numpy as np
import pytest
import tensorflow as tf

from conftest import explicit_matrix, tight_rule
from gloro_local.bounds import GlobalNorms, MaskedOperator, power_iteration
from gloro_local.layers import Conv2D, Dense

BATCH = 4
CASES = {
    "dense": (lambda: Dense(9), (11,)),
    "conv-same-s2": (lambda: Conv2D(3, 3, strides=2, padding="same"), (7, 5, 2)),
    "conv-valid-k4": (lambda: Conv2D(4, 4, padding="valid"), (6, 5, 2)),
}


def build(name):
    make, input_shape = CASES[name]
    layer = make()
    layer.build((None,) + input_shape)
    return layer, input_shape


def random_masks(layer, input_shape, rng):
    out_shape = tuple(layer.compute_output_shape((BATCH,) + input_shape))
    in_mask = rng.integers(0, 2, (BATCH,) + input_shape).astype(np.float32)
    out_mask = rng.integers(0, 2, out_shape).astype(np.float32)
    return in_mask, out_mask


def exact_sigmas(layer, input_shape, in_mask, out_mask):
    """Top singular value of M_out A M_in for every sample, from the explicit matrix."""
    sigmas = []
    for b in range(BATCH):
        operator = MaskedOperator(layer, input_shape, in_mask[b:b + 1], out_mask[b:b + 1])
        matrix = explicit_matrix(operator.forward, input_shape)
        sigmas.append(np.linalg.svd(matrix, compute_uv=False)[0])
    return np.array(sigmas)


def start(input_shape, seed):
    return tf.random.stateless_normal((BATCH,) + input_shape, seed=[seed, 0])


@pytest.mark.parametrize("name", CASES)
def test_masked_sigma_matches_svd_per_sample(name):
    layer, input_shape = build(name)
    in_mask, out_mask = random_masks(layer, input_shape, np.random.default_rng(0))
    exact = exact_sigmas(layer, input_shape, in_mask, out_mask)
    assert len(set(np.round(exact, 4))) == BATCH  # each sample really has its own masks
    operator = MaskedOperator(layer, input_shape, in_mask, out_mask)
    result = power_iteration(operator, start(input_shape, 1), tight_rule())
    assert np.all(result.converged)
    np.testing.assert_allclose(result.sigma, exact, rtol=1e-4)
    u = np.asarray(result.u)
    assert np.all(u[in_mask == 0] == 0.0)
    np.testing.assert_allclose(np.linalg.norm(u.reshape(BATCH, -1), axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", CASES)
def test_masked_sigma_never_exceeds_exact(name):
    layer, input_shape = build(name)
    in_mask, out_mask = random_masks(layer, input_shape, np.random.default_rng(2))
    exact = exact_sigmas(layer, input_shape, in_mask, out_mask)
    operator = MaskedOperator(layer, input_shape, in_mask, out_mask)
    for seed in range(3):
        for iterations in (0, 1, 2, 3, 5, 10):
            result = power_iteration(operator, start(input_shape, seed), iterations)
            assert np.all(np.asarray(result.iterations) == iterations)
            assert np.all(np.asarray(result.sigma) <= exact * (1 + 1e-5))


@pytest.mark.parametrize("name", CASES)
def test_start_on_masked_out_inputs_restarts(name):
    layer, input_shape = build(name)
    in_mask, out_mask = random_masks(layer, input_shape, np.random.default_rng(3))
    exact = exact_sigmas(layer, input_shape, in_mask, out_mask)
    assert np.all(exact > 0.0)
    operator = MaskedOperator(layer, input_shape, in_mask, out_mask)
    dead_start = (1.0 - in_mask) * np.abs(start(input_shape, 4))
    first = power_iteration(operator, dead_start, 1)
    assert np.all(np.asarray(first.sigma) > 0.0)
    result = power_iteration(operator, dead_start, tight_rule())
    np.testing.assert_allclose(result.sigma, exact, rtol=1e-4)


def test_all_masked_layer_has_sigma_zero():
    layer, input_shape = build("dense")
    in_mask = np.zeros((BATCH,) + input_shape, np.float32)
    operator = MaskedOperator(layer, input_shape, in_mask, None)
    result = power_iteration(operator, start(input_shape, 5), 10)
    np.testing.assert_array_equal(result.sigma, np.zeros(BATCH))


def test_global_norms_converge_to_svd_and_warm_start():
    layers, shapes = zip(*(build(name) for name in CASES))
    norms = GlobalNorms(shapes)
    exact = [np.linalg.svd(explicit_matrix(layer.linear, shape), compute_uv=False)[0]
             for layer, shape in zip(layers, shapes)]
    sigmas, converged = norms.converge(layers, tight_rule())
    assert all(converged)
    np.testing.assert_allclose(sigmas, exact, rtol=1e-4)
    for _ in range(3):
        np.testing.assert_allclose(norms.norms(layers, 1), sigmas, rtol=1e-5)
    assert len(norms.weights) == len(CASES)
    assert not norms.trainable_weights
    for iterate, shape, layer in zip(norms.non_trainable_weights, shapes, layers):
        assert tuple(iterate.shape) == (1,) + shape
        # the stored vector is the converged top singular vector: sigma = ||A u||, ||u|| = 1
        u = np.asarray(iterate.value)
        np.testing.assert_allclose(np.linalg.norm(u), 1.0, rtol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(layer.linear(u)),
                                   np.linalg.svd(explicit_matrix(layer.linear, shape),
                                                 compute_uv=False)[0], rtol=1e-4)


def test_global_norms_few_iterations_stay_below_svd():
    layers, shapes = zip(*(build(name) for name in CASES))
    exact = [np.linalg.svd(explicit_matrix(layer.linear, shape), compute_uv=False)[0]
             for layer, shape in zip(layers, shapes)]
    norms = GlobalNorms(shapes, seed=7)
    previous = np.zeros(len(CASES))
    for _ in range(5):
        sigmas = np.array(norms.norms(layers, 1))
        assert np.all(sigmas <= np.array(exact) * (1 + 1e-5))
        assert np.all(sigmas >= previous * (1 - 1e-5))  # power iteration never goes down
        previous = sigmas


def test_a_start_in_the_null_space_is_never_reported_as_sigma_zero():
    """K has norm sqrt(2) and null space (1, -1, 0): an iterate that collapses to 0 must
    come back not converged (the certificate then uses the global bound), not sigma 0."""
    layer = Dense(2, use_bias=False)
    layer.build((None, 3))
    layer.kernel.assign(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]], np.float32))
    start = tf.constant([[1.0, -1.0, 0.0]]) / np.sqrt(2.0)
    result = power_iteration(MaskedOperator(layer, (3,)), start, tight_rule())
    assert not bool(result.converged[0])


def test_an_operator_the_masks_delete_entirely_has_exact_sigma_zero():
    layer, input_shape = build("dense")
    out_mask = np.zeros((BATCH, 9), np.float32)
    result = power_iteration(MaskedOperator(layer, input_shape, None, out_mask),
                             start(input_shape, 6), tight_rule())
    assert np.all(np.asarray(result.converged))
    np.testing.assert_array_equal(result.sigma, np.zeros(BATCH))


@pytest.mark.parametrize("scale", [1e-12, 1e12])
def test_tiny_and_huge_norms_converge_without_underflow(scale):
    """The step normalises A u before the adjoint, so no intermediate is at sigma^2."""
    layer, input_shape = build("dense")
    exact = np.linalg.svd(explicit_matrix(layer.linear, input_shape), compute_uv=False)[0]
    layer.kernel.assign(layer.kernel.numpy() * scale)
    result = power_iteration(MaskedOperator(layer, input_shape), start(input_shape, 7),
                             tight_rule())
    assert np.all(np.asarray(result.converged))
    np.testing.assert_allclose(result.sigma, exact * scale, rtol=1e-4)
