"""Propagated boxes, masks and local norms hold for every point of the eps-ball.

For small random networks of every layer type, points sampled in the ball and l2 PGD that
pushes every neuron up and down must stay inside the propagated pre-activation boxes;
neurons marked constant must not move; and the penultimate features must move at most
eps * prod(local sigmas) <= eps * prod(global sigmas).
"""
from functools import cached_property

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import sample_ball, tight_rule
from gloro_local.bounds import (GlobalNorms, SeamNetwork, check_epsilon, local_norms,
                                propagate, random_start)
from gloro_local.layers import (ActivationSeam, ClippedMaxMin, Conv2D, Dense, Flatten,
                                LinearSeam, MaxMin, ReLU, ReLUTheta, as_seam)

BATCH, SAMPLES, PGD_STEPS, TOL = 3, 2000, 50, 1e-5


def bias():
    """Non-zero biases; built after the seed is set so that every run is the same."""
    return {"bias_initializer": keras.initializers.RandomNormal(stddev=0.3)}


NETWORKS = {  # name: (input shape, layers, eps)
    "dense-relu": ((6,), lambda: [Dense(12, **bias()), ReLU(), Dense(10, **bias()), ReLU(),
                                  Dense(3)], 0.3),
    "dense-theta": ((6,), lambda: [Dense(12, **bias()), ReLUTheta(), Dense(12, **bias()),
                                   ReLUTheta(), Dense(3)], 0.2),
    "conv-strided": ((7, 5, 2), lambda: [
        Conv2D(4, 3, strides=2, padding="same", **bias()), ReLUTheta(),
        Conv2D(6, 3, padding="valid", **bias()), ReLU(), Flatten(), Dense(3)], 0.3),
    "conv-maxmin": ((5, 5, 2), lambda: [
        Conv2D(6, 3, padding="valid", **bias()), MaxMin(),
        Conv2D(4, 4, strides=2, padding="same", **bias()), ClippedMaxMin(), Flatten(),
        Dense(8, **bias()), ReLU(), Dense(3)], 0.2),
    "dense-clipped": ((6,), lambda: [Dense(8, **bias()), ClippedMaxMin(), Dense(8, **bias()),
                                     MaxMin(), Dense(3)], 0.3),
    "plain-keras": ((6, 5, 2), lambda: [
        keras.layers.Conv2D(4, 3, strides=2, padding="valid", **bias()), keras.layers.Flatten(),
        keras.layers.ReLU(), keras.layers.Dense(10, **bias()), ReLUTheta(),
        keras.layers.Dense(3)], 0.3),
}


def randomize_thresholds(f, rng):
    """Random thetas (some tiny, so neurons saturate) and random clipping thresholds."""
    for layer in f.layers:
        if isinstance(layer, ReLUTheta):
            layer.theta.assign(rng.uniform(0.02, 1.5, layer.theta.shape))
        if isinstance(layer, ClippedMaxMin):
            layer.upper.assign(rng.uniform(-0.2, 1.2, layer.upper.shape))
            layer.lower.assign(rng.uniform(-1.2, 0.2, layer.lower.shape))


def trace(f, x):
    """Runs the layers one by one: (pre-activations + [penultimate], activation outputs)."""
    checked, outputs = [], []
    for layer in f.layers[:-1]:
        is_activation = isinstance(as_seam(layer), ActivationSeam)
        if is_activation:
            checked.append(x)
        x = layer(x)
        if is_activation:
            outputs.append(x)
    return checked + [x], outputs


class Setup:
    """One random network, BATCH clean inputs, converged global norms and the propagation."""

    def __init__(self, name):
        input_shape, make_layers, self.eps = NETWORKS[name]
        rng = np.random.default_rng(0)
        self.f = keras.Sequential([keras.Input(input_shape)] + make_layers())
        randomize_thresholds(self.f, rng)
        self.shape = input_shape
        self.x = rng.standard_normal((BATCH,) + input_shape).astype(np.float32)
        self.network = SeamNetwork(self.f.layers, input_shape)
        seams, shapes = zip(*self.network.hidden_layers())
        self.global_sigmas, converged = GlobalNorms(shapes).converge(seams, tight_rule())
        assert all(converged)
        self.prop = propagate(self.network, self.x, check_epsilon(self.eps), self.global_sigmas)
        boxes = [(a.lo, a.hi) for a in self.prop.activations]
        boxes.append((self.prop.penultimate.lo, self.prop.penultimate.hi))
        self.boxes = [(np.asarray(lo), np.asarray(hi)) for lo, hi in boxes]
        self.clean_checked, self.clean_outputs = trace(self.f, self.x)
        self.rng = rng

    @cached_property
    def local_sigmas(self):
        """Converged masked norms from random starts, (BATCH, hidden layers)."""
        starts = [random_start(shape, BATCH) for _, shape in self.network.hidden_layers()]
        results = local_norms(self.network, self.prop, starts, tight_rule())
        assert all(np.all(r.converged) for r in results)
        return np.stack([np.asarray(r.sigma) for r in results], axis=1)

    def check_points(self, x):
        """x: (BATCH, n) + input shape, all in the eps-balls. Checks boxes and constants."""
        n = x.shape[1]
        checked, outputs = trace(self.f, x.reshape((-1,) + self.shape))
        for values, (lo, hi) in zip(checked, self.boxes):
            values = np.asarray(values).reshape((BATCH, n) + lo.shape[1:])
            assert np.all(values >= lo[:, None] - TOL)
            assert np.all(values <= hi[:, None] + TOL)
        for out, clean, act in zip(outputs, self.clean_outputs, self.prop.activations):
            if act.varying is None:
                continue
            out = np.asarray(out).reshape((BATCH, n) + tuple(clean.shape[1:]))
            constant = np.broadcast_to(np.asarray(act.varying)[:, None] == 0, out.shape)
            clean = np.broadcast_to(np.asarray(clean)[:, None], out.shape)
            np.testing.assert_allclose(out[constant], clean[constant], rtol=0, atol=1e-6)


