"""Linear relaxations of every activation enclose it over its box."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from gloro_local.bounds.linf import (activation_relaxation, relu_relaxation,
                                     relu_theta_relaxation)
from gloro_local.layers import ClippedMaxMin, MaxMin, ReLU, ReLUTheta, as_seam

SHAPE, SAMPLES, TOL = (64, 6), 200, 1e-5


def random_boxes(rng):
    """Boxes of every kind: dead, active, unstable, wide, narrow and empty (lo == hi)."""
    centre = rng.normal(0.0, 1.0, SHAPE)
    width = rng.choice([0.0, 0.05, 0.5, 2.0, 4.0], SHAPE) * rng.uniform(size=SHAPE)
    return (tf.constant(centre - width, tf.float32), tf.constant(centre + width, tf.float32))


def sample_box(rng, lo, hi):
    """SAMPLES points of [lo, hi] per neuron, with both corners: (SAMPLES + 2,) + SHAPE."""
    lo, hi = np.asarray(lo), np.asarray(hi)
    t = np.concatenate([[np.zeros(SHAPE), np.ones(SHAPE)], rng.uniform(size=(SAMPLES,) + SHAPE)])
    return (lo + t * (hi - lo)).astype(np.float32)


def activations(rng):
    """One built layer of every activation type, thresholds randomised (some theta = 0,
    some ClippedMaxMin upper < lower)."""
    theta = ReLUTheta()
    theta.build((None,) + SHAPE[1:])
    theta.theta.assign(rng.choice([0.0, 0.1, 1.0, 3.0], SHAPE[1:]))
    clipped = ClippedMaxMin()
    clipped.build((None,) + SHAPE[1:])
    clipped.upper.assign(rng.uniform(-0.5, 1.5, clipped.upper.shape))
    clipped.lower.assign(rng.uniform(-1.5, 0.5, clipped.lower.shape))
    return {"relu": ReLU(), "keras-relu": as_seam(keras.layers.ReLU()),
            "keras-activation-relu": as_seam(keras.layers.Activation("relu")),
            "relu-theta": theta, "maxmin": MaxMin(), "clipped-maxmin": clipped}


@pytest.mark.parametrize("name", ["relu", "keras-relu", "keras-activation-relu", "relu-theta",
                                  "maxmin", "clipped-maxmin"])
@pytest.mark.parametrize("slopes", ["adaptive", "random", "out-of-range"])
def test_linear_bounds_hold(name, slopes):
    """lower(z) <= act(z) <= upper(z) at sampled points of random boxes, for the adaptive
    lower slopes, random ones in [0, 1] and ones outside [0, 1] (clipped)."""
    rng = np.random.default_rng(0)
    seam = activations(rng)[name]
    for _ in range(3):
        lo, hi = random_boxes(rng)
        lower_slope = {"adaptive": None,
                       "random": tf.constant(rng.uniform(size=SHAPE), tf.float32),
                       "out-of-range": tf.constant(rng.uniform(-2, 3, SHAPE), tf.float32)}[slopes]
        relaxation = activation_relaxation(seam, lo, hi, lower_slope)
        a_lower, b_lower, a_upper, b_upper = (np.asarray(t) for t in relaxation)
        z = sample_box(rng, lo, hi)
        y = np.asarray(seam.call(tf.constant(z.reshape((-1,) + SHAPE[1:])))).reshape(z.shape)
        assert np.all(a_lower * z + b_lower <= y + TOL)
        assert np.all(y <= a_upper * z + b_upper + TOL)
        if slopes != "adaptive" and name in ("maxmin", "clipped-maxmin"):
            assert np.all(a_lower == 0) and np.all(a_upper == 0)


def test_relu_relaxation_formulas():
    """Unstable: upper chord through (lo, 0) and (hi, hi), lower a z with a adaptive or the
    given slope clipped; active: identity; dead: zero."""
    lo = tf.constant([[-1.0, -3.0, -1.0, 0.5, -2.0, 0.0, -1.0]])
    hi = tf.constant([[3.0, 1.0, 1.0, 2.0, -0.5, 0.0, 0.0]])
    r = relu_relaxation(lo, hi)
    np.testing.assert_allclose(r.upper_slope, [[0.75, 0.25, 0.5, 1, 0, 0, 0]], rtol=1e-6)
    np.testing.assert_allclose(r.upper_intercept, [[0.75, 0.75, 0.5, 0, 0, 0, 0]], rtol=1e-6)
    np.testing.assert_array_equal(r.lower_slope, [[1, 0, 1, 1, 0, 1, 0]])
    np.testing.assert_array_equal(r.lower_intercept, np.zeros((1, 7)))
    given = relu_relaxation(lo, hi, tf.constant([[0.3, 1.7, -0.2, 0.3, 0.3, 0.3, 0.3]]))
    np.testing.assert_allclose(given.lower_slope, [[0.3, 1.0, 0.0, 1, 0, 1, 0]], rtol=1e-6)
    np.testing.assert_array_equal(given.upper_slope, r.upper_slope)


def test_relu_upper_line_is_tight():
    """The upper line of an unstable ReLU touches it at both ends of the box (the
    smallest upper line over the box)."""
    rng = np.random.default_rng(1)
    lo = tf.constant(-rng.uniform(0.1, 2, (100,)), tf.float32)
    hi = tf.constant(rng.uniform(0.1, 2, (100,)), tf.float32)
    r = relu_relaxation(lo, hi)
    np.testing.assert_allclose(r.upper_slope * lo + r.upper_intercept, 0.0, atol=1e-6)
    np.testing.assert_allclose(r.upper_slope * hi + r.upper_intercept, hi, rtol=1e-6)


def test_relu_theta_is_relu_below_its_threshold():
    """With theta >= hi the ReLUTheta relaxation is the ReLU's, for every slope choice."""
    rng = np.random.default_rng(2)
    lo, hi = random_boxes(rng)
    theta = tf.reduce_max(hi, axis=0) + 0.1
    for lower_slope in (None, tf.constant(rng.uniform(size=SHAPE), tf.float32)):
        ours = relu_theta_relaxation(lo, hi, theta, lower_slope)
        for got, want in zip(ours, relu_relaxation(lo, hi, lower_slope)):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_relu_theta_is_exact_where_affine():
    """Dead, saturated (lo >= theta) and identity (0 <= lo, hi <= theta) neurons get
    lower line == upper line == the function; a concave box (0 <= lo < theta < hi) gets
    the chord as its lower line."""
    lo = tf.constant([-2.0, 1.5, 0.2, 0.5, 0.0])
    hi = tf.constant([-0.5, 3.0, 0.8, 2.0, 1.0])
    r = relu_theta_relaxation(lo, hi, tf.constant(1.0), tf.fill([5], 0.5))
    np.testing.assert_allclose(r.lower_slope[:3], [0, 0, 1], atol=1e-7)
    np.testing.assert_allclose(r.lower_intercept[:3], [0, 1, 0], atol=1e-6)
    for a, b in ((r.lower_slope, r.upper_slope), (r.lower_intercept, r.upper_intercept)):
        np.testing.assert_allclose(a[:3], b[:3], atol=1e-6)
    chord = (1.0 - 0.5) / (2.0 - 0.5)
    np.testing.assert_allclose([r.lower_slope[3], r.lower_intercept[3]],
                               [chord, 0.5 - chord * 0.5], rtol=1e-5)
    np.testing.assert_allclose([r.lower_slope[4], r.upper_slope[4]], [1.0, 1.0], rtol=1e-6)


def test_relu_theta_relaxation_is_differentiable_in_theta():
    """Training moves theta through the bound: the intercepts have a gradient in theta."""
    theta = tf.Variable([0.5, 0.5])
    with tf.GradientTape() as tape:
        r = relu_theta_relaxation(tf.constant([-1.0, 0.2]), tf.constant([2.0, 1.0]), theta)
        total = tf.reduce_sum(r.upper_intercept + r.lower_intercept)
    assert np.all(np.abs(tape.gradient(total, theta)) > 0)
