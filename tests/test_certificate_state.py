"""No state the model holds changes a certificate: stored power-iteration vectors (random,
stale, a non-top singular vector, NaN), keras.config.floatx(), compiled passes cached
before ``local_layers`` changed, the batch a point sits in, the cheap stages."""
import keras
import numpy as np
import pytest

from conftest import sectors
import gloro_local as gl
from gloro_local.layers import Dense, ReLU, ReLUTheta

FIELDS = ("certified", "reason", "prediction")


def second_singular_vector_example(bound):
    """Dense(2) ReLU Dense(2) with first kernel diag(2, 1), biases 5 (every neuron
    active), eps 0.5; the stored global vector of the first layer is (0, 1), the
    singular vector of the *second* singular value."""
    f = keras.Sequential([keras.Input((2,)), Dense(2), ReLU(), Dense(2)])
    f.layers[0].set_weights([np.diag([2.0, 1.0]).astype(np.float32),
                             np.array([5.0, 5.0], np.float32)])
    f.layers[2].set_weights([np.eye(2, dtype=np.float32), np.zeros(2, np.float32)])
    model = gl.LocalGloroNet(f, 0.5, bound=bound)
    model.global_norms.iterates[0].assign(np.array([[0.0, 1.0]], np.float32))
    return model


@pytest.mark.parametrize("bound", ["local", "global", "gloro"])
def test_a_stored_non_top_singular_vector_does_not_shrink_the_bound(bound):
    model = second_singular_vector_example(bound)
    x = np.stack([np.linspace(0.45, 0.55, 11), np.zeros(11)], 1).astype(np.float32)
    # class 1 wins once 2 x0 + 5 < 5 + x1, i.e. at x0 < 0 for x1 = 0: within 0.45..0.55
    assert np.all(np.argmax(model.f(x - [[0.56, 0.0]]), 1) == 1)
    certificate = model.certify(x)
    assert not certificate.certified.any()
    assert np.all(certificate.global_lipschitz >= 2.0)
    assert np.all(certificate.lipschitz >= 2.0)


def classifier():
    return keras.Sequential([keras.Input((2,)), Dense(24), ReLUTheta(), Dense(24), ReLU(),
                             Dense(3)])


@pytest.fixture(scope="module")
def trained():
    """A small 2-D model whose certificates include points only the local bound
    certifies, and the points to certify."""
    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    model = gl.LocalGloroNet(classifier(), epsilon=0.08)
    model.compile(keras.optimizers.Adam(1e-2), loss="crossentropy")
    model.fit(*sectors(rng, 3000), batch_size=100, epochs=6, verbose=0)
    x, _ = sectors(rng, 160)
    reference = model.certify(x, cheap_stages=False)
    assert 0 < reference.certified.mean() < 1
    return model, x, reference


def same(a, b):
    for field in FIELDS:
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    np.testing.assert_allclose(a.lipschitz, b.lipschitz, rtol=1e-5)


def fresh_copy(model, **overrides):
    config = {**model.get_config(), **overrides}
    copy = gl.LocalGloroNet.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def test_local_only_points_exist(trained):
    model, x, _ = trained
    certificate = model.certify(x)
    assert np.any(certificate.reason == "local") and np.any(certificate.reason == "global")


@pytest.mark.parametrize("state", ["random", "non-top", "zeros", "nan"])
def test_stored_global_vectors_do_not_change_certificates(trained, state):
    model, x, reference = trained
    saved = [iterate.numpy() for iterate in model.global_norms.iterates]
    rng = np.random.default_rng(1)
    try:
        for iterate in model.global_norms.iterates:
            value = {"random": rng.standard_normal(iterate.shape),
                     "zeros": np.zeros(iterate.shape),
                     "nan": np.full(iterate.shape, np.nan)}.get(state)
            if state == "non-top":
                kernel = model.f.layers[0].kernel.numpy() if iterate.shape[-1] == 2 else \
                    model.f.layers[2].kernel.numpy()
                value = np.linalg.svd(kernel.T)[2][-1][None]  # the last right singular vector
            iterate.assign(value.astype(np.float32))
        same(model.certify(x, cheap_stages=False), reference)
    finally:
        for iterate, value in zip(model.global_norms.iterates, saved):
            iterate.assign(value)


def test_floatx_float64_gives_the_same_certificates(trained):
    model, x, reference = trained
    try:
        keras.config.set_floatx("float64")
        keras.config.set_dtype_policy("float64")
        same(model.certify(x, cheap_stages=False), reference)
        np.testing.assert_array_equal(model.certify(x).certified, reference.certified)
        built_in_float64 = gl.LocalGloroNet(classifier(), epsilon=0.08)
        built_in_float64.set_weights(model.get_weights())
        assert built_in_float64.f.layers[0].kernel.dtype == "float64"
        same(built_in_float64.certify(x, cheap_stages=False), reference)
    finally:
        keras.config.set_floatx("float32")
        keras.config.set_dtype_policy("float32")


