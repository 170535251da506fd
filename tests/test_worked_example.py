"""The worked example of the paper's appendix A.1, by hand.

W1 = W2 = diag(3, 2, 1), theta = 1, x = [1, -1, 0], eps = 0.1, no biases.
Layer 1: z1 = [3, -2, 0]; box and ball both give +- [0.3, 0.2, 0.1], so
lo1 = [2.7, -2.2, -0.1], hi1 = [3.3, -1.8, 0.1]: neuron 0 is stuck at theta (lo >= 1),
neuron 1 at 0 (hi <= 0), neuron 2 varies. After ReLU-theta: centre [1, 0, 0],
box [1, 1] x [0, 0] x [0, 0.1], ball radius 0.1 * ||W1|| = 0.3.
Layer 2: centre [3, 0, 0], box [3, 3] x [0, 0] x [0, 0.1] (tighter than the ball
+- 0.3 * [3, 2, 1]): again neuron 0 stuck at theta, neuron 1 at 0, neuron 2 varies.
So I_V = diag(0, 0, 1) at both layers, the masked norms are 1 and 1 against global 3 and 3:
local Lipschitz 1 against global 9.
"""
import keras
import numpy as np

from conftest import tight_rule
from gloro_local.bounds import (GlobalNorms, MaskedOperator, SeamNetwork, check_epsilon,
                                local_norms, power_iteration, propagate, random_start)
from gloro_local.layers import Dense, ReLUTheta

W = np.diag([3.0, 2.0, 1.0]).astype(np.float32)
X = np.array([[1.0, -1.0, 0.0]], np.float32)
MASK = np.array([[0.0, 0.0, 1.0]], np.float32)


def example():
    f = keras.Sequential([keras.Input((3,)), Dense(3, use_bias=False), ReLUTheta(),
                          Dense(3, use_bias=False), ReLUTheta(), Dense(2)])
    f.layers[0].kernel.assign(W)
    f.layers[2].kernel.assign(W)
    return f, SeamNetwork(f.layers, (3,))


def test_global_norms_are_three():
    f, network = example()
    assert network.hidden == [0, 2]
    seams, shapes = zip(*network.hidden_layers())
    sigmas, converged = GlobalNorms(shapes).converge(seams, tight_rule())
    assert all(converged)
    np.testing.assert_allclose(sigmas, [3.0, 3.0], rtol=1e-5)


def test_boxes_and_masks_by_hand():
    f, network = example()
    prop = propagate(network, X, check_epsilon(0.1), [3.0, 3.0])
    first, second = prop.activations
    np.testing.assert_allclose(first.lo, [[2.7, -2.2, -0.1]], atol=1e-6)
    np.testing.assert_allclose(first.hi, [[3.3, -1.8, 0.1]], atol=1e-6)
    np.testing.assert_allclose(second.lo, [[3.0, 0.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(second.hi, [[3.0, 0.0, 0.1]], atol=1e-6)
    np.testing.assert_array_equal(first.varying, MASK)
    np.testing.assert_array_equal(second.varying, MASK)
    assert prop.in_masks[0] is None
    np.testing.assert_array_equal(prop.in_masks[1], MASK)
    np.testing.assert_array_equal(prop.out_masks[0], MASK)
    np.testing.assert_array_equal(prop.out_masks[1], MASK)
    penultimate = prop.penultimate
    np.testing.assert_allclose(penultimate.centre, [[1.0, 0.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(penultimate.lo, [[1.0, 0.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(penultimate.hi, [[1.0, 0.0, 0.1]], atol=1e-6)
    np.testing.assert_allclose(penultimate.radius, [0.9], rtol=1e-6)


def test_masked_norms_are_one():
    f, network = example()
    prop = propagate(network, X, check_epsilon(0.1), [3.0, 3.0])
    starts = [random_start(shape, 1) for _, shape in network.hidden_layers()]
    results = local_norms(network, prop, starts, tight_rule())
    for result in results:
        assert bool(result.converged[0])
        np.testing.assert_allclose(result.sigma, [1.0], rtol=1e-5)
    # the unmasked operator of the same layer still has norm 3
    seam, shape = network.hidden_layers()[1]
    unmasked = power_iteration(MaskedOperator(seam, shape), starts[1], tight_rule())
    np.testing.assert_allclose(unmasked.sigma, [3.0], rtol=1e-5)
