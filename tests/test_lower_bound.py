"""Empirical lower bound of the margin's Lipschitz constant against the local upper bound.

lower = max |m(x1) - m(x2)| / ||x1 - x2|| over pairs in the eps-ball, m = z_j - z_i;
upper = prod_l sigma_l(x) * ||w_j - w_i||. For a linear map z = x W (+ hidden linear
layers V, no activation) the margin's Lipschitz constant is exactly ||V (w_j - w_i)||,
which the optimiser must reach; for any network lower <= upper.
"""
from pathlib import Path

import keras
import numpy as np
import pytest

import gloro_local as gl
from gloro_local import LocalGloroNet
from gloro_local.evaluation import lipschitz_gap, lipschitz_lower_bound
from gloro_local.layers import Dense, Flatten, ReLU, ReLUTheta

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def linear_model(hidden):
    layers = [Dense(units) for units in hidden] + [Dense(4)]
    return LocalGloroNet(keras.Sequential([keras.Input((6,))] + layers), epsilon=0.5)


@pytest.mark.parametrize("hidden", [(), (8,)])
def test_linear_model_reaches_the_exact_constant(hidden):
    model = linear_model(hidden)
    x = np.random.default_rng(0).uniform(size=(10, 6)).astype(np.float32)
    gap = lipschitz_gap(model, x, steps=50, restarts=1)
    map_ = np.eye(6)
    for layer in model.f.layers[:-1]:
        map_ = map_ @ layer.kernel.numpy()
    w = model.f.layers[-1].kernel.numpy()
    exact = np.linalg.norm(map_ @ (w[:, gap.classes[:, 0]] - w[:, gap.classes[:, 1]]),
                           axis=0)
    np.testing.assert_allclose(gap.lower, exact, rtol=0.01)
    assert np.all(gap.lower <= exact * (1 + 1e-4))  # every value is a real pair's ratio
    assert np.all(gap.lower <= gap.upper * (1 + 1e-4))
    if not hidden:  # no hidden layer: the upper bound is exact too
        np.testing.assert_allclose(gap.upper, exact, rtol=1e-5)
    logits = model.f(x).numpy()
    np.testing.assert_array_equal(gap.classes, np.argsort(-logits, 1)[:, :2])


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(3)
    x, y = gl.data.load_numpy("mnist", "train", data_dir=MNIST if MNIST.is_dir() else None)
    order = np.random.default_rng(0).permutation(len(y))[:3000]
    f = keras.Sequential([keras.Input((28, 28, 1)), Flatten(), Dense(64), ReLU(), Dense(32),
                          ReLUTheta(), Dense(10)])
    model = LocalGloroNet(f, epsilon=0.3)
    model.compile(keras.optimizers.Adam(2e-3), loss="crossentropy")
    model.fit(x[order], y[order], batch_size=128, epochs=1, verbose=0)
    test_x, _ = gl.data.load_numpy("mnist", "test", data_dir=MNIST if MNIST.is_dir() else None,
                                   limit=40)
    return model, test_x


def test_lower_never_exceeds_upper_on_a_trained_model(trained):
    model, x = trained
    gap = lipschitz_gap(model, x, steps=60, restarts=2)
    assert np.all(gap.lower <= gap.upper * (1 + 1e-3)), (gap.lower / gap.upper).max()
    assert np.mean(gap.lower > 0) > 0.9
    assert np.all(gap.ratio[gap.lower > 0] >= 1.0 - 1e-3)
    assert np.all(np.isinf(gap.ratio[gap.lower == 0]))


def test_margin_is_symmetric_in_the_pair(trained):
    model, x = trained
    pairs = np.argsort(-model.f(x[:8]).numpy(), 1)[:, :2]
    forward = lipschitz_lower_bound(model.f, x[:8], 0.3, pairs, steps=20, restarts=1)
    backward = lipschitz_lower_bound(model.f, x[:8], 0.3, pairs[:, ::-1], steps=20,
                                     restarts=1)
    np.testing.assert_allclose(forward, backward, rtol=1e-4)
