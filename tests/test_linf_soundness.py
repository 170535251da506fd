"""Soundness by exhaustion on 2-D inputs: every margin lower bound holds on a dense grid of
the perturbation set, so every certified point keeps its class there.

For each network (random ReLU networks, one trained on the sectors data, one with MaxMin,
ClippedMaxMin and ReLUTheta) and each relaxation (IBP, CROWN-IBP's adaptive slopes,
random slopes, the optimised slopes), the l-infinity bounds are checked on a 101 x 101
grid of the square [x - eps, x + eps]^2 plus points on its boundary, and the l2 bounds on
the disc (``disc_offsets``), also with the library's l2 boxes (box and ball).
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import disc_offsets, sectors
from gloro_local.bounds import SeamNetwork, propagate, sound_global_norms
from gloro_local.bounds.linf import (backward_bounds, ibp, ibp_margin_lower_bounds,
                                     initial_slopes, optimized_lower_slopes, specification)
from gloro_local.layers import ClippedMaxMin, Dense, MaxMin, ReLU, ReLUTheta

POINTS, TOL = 60, 1e-5
RELAXATIONS = ("ibp", "crown_ibp", "random", "optimized")


def square_offsets(eps, grid=101, boundary=400):
    """A grid x grid lattice of [-eps, eps]^2 plus ``boundary`` points on its edges."""
    axis = np.linspace(-eps, eps, grid)
    lattice = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
    t = np.linspace(-eps, eps, boundary // 4, endpoint=False)
    side = np.full_like(t, eps)
    edges = np.concatenate([np.stack(pair, 1) for pair in
                            ((t, -side), (side, t), (-t, side), (-side, -t))])
    return np.concatenate([lattice, edges])


def random_relu(seed, stddev):
    def make():
        keras.utils.set_random_seed(seed)
        init = {"bias_initializer": keras.initializers.RandomNormal(stddev=0.5),
                "kernel_initializer": keras.initializers.RandomNormal(stddev=stddev)}
        return keras.Sequential([keras.Input((2,)), Dense(16, **init), ReLU(),
                                 Dense(16, **init), ReLU(), Dense(3, **init)])
    return make


def trained_relu():
    """Plain Keras layers, 400 Adam steps on the sectors data."""
    keras.utils.set_random_seed(0)
    x, y = sectors(np.random.default_rng(0), 2000)
    f = keras.Sequential([keras.Input((2,)), keras.layers.Dense(32), keras.layers.ReLU(),
                          keras.layers.Dense(32), keras.layers.ReLU(), keras.layers.Dense(3)])
    f.compile(keras.optimizers.Adam(1e-2),
              keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    f.fit(x, y, batch_size=100, epochs=20, verbose=0)
    return f


def mixed(*activations):
    """MaxMin, ClippedMaxMin and ReLUTheta (in the given order) with random thresholds
    (a steep function: its eps is 0.02, where the relaxations certify some points and
    some points flip)."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(3)
    init = {"bias_initializer": keras.initializers.RandomNormal(stddev=0.3)}
    layers = [keras.Input((2,))]
    for activation in activations:
        layers += [Dense(16, **init), activation()]
    f = keras.Sequential(layers + [Dense(3, **init)])
    for layer in f.layers:
        if isinstance(layer, ReLUTheta):
            layer.theta.assign(rng.uniform(0.05, 1.0, layer.theta.shape))
        if isinstance(layer, ClippedMaxMin):
            layer.upper.assign(rng.uniform(-0.2, 1.2, layer.upper.shape))
            layer.lower.assign(rng.uniform(-1.2, 0.2, layer.lower.shape))
    return f


NETWORKS = {"random-1": (random_relu(1, 1.0), 0.1), "random-2": (random_relu(2, 0.7), 0.1),
            "trained": (trained_relu, 0.05),
            "mixed": (lambda: mixed(MaxMin, ClippedMaxMin, ReLUTheta), 0.02),
            "mixed-pairwise-last": (lambda: mixed(ReLUTheta, ClippedMaxMin, MaxMin), 0.05)}


@pytest.fixture(scope="module", params=list(NETWORKS))
def case(request):
    """(network, eps, inputs, predicted classes) for one network, built once."""
    make, eps = NETWORKS[request.param]
    f = make()
    network = SeamNetwork(f.layers, (2,))
    x = np.random.default_rng(1).uniform(-1, 1, (POINTS, 2)).astype(np.float32)
    reference = np.argmax(np.asarray(network.logits(tf.constant(x))), axis=1)
    return request.param, network, eps, x, reference


def margins(network, x, eps, reference, relaxation, norm):
    """Lower bounds of z_j - z_i, (B, K), by one relaxation."""
    result = ibp(network, x, eps)
    boxes = result.pre_activation
    spec = specification(reference, network.num_classes)
    if relaxation == "ibp":
        return np.asarray(ibp_margin_lower_bounds(network, result, reference))
    slopes = {"crown_ibp": None, "random": initial_slopes(network, boxes, seed=5),
              "optimized": optimized_lower_slopes(network, x, eps, spec, boxes, seed=5,
                                                  norm=norm)}[relaxation]
    return np.asarray(backward_bounds(network, x, eps, spec, boxes, norm, slopes))


def grid_margins(network, x, reference, offsets):
    """z_j - z_i at every offset of every point: (B, G, K)."""
    out = []
    for b in range(len(x)):
        logits = np.asarray(network.logits(tf.constant((x[b] + offsets).astype(np.float32))))
        out.append(logits[:, reference[b]][:, None] - logits)
    return np.stack(out)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_bounds_hold_on_the_grid(case, norm):
    """Every relaxation's margins are below z_j - z_i at every grid point of every input's
    perturbation set, so certified points (all m_i > 0, i != j) never change class there.
    The check is not vacuous: each relaxation certifies some points, and some inputs do
    change class on their grid."""
    name, network, eps, x, reference = case
    offsets = square_offsets(eps) if norm == "linf" else disc_offsets(eps, grid=101,
                                                                      circle=400)
    true = grid_margins(network, x, reference, offsets)
    others = np.arange(network.num_classes)[None] != reference[:, None]
    flips = np.any(np.where(others[:, None], true, np.inf).min(-1) <= 0, axis=1)
    assert 0 < np.sum(flips) < len(x)
    for relaxation in RELAXATIONS:
        m = margins(network, x, eps, reference, relaxation, norm)
        assert np.all(m[:, None, :] <= true + TOL), (name, relaxation)
        certified = np.all(np.where(others, m, np.inf) > 0, axis=1)
        assert np.sum(certified) >= 0.05 * len(x), (name, relaxation, np.sum(certified))
        assert not np.any(certified & flips), (name, relaxation)


def test_l2_bounds_on_ball_boxes_hold_on_the_disc(case):
    """The l2 backward pass on the library's l2 boxes (box intersected with the ball, with
    sound global norms) instead of IBP's also holds on the disc and certifies points."""
    name, network, eps, x, reference = case
    prop = propagate(network, x, tf.constant(eps), sound_global_norms(network))
    boxes = [(act.lo, act.hi) for act in prop.activations]
    spec = specification(reference, network.num_classes)
    m = np.asarray(backward_bounds(network, x, eps, spec, boxes, "l2"))
    true = grid_margins(network, x, reference, disc_offsets(eps, grid=101, circle=400))
    assert np.all(m[:, None, :] <= true + TOL), name
    others = np.arange(network.num_classes)[None] != reference[:, None]
    assert np.sum(np.all(np.where(others, m, np.inf) > 0, axis=1)) >= 0.05 * len(x), name
