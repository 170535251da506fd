"""l-infinity PGD against a linear classifier, where the best attack is known in closed form,
and against a small trained MNIST network, where it must beat random noise in the box.

For logits z = x W + b with two classes and label 0, the margin m(x) = z_0 - z_1 = g.x + c
(g = w_0 - w_1) drops under a perturbation delta by (-g).delta, coordinate by coordinate:
  no pixel range: at most eps ||g||_1 (delta = -eps sign(g)), so PGD must break every
      point with margin < eps ||g||_1 and can never break one with margin > eps ||g||_1;
  pixels in [0, 1]: delta_i lies in [max(-eps, -x_i), min(eps, 1 - x_i)], a box again, so
      the largest drop is sum_i max(-g_i lo_i, -g_i hi_i) (``box_drop``).
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

import gloro_local as gl
from gloro_local.attacks import pgd_linf
import test_pgd
from test_pgd import D, EPS, RATIOS, with_margins

linear = test_pgd.linear  # the same classifier fixture as the l2 tests


def check_feasible(x, x_adv, eps, clip):
    assert x_adv.dtype == np.float32
    distance = np.abs(x_adv - x).max(axis=1)
    assert np.all(distance <= eps + 1e-6), distance.max()
    if clip:
        assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


def test_unclipped_attack_reaches_the_analytic_optimum(linear):
    classifier, g, c = linear
    x = with_margins(np.random.default_rng(1), g, c, RATIOS * EPS * np.abs(g).sum())
    assert np.all(np.argmax(classifier(x), 1) == 0)
    x_adv, broken = pgd_linf(classifier, x, np.zeros(len(x)), EPS, clip=None)
    x_adv, broken = x_adv.numpy(), broken.numpy()
    np.testing.assert_array_equal(broken, RATIOS < 1.0)
    check_feasible(x, x_adv, EPS, clip=False)
    assert np.all(np.argmax(classifier(x_adv[broken]), 1) == 1)
    np.testing.assert_array_equal(x_adv[~broken], x[~broken])


def box_drop(x, g, eps):
    """max (-g).delta over |delta_i| <= eps, 0 <= x_i + delta_i <= 1 (exact, per point)."""
    lo, hi = np.maximum(-eps, -x), np.minimum(eps, 1.0 - x)
    return np.maximum(-g * lo, -g * hi).sum(axis=1)


def test_clipped_attack_reaches_the_exact_box_optimum(linear):
    """Half the pixels of each point sit at 0 or 1, so the pixel range cuts the box; the
    bias puts the margins around the exact optimum, and PGD must break exactly the points
    whose margin is below it (outside a 1% band where float rounding may decide)."""
    _, g, _ = linear
    eps = 0.2
    rng = np.random.default_rng(2)
    x = rng.uniform(0.0, 1.0, (300, D))
    x[:, : D // 2] = rng.integers(0, 2, (300, D // 2))
    drop = box_drop(x, g, eps)
    assert np.all(drop < 0.95 * eps * np.abs(g).sum())  # the pixel range binds
    c = float(np.median(drop - x @ g))
    margin = x @ g + c

    def classifier(inputs):
        return tf.stack([tf.linalg.matvec(inputs, g) + c, tf.zeros(tf.shape(inputs)[0])], 1)

    keep = margin > 0
    x, margin, drop = x[keep].astype(np.float32), margin[keep], drop[keep]
    x_adv, broken = pgd_linf(classifier, x, np.zeros(len(x)), eps)
    x_adv, broken = x_adv.numpy(), broken.numpy()
    check_feasible(x, x_adv, eps, clip=True)
    sure = np.abs(margin / drop - 1.0) > 0.01
    assert sure.sum() > 100 and 0 < broken[sure].sum() < sure.sum()
    np.testing.assert_array_equal(broken[sure], (margin < drop)[sure])
    assert np.all(np.argmax(classifier(x_adv[broken]), 1) == 1)


def test_random_start_alone_stays_in_the_box(linear):
    """The bias centres the margins at half the spread of the drop g.delta at a uniform
    start, so the start alone breaks some points and not others."""
    _, g, _ = linear
    x = np.random.default_rng(3).uniform(0.0, 1.0, (50, D)).astype(np.float32)
    c = 0.5 * EPS * np.sqrt(g @ g / 3.0) - float(np.median(x @ g))

    def classifier(inputs):
        return tf.stack([tf.linalg.matvec(inputs, g) + c, tf.zeros(tf.shape(inputs)[0])], 1)

    y = np.argmax(classifier(x), 1)
    for clip in (None, (0.0, 1.0)):
        x_adv, broken = pgd_linf(classifier, x, y, EPS, steps=0, clip=clip)
        x_adv, broken = x_adv.numpy(), broken.numpy()
        assert 0 < broken.sum() < len(x)
        check_feasible(x, x_adv, EPS, clip)
        assert np.all(np.argmax(classifier(x_adv[broken]), 1) != y[broken])
        np.testing.assert_array_equal(x_adv[~broken], x[~broken])


def test_seeded_default_step_and_restarts_only_add(linear):
    classifier, g, c = linear
    x = with_margins(np.random.default_rng(4), g, c,
                     np.linspace(0.2, 1.2, 40) * EPS * np.abs(g).sum())
    y = np.zeros(len(x))
    one = pgd_linf(classifier, x, y, EPS, steps=4, clip=None, seed=7)
    again = pgd_linf(classifier, x, y, EPS, steps=4, clip=None, seed=7)
    np.testing.assert_array_equal(one[0].numpy(), again[0].numpy())
    other = pgd_linf(classifier, x, y, EPS, steps=4, clip=None, seed=8)
    assert not np.array_equal(one[0].numpy(), other[0].numpy())
    explicit = pgd_linf(classifier, x, y, EPS, steps=4, step_size=2.5 * EPS / 4, clip=None,
                        seed=7)
    np.testing.assert_array_equal(one[0].numpy(), explicit[0].numpy())
    short = dict(steps=1, step_size=EPS / 20, clip=None, seed=7)  # too short to converge
    first = pgd_linf(classifier, x, y, EPS, **short)[1].numpy()
    more = pgd_linf(classifier, x, y, EPS, restarts=8, **short)[1].numpy()
    assert np.all(more >= first) and more.sum() > first.sum()


@pytest.fixture(scope="module")
def mnist_model():
    """A one-hidden-layer ReLU network fitted for three epochs on 1000 embedded MNIST images;
    the first 200 images, their predictions and the model."""
    x, y = gl.data.load_numpy("mnist", "train")
    x, y = x[:1000], y[:1000]
    keras.utils.set_random_seed(0)
    f = keras.Sequential([keras.Input((28, 28, 1)), gl.layers.Flatten(), gl.layers.Dense(32),
                          gl.layers.ReLU(), gl.layers.Dense(10)])
    f.compile(keras.optimizers.Adam(3e-3),
              keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    f.fit(x, y, epochs=3, batch_size=64, verbose=0)
    prediction = np.argmax(f(x[:200]), 1)
    assert np.mean(prediction == y[:200]) > 0.8
    return f, x[:200], prediction


@pytest.mark.parametrize("eps", [0.05, 0.1])
def test_beats_uniform_noise_in_the_box_on_mnist(mnist_model, eps):
    f, x, prediction = mnist_model
    x_adv, broken = pgd_linf(f, x, prediction, eps, steps=20)
    x_adv, broken = x_adv.numpy(), broken.numpy()
    check_feasible(x.reshape(len(x), -1), x_adv.reshape(len(x), -1), eps, clip=True)
    assert np.all(np.argmax(f(x_adv[broken]), 1) != prediction[broken])
    noise = np.random.default_rng(0).uniform(-eps, eps, x.shape)
    noisy = np.clip(x + noise, 0.0, 1.0).astype(np.float32)
    by_noise = np.sum(np.argmax(f(noisy), 1) != prediction)
    assert broken.sum() >= 0.3 * len(x) and broken.sum() > 4 * by_noise
