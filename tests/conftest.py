"""Shared helpers for the gloro_local tests."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402


@pytest.fixture(autouse=True)
def seeded():
    """Every test starts from the same Keras / TensorFlow / NumPy seeds."""
    keras.utils.set_random_seed(1234)


def explicit_matrix(operator, input_shape):
    """The dense matrix of a linear map on per-sample inputs of ``input_shape``.

    ``operator`` maps a batch (n,) + input_shape to a batch (n, ...); column k of the
    result is the flattened image of the k-th basis vector.
    """
    n = int(np.prod(input_shape))
    basis = np.eye(n, dtype=np.float32).reshape((n,) + tuple(input_shape))
    return np.asarray(operator(basis), np.float64).reshape(n, -1).T


def sample_ball(rng, count, shape, radius):
    """``count`` points of the l2 ball of ``radius`` in R^shape: half uniform inside
    (direction normal / norm, length radius * U^(1/d)), half on the sphere."""
    d = int(np.prod(shape))
    directions = rng.standard_normal((count, d))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    lengths = radius * rng.uniform(size=(count, 1)) ** (1.0 / d)
    lengths[count // 2:] = radius
    return (directions * lengths).reshape((count,) + tuple(shape)).astype(np.float32)


def disc_offsets(eps, grid=200, circle=2000):
    """A grid x grid lattice of [-eps, eps]^2 inside the disc, plus points on its circle."""
    axis = np.linspace(-eps, eps, grid)
    lattice = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
    lattice = lattice[np.linalg.norm(lattice, axis=1) <= eps]
    angles = np.linspace(0.0, 2 * np.pi, circle, endpoint=False)
    return np.concatenate([lattice, eps * np.stack([np.cos(angles), np.sin(angles)], 1)])


def sectors(rng, n):
    """n points of [-1, 1]^2 labelled by which of three angular sectors they lie in."""
    x = rng.uniform(-1.0, 1.0, (n, 2)).astype(np.float32)
    return x, (np.floor((np.arctan2(x[:, 1], x[:, 0]) + np.pi) / (2 * np.pi / 3))
               .astype(np.int32) % 3)


def tight_rule():
    """A stopping rule tight enough for comparisons with exact norms at rtol 1e-4/1e-5."""
    from gloro_local.bounds import StoppingRule
    return StoppingRule(max_iterations=10000, tol=1e-6)


def benchmark_module(name):
    """The script ``benchmarks/<name>.py`` imported as a module."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dense_mnist_model(widths, examples):
    """A LocalGloroNet at eps 0.3 of Flatten, Dense(widths[0]), ReLUTheta, Dense(widths[1]),
    ReLU, Dense(10), trained one epoch (Adam 2e-3, batch 128, seed 7) on ``examples``
    shuffled images of the embedded MNIST sample."""
    import gloro_local as gl
    from gloro_local.layers import Dense, Flatten, ReLU, ReLUTheta
    keras.utils.set_random_seed(7)
    x, y = gl.data.load_numpy("mnist", "train")
    order = np.random.default_rng(0).permutation(len(y))[:examples]
    f = keras.Sequential([keras.Input((28, 28, 1)), Flatten(), Dense(widths[0]), ReLUTheta(),
                          Dense(widths[1]), ReLU(), Dense(10)])
    model = gl.LocalGloroNet(f, epsilon=0.3)
    model.compile(keras.optimizers.Adam(2e-3), loss="crossentropy")
    model.fit(x[order], y[order], batch_size=128, epochs=1, verbose=0)
    return model


@pytest.fixture(scope="module")
def layerwise_mnist_model():
    """(model, x, y): a dense LocalGloroNet (Flatten, Dense(64), ReLU, Dense(32), ReLU,
    Dense(10)) trained 2 epochs at eps 0.3 with the layer-wise bound on 1,500 embedded
    MNIST images, and the first 100 test images with their labels."""
    import gloro_local as gl
    from gloro_local.layers import Dense, Flatten, ReLU
    x, y = gl.data.load_numpy("mnist", "train")
    order = np.random.default_rng(0).permutation(len(y))[:1500]
    keras.utils.set_random_seed(11)
    f = keras.Sequential([keras.Input((28, 28, 1)), Flatten(), Dense(64), ReLU(), Dense(32),
                          ReLU(), Dense(10)])
    model = gl.LocalGloroNet(f, epsilon=0.3, bound="local_layerwise")
    model.compile(keras.optimizers.Adam(2e-3), loss="crossentropy")
    model.fit(x[order], y[order], batch_size=100, epochs=2, verbose=0)
    test_x, test_y = gl.data.load_numpy("mnist", "test", limit=100)
    return model, test_x, test_y
