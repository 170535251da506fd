"""Certificates hold for any stack of supported layers in any order.

Random networks are built from Dense layers and activations stacked in random order
(ReLU, ReLUTheta, MaxMin, ClippedMaxMin; one or two in a row, sometimes none, sometimes
before the first Dense layer), with random weights and thresholds. Each is certified with
the bound alone (``attack_steps=0, cheap_stages=False``), and:

* 2-D inputs: every certified point's eps-disc is searched on a dense lattice plus its
  circle; no point of it may change the class, and, block by block (a hidden linear layer
  and the activations and reshapes after it), no point may move a block's output further
  than sigma_l(x) times the distance its input moved: the claim each local norm makes.
* small images with Conv2D and Flatten: PGD with restarts attacks every certified point
  and the distance the penultimate features move; sampled points check every block.

Both checks run for the paper's local bound and for the tightest one
(``radius='layerwise', boxes='relaxation'``: layer-wise radii and CROWN relaxation boxes).
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import disc_offsets, sample_ball
from gloro_local import LocalGloroNet
from gloro_local.attacks import pgd_l2
from gloro_local.layers import ClippedMaxMin, Conv2D, Dense, Flatten, MaxMin, ReLU, ReLUTheta

ACTIVATIONS = (ReLU, ReLUTheta, MaxMin, ClippedMaxMin)
DISC_NETWORKS, IMAGE_NETWORKS, POINTS = 16, 6, 24
WAYS = {"paper": dict(radius="global", boxes="interval"),
        "tightest": dict(radius="layerwise", boxes="relaxation")}


def random_activation(rng):
    kind = ACTIVATIONS[rng.integers(len(ACTIVATIONS))]
    return kind()


def random_activations(rng):
    """Zero, one or two activations in a row."""
    return [random_activation(rng) for _ in range(rng.choice([0, 1, 1, 2, 2]))]


def randomize(f, rng, scale):
    """Random kernels (normal / sqrt(fan-in) * scale), biases and thresholds: some
    thresholds tiny, so that saturated (constant) neurons are common."""
    for layer in f.layers:
        if isinstance(layer, (Dense, Conv2D)):
            fan_in = int(np.prod(layer.kernel.shape[:-1]))
            layer.kernel.assign(rng.standard_normal(layer.kernel.shape) * scale
                                / np.sqrt(fan_in))
            layer.bias.assign(rng.normal(0.0, 0.5, layer.bias.shape))
        if isinstance(layer, ReLUTheta):
            layer.theta.assign(rng.uniform(0.05, 1.5, layer.theta.shape))
        if isinstance(layer, ClippedMaxMin):
            layer.upper.assign(rng.uniform(-0.3, 1.2, layer.upper.shape))
            layer.lower.assign(rng.uniform(-1.2, 0.3, layer.lower.shape))


def disc_network(seed):
    rng = np.random.default_rng(seed)
    layers = [keras.Input((2,))] + (random_activations(rng) if rng.uniform() < 0.3 else [])
    for _ in range(rng.integers(2, 4)):
        layers += [Dense(int(rng.choice([4, 6, 8])))] + random_activations(rng)
    f = keras.Sequential(layers + [Dense(3)])
    randomize(f, rng, scale=2.0)
    return f


def image_network(seed):
    rng = np.random.default_rng(seed)
    f = keras.Sequential(
        [keras.Input((6, 6, 2)), Conv2D(4, 3, padding="same")] + random_activations(rng)
        + [Conv2D(6, 3, strides=2, padding=str(rng.choice(["same", "valid"])))]
        + random_activations(rng) + [Flatten(), Dense(8)] + random_activations(rng)
        + [Dense(3)])
    randomize(f, rng, scale=1.5)
    return f


def penultimate(f):
    return keras.Sequential(f.layers[:-1])


def block_inputs(f, x):
    """The inputs of every hidden linear layer and of the logit layer, for inputs x."""
    inputs = []
    for layer in f.layers:
        if isinstance(layer, (Dense, Conv2D)):
            inputs.append(np.asarray(x).reshape(len(x), -1))
        x = layer(x)
    return inputs


def check_blocks(f, x, points, sigmas):
    """||z_l+1(p) - z_l+1(x)|| <= sigma_l(x) ||z_l(p) - z_l(x)|| for every point p of x's
    ball and every hidden layer l (z_l: the input of linear layer l)."""
    clean, moved = block_inputs(f, x[None]), block_inputs(f, points)
    for layer, sigma in enumerate(sigmas):
        before = np.linalg.norm(moved[layer] - clean[layer], axis=1)
        after = np.linalg.norm(moved[layer + 1] - clean[layer + 1], axis=1)
        excess = after - (sigma * (1 + 1e-4) * before + 1e-5)
        assert excess.max() <= 0.0, (layer, excess.max(), sigma, f.layers)


def has_elementwise_then_pairwise(f):
    kinds = [type(layer) for layer in f.layers]
    return any(a in (ReLU, ReLUTheta) and b in (MaxMin, ClippedMaxMin)
               for a, b in zip(kinds, kinds[1:]))


def certified_and_bounds(f, x, eps, way="paper"):
    model = LocalGloroNet(f, epsilon=eps)
    certificate = model.certify(x, attack_steps=0, cheap_stages=False, **WAYS[way])
    bounds = model.lipschitz_bounds(x, converge=True, **WAYS[way])
    return certificate, bounds


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("seed", range(DISC_NETWORKS))
def test_two_dimensional_random_stacks(seed, way):
    f = disc_network(seed)
    x = np.random.default_rng(100 + seed).uniform(-1.0, 1.0, (POINTS, 2)).astype(np.float32)
    eps = 0.15
    certificate, bounds = certified_and_bounds(f, x, eps, way)
    offsets = disc_offsets(eps, grid=160, circle=1500).astype(np.float32)
    for k in range(POINTS):
        points = x[k] + offsets
        check_blocks(f, x[k], points, bounds["sigmas"][k])
        if certificate.certified[k]:
            classes = np.argmax(f(points).numpy(), 1)
            assert np.all(classes == certificate.prediction[k]), (k, f.layers)


def test_two_dimensional_stacks_certify_something():
    """Meaningful: across the random networks, some points are certified and some are
    not, and the local bound beats the global one somewhere."""
    certified, tighter = [], []
    for seed in range(DISC_NETWORKS):
        f = disc_network(seed)
        x = np.random.default_rng(100 + seed).uniform(-1, 1, (POINTS, 2)).astype(np.float32)
        certificate, bounds = certified_and_bounds(f, x, 0.15)
        certified.append(certificate.certified.mean())
        tighter.append(np.mean(bounds["local"] < bounds["global"] * 0.99))
    assert 0.05 < np.mean(certified) < 0.95
    assert np.mean(tighter) > 0.1
    assert sum(has_elementwise_then_pairwise(disc_network(s))
               for s in range(DISC_NETWORKS)) >= 3


def attack_features(features, x, eps, rng, restarts=3, steps=60):
    """max over PGD restarts of ||h(x + delta) - h(x)|| with ||delta|| <= eps."""
    x = tf.constant(x)
    clean = features(x)
    best = np.zeros(len(x))
    for _ in range(restarts):
        delta = tf.constant(sample_ball(rng, len(x), x.shape[1:], eps))
        for step in range(steps):
            with tf.GradientTape() as tape:
                tape.watch(delta)
                distance = tf.reduce_sum(tf.square(features(x + delta) - clean), axis=1)
                total = tf.reduce_sum(distance)
            grad = tape.gradient(total, delta)
            norm = tf.sqrt(tf.reduce_sum(tf.square(grad), axis=[1, 2, 3], keepdims=True))
            delta = delta + eps * 0.3 * 0.95 ** step * grad / tf.maximum(norm, 1e-12)
            length = tf.sqrt(tf.reduce_sum(tf.square(delta), axis=[1, 2, 3], keepdims=True))
            delta = delta * tf.minimum(1.0, eps / tf.maximum(length, 1e-12))
            best = np.maximum(best, np.sqrt(distance.numpy()))
    return best


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("seed", range(IMAGE_NETWORKS))
def test_conv_random_stacks_survive_pgd(seed, way):
    f = image_network(seed)
    rng = np.random.default_rng(200 + seed)
    x = rng.uniform(0.0, 1.0, (POINTS, 6, 6, 2)).astype(np.float32)
    eps = 0.1
    certificate, bounds = certified_and_bounds(f, x, eps, way)
    moved = attack_features(penultimate(f), x, eps, rng)
    assert np.all(moved <= eps * bounds["local"] * (1 + 1e-4) + 1e-6)
    for k in range(POINTS):
        points = x[k] + sample_ball(rng, 500, x.shape[1:], eps)
        check_blocks(f, x[k], points, bounds["sigmas"][k])
    if certificate.certified.any():
        rows = np.flatnonzero(certificate.certified)
        for restart in range(3):
            _, broken = pgd_l2(f, x[rows], certificate.prediction[rows], eps, steps=50,
                               clip=None, seed=restart)
            assert not np.any(broken.numpy()), rows[broken.numpy()]
