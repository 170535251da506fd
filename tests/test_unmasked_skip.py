"""In certification, a layer no mask touches in the batch skips its per-sample
iteration: there M_out A M_in = A for every sample, and the certificate uses the layer's
sound global norm for it in any case. Training always iterates.

Checked: ``masked_norm`` under a ``StoppingRule`` with all-ones masks returns the global
norm, converged, with 0 steps and the start vectors unchanged; with one deleted neuron
it iterates; with a number of steps it is the power iteration whatever the masks; at an
eps where every neuron may move, ``lipschitz_bounds`` and the certificate run no
iteration and equal the global bound.
"""
import keras
import numpy as np
import tensorflow as tf

from gloro_local import LocalGloroNet
from gloro_local.bounds import MaskedOperator, StoppingRule, power_iteration
from gloro_local.bounds.local_norms import masked_norm
from gloro_local.layers import Conv2D, Dense, Flatten, ReLU


def conv_operator(in_mask, out_mask):
    layer = Conv2D(3, 3, padding="same")
    layer.build((None, 5, 5, 2))
    return MaskedOperator(layer, (5, 5, 2), in_mask, out_mask)


def test_training_always_iterates():
    rng = np.random.default_rng(1)
    ones_in, ones_out = np.ones((3, 5, 5, 2), "float32"), np.ones((3, 5, 5, 3), "float32")
    operator = conv_operator(ones_in, ones_out)
    start = tf.constant(rng.standard_normal((3, 5, 5, 2)), tf.float32)
    result = masked_norm(operator, start, 2, tf.fill([3], 100.0))
    plain = power_iteration(operator, start, 2)
    np.testing.assert_array_equal(result.sigma, plain.sigma)
    np.testing.assert_array_equal(result.u, plain.u)


def test_certification_skips_only_unmasked_batches():
    rng = np.random.default_rng(2)
    start = tf.constant(rng.standard_normal((2, 5, 5, 2)), tf.float32)
    operator = conv_operator(np.ones((2, 5, 5, 2), "float32"), None)
    result = masked_norm(operator, start, StoppingRule(), tf.fill([2], 100.0))
    np.testing.assert_array_equal(result.iterations, [0, 0])
    np.testing.assert_array_equal(result.converged, [True, True])
    np.testing.assert_array_equal(result.sigma, [100.0, 100.0])
    in_mask = np.ones((2, 5, 5, 2), "float32")
    in_mask[0, 0, 0, 0] = 0.0
    operator = conv_operator(in_mask, None)
    result = masked_norm(operator, start, StoppingRule(), tf.fill([2], 100.0))
    assert np.all(result.iterations.numpy() > 0) and np.all(result.sigma.numpy() < 100.0)


def test_certificates_where_every_neuron_moves_run_no_iteration():
    f = keras.Sequential([keras.Input((4, 4, 1)), Conv2D(3, 3), ReLU(), Flatten(),
                          Dense(6), ReLU(), Dense(3)])
    x = np.random.default_rng(3).uniform(0, 1, (5, 4, 4, 1)).astype("float32")
    local = LocalGloroNet(f, epsilon=50.0)
    bounds = local.lipschitz_bounds(x, converge=True)
    assert np.all(bounds["varying"] == 1.0)
    assert np.all(bounds["iterations"] == 0) and np.all(bounds["converged"])
    np.testing.assert_array_equal(bounds["local"], bounds["global"])
    certificate = local.certify(x, np.zeros(5, "int64"), attack_steps=0, cheap_stages=False)
    assert not np.any(certificate.reason == "not converged")
    np.testing.assert_array_equal(certificate.lipschitz, certificate.global_lipschitz)
