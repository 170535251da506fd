"""Interval bound propagation: the library's box rule without the ball, enclosing every
point of the box, and the exact IBP margin over the penultimate box."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from gloro_local.bounds import SeamNetwork, propagate
from gloro_local.bounds.linf import ibp, ibp_margin_lower_bounds
from gloro_local.layers import (ActivationSeam, BoundState, ClippedMaxMin, Conv2D, Dense, Flatten,
                                LinearSeam, MaxMin, ReLU, ReLUTheta)
from test_soundness import bias, randomize_thresholds

HUGE, TOL = 1e6, 1e-5




NETWORKS = {  # name: (input shape, layers, eps)
    "dense-relu": ((5,), lambda: [Dense(12, **bias()), ReLU(), Dense(10, **bias()), ReLU(),
                                  Dense(3)], 0.2),
    "dense-all": ((5,), lambda: [Dense(8, **bias()), MaxMin(), Dense(8, **bias()),
                                 ClippedMaxMin(), Dense(8, **bias()), ReLUTheta(),
                                 keras.layers.Dense(6), keras.layers.ReLU(), Dense(3)], 0.2),
    "conv": ((6, 5, 2), lambda: [
        Conv2D(4, 3, strides=2, padding="same", **bias()), ReLUTheta(),
        Conv2D(6, 3, padding="valid", **bias()), MaxMin(), Flatten(), ReLU(),
        Dense(8, **bias()), ReLU(), Dense(3)], 0.1),
}
ONE_D = {  # networks on 1-D inputs, where the l2 ball at the input is the box
    "one-d-relu": lambda: [Dense(12, **bias()), ReLU(), Dense(10, **bias()), ReLU(), Dense(3)],
    "one-d-all": lambda: [Dense(8, **bias()), MaxMin(), Dense(8, **bias()), ClippedMaxMin(),
                          Dense(8, **bias()), ReLUTheta(), Dense(3)],
}


def build(input_shape, make_layers, batch=4, seed=0):
    rng = np.random.default_rng(seed)
    f = keras.Sequential([keras.Input(input_shape)] + make_layers())
    randomize_thresholds(f, rng)
    x = rng.standard_normal((batch,) + input_shape).astype(np.float32)
    return SeamNetwork(f.layers, input_shape), x, rng


def seam_walk(network, x, eps):
    """The library's own per-seam rules with a ball so large it never binds."""
    radius = tf.fill([x.shape[0]], HUGE)
    state = BoundState(x, x - eps, x + eps, radius)
    boxes = []
    for seam in network.seams[:-1]:
        if isinstance(seam, LinearSeam):
            state = seam.propagate(state, HUGE)
        else:
            if isinstance(seam, ActivationSeam):
                boxes.append((state.lo, state.hi))
            state = seam.propagate(state)
    return boxes, (state.lo, state.hi), state.centre


