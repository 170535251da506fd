"""The input box x +- eps through the first linear layer: c' = A x + b, rad' = eps |A| 1.

``BoundState.half_width`` marks a box that is exactly centre +- w in every coordinate
(the input box, kept through reshapes); a linear layer then takes the box's image from
the clean image and one batch-1 pass of |A| over ones (``uniform_box_radius``) instead
of two batch-sized convolutions, and intersects it with the ball as
c' -+ min(w |A| 1, r_max ||A_i||), a batch-1 half-width (r_max the largest radius of
the batch). Checked: on Conv2D layers of several strides / paddings and on Dense
layers, the image equals the general midpoint / half-width image
(including the borders, where |A| 1 has fewer terms), its half-width is w |A| 1
computed from |A| separately, it encloses sampled corners and interior points of the
box, and ``propagate`` gives the general box-and-ball bounds; the walk takes it at the
first linear layer only (also behind a Flatten), never after an activation. (The
l-infinity 'ibp' strategy keeps the general image, bit-equal to ``bounds.linf.ibp``.)
"""
import numpy as np
import pytest
import tensorflow as tf

from test_box_layers import network_of, record_box_images
from gloro_local.bounds import check_epsilon, sound_global_norms
from gloro_local.bounds.propagation import walk
from gloro_local.layers import BoundState, Conv2D, Dense, Flatten

LAYERS = [
    ("conv same s1", lambda: Conv2D(3, 3, padding="same"), (7, 7, 2)),
    ("conv same s2", lambda: Conv2D(4, 4, strides=2, padding="same"), (8, 8, 3)),
    ("conv valid s2", lambda: Conv2D(2, 3, strides=2, padding="valid"), (9, 9, 1)),
    ("dense", lambda: Dense(5), (6,)),
]


def built(make, shape, seed):
    layer = make()
    layer.build((None,) + shape)
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        weight.assign(rng.standard_normal(weight.shape).astype("float32"))
    return layer


def input_box(x, w, radius=None):
    radius = tf.fill([x.shape[0]], w) if radius is None else tf.constant(radius, tf.float32)
    return BoundState(x, x - w, x + w, radius, tf.constant(w))


@pytest.mark.parametrize("name,make,shape", LAYERS, ids=[layer[0] for layer in LAYERS])
def test_the_uniform_image_equals_the_general_one_and_encloses_the_box(name, make, shape):
    layer = built(make, shape, 0)
    rng = np.random.default_rng(1)
    x = tf.constant(rng.standard_normal((3,) + shape).astype("float32"))
    state = input_box(x, 0.25)
    centre = layer.affine(x)
    rad = layer.uniform_box_radius(state.half_width, state.lo)
    lo, hi = (centre - rad).numpy(), (centre + rad).numpy()
    general_lo, general_hi = (t.numpy() for t in layer.box(state.lo, state.hi))
    np.testing.assert_allclose(lo, general_lo, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(hi, general_hi, rtol=1e-5, atol=1e-5)
    # float64 oracle: every point of the box maps inside, and the bounds are attained
    kernel = np.asarray(layer.kernel, np.float64)
    abs_layer = built(make, shape, 0)
    abs_layer.kernel.assign(np.abs(kernel).astype("float32"))
    abs_layer.bias.assign(np.zeros(abs_layer.bias.shape, "float32"))
    width = abs_layer.affine(tf.ones((1,) + shape)).numpy()
    np.testing.assert_allclose(hi - centre.numpy(), 0.25 * np.broadcast_to(width, hi.shape),
                               rtol=1e-5, atol=1e-6)
    offsets = rng.uniform(-0.25, 0.25, (64,) + x.shape)
    offsets[:8] = np.sign(offsets[:8]) * 0.25  # corners
    slack = 1e-4 * (1.0 + np.abs(hi) + np.abs(lo))
    for offset in offsets:
        image = layer.affine(tf.constant((x.numpy() + offset).astype("float32"))).numpy()
        assert np.all(image >= lo - slack) and np.all(image <= hi + slack)
    # box and ball intersected: the same as through the general image and the
    # per-sample ball, for a ball of radius w (the input's: the box then decides only at
    # borders, where |A| 1 has fewer terms) and one of 10 w (the box decides everywhere)
    for radius in (0.25, 2.5):
        fast = layer.propagate(input_box(x, 0.25, [radius] * 3), 1.0)
        general = layer.propagate(input_box(x, 0.25, [radius] * 3)._replace(half_width=None),
                                  1.0)
        for got, want in ((fast.lo, general.lo), (fast.hi, general.hi)):
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
    # samples with different radii: every sample's bounds still enclose its own
    # box-and-ball image (the batch-1 half-width takes the largest radius)
    radii = [0.05, 0.25, 2.5]
    fast = layer.propagate(input_box(x, 0.25, radii), 1.0)
    general = layer.propagate(input_box(x, 0.25, radii)._replace(half_width=None), 1.0)
    assert np.all(fast.lo.numpy() <= general.lo.numpy() + 1e-5)
    assert np.all(fast.hi.numpy() >= general.hi.numpy() - 1e-5)


def test_the_box_decides_where_a_border_row_is_short():
    """A 3x3 'same' kernel whose weight sits in its first row and column: at the
    top-left output only the taps (1..2, 1..2) meet the image, so the box half-width
    w * 0.1 there beats the ball's w ||K|| = w * 3.0; elsewhere the ball decides."""
    layer = Conv2D(1, 3, padding="same", use_bias=False)
    layer.build((None, 5, 5, 1))
    kernel = np.zeros((3, 3, 1, 1), "float32")
    kernel[0, 0], kernel[1, 1] = 3.0, 0.1
    layer.kernel.assign(kernel)
    x = tf.constant(np.random.default_rng(0).standard_normal((2, 5, 5, 1)), tf.float32)
    fast = layer.propagate(input_box(x, 0.5), 1.0)
    general = layer.propagate(input_box(x, 0.5)._replace(half_width=None), 1.0)
    half = (fast.hi - fast.lo).numpy() / 2.0
    np.testing.assert_allclose(half[:, 0, 0, 0], 0.5 * 0.1, rtol=1e-6)
    np.testing.assert_allclose(half[:, 2, 2, 0], 0.5 * np.sqrt(9.01), rtol=1e-6)
    for got, want in ((fast.lo, general.lo), (fast.hi, general.hi)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-6)


def test_only_the_input_box_is_uniform():
    layer = built(lambda: Conv2D(2, 3, padding="same"), (5, 5, 1), 0)
    x = tf.zeros((2, 5, 5, 1))
    after_linear = layer.propagate(input_box(x, 0.1), 1.0)
    assert after_linear.half_width is None
    flatten = Flatten()
    flatten.build((None, 5, 5, 1))
    reshaped = flatten.propagate(input_box(x, 0.1))
    assert float(reshaped.half_width) == np.float32(0.1)


@pytest.mark.parametrize("kind", ["disc", "image"])
def test_the_walk_takes_the_uniform_image_at_the_first_linear_layer_only(kind, monkeypatch):
    network = network_of(kind, 0)
    calls = record_box_images(monkeypatch)
    x = np.zeros((2,) + network.input_shape, "float32")
    walk(network, "local", x, check_epsilon(0.1), sound_global_norms(network))
    uniform = [taken for _, taken in calls]
    assert uniform[0] and not any(uniform[1:])
    assert len(uniform) == len(network.hidden)
