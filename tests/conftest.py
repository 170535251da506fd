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


def tight_rule():
    """A stopping rule tight enough for comparisons with exact norms at rtol 1e-4/1e-5."""
    from gloro_local.bounds import StoppingRule
    return StoppingRule(max_iterations=10000, tol=1e-6, rtol=1e-6, patience=5)