@pytest.fixture(params=list(NETWORKS), scope="module")
def setup(request):
    keras.utils.set_random_seed(99)
    return Setup(request.param)


def test_both_constant_and_varying_neurons_occur(setup):
    masks = np.concatenate([np.asarray(a.varying).ravel() for a in setup.prop.activations
                            if a.varying is not None])
    assert 0.0 < masks.mean() < 1.0


def test_boxes_contain_the_clean_point(setup):
    for clean, (lo, hi) in zip(setup.clean_checked, setup.boxes):
        assert np.all(lo <= np.asarray(clean) + TOL) and np.all(np.asarray(clean) <= hi + TOL)


def test_sampled_points_stay_in_boxes(setup):
    deltas = np.stack([sample_ball(setup.rng, SAMPLES, setup.shape, setup.eps)
                       for _ in range(BATCH)])
    setup.check_points(setup.x[:, None] + deltas)


def random_in_box(rng, lo, hi, count):
    """``count`` random points of every sample's box, plus its corners lo and hi."""
    u = rng.uniform(size=(count,) + lo.shape).astype(np.float32)
    return np.concatenate([lo[None], hi[None], lo + u * (hi - lo)])


def test_constant_neurons_are_constant_on_the_whole_box(setup):
    for act, clean in zip(setup.prop.activations, setup.clean_outputs):
        if act.varying is None:
            continue
        constant = np.asarray(act.varying) == 0
        for z in random_in_box(setup.rng, np.asarray(act.lo), np.asarray(act.hi), 200):
            out = np.asarray(act.seam.call(z))
            np.testing.assert_allclose(out[constant], np.asarray(clean)[constant], atol=1e-6)


def row_chain(network, index):
    """The element-wise activations and reshapes right after hidden linear layer
    ``index``: the layers a row mask of that layer may look through."""
    chain = []
    for seam in network.seams[index + 1:]:
        if isinstance(seam, LinearSeam) or not getattr(seam, "elementwise", True):
            break
        chain.append(seam)
    return chain


def test_masked_rows_do_not_reach_the_activation_output(setup):
    """A row mask may only delete outputs of a linear layer that the element-wise
    activations after it hold constant: resampling them anywhere in the box of the first
    activation leaves the output of the whole chain unchanged."""
    network, prop = setup.network, setup.prop
    checked = 0
    for index, out_mask in zip(network.hidden, prop.out_masks):
        if out_mask is None:
            continue
        chain = row_chain(network, index)
        first = next(k for k, seam in enumerate(chain) if isinstance(seam, ActivationSeam))
        act = next(a for a in prop.activations if a.seam is chain[first])
        lo, hi = np.asarray(act.lo), np.asarray(act.hi)
        keep = np.asarray(out_mask).reshape(lo.shape) == 1
        first_points, second_points = (random_in_box(setup.rng, lo, hi, 200) for _ in range(2))

        def through(z):
            for seam in chain[first:]:
                z = seam.call(z)
            return np.asarray(z)
        for z, other in zip(first_points, second_points):
            np.testing.assert_allclose(through(np.where(keep, z, other)), through(z),
                                       atol=1e-6)
        checked += 1
    has_rows = any(isinstance(seam, ActivationSeam) for index in network.hidden
                   for seam in row_chain(network, index))
    assert checked or not has_rows  # meaningful wherever a row mask can exist


def project(delta, eps):
    norms = tf.norm(tf.reshape(delta, [tf.shape(delta)[0], -1]), axis=1)
    scale = tf.minimum(1.0, eps / tf.maximum(norms, 1e-12))
    return delta * tf.reshape(scale, [-1] + [1] * len(delta.shape[1:]))