def assert_boxes_equal(got, want):
    for (lo, hi), (want_lo, want_hi) in zip(got, want):
        np.testing.assert_allclose(lo, want_lo, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(hi, want_hi, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", list(ONE_D))
def test_equals_propagate_without_the_ball(name):
    """On 1-D inputs the ball (x, eps) is the box, and with huge layer norms the ball never
    binds after it: ``propagate``'s boxes are IBP's."""
    network, x, _ = build((1,), ONE_D[name], batch=16)
    ours = ibp(network, x, 0.3)
    prop = propagate(network, x, tf.constant(0.3), [HUGE] * len(network.hidden))
    assert_boxes_equal(ours.pre_activation, [(a.lo, a.hi) for a in prop.activations])
    assert_boxes_equal([ours.penultimate], [(prop.penultimate.lo, prop.penultimate.hi)])
    np.testing.assert_allclose(ours.centre, prop.penultimate.centre, rtol=1e-6)


@pytest.mark.parametrize("name", list(NETWORKS))
def test_equals_the_seam_box_rules(name):
    """Every seam's own ``propagate`` with a ball that never binds gives IBP's boxes; the
    full ``propagate`` (which intersects with the l2 ball) gives boxes inside them."""
    input_shape, make_layers, eps = NETWORKS[name]
    network, x, _ = build(input_shape, make_layers)
    ours = ibp(network, x, eps)
    boxes, penultimate, centre = seam_walk(network, tf.constant(x), eps)
    assert_boxes_equal(ours.pre_activation + [ours.penultimate], boxes + [penultimate])
    np.testing.assert_allclose(ours.centre, centre, rtol=1e-6, atol=1e-6)
    prop = propagate(network, x, tf.constant(eps), [HUGE] * len(network.hidden))
    for (lo, hi), act in zip(ours.pre_activation, prop.activations):
        assert np.all(np.asarray(lo) <= np.asarray(act.lo) + TOL)
        assert np.all(np.asarray(act.hi) <= np.asarray(hi) + TOL)


def trace(network, x):
    """The inputs of every activation and of the logit layer."""
    seen = []
    for seam in network.seams[:-1]:
        if isinstance(seam, ActivationSeam):
            seen.append(x)
        x = seam.affine(x) if isinstance(seam, LinearSeam) else seam.call(x)
    return seen + [x]


def corners_and_uniform(rng, x, eps, count, low=-np.inf, high=np.inf):
    """count points of each box [x - eps, x + eps] intersected with [low, high]: random
    corners and uniform points, (B * count,) + shape."""
    lo, hi = np.maximum(x - eps, low), np.minimum(x + eps, high)
    t = rng.uniform(size=(count,) + x.shape)
    t[: count // 2] = np.round(t[: count // 2])
    points = lo + t * (hi - lo)
    return np.swapaxes(points, 0, 1).reshape((-1,) + x.shape[1:]).astype(np.float32)


@pytest.mark.parametrize("name", list(NETWORKS))
@pytest.mark.parametrize("clip", [None, (0.0, 1.0)])
def test_encloses_sampled_points(name, clip):
    """Every activation input and penultimate feature of points of the (clipped) box lies
    in its interval; with clip the boxes lie inside the unclipped ones."""
    input_shape, make_layers, eps = NETWORKS[name]
    network, x, rng = build(input_shape, make_layers)
    x = np.abs(x) / 3  # inside [0, 1] mostly, some above
    result = ibp(network, x, eps, clip=clip)
    low, high = clip if clip else (-np.inf, np.inf)
    count = 500
    points = corners_and_uniform(rng, x, eps, count, low, high)
    for values, (lo, hi) in zip(trace(network, points),
                                result.pre_activation + [result.penultimate]):
        values = np.asarray(values).reshape((x.shape[0], count) + tuple(lo.shape[1:]))
        assert np.all(values >= np.asarray(lo)[:, None] - TOL)
        assert np.all(values <= np.asarray(hi)[:, None] + TOL)
    if clip:
        wide = ibp(network, x, eps)
        for (lo, hi), (wide_lo, wide_hi) in zip(result.pre_activation, wide.pre_activation):
            assert np.all(np.asarray(lo) >= np.asarray(wide_lo) - TOL)
            assert np.all(np.asarray(hi) <= np.asarray(wide_hi) + TOL)


def test_per_sample_epsilon_and_dtype():
    """One epsilon per sample gives each sample's own pass; float64 inputs run in float64."""
    input_shape, make_layers, _ = NETWORKS["conv"]
    network, x, _ = build(input_shape, make_layers)
    eps = np.array([0.0, 0.05, 0.1, 0.3], np.float32)
    together = ibp(network, x, eps)
    for b in range(len(eps)):
        alone = ibp(network, x[b:b + 1], float(eps[b]))
        assert_boxes_equal([(lo[b:b + 1], hi[b:b + 1]) for lo, hi in together.pre_activation],
                           alone.pre_activation)
    lo, hi = together.penultimate
    np.testing.assert_allclose(lo[0], hi[0], atol=1e-6)
    assert ibp(network, x.astype(np.float64), 0.1).penultimate[0].dtype == tf.float64
    with pytest.raises(ValueError, match="Received: epsilon of shape"):
        ibp(network, x, np.ones((4, 1)))
    with pytest.raises(ValueError, match="Received: clip="):
        ibp(network, x, 0.1, clip=(1.0, 0.0))


@pytest.mark.parametrize("name", list(NETWORKS))
def test_ibp_margin_is_exact_over_the_penultimate_box(name):
    """m_i = (w_j - w_i).mid - |w_j - w_i|.rad + b_j - b_i (numpy), attained at a corner of
    the penultimate box, m_j = 0, and below z_j - z_i at sampled inputs of the box."""
    input_shape, make_layers, eps = NETWORKS[name]
    network, x, rng = build(input_shape, make_layers)
    reference = rng.integers(0, 3, x.shape[0])
    result = ibp(network, x, eps)
    margins = np.asarray(ibp_margin_lower_bounds(network, result, reference))
    lo, hi = (np.asarray(t, np.float64) for t in result.penultimate)
    kernel = np.asarray(network.layers[-1].kernel, np.float64)
    bias_ = np.asarray(network.layers[-1].bias, np.float64)
    for b, j in enumerate(reference):
        g = kernel[:, j][:, None] - kernel  # (d, K): w_j - w_i
        mid, rad = (lo[b] + hi[b]) / 2, (hi[b] - lo[b]) / 2
        want = mid @ g - rad @ np.abs(g) + bias_[j] - bias_
        np.testing.assert_allclose(margins[b], want, rtol=1e-5, atol=1e-5)
        assert margins[b, j] == 0
        for i in range(3):
            corner = np.where(g[:, i] > 0, lo[b], hi[b])
            np.testing.assert_allclose(corner @ g[:, i] + bias_[j] - bias_[i], want[i],
                                       rtol=1e-5, atol=1e-5)
    points = corners_and_uniform(rng, x, eps, 500)
    logits = np.asarray(network.logits(tf.constant(points))).reshape(x.shape[0], 500, 3)
    own = np.take_along_axis(logits, reference[:, None, None], axis=2)
    assert np.all(own - logits >= margins[:, None, :] - TOL)
