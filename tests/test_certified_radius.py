"""``model.certified_radius``: exact on a linear model, a certified eps, tight to ``rtol``.

Oracles: on a Dense logit layer alone the radius is the distance to the decision boundary
(a dense search of the disc finds no class change just inside it and one just outside);
with hidden layers the 'gloro' closed form is where the library's own GloRo bound pass
flips; for the 'global' and 'local' bounds ``certify`` certifies at the returned radius
and refuses at radius * (1 + 2 rtol), certification is monotone on a grid of eps, no
class changes within the radius (dense 2-D search) and every PGD adversarial example lies
farther away than the radius.
"""
import math

import keras
import numpy as np
import pytest

from conftest import dense_mnist_model, disc_offsets, sectors
import gloro_local as gl
from gloro_local import LocalGloroNet
from gloro_local.bounds import bound_pass, certificate_globals
from gloro_local.evaluation import certify, pgd_l2
from gloro_local.layers import Dense, ReLU
from gloro_local.models.certified_radius import certified_radius, search_radius

RTOL = 1e-2


def linear_model():
    f = keras.Sequential([keras.Input((2,)), Dense(3)])
    f.layers[0].kernel.assign(np.array([[1.0, -2.0, 0.5], [0.5, 1.0, -1.5]]))
    f.layers[0].bias.assign(np.array([0.1, -0.2, 0.0]))
    return LocalGloroNet(f, epsilon=0.1)


def classes(model, points):
    return np.argmax(model.f(points.astype(np.float32)).numpy(), -1)


def test_gloro_radius_of_a_linear_model_is_the_distance_to_the_boundary():
    model = linear_model()
    x = np.random.default_rng(0).uniform(-1, 1, (12, 2)).astype(np.float32)
    radius = model.certified_radius(x, bound="gloro")
    prediction = classes(model, x)
    assert radius.dtype == np.float32 and radius.shape == (12,) and np.all(radius > 0)
    angles = np.linspace(0.0, 2 * np.pi, 4000, endpoint=False)
    circle = np.stack([np.cos(angles), np.sin(angles)], 1)
    for k, r in enumerate(radius.astype(np.float64)):
        inside = classes(model, x[k] + disc_offsets(r * (1 - 1e-4), grid=60))
        assert np.all(inside == prediction[k]), k
        outside = classes(model, x[k] + r * (1 + 1e-3) * circle)
        assert np.any(outside != prediction[k]), k


def test_bisection_on_a_linear_model_stays_within_rtol_below_the_exact_radius():
    """No box cuts a ball along a pair direction here, so 'global' and 'local' flip where
    'gloro' does: the search ends inside [r / (1 + rtol), r]."""
    model = linear_model()
    x = np.random.default_rng(1).uniform(-1, 1, (8, 2)).astype(np.float32)
    exact = model.certified_radius(x, bound="gloro").astype(np.float64)
    for bound in ("global", "local"):
        radius = model.certified_radius(x, bound=bound, rtol=RTOL)
        assert np.all(radius <= exact * (1 + 1e-6)), bound
        assert np.all(radius >= exact / (1 + RTOL)), bound


def test_ties_and_wrong_classes_have_radius_zero():
    model = linear_model()
    x = np.random.default_rng(2).uniform(-1, 1, (6, 2)).astype(np.float32)
    prediction = classes(model, x)
    wrong = (prediction + 1) % 3
    labels = np.where(np.arange(6) < 3, prediction, wrong)
    for bound in ("gloro", "global", "local"):
        radius = model.certified_radius(x, labels, bound=bound)
        assert np.all(radius[:3] > 0) and np.all(radius[3:] == 0), bound
    model.f.layers[0].kernel.assign(np.zeros((2, 3)))
    model.f.layers[0].bias.assign(np.zeros(3))
    for bound in ("gloro", "local"):
        assert np.all(model.certified_radius(x, bound=bound) == 0), bound


@pytest.fixture(scope="module")
def planar():
    """Dense(16) ReLU Dense(16) ReLU Dense(3) trained on three angular sectors, its test
    points and their radii by every bound."""
    keras.utils.set_random_seed(5)
    rng = np.random.default_rng(5)
    f = keras.Sequential([keras.Input((2,)), Dense(16), ReLU(), Dense(16), ReLU(), Dense(3)])
    model = LocalGloroNet(f, epsilon=0.1)
    model.compile(keras.optimizers.Adam(1e-2), loss="crossentropy")
    model.fit(*sectors(rng, 3000), batch_size=100, epochs=5, verbose=0)
    x, y = sectors(rng, 24)
    radius = {bound: model.certified_radius(x, y, bound=bound, rtol=RTOL)
              for bound in ("gloro", "global", "local")}
    return model, x, y, radius


def test_planar_radius_is_certified_and_tight(planar):
    model, x, y, radius = planar
    r = radius["local"].astype(np.float64)
    assert np.sum(r > 0) >= 12
    for k in np.flatnonzero(r > 0):
        at = certify(model, x[k:k + 1], y[k:k + 1], epsilon=r[k])
        above = certify(model, x[k:k + 1], y[k:k + 1], epsilon=r[k] * (1 + 2 * RTOL))
        assert at.certified[0], (k, at.reason)
        assert not above.certified[0], (k, above.reason)
    global_ = radius["global"].astype(np.float64)
    assert np.all(r >= global_ / (1 + RTOL))
    assert np.all(global_ >= radius["gloro"] * (1 - RTOL))
    assert np.mean(r) > np.mean(radius["gloro"]) * 1.05  # the boxes and masks pay off


