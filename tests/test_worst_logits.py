"""worst_offsets against an exact solver, and the pair directions / bottom logit."""
import numpy as np
import pytest

from gloro_local.bounds import bottom_logit, pair_directions, worst_offsets


def exact_offset(g, lower, upper, r):
    """max g.delta over ||delta|| <= r, lower <= delta <= upper, in float64.

    The maximiser is clip(t g, lower, upper): the box corner along g if it lies in the
    ball, else the t (found by bisection, the norm is monotone in t) on the sphere.
    """
    g, lower, upper = (np.asarray(a, np.float64) for a in (g, lower, upper))
    corner = np.where(g > 0, upper, np.where(g < 0, lower, 0.0))
    if np.linalg.norm(corner) <= r:
        return float(g @ corner)
    low, high = 0.0, max(np.abs(corner[g != 0]) / np.abs(g[g != 0]))
    for _ in range(200):
        t = (low + high) / 2
        if np.linalg.norm(np.clip(t * g, lower, upper)) > r:
            high = t
        else:
            low = t
    return float(g @ np.clip(low * g, lower, upper))


def random_case(rng, batch, classes, d, corners_inside=False):
    """Directions with zeros, box faces with exact zeros, radii; shapes for worst_offsets."""
    g = rng.standard_normal((batch, classes, d))
    g[rng.uniform(size=g.shape) < 0.15] = 0.0
    lower = -rng.uniform(0.0, 1.0, (batch, 1, d))
    upper = rng.uniform(0.0, 1.0, (batch, 1, d))
    lower[rng.uniform(size=lower.shape) < 0.15] = 0.0
    upper[rng.uniform(size=upper.shape) < 0.15] = 0.0
    r = rng.uniform(0.05, 1.5, batch) * np.sqrt(d) / 2
    if corners_inside:
        r = np.full(batch, 1.01 * np.sqrt(d))  # beyond the farthest corner
    return [a.astype(np.float32) for a in (g, lower, upper, r)]


def exact_all(g, lower, upper, r):
    return np.array([[exact_offset(g[b, k], lower[b, 0], upper[b, 0], r[b])
                      for k in range(g.shape[1])] for b in range(g.shape[0])])


CASES = [(4, 3, 2, False), (3, 5, 7, False), (2, 4, 40, False), (3, 3, 6, True)]


@pytest.mark.parametrize("batch, classes, d, inside", CASES)
def test_exact_at_convergence(batch, classes, d, inside):
    g, lower, upper, r = random_case(np.random.default_rng(d), batch, classes, d, inside)
    exact = exact_all(g, lower, upper, r)
    values, steps = worst_offsets(g, lower, upper, r)
    assert int(steps) <= d + 1
    np.testing.assert_allclose(values, exact, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch, classes, d, inside", CASES)
def test_never_below_exact_after_any_steps(batch, classes, d, inside):
    g, lower, upper, r = random_case(np.random.default_rng(d + 1), batch, classes, d, inside)
    exact = exact_all(g, lower, upper, r)
    previous = np.inf
    for steps in range(d + 2):
        values, _ = worst_offsets(g, lower, upper, r, steps=steps)
        values = np.asarray(values)
        assert np.all(values >= exact - 1e-5 * np.maximum(1.0, np.abs(exact)))
        assert np.all(values <= previous + 1e-6)  # each step can only tighten
        previous = values
    np.testing.assert_allclose(values, exact, rtol=1e-5, atol=1e-6)


def test_zero_steps_is_the_plain_ball_bound():
    g, lower, upper, r = random_case(np.random.default_rng(5), 3, 4, 6)
    values, _ = worst_offsets(g, lower, upper, r, steps=0)
    np.testing.assert_allclose(values, r[:, None] * np.linalg.norm(g, axis=-1), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("d", [2, 3])
def test_brute_force_never_beats_result(d):
    """Feasible deltas (sphere points clipped to the box) never exceed the bound; in 2-D
    a fine grid of angles reaches it, so the bound is also attained."""
    rng = np.random.default_rng(10 + d)
    g, lower, upper, r = random_case(rng, 6, 2, d)
    values = np.asarray(worst_offsets(g, lower, upper, r)[0])
    if d == 2:
        angles = np.linspace(0, 2 * np.pi, 200_001)
        directions = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    else:
        directions = rng.standard_normal((200_000, d))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    for b in range(len(r)):
        deltas = np.clip(r[b] * directions, lower[b, 0], upper[b, 0])
        best = (deltas @ g[b].T).max(axis=0)
        assert np.all(best <= values[b] + 1e-5)
        if d == 2:
            np.testing.assert_allclose(best, values[b], rtol=1e-4, atol=1e-5)


def test_offsets_broadcast_per_class_boxes():
    g, lower, upper, r = random_case(np.random.default_rng(7), 2, 3, 5)
    tiled = (np.repeat(lower, 3, axis=1), np.repeat(upper, 3, axis=1))
    np.testing.assert_allclose(worst_offsets(g, *tiled, r)[0],
                               worst_offsets(g, lower, upper, r)[0], rtol=1e-6)


def test_pair_directions():
    kernel = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    reference = np.array([2, 0])
    directions = np.asarray(pair_directions(kernel, reference))
    assert directions.shape == (2, 3, 4)
    for b, j in enumerate(reference):
        for i in range(3):
            np.testing.assert_allclose(directions[b, i], kernel[:, i] - kernel[:, j])
        np.testing.assert_array_equal(directions[b, j], 0.0)


def test_bottom_logit_masks_reference_by_index():
    worst = np.array([[5.0, 5.0, 1.0], [2.0, 7.0, 3.0], [4.0, 4.0, 4.0]], np.float32)
    reference = np.array([0, 1, 2])
    np.testing.assert_array_equal(bottom_logit(worst, reference), [5.0, 3.0, 4.0])