def test_changing_local_layers_recompiles(trained):
    model, x, reference = trained
    saved = model.local_layers
    try:
        model.local_layers = [1]
        changed = model.certify(x, cheap_stages=False)
        same(changed, fresh_copy(model, local_layers=[1]).certify(x, cheap_stages=False))
        assert changed.iterations.shape == (len(x), 1)
        assert np.all(changed.lipschitz >= reference.lipschitz * (1 - 1e-6))
    finally:
        model.local_layers = saved
    same(model.certify(x, cheap_stages=False), reference)


def test_a_points_certificate_does_not_depend_on_its_batch(trained):
    model, x, reference = trained
    same(model.certify(x, cheap_stages=False, batch_size=7), reference)
    reversed_order = model.certify(x[::-1], cheap_stages=False)
    for field in FIELDS:
        np.testing.assert_array_equal(getattr(reversed_order, field)[::-1],
                                      getattr(reference, field))
    for k in np.flatnonzero(reference.reason == "local")[:5]:
        alone = model.certify(x[k:k + 1], cheap_stages=False)
        assert alone.certified[0] and alone.reason[0] == "local"
        np.testing.assert_allclose(alone.lipschitz[0], reference.lipschitz[k], rtol=1e-5)


def test_cheap_stages_and_repeated_runs_agree(trained):
    model, x, reference = trained
    for _ in range(2):
        full = model.certify(x)
        np.testing.assert_array_equal(full.certified, reference.certified)


def test_lipschitz_bounds_are_the_certificates_numbers_for_any_model_seed(trained):
    model, x, _ = trained
    copy = fresh_copy(model, seed=3)
    bounds = copy.lipschitz_bounds(x[:40], converge=True)
    certificate = copy.certify(x[:40], attack_steps=0, cheap_stages=False)
    np.testing.assert_allclose(certificate.lipschitz, bounds["local"], rtol=1e-6)


def test_monitoring_bounds_keep_their_local_estimates(trained):
    model, x, _ = trained
    quick = model.lipschitz_bounds(x, converge=False)
    assert not quick["converged"].any()  # a fixed number of steps
    assert np.mean(quick["local"] < quick["global"] * 0.99) > 0.3


def rescaled_network(scale):
    """The same function for every scale: layer 1 times ``scale``, layers 2 and 3 times
    scale^-1/2 (Dense(4) ReLU Dense(4) ReLU Dense(4) ReLU Dense(2) on the plane)."""
    f = keras.Sequential([keras.Input((2,)), Dense(4), ReLU(), Dense(4), ReLU(), Dense(4),
                          ReLU(), Dense(2)])
    f.layers[0].kernel.assign(np.array([[1, -1, 0, 0], [0, 0, 1, -1]], np.float32) * scale)
    for index in (2, 4):
        f.layers[index].kernel.assign(np.eye(4, dtype=np.float32) / np.sqrt(scale))
    f.layers[6].kernel.assign(np.array([[1, 0], [-1, 0], [0, 1], [0, -1]], np.float32))
    return f


@pytest.mark.parametrize("scale", [1e-12, 1e-20, 1e20])
def test_extreme_weight_scales_never_certify_a_broken_point(scale):
    """float32 squares of weights around 1e-20 underflow to 0; neither the ball radii nor
    the power iteration may then collapse a bound (a reproduced failure certified every
    point)."""
    eps = 0.3
    x = np.random.default_rng(0).uniform(-1, 1, (200, 2)).astype(np.float32)
    f = rescaled_network(scale)
    angles = np.linspace(0, 2 * np.pi, 1441)
    circle = x[:, None, :] + eps * np.stack([np.cos(angles), np.sin(angles)], -1)[None]
    prediction = np.argmax(f(x), -1)
    broken = np.any(np.argmax(f(circle.reshape(-1, 2)), -1).reshape(len(x), -1)
                    != prediction[:, None], axis=1)
    assert broken.sum() > 50
    reference = gl.LocalGloroNet(rescaled_network(1.0), eps).certify(x, attack_steps=0)
    certificate = gl.LocalGloroNet(f, eps).certify(x, attack_steps=0, cheap_stages=False)
    assert not np.any(certificate.certified & broken)
    assert np.all(certificate.certified <= reference.certified | (reference.reason == "local"))
    assert certificate.certified.sum() >= 0.9 * reference.certified.sum()