def pgd(objective, x, eps, rng):
    """l2 PGD maximising ``objective(x + delta)`` (one value per row) from random starts."""
    delta = tf.constant(sample_ball(rng, len(x), x.shape[1:], eps))
    x = tf.constant(x)
    for step in range(PGD_STEPS):
        with tf.GradientTape() as tape:
            tape.watch(delta)
            value = tf.reduce_sum(objective(x + delta))
        grad = tape.gradient(value, delta)
        grad_norm = tf.norm(tf.reshape(grad, [len(x), -1]), axis=1)
        grad = grad / tf.reshape(tf.maximum(grad_norm, 1e-12), [-1] + [1] * len(x.shape[1:]))
        delta = project(delta + eps * 0.25 * 0.95 ** step * grad, eps)
    return (x + delta).numpy()


def test_pgd_on_every_neuron_stays_in_boxes(setup):
    """One attack per sample, checked neuron (of every layer) and direction, all batched."""
    n = sum(int(np.prod(lo.shape[1:])) for lo, _ in setup.boxes)
    neuron = np.tile(np.arange(n), 2 * BATCH)
    sign = np.tile(np.repeat([1.0, -1.0], n), BATCH).astype(np.float32)

    def objective(x):
        values = tf.concat([tf.reshape(v, [len(neuron), -1]) for v in trace(setup.f, x)[0]], 1)
        return sign * tf.gather(values, neuron, batch_dims=1)

    attacked = pgd(objective, np.repeat(setup.x, 2 * n, axis=0), setup.eps, setup.rng)
    setup.check_points(attacked.reshape((BATCH, 2 * n) + setup.shape))


def test_local_sigmas_below_global(setup):
    local = setup.local_sigmas
    global_ = np.asarray(setup.global_sigmas)
    assert np.all(local <= global_ * (1 + 1e-5))
    assert np.all(local.prod(axis=1) <= global_.prod() * (1 + 1e-5))
    assert np.any(local < global_ * 0.99)  # the masks really make some bound tighter


def test_penultimate_moves_at_most_local_bound(setup):
    bound = setup.eps * setup.local_sigmas.prod(axis=1) * (1 + 1e-4)
    clean = np.asarray(setup.clean_checked[-1]).reshape(BATCH, -1)

    def distance(points):
        moved = np.asarray(trace(setup.f, points)[0][-1]).reshape(BATCH, len(points) // BATCH, -1)
        return np.linalg.norm(moved - clean[:, None], axis=-1)

    deltas = np.stack([sample_ball(setup.rng, SAMPLES, setup.shape, setup.eps)
                       for _ in range(BATCH)])
    points = (setup.x[:, None] + deltas).reshape((-1,) + setup.shape)
    assert np.all(distance(points) <= bound[:, None])

    clean_tensor = tf.constant(clean)

    def objective(x):
        moved = tf.reshape(trace(setup.f, x)[0][-1], [BATCH, -1])
        return tf.reduce_sum(tf.square(moved - clean_tensor), axis=1)

    attacked = pgd(objective, setup.x, setup.eps, setup.rng)
    assert np.all(distance(attacked) <= bound[:, None])


def test_local_bound_is_attained_when_no_neuron_straddles():
    """With one hidden layer and an eps so small that every neuron is stuck or linear over
    the ball, f_pen is exactly M_out A there: delta = eps * u (the converged singular
    vector) moves it by eps * sigma_local, so the bound is tight, not only sound."""
    keras.utils.set_random_seed(5)
    f = keras.Sequential([keras.Input((6,)), Dense(16, **bias()), ReLUTheta(), Dense(3)])
    randomize_thresholds(f, np.random.default_rng(5))
    network = SeamNetwork(f.layers, (6,))
    x = np.random.default_rng(6).standard_normal((BATCH, 6)).astype(np.float32)
    eps = 0.01
    seams, shapes = zip(*network.hidden_layers())
    sigmas, _ = GlobalNorms(shapes).converge(seams, tight_rule())
    prop = propagate(network, x, check_epsilon(eps), sigmas)
    act = prop.activations[0]
    theta = f.layers[1].theta.numpy()
    stuck_or_linear = ((np.asarray(act.hi) <= 0) | (np.asarray(act.lo) >= theta)
                       | ((np.asarray(act.lo) >= 0) & (np.asarray(act.hi) <= theta)))
    assert np.all(stuck_or_linear) and 0 < np.asarray(act.varying).mean() < 1
    (result,) = local_norms(network, prop, [random_start((6,), BATCH)], tight_rule())
    assert np.all(np.asarray(result.sigma) < np.asarray(sigmas[0]) * 0.99)
    moved = trace(f, x + eps * np.asarray(result.u))[0][-1] - trace(f, x)[0][-1]
    np.testing.assert_allclose(np.linalg.norm(moved, axis=1), eps * np.asarray(result.sigma),
                               rtol=1e-3)
