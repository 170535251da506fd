"""The certificate's local norms against exact norms of the materialised masked operators.

A 2C2F network is trained briefly on real MNIST; for test points, the masks of the
certificate's propagation select rows and columns of every hidden layer's explicit
matrix (exact: the images of basis vectors), whose top singular value is computed in
float64. Each local norm the certificate uses must be within 1e-4 relative of that value
and never above the layer's sound global bound.
"""
from pathlib import Path

import keras
import numpy as np
import pytest

from conftest import explicit_matrix
import gloro_local as gl
from gloro_local import architectures
from gloro_local.bounds import certificate_globals, check_epsilon, propagate

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
EPS, POINTS = 0.3, 8


def mnist(split, limit=None):
    return gl.data.load_numpy("mnist", split, data_dir=MNIST if MNIST.is_dir() else None,
                              limit=limit)


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    x, y = mnist("train")
    order = np.random.default_rng(0).permutation(len(y))[:3000]
    model = gl.LocalGloroNet(architectures.cnn_2C2F(seed=0), epsilon=EPS, power_iterations=2)
    model.compile(keras.optimizers.Adam(1e-3), loss="crossentropy")
    model.fit(x[order], y[order], batch_size=128, epochs=2, verbose=0)
    x_test, _ = mnist("test", POINTS)
    return model, x_test


def exact_masked_norms(model, x):
    """(B, hidden layers) float64 top singular values of M_out A M_in for the masks of
    the certificate's propagation."""
    network = model.network
    globals_ = certificate_globals(network)
    propagation = propagate(network, x, check_epsilon(EPS), globals_.sigmas)
    exact = np.zeros((len(x), len(network.hidden)))
    for k, (seam, shape) in enumerate(network.hidden_layers()):
        matrix = explicit_matrix(seam.linear, shape)  # rows: outputs, columns: inputs
        in_mask, out_mask = propagation.in_masks[k], propagation.out_masks[k]
        for b in range(len(x)):
            rows = np.ones(matrix.shape[0], bool) if out_mask is None else \
                np.asarray(out_mask[b]).reshape(-1) > 0
            cols = np.ones(matrix.shape[1], bool) if in_mask is None else \
                np.asarray(in_mask[b]).reshape(-1) > 0
            masked = matrix[rows][:, cols]
            gram = masked @ masked.T if masked.shape[0] <= masked.shape[1] else masked.T @ masked
            exact[b, k] = np.sqrt(max(np.linalg.eigvalsh(gram)[-1], 0.0)) if gram.size else 0.0
    return exact, np.array(globals_.sigmas)


def test_local_norms_match_exact_masked_norms(trained):
    model, x = trained
    bounds = model.lipschitz_bounds(x, converge=True)
    exact, sound = exact_masked_norms(model, x)
    assert bounds["converged"].all()
    sigmas = bounds["sigmas"]
    assert np.all(sigmas <= sound * (1 + 1e-6))
    local = sigmas < sound * (1 - 1e-6)  # the layers where a local estimate was used
    assert local.mean() > 0.3  # meaningful: masks really delete neurons here
    relative = (exact - sigmas) / exact
    assert np.all(relative[local] <= 1e-4), relative[local].max()
    assert np.all(relative[local] >= -1e-5), relative[local].min()  # estimates from below
    assert np.all(exact <= sound)


def test_certify_uses_the_same_norms(trained):
    model, x = trained
    certificate = model.certify(x, attack_steps=0, cheap_stages=False)
    bounds = model.lipschitz_bounds(x, converge=True)
    np.testing.assert_allclose(certificate.lipschitz, bounds["local"], rtol=1e-6)
