"""The layer-wise local radius ('local_layerwise', ``certify(radius='layerwise')``).

The ball entering hidden layer l has radius eps * prod_{k<l} sigma_k(x) (the capped,
converged masked norms of the layers before it) instead of eps * prod_{k<l} ||W_k||.
Checked: on the paper's worked example and on random networks it is never looser than
'local' (bottom logit, Lipschitz product, every box); it equals 'local' when nothing is
masked and is strictly tighter on a network built so that a mask of layer 1 makes a
neuron of layer 2 constant; every point it certifies on 2-D networks (random and
trained; ReLU, ReLU-theta, MaxMin) survives a dense search of its eps-disc, and its
worst-case logits bound the logits found there; PGD with restarts breaks no point it
certifies on an MNIST model, where it certifies a superset of ``certify()``.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import disc_offsets, sectors, tight_rule
from test_worked_example import X, example
import gloro_local as gl
from gloro_local import LocalGloroNet
from gloro_local.bounds import (check_epsilon, compute_margins, random_start,
                                sound_global_norms)
from gloro_local.bounds.propagation import walk
from gloro_local.bounds.strategies.local_layerwise import FORWARD_SLACK
from gloro_local.evaluation import certify, pgd_l2
from gloro_local.layers import Dense, MaxMin, ReLU, ReLUTheta

RTOL = 1e-4


def margins(network, x, eps, bound, global_sigmas=None, rule=None, seed=0):
    """Certification margins of ``bound`` (sound global norms, converged capped local
    norms from seeded random starts) against the predicted class."""
    keras.utils.set_random_seed(seed)
    starts = [random_start(shape, len(x)) for _, shape in network.hidden_layers()]
    sigmas = sound_global_norms(network) if global_sigmas is None else global_sigmas
    return compute_margins(network, np.asarray(x, np.float32), check_epsilon(eps), sigmas,
                           bound, None, starts, rule or tight_rule(), capped=True)


def assert_not_looser(layerwise, local):
    """Bottom logit, Lipschitz product, per-layer norms and every box of ``layerwise``
    are within those of ``local`` (up to the power iteration's tolerance)."""
    def scale(v):
        return RTOL * (1.0 + np.abs(np.asarray(v)))

    for power in layerwise.power + local.power:
        assert power is None or np.all(power.converged)
    assert np.all(np.asarray(layerwise.bottom) <= np.asarray(local.bottom)
                  + scale(local.bottom))
    assert np.all(np.asarray(layerwise.lipschitz)
                  <= np.asarray(local.lipschitz) * (1 + RTOL))
    for mine, theirs in zip(layerwise.sigmas, local.sigmas):
        assert np.all(np.asarray(mine) <= np.asarray(theirs) * (1 + RTOL))
    for mine, theirs in zip(layerwise.propagation.activations,
                            local.propagation.activations):
        assert np.all(np.asarray(mine.lo) >= np.asarray(theirs.lo) - scale(theirs.lo))
        assert np.all(np.asarray(mine.hi) <= np.asarray(theirs.hi) + scale(theirs.hi))


# (a) never looser than 'local' ---------------------------------------------------------

def test_worked_example():
    """Masked norms 1 and 1 (global 3 and 3): the ball entering layer 2 has radius
    0.1 * 1 instead of 0.1 * 3, the penultimate one 0.1 instead of 0.9; the Lipschitz
    product stays 1 (against 9 globally) and the bottom logit is that of 'local'."""
    _, network = example()
    local = margins(network, X, 0.1, "local", [3.0, 3.0])
    layerwise = margins(network, X, 0.1, "local_layerwise", [3.0, 3.0])
    assert_not_looser(layerwise, local)
    np.testing.assert_allclose(layerwise.lipschitz, [1.0], rtol=1e-5)
    np.testing.assert_allclose(local.global_lipschitz, [9.0], rtol=1e-6)
    # certification forwards each masked norm with the slack FORWARD_SLACK
    np.testing.assert_allclose(layerwise.propagation.penultimate.radius,
                               [0.1 * (1 + FORWARD_SLACK) ** 2], rtol=1e-5)
    np.testing.assert_allclose(local.propagation.penultimate.radius, [0.9], rtol=1e-6)
    np.testing.assert_allclose(layerwise.bottom, local.bottom, rtol=1e-5)
    assert [float(s[0]) for s in layerwise.sigmas] == pytest.approx([1.0, 1.0], rel=1e-5)


def random_network(kind, seed, width=12, depth=3, inputs=4):
    keras.utils.set_random_seed(seed)
    activation = {"relu": ReLU, "theta": ReLUTheta, "maxmin": MaxMin}[kind]
    layers = []
    for _ in range(depth):
        layers += [Dense(width, bias_initializer=keras.initializers.RandomNormal(
            stddev=0.5)), activation()]
    f = keras.Sequential([keras.Input((inputs,))] + layers + [Dense(3)])
    rng = np.random.default_rng(seed)
    for layer in f.layers:
        if isinstance(layer, ReLUTheta):
            layer.theta.assign(rng.uniform(0.05, 1.0, layer.theta.shape))
    return f, gl.bounds.SeamNetwork(f.layers, (inputs,))


@pytest.mark.parametrize("kind", ["relu", "theta", "maxmin"])
@pytest.mark.parametrize("seed", [0, 1])
def test_random_networks_never_looser(kind, seed):
    f, network = random_network(kind, seed)
    x = np.random.default_rng(seed + 10).standard_normal((16, 4)).astype(np.float32)
    for eps in (0.05, 0.3):
        local = margins(network, x, eps, "local")
        layerwise = margins(network, x, eps, "local_layerwise")
        assert_not_looser(layerwise, local)


# (b) equal without masks, strictly tighter with a constructed one ------------------------

def test_equal_to_local_when_nothing_is_masked():
    """Large positive biases and a tiny eps: every ReLU is active over the ball, nothing is
    masked, every layer uses its global norm in both bounds, and so do the radii."""
    keras.utils.set_random_seed(3)
    f = keras.Sequential([keras.Input((5,)), Dense(8, bias_initializer="ones"), ReLU(),
                          Dense(8), ReLU(), Dense(3)])
    f.layers[0].bias.assign(np.full(8, 50.0, np.float32))
    f.layers[2].kernel.assign(np.abs(f.layers[2].kernel.numpy()))
    f.layers[2].bias.assign(np.full(8, 50.0, np.float32))
    network = gl.bounds.SeamNetwork(f.layers, (5,))
    x = np.random.default_rng(3).uniform(-1, 1, (6, 5)).astype(np.float32)
    local = margins(network, x, 1e-3, "local")
    layerwise = margins(network, x, 1e-3, "local_layerwise")
    for activation in local.propagation.activations:
        assert np.all(np.asarray(activation.varying) == 1.0)
    np.testing.assert_allclose(layerwise.lipschitz, local.lipschitz, rtol=1e-6)
    np.testing.assert_allclose(layerwise.lipschitz, local.global_lipschitz, rtol=1e-6)
    np.testing.assert_allclose(layerwise.bottom, local.bottom, rtol=1e-6)
    np.testing.assert_allclose(layerwise.propagation.penultimate.radius,
                               local.propagation.penultimate.radius, rtol=1e-6)
    for mine, theirs in zip(layerwise.propagation.activations,
                            local.propagation.activations):
        np.testing.assert_allclose(mine.lo, theirs.lo, rtol=1e-6)
        np.testing.assert_allclose(mine.hi, theirs.hi, rtol=1e-6)


def masked_network():
    """x in R^4 at 0, eps = 0.1. Layer 1: neurons 0..3 pass x_i + 1 (active ReLUs), neuron
    4 is 5 * sum(x) - 100 (dead), so ||W1|| = sqrt(101) but the masked norm is 1.
    Layer 2: neuron A = sum of neurons 0..3 - 4.3 (clean value -0.3), neuron B = neuron 0.
    The box gives A +- 0.4; the ball gives A +- r_1 * 2 with r_1 = 0.1 * sqrt(101)
    ('local': A in [-0.7, 0.1], varying) or r_1 = 0.1 * 1 (layer-wise: A in [-0.5, -0.1],
    dead). So layer 2's masked norm drops from ||[[1,1,1,1],[1,0,0,0]]|| ~ 2.07 to 1."""
    f = keras.Sequential([keras.Input((4,)), Dense(5), ReLU(), Dense(2), ReLU(), Dense(2)])
    first = np.zeros((4, 5), np.float32)
    first[:, :4] = np.eye(4)
    first[:, 4] = 5.0
    f.layers[0].kernel.assign(first)
    f.layers[0].bias.assign(np.array([1, 1, 1, 1, -100], np.float32))
    second = np.zeros((5, 2), np.float32)
    second[:4, 0] = 1.0
    second[0, 1] = 1.0
    f.layers[2].kernel.assign(second)
    f.layers[2].bias.assign(np.array([-4.3, 0.0], np.float32))
    f.layers[4].kernel.assign(np.array([[1.0, -1.0], [-1.0, 1.0]], np.float32))
    f.layers[4].bias.assign(np.array([0.0, 0.0], np.float32))
    return f, gl.bounds.SeamNetwork(f.layers, (4,))


def test_strictly_tighter_when_a_mask_deletes_neurons():
    _, network = masked_network()
    x = np.zeros((1, 4), np.float32)
    local = margins(network, x, 0.1, "local")
    layerwise = margins(network, x, 0.1, "local_layerwise")
    assert_not_looser(layerwise, local)
    np.testing.assert_allclose(local.propagation.activations[1].lo, [[-0.7, 0.9]],
                               atol=1e-5)
    np.testing.assert_allclose(layerwise.propagation.activations[1].hi,
                               [[-0.3 + 0.2 * (1 + FORWARD_SLACK), 1.1]], atol=1e-5)
    np.testing.assert_array_equal(local.propagation.activations[1].varying, [[1.0, 1.0]])
    np.testing.assert_array_equal(layerwise.propagation.activations[1].varying,
                                  [[0.0, 1.0]])
    expected = np.sqrt((5 + np.sqrt(13)) / 2)
    np.testing.assert_allclose(local.sigmas[1], [expected], rtol=1e-4)
    np.testing.assert_allclose(layerwise.sigmas[1], [1.0], rtol=1e-4)
    np.testing.assert_allclose(layerwise.lipschitz, [1.0], rtol=1e-4)
    assert float(layerwise.bottom[0]) < float(local.bottom[0]) - 1e-3


def test_a_walk_without_context_is_refused():
    _, network = example()
    with pytest.raises(ValueError, match="BoundContext"):
        walk(network, "local_layerwise", X, check_epsilon(0.1), [3.0, 3.0])


def test_bad_radius_is_refused():
    f, _ = masked_network()
    model = LocalGloroNet(f, epsilon=0.1)
    with pytest.raises(ValueError, match="radius must be one of"):
        certify(model, np.zeros((1, 4), np.float32), radius="local")
    with pytest.raises(ValueError, match="radius must be one of"):
        model.lipschitz_bounds(np.zeros((1, 4), np.float32), radius="both")


# (c) soundness by exhaustion on 2-D inputs ------------------------------------------------

def trained_sectors(kind):
    """A LocalGloroNet trained with the layer-wise bound on the three sectors."""
    keras.utils.set_random_seed(7)
    activation = {"relu": ReLU, "theta": ReLUTheta, "maxmin": MaxMin}[kind]
    f = keras.Sequential([keras.Input((2,)), Dense(16), activation(), Dense(16),
                          activation(), Dense(3)])
    model = LocalGloroNet(f, epsilon=0.1, bound="local_layerwise")
    model.compile(keras.optimizers.Adam(1e-2), loss="crossentropy")
    model.fit(*sectors(np.random.default_rng(7), 2000), batch_size=100, epochs=3,
              verbose=0)
    return f


CASES = {
    "random-relu": lambda: random_network("relu", 4, width=16, depth=2, inputs=2)[0],
    "random-theta": lambda: random_network("theta", 5, width=16, depth=2, inputs=2)[0],
    "random-maxmin": lambda: random_network("maxmin", 6, width=16, depth=2, inputs=2)[0],
    "trained-relu": lambda: trained_sectors("relu"),
    "trained-theta": lambda: trained_sectors("theta"),
    "trained-maxmin": lambda: trained_sectors("maxmin"),
}


def check_dense_disc(name, ways):
    """Every point certified on the 2-D network ``CASES[name]`` by a bound of ``ways``
    ((bound, certify keyword arguments) pairs), through ``compute_margins`` or
    ``certify``, keeps its class on a dense grid of its eps-disc, and the worst-case
    logits bound every logit gap found there."""
    f = CASES[name]()
    network = gl.bounds.SeamNetwork(f.layers, (2,))
    x, _ = sectors(np.random.default_rng(8), 60)
    offsets = disc_offsets(0.1, grid=101, circle=400).astype(np.float32)
    certified = np.zeros(len(x), bool)
    for eps in (0.05, 0.1):
        for bound, options in ways:
            result = margins(network, x, eps, bound)
            logits = np.asarray(result.logits)
            prediction = logits.argmax(1)
            top = logits[np.arange(len(x)), prediction]
            by_bound = top > np.asarray(result.bottom)
            model = LocalGloroNet(f, epsilon=eps)
            by_certify = certify(model, x, epsilon=eps, seed=1, **options).certified
            for k in range(len(x)):
                z = f(x[k] + offsets * (eps / 0.1)).numpy()
                gap = np.delete(z, prediction[k], 1).max(1) - z[:, prediction[k]]
                assert gap.max() <= (float(result.bottom[k]) - top[k]
                                     + 1e-4 * (1 + abs(top[k])))
                if by_bound[k] or by_certify[k]:
                    assert np.all(z.argmax(1) == prediction[k]), (name, eps, bound, k)
            certified |= by_bound
    assert certified.sum() >= 5


@pytest.mark.parametrize("name", list(CASES))
def test_certified_points_survive_the_dense_disc(name):
    check_dense_disc(name, [("local_layerwise", dict(radius="layerwise"))])


# (d, e) MNIST: PGD with restarts, and a superset of certify() --------------------------

def test_mnist_certified_points_survive_pgd(layerwise_mnist_model):
    model, x, y = layerwise_mnist_model
    c = certify(model, x, y, radius="layerwise")
    assert c.certified.sum() >= 5
    rows = np.flatnonzero(c.certified)
    _, broken = pgd_l2(model.f, x[rows], c.prediction[rows], 0.3, steps=50, restarts=3,
                       clip=None)
    assert not np.any(broken.numpy())


def test_mnist_layerwise_certifies_a_superset(layerwise_mnist_model):
    model, x, y = layerwise_mnist_model
    paper = certify(model, x, y)
    layerwise = certify(model, x, y, radius="layerwise")
    assert np.all(layerwise.certified[paper.certified])
    both = (paper.bound == "local") & (layerwise.bound == "local")
    assert np.all(layerwise.margin[both] >= paper.margin[both] - 1e-4)
    full_paper = certify(model, x, y, cheap_stages=False)
    full_layerwise = certify(model, x, y, cheap_stages=False, radius="layerwise")
    decided = np.isfinite(full_paper.margin)
    assert decided.sum() >= 50 and np.all(np.isfinite(full_layerwise.margin[decided]))
    assert np.all(full_layerwise.margin[decided] >= full_paper.margin[decided] - 1e-4)
    assert np.all(full_layerwise.lipschitz[decided]
                  <= full_paper.lipschitz[decided] * (1 + RTOL))
    bounds = model.lipschitz_bounds(x, converge=True, radius="layerwise")
    paper_bounds = model.lipschitz_bounds(x, converge=True)
    assert np.all(bounds["local"] <= paper_bounds["local"] * (1 + RTOL))
    assert np.all(bounds["varying"] <= paper_bounds["varying"] + 1e-6)
    assert np.mean(bounds["local"] < paper_bounds["local"] * (1 - 1e-3)) > 0


def model_with_store(bound):
    """(model, store, data): a compiled dense 6-8-8-3 LocalGloroNet at eps 0.1 with
    ``bound``, a store for 32 samples attached, and an indexed dataset of 32 random
    samples in batches of 16."""
    x = np.random.default_rng(0).uniform(size=(32, 6)).astype(np.float32)
    y = np.arange(32) % 3
    f = keras.Sequential([keras.Input((6,)), Dense(8), ReLU(), Dense(8), ReLU(), Dense(3)])
    model = gl.LocalGloroNet(f, 0.1, bound=bound)
    model.compile("adam")
    store = model.attach_store(32)
    data = tf.data.Dataset.from_tensor_slices(((x, np.arange(32)), y)).batch(16)
    return model, store, data


def test_layerwise_training_uses_the_per_sample_store():
    """'local_layerwise' runs per-sample power iterations, so an attached store is read
    and written in training as for 'local'."""
    model, store, data = model_with_store("local_layerwise")
    model.fit(data, epochs=1, verbose=0)
    assert all(np.any(t.numpy() != 0) for t in store.tables if t is not None)
