"""l2 PGD against a linear classifier, where the best attack is known in closed form.

For logits z = x W + b with two classes and label 0, the margin m(x) = z_0 - z_1 = g.x + c
(g = w_0 - w_1) can drop by at most max g.(-delta) over the feasible set:
  no pixel range: eps ||g|| (delta = -eps g / ||g||), so PGD must break every point with
      margin < eps ||g|| and can never break one with margin > eps ||g||;
  pixels in [0, 1]: the maximum of (-g).delta over ||delta|| <= eps, -x <= delta <= 1 - x,
      which ``worst_offsets`` solves exactly.
"""
import numpy as np
import pytest
import tensorflow as tf

import gloro_local as gl
from gloro_local.bounds import worst_offsets
from gloro_local.evaluation import pgd_l2

D, EPS = 20, 0.5
RATIOS = np.array([0.3, 0.8, 0.95, 0.99, 1.01, 1.05, 1.5])


@pytest.fixture(scope="module")
def linear():
    """(classifier, g, c): a random 2-class linear classifier and its margin z_0 - z_1."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((D, 2)).astype(np.float32)
    b = rng.standard_normal(2).astype(np.float32)
    return (lambda x: tf.matmul(x, w) + b), w[:, 0] - w[:, 1], float(b[0] - b[1])


def with_margins(rng, g, c, margins, low=0.3, high=0.7):
    """Points in [low, high]^D moved along g so that g.x + c equals each margin."""
    x = rng.uniform(low, high, (len(margins), D))
    x += ((margins - x @ g - c) / (g @ g))[:, None] * g
    return x.astype(np.float32)


def check_feasible(x, x_adv, clip):
    distance = np.linalg.norm(x_adv - x, axis=1)
    assert np.all(distance <= EPS + 1e-6), distance.max()
    if clip:
        assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


def test_unclipped_attack_reaches_the_analytic_optimum(linear):
    classifier, g, c = linear
    x = with_margins(np.random.default_rng(1), g, c, RATIOS * EPS * np.linalg.norm(g))
    assert np.all(np.argmax(classifier(x), 1) == 0)
    x_adv, broken = pgd_l2(classifier, x, np.zeros(len(x)), EPS, clip=None)
    x_adv, broken = x_adv.numpy(), broken.numpy()
    np.testing.assert_array_equal(broken, RATIOS < 1.0)
    check_feasible(x, x_adv, clip=False)
    assert np.all(np.argmax(classifier(x_adv[broken]), 1) == 1)
    np.testing.assert_array_equal(x_adv[~broken], x[~broken])


def clipped_optimum(x, direction, radius):
    """max direction.delta over ||delta|| <= radius, 0 <= x + delta <= 1 (exact)."""
    n = len(x)
    lower = (-x[:, None, :]).astype(np.float32)
    values, _ = worst_offsets(np.broadcast_to(direction, (n, 1, D)).astype(np.float32),
                              lower, lower + 1.0, tf.constant(radius, tf.float32))
    return values.numpy()[:, 0]


def radius_for(x, direction, target):
    """The eps at which the clipped optimum equals ``target`` (bisection; it increases)."""
    lo, hi = np.zeros(len(x)), np.full(len(x), 10.0)
    for _ in range(40):
        mid = (lo + hi) / 2
        below = clipped_optimum(x, direction, mid) < target
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return (lo + hi) / 2


def test_clipped_attack_is_feasible_and_near_the_exact_optimum(linear):
    """Points with half their pixels at the face the attack wants to cross; each is
    attacked at the eps where the exact clipped optimum is margin / ratio. Projecting on
    the ball and then the box is not the exact projection onto their intersection, so
    PGD must get within 5% of the optimum, not all the way."""
    _, g, _ = linear
    rng = np.random.default_rng(2)
    x = rng.uniform(0.0, 1.0, (400, D))
    x[:, : D // 2] = np.where(g[: D // 2] > 0, 0.0, 1.0)
    c = 1.0 - np.median(x @ g)  # margins g.x + c spread around 1

    def classifier(inputs):
        return tf.stack([tf.linalg.matvec(inputs, g) + c, tf.zeros(tf.shape(inputs)[0])], 1)

    margin = x @ g + c
    box_max = clipped_optimum(x, -g, np.full(len(x), 100.0))
    x, margin = x[(margin > 0.2) & (4 * margin < box_max)][:3], margin[
        (margin > 0.2) & (4 * margin < box_max)][:3]
    assert len(x) == 3
    x = np.repeat(x, len(RATIOS), 0).astype(np.float32)
    ratios = np.tile(RATIOS, 3)
    eps = radius_for(x, -g, np.repeat(margin, len(RATIOS)) / ratios)
    assert np.all(clipped_optimum(x, -g, eps) < 0.9 * eps * np.linalg.norm(g))  # binds
    for k in range(len(x)):
        x_adv, broken = pgd_l2(classifier, x[k:k + 1], [0], float(eps[k]))
        distance = np.linalg.norm(x_adv.numpy() - x[k])
        assert distance <= eps[k] + 1e-6
        assert 0.0 <= x_adv.numpy().min() and x_adv.numpy().max() <= 1.0
        if ratios[k] > 1.0 or ratios[k] <= 0.95:  # sound beyond the optimum, strong near it
            assert bool(broken[0]) == (ratios[k] < 1.0), (ratios[k], eps[k])


def test_random_start_alone_stays_in_the_ball(linear):
    classifier, g, c = linear
    x = np.random.default_rng(3).uniform(0.0, 1.0, (50, D)).astype(np.float32)
    y = np.argmax(classifier(x), 1)
    for clip in (None, (0.0, 1.0)):
        x_adv, broken = pgd_l2(classifier, x, y, EPS * 10, steps=0, clip=clip)
        distance = np.linalg.norm(x_adv.numpy() - x, axis=1)
        assert np.all(distance <= EPS * 10 + 1e-5)
        if clip:
            assert x_adv.numpy().min() >= 0.0 and x_adv.numpy().max() <= 1.0
        assert np.all(np.argmax(classifier(x_adv.numpy()[broken.numpy()]), 1)
                      != y[broken.numpy()])


def test_seeded_and_restarts_only_add(linear):
    classifier, g, c = linear
    x = with_margins(np.random.default_rng(4), g, c,
                     np.linspace(0.2, 1.2, 40) * EPS * np.linalg.norm(g))
    y = np.zeros(len(x))
    one = pgd_l2(classifier, x, y, EPS, steps=2, clip=None, seed=7)
    again = pgd_l2(classifier, x, y, EPS, steps=2, clip=None, seed=7)
    np.testing.assert_array_equal(one[0].numpy(), again[0].numpy())
    more = pgd_l2(classifier, x, y, EPS, steps=2, restarts=4, clip=None, seed=7)
    assert np.all(more[1].numpy() >= one[1].numpy())


@pytest.mark.parametrize("attack", [pgd_l2, gl.attacks.pgd_linf], ids=["l2", "linf"])
def test_errors(attack):
    classifier = gl.layers.Dense(2)
    x = np.full((2, 3), 0.5, np.float32)
    with pytest.raises(ValueError, match="epsilon"):
        attack(classifier, x, [0, 1], 0.0)
    with pytest.raises(ValueError, match="clip range"):
        attack(classifier, x + 1.0, [0, 1], 0.1)
    with pytest.raises(ValueError, match="Received: step_size=0.0"):
        attack(classifier, x, [0, 1], 0.1, step_size=0.0)
    with pytest.raises(ValueError, match="Received: steps=-1"):
        attack(classifier, x, [0, 1], 0.1, steps=-1)
    with pytest.raises(ValueError, match="Received: restarts=0"):
        attack(classifier, x, [0, 1], 0.1, restarts=0)
    assert gl.attacks.pgd_l2 is pgd_l2