def test_planar_certification_is_monotone_in_epsilon(planar):
    """On a grid of eps, every point is certified up to its radius and refused beyond
    radius * (1 + rtol), with no refused eps below a certified one."""
    model, x, y, radius = planar
    r = radius["local"]
    grid = np.linspace(0.02, 1.0, 40) * r.max() * 1.5
    certified = np.stack([certify(model, x, y, epsilon=float(e), attack_steps=0).certified
                          for e in grid], 1)
    assert not np.any(certified[:, 1:] & ~certified[:, :-1])
    np.testing.assert_array_equal(certified[grid[None, :] <= r[:, None]], True)
    np.testing.assert_array_equal(certified[grid[None, :] >= r[:, None] * (1 + RTOL)], False)


def test_no_class_change_within_the_radius_and_attacks_land_farther(planar):
    model, x, y, radius = planar
    r = radius["local"].astype(np.float64)
    prediction = classes(model, x)
    for k in np.flatnonzero(r > 0):
        assert np.all(classes(model, x[k] + disc_offsets(r[k], grid=80)) == prediction[k]), k
    adversarial, broken = pgd_l2(model.f, x, prediction, 1.0, steps=50, restarts=3, clip=None)
    distance = np.linalg.norm(adversarial.numpy() - x, axis=1)
    broken = broken.numpy()
    assert broken.sum() >= 12
    assert np.all(r[broken] < distance[broken])


def test_gloro_closed_form_is_where_the_gloro_bound_pass_flips(planar):
    model, x, _, radius = planar
    globals_ = certificate_globals(model.network)
    run = bound_pass(model.network, "gloro")
    prediction = classes(model, x).astype(np.int32)
    r = radius["gloro"].astype(np.float64)
    for k in np.flatnonzero(r > 0):
        margins = [run(x[k:k + 1], r[k] * scale, globals_.sigmas, prediction[k:k + 1],
                       globals_.vectors) for scale in (1 - 1e-4, 1 + 1e-4)]
        top = [m["logits"][0, prediction[k]] - m["bottom"][0] for m in margins]
        assert top[0] > 0 > top[1], (k, top)


def test_mnist_radius_is_certified_by_certify_and_refused_above():
    model = dense_mnist_model((48, 24), 1500)
    xt, yt = gl.data.load_numpy("mnist", "test", limit=10)
    radius = model.certified_radius(xt, yt, rtol=RTOL).astype(np.float64)
    np.testing.assert_array_equal(radius, certified_radius(model, xt, yt, rtol=RTOL))
    gloro = model.certified_radius(xt, yt, bound="gloro")
    assert np.sum(radius > 0) >= 5 and np.all(radius >= gloro * (1 - RTOL))
    for k in np.flatnonzero(radius > 0):
        assert certify(model, xt[k:k + 1], yt[k:k + 1], epsilon=radius[k]).certified[0]
        assert not certify(model, xt[k:k + 1], yt[k:k + 1],
                           epsilon=radius[k] * (1 + 2 * RTOL)).certified[0]


def test_search_radius_returns_a_certified_probe():
    threshold = 0.37
    lo, hi, probes = search_radius(lambda e: e < threshold, 0.05, rtol=RTOL)
    assert lo < threshold <= hi <= lo * (1 + RTOL) and probes <= 30
    patchy = lambda e: 0.1 <= e <= 0.2 or 0.4 <= e <= 0.45  # noqa: E731 (not monotone)
    lo, hi, _ = search_radius(patchy, 0.15, rtol=RTOL)
    assert patchy(lo) and not patchy(hi) and hi <= lo * (1 + RTOL)
    lo, hi, probes = search_radius(lambda e: True, 1.0, max_steps=5)
    assert (lo, hi, probes) == (16.0, math.inf, 5)
    assert search_radius(lambda e: False, 1.0, max_steps=5)[0] == 0.0
    lo, hi, probes = search_radius(lambda e: e < 3e-8, 1.0, rtol=1e-9, max_steps=200)
    assert lo < 3e-8 <= hi < 1e-7 and probes < 200  # float32 ran out of midpoints


@pytest.mark.parametrize("kwargs, message", [
    (dict(bound="ball"), "bound"), (dict(rtol=0.0), "rtol"), (dict(rtol=float("nan")), "rtol"),
    (dict(max_steps=0), "max_steps"), (dict(tol=-1.0), "tol")])
def test_bad_parameters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        linear_model().certified_radius(np.zeros((2, 2), np.float32), **kwargs)


def test_bad_inputs_are_refused_as_certify_refuses_them():
    model = linear_model()
    with pytest.raises(ValueError, match="NaN"):
        model.certified_radius(np.array([[0.0, np.nan]], np.float32))
    with pytest.raises(ValueError, match="labels"):
        model.certified_radius(np.zeros((2, 2), np.float32), [0, 3])


def test_an_empty_batch_has_no_radius():
    for bound in ("gloro", "local"):
        radius = linear_model().certified_radius(np.zeros((0, 2), np.float32), bound=bound)
        assert radius.shape == (0,) and radius.dtype == np.float32
