"""Soundness and consistency of ``certify`` on briefly trained models.

For small MNIST models (ReLU, ReLU-theta and clipped MaxMin; dense and conv), trained one
epoch at eps = 0.3 on 3000 images of the real 5k subset: no certified point is broken by PGD (3 restarts,
50 steps, unclipped, against the prediction); the full pipeline certifies exactly what
the local bound alone certifies (cheap_stages=False); VRA(local) >= VRA(global) on the
same weights; PGD accuracy >= VRA. A 2-D network is checked against a dense search of
every eps-disc. A point certified by the local but not the global bound is refused when
its power iteration is stopped early.
"""
from pathlib import Path

import keras
import numpy as np
import pytest

from conftest import disc_offsets, sectors
import gloro_local as gl
from gloro_local import LocalGloroNet
from gloro_local.bounds import bound_pass, certificate_globals
from gloro_local.evaluation import REASONS, certify, pgd_l2
from gloro_local.layers import ClippedMaxMin, Conv2D, Dense, Flatten, ReLU, ReLUTheta

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
EPS, POINTS = 0.3, 120
NETWORKS = {
    "dense-relu": lambda: [Flatten(), Dense(96), ReLU(), Dense(48), ReLU(), Dense(10)],
    "conv-relu_theta": lambda: [Conv2D(8, 4, strides=2, padding="same"), ReLUTheta(),
                                Flatten(), Dense(48), ReLUTheta(), Dense(10)],
    "dense-clipped_maxmin": lambda: [Flatten(), Dense(96), ClippedMaxMin(), Dense(48),
                                     ClippedMaxMin(), Dense(10)],
}


def mnist(split, limit=None):
    return gl.data.load_numpy("mnist", split, data_dir=MNIST if MNIST.is_dir() else None,
                              limit=limit)


class Trained:
    """A model trained for one epoch, its test points and its certificate (computed once)."""

    def __init__(self, name, train):
        keras.utils.set_random_seed(11)
        f = keras.Sequential([keras.Input((28, 28, 1))] + NETWORKS[name]())
        self.model = LocalGloroNet(f, epsilon=EPS)
        self.model.compile(keras.optimizers.Adam(2e-3), loss="crossentropy")
        self.model.fit(*train, batch_size=128, epochs=1, verbose=0)
        self.x, self.y = mnist("test", POINTS)
        self.cert = self.model.certify(self.x, self.y)


@pytest.fixture(scope="module")
def trained():
    x, y = mnist("train")
    order = np.random.default_rng(0).permutation(len(y))[:3000]  # the subset is sorted
    models = {}

    def get(name):
        if name not in models:
            models[name] = Trained(name, (x[order], y[order]))
        return models[name]
    return get


@pytest.mark.parametrize("name", list(NETWORKS))
def test_certificate_fields(trained, name):
    t = trained(name)
    c, n = t.cert, POINTS
    assert c.prediction.shape == c.certified.shape == c.reason.shape == (n,)
    assert c.iterations.shape == (n, len(t.model.local_layers))
    assert set(c.reason) <= set(REASONS)
    np.testing.assert_array_equal(c.prediction, np.argmax(t.model.f(t.x), 1))
    np.testing.assert_array_equal(c.certified, np.isin(c.reason, ["global", "local"]))
    np.testing.assert_array_equal(c.reason == "wrong class", c.prediction != t.y)
    assert np.all(c.margin[c.certified] > 0)
    np.testing.assert_array_equal(c.bound[c.certified], c.reason[c.certified])
    ran_local = c.bound == "local"
    # a layer no mask touches takes the global norm without iterating (masked_norm)
    assert np.all(c.iterations[ran_local].max(axis=1) > 0)
    assert np.all(c.iterations[~ran_local] == 0)
    assert np.all(c.lipschitz[ran_local] <= c.global_lipschitz[ran_local] * (1 + 1e-6))
    assert 0 < c.certified.sum() < n  # meaningful: some certified, some not
    assert c.certified_accuracy(t.y) == c.certified.mean()


@pytest.mark.parametrize("name", list(NETWORKS))
def test_cheap_stages_do_not_change_the_answer(trained, name):
    t = trained(name)
    every = certify(t.model, t.x, t.y, cheap_stages=False, seed=5)
    np.testing.assert_array_equal(every.certified, t.cert.certified)
    assert set(every.reason) <= {"local", "bound too loose", "not converged", "wrong class",
                                 "tie"}
    assert every.iterations[every.reason != "wrong class"].max(axis=1).min() > 0


