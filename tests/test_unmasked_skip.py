"""Training skips the per-sample power iteration of a layer no mask touches in the batch:
there M_out A M_in = A for every sample, so sigma is the layer's global norm.

Checked: ``masked_norm`` with all-ones masks returns the global norm and the start
vectors unchanged, with the gradient of the global norm; with one deleted neuron it is
the power iteration, value for value; at an eps where every neuron may move a 'local'
training pass equals the 'global' one exactly and runs no iteration; certification (a
``StoppingRule``) always iterates.
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


def test_all_ones_masks_take_the_global_norm_and_keep_the_start():
    rng = np.random.default_rng(0)
    ones_in, ones_out = np.ones((3, 5, 5, 2), "float32"), np.ones((3, 5, 5, 3), "float32")
    operator = conv_operator(ones_in, ones_out)
    start = tf.constant(rng.standard_normal((3, 5, 5, 2)), tf.float32)
    scale = tf.Variable(2.0)
    with tf.GradientTape() as tape:
        result = masked_norm(operator, start, 2, tf.fill([3], scale * 1.5))
        total = tf.reduce_sum(result.sigma)
    np.testing.assert_array_equal(result.sigma, [3.0, 3.0, 3.0])
    np.testing.assert_array_equal(result.u, start)
    np.testing.assert_array_equal(result.iterations, [0, 0, 0])
    assert float(tape.gradient(total, scale)) == 4.5


def test_one_deleted_neuron_runs_the_power_iteration():
    rng = np.random.default_rng(1)
    out_mask = np.ones((3, 5, 5, 3), "float32")
    out_mask[2, 1, 1, 0] = 0.0
    operator = conv_operator(np.ones((3, 5, 5, 2), "float32"), out_mask)
    start = tf.constant(rng.standard_normal((3, 5, 5, 2)), tf.float32)
    result = masked_norm(operator, start, 2, tf.fill([3], 100.0))
    plain = power_iteration(operator, start, 2)
    np.testing.assert_array_equal(result.sigma, plain.sigma)
    np.testing.assert_array_equal(result.u, plain.u)
    assert np.all(result.sigma.numpy() < 100.0)


def test_certification_always_iterates():
    rng = np.random.default_rng(2)
    operator = conv_operator(np.ones((2, 5, 5, 2), "float32"), None)
    start = tf.constant(rng.standard_normal((2, 5, 5, 2)), tf.float32)
    result = masked_norm(operator, start, StoppingRule(), tf.fill([2], 100.0))
    assert np.all(result.iterations.numpy() > 0) and np.all(result.sigma.numpy() < 100.0)


def test_a_training_pass_where_every_neuron_moves_equals_the_global_bound():
    f = keras.Sequential([keras.Input((4, 4, 1)), Conv2D(3, 3), ReLU(), Flatten(),
                          Dense(6), ReLU(), Dense(3)])
    x = tf.constant(np.random.default_rng(3).uniform(0, 1, (5, 4, 4, 1)), tf.float32)
    local = LocalGloroNet(f, epsilon=50.0, training_dtype="float32")
    globally = LocalGloroNet(f, epsilon=50.0, training_dtype="float32", bound="global")
    globally.global_norms.set_weights(local.global_norms.get_weights())
    ours = local.margins(x, training=True)
    assert all(float(tf.reduce_min(a.varying)) == 1.0 for a in ours.propagation.activations)
    assert all(int(tf.reduce_max(p.iterations)) == 0 for p in ours.power if p is not None)
    local.global_norms.set_weights(globally.global_norms.get_weights())
    ours = local.margins(x, training=True)
    theirs = globally.margins(x, training=True)
    np.testing.assert_array_equal(ours.worst, theirs.worst)
    np.testing.assert_array_equal(ours.lipschitz, theirs.lipschitz)