@pytest.mark.parametrize("name", list(NETWORKS))
def test_no_certified_point_is_broken_by_pgd(trained, name):
    t = trained(name)
    c = t.cert
    _, broken = pgd_l2(t.model.f, t.x, c.prediction, EPS, steps=50, restarts=3, clip=None)
    broken = broken.numpy()
    assert not np.any(broken & c.certified), np.flatnonzero(broken & c.certified)
    assert np.any(broken & ~c.certified)  # meaningful: the attack does break points


@pytest.mark.parametrize("name", list(NETWORKS))
def test_local_vra_at_least_global_and_pgd_accuracy_at_least_vra(trained, name):
    t = trained(name)
    globals_ = certificate_globals(t.model.network)
    out = bound_pass(t.model.network, "global")(t.x, EPS, globals_.sigmas, t.cert.prediction,
                                                globals_.vectors)
    top = np.take_along_axis(out["logits"], t.cert.prediction[:, None], 1)[:, 0]
    by_global = (top > out["bottom"]) & (t.cert.prediction == t.y)
    assert np.all(t.cert.certified[by_global])  # every global certificate is a local one
    assert t.cert.certified.mean() >= by_global.mean()
    _, broken = pgd_l2(t.model.f, t.x, t.y, EPS, steps=50, restarts=3)
    assert np.mean(~broken.numpy()) >= t.cert.certified.mean()


def test_early_stopped_power_iteration_is_refused(trained):
    """A point only the local bound certifies; stopped after one power-iteration step
    (tolerance unreachable) it must be reported 'not converged', not certified."""
    for name in NETWORKS:
        t = trained(name)
        local = np.flatnonzero(t.cert.reason == "local")
        if local.size:
            break
    assert local.size, "no model has a point that only the local bound certifies"
    x, y = t.x[local], t.y[local]
    for cheap in (True, False):
        stopped = certify(t.model, x, y, max_iterations=1, tol=1e-12, cheap_stages=cheap)
        assert not stopped.certified.any()
        assert set(stopped.reason) == {"not converged"}
        assert np.all(stopped.iterations == 1)


def tiny_model(weights=None, logit_bias=None):
    f = keras.Sequential([keras.Input((3,)), Dense(4), ReLU(), Dense(3)])
    if weights is not None:
        f.layers[-1].kernel.assign(weights)
        f.layers[-1].bias.assign(logit_bias)
    return LocalGloroNet(f, epsilon=0.1)


def test_ties_are_never_certified():
    model = tiny_model(np.zeros((4, 3)), np.zeros(3))
    c = certify(model, np.random.default_rng(0).uniform(size=(5, 3)))
    assert set(c.reason) == {"tie"} and not c.certified.any()


def test_bad_inputs():
    model = tiny_model()
    x = np.full((2, 3), 0.5, np.float32)
    with pytest.raises(ValueError, match="NaN"):
        certify(model, np.where([[True], [False]], np.nan, x))
    with pytest.raises(ValueError, match="shape"):
        certify(model, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="epsilon"):
        certify(model, x, epsilon=0.0)
    with pytest.raises(ValueError, match="labels"):
        certify(model, x, [0, 3])
    one_hot = certify(model, x, np.eye(3)[[0, 2]])
    np.testing.assert_array_equal(one_hot.certified, certify(model, x, [0, 2]).certified)
    for bad in (np.nan, np.inf):
        broken = tiny_model()
        kernel = broken.f.layers[0].kernel
        kernel.assign(np.where(np.arange(12).reshape(3, 4) == 5, bad, kernel.numpy()))
        with pytest.raises(FloatingPointError):
            certify(broken, x)


# An exact check in two dimensions ---------------------------------------------------------

def test_two_dimensional_certificates_agree_with_a_dense_search():
    """Dense(16) ReLU Dense(16) ReLU Dense(3) on three angular sectors of the plane: no
    certified point has a differently classified point in its eps-disc; points that PGD
    broke do have one; some points are certified, some are not."""
    keras.utils.set_random_seed(5)
    rng = np.random.default_rng(5)
    eps = 0.1
    f = keras.Sequential([keras.Input((2,)), Dense(16), ReLU(), Dense(16), ReLU(), Dense(3)])
    model = LocalGloroNet(f, epsilon=eps)
    model.compile(keras.optimizers.Adam(1e-2), loss="crossentropy")
    model.fit(*sectors(rng, 3000), batch_size=100, epochs=5, verbose=0)
    x, y = sectors(rng, 150)
    c = certify(model, x, seed=1)
    offsets = disc_offsets(eps).astype(np.float32)
    disagree = np.array([np.any(np.argmax(f(x[k] + offsets).numpy(), 1) != c.prediction[k])
                         for k in range(len(x))])
    assert not np.any(disagree & c.certified), np.flatnonzero(disagree & c.certified)
    assert np.all(disagree[c.reason == "attacked"])
    assert c.certified.sum() >= 20 and (~c.certified).sum() >= 5 and disagree.sum() >= 5
