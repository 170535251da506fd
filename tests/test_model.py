"""LocalGloroNet as a Keras model: outputs, bounds against hand computations, validation.

Oracles: the worked example of the paper's appendix A.1 (local 1 vs global 9), the GloRo
bottom logit recomputed in numpy from an SVD, exact ties, the ordering local <= global
<= gloro of the three bounds on the same weights, and plain Keras layers against the
library's own layers with the same weights.
"""
from pathlib import Path

import keras
import numpy as np
import pytest

from conftest import tight_rule
import gloro_local as gl
from gloro_local import LocalGloroNet
from gloro_local.layers import Conv2D, Dense, Flatten, ReLU, ReLUTheta

MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
RTOL = 1e-5


def mnist(split, count, seed=0):
    """``count`` shuffled real MNIST examples (the shared copy, else the packaged sample)."""
    data_dir = MNIST_DIR if MNIST_DIR.is_dir() else None
    x, y = gl.data.load_numpy("mnist", split, data_dir=data_dir)
    order = np.random.default_rng(seed).permutation(len(y))[:count]
    return x[order], y[order]


def dense_net(sizes=(8, 16, 16, 4), activation=ReLUTheta, seed=0):
    """Input(sizes[0]) -> [Dense, activation]* -> Dense(sizes[-1]) with seeded weights."""
    layers = [keras.Input((sizes[0],))]
    for k, units in enumerate(sizes[1:]):
        layers.append(Dense(units, kernel_initializer=keras.initializers.GlorotNormal(seed + k),
                            bias_initializer=keras.initializers.RandomNormal(
                                stddev=0.1, seed=seed + 100 + k)))
        if k < len(sizes) - 2:
            layers.append(activation())
    return keras.Sequential(layers)


def mnist_dense_net(seed=0):
    init = keras.initializers.GlorotNormal
    return keras.Sequential([
        keras.Input((28, 28, 1)), Flatten(),
        Dense(64, kernel_initializer=init(seed)), ReLUTheta(),
        Dense(64, kernel_initializer=init(seed + 1)), ReLUTheta(),
        Dense(10, kernel_initializer=init(seed + 2))])


def numpy_forward(f, x):
    """Clean logits of a Sequential of Dense / ReLU / ReLUTheta, computed in numpy."""
    h = np.asarray(x, np.float64)
    for layer in f.layers:
        if isinstance(layer, (Dense, keras.layers.Dense)):
            h = h @ layer.kernel.numpy() + (layer.bias.numpy() if layer.use_bias else 0.0)
        elif isinstance(layer, ReLUTheta):
            h = np.minimum(np.maximum(h, 0.0), layer.theta.numpy())
        else:
            h = np.maximum(h, 0.0)
    return h


def hidden_kernels(f):
    dense = [layer for layer in f.layers if isinstance(layer, (Dense, keras.layers.Dense))]
    return [layer.kernel.numpy().astype(np.float64) for layer in dense[:-1]], dense[-1]


# ----------------------------------------------------------------------------- bounds


def test_local_bound_at_most_global_on_trained_model():
    x, y = mnist("train", 1024)
    model = LocalGloroNet(mnist_dense_net(), 0.3)
    model.compile(keras.optimizers.Adam(2e-3), loss="crossentropy")
    model.fit(x, y, batch_size=64, epochs=2, verbose=0)
    x_test, _ = mnist("test", 200)
    bounds = model.lipschitz_bounds(x_test, converge=True)
    assert bounds["converged"].all()
    assert bounds["local"].shape == bounds["global"].shape == (200,)
    assert np.all(bounds["local"] > 0)
    assert np.all(bounds["local"] <= bounds["global"] * (1 + RTOL))
    assert np.all(bounds["sigmas"] <= bounds["global_sigmas"] * (1 + RTOL))
    np.testing.assert_allclose(bounds["local"], np.prod(bounds["sigmas"], axis=1), rtol=RTOL)
    np.testing.assert_allclose(bounds["global"], np.prod(bounds["global_sigmas"]), rtol=RTOL)
    # the certificate's global norms are the kernels' spectral norms plus the margin
    kernels, _ = hidden_kernels(model.f)
    svd = np.array([np.linalg.svd(k, compute_uv=False)[0] for k in kernels])
    assert np.all(bounds["global_sigmas"] >= svd)
    np.testing.assert_allclose(bounds["global_sigmas"], svd, rtol=2e-5)
    # masking pays on a trained model: some samples are strictly tighter
    assert np.mean(bounds["local"] < 0.99 * bounds["global"]) > 0.5
    assert np.all((bounds["varying"] >= 0) & (bounds["varying"] <= 1))
    assert np.all(bounds["varying"] < 1)


def worked_example():
    """Appendix A.1: W1 = W2 = diag(3, 2, 1), theta = 1, x = [1, -1, 0], eps = 0.1."""
    f = keras.Sequential([keras.Input((3,)), Dense(3, use_bias=False), ReLUTheta(),
                          Dense(3, use_bias=False), ReLUTheta(), Dense(2)])
    w = np.diag([3.0, 2.0, 1.0]).astype(np.float32)
    f.layers[0].kernel.assign(w)
    f.layers[2].kernel.assign(w)
    return LocalGloroNet(f, 0.1), np.array([[1.0, -1.0, 0.0]], np.float32)


def test_worked_example_through_lipschitz_bounds():
    model, x = worked_example()
    bounds = model.lipschitz_bounds(x, converge=True)
    assert np.all(bounds["global_sigmas"] >= 3.0) and bounds["global"][0] >= 9.0
    np.testing.assert_allclose(bounds["global_sigmas"], [3.0, 3.0], rtol=2e-5)
    np.testing.assert_allclose(bounds["global"], [9.0], rtol=4e-5)
    np.testing.assert_allclose(bounds["sigmas"], [[1.0, 1.0]], rtol=RTOL)
    np.testing.assert_allclose(bounds["local"], [1.0], rtol=RTOL)
    np.testing.assert_allclose(bounds["varying"], [[1 / 3, 1 / 3]], rtol=RTOL)
    assert bounds["converged"].all()


def test_worked_example_radius_in_bottom_logit():
    """bound='gloro' on the worked example: bottom = z_i + eps * 9 * ||w_i - w_j||."""
    model, x = worked_example()
    f = model.f
    gloro = LocalGloroNet(f, 0.1, bound="gloro")
    gloro.global_norms.converge(gloro.hidden_seams(), tight_rule())
    z, bottom = np.split(gloro(x).numpy(), [2], axis=-1)
    w = f.layers[-1].kernel.numpy()
    j = int(np.argmax(z[0]))
    expected = z[0, 1 - j] + 0.1 * 9.0 * np.linalg.norm(w[:, 0] - w[:, 1])
    np.testing.assert_allclose(bottom[0, 0], expected, rtol=RTOL)


@pytest.mark.parametrize("eps", [0.05, 0.7])
def test_gloro_bottom_logit_by_hand(eps):
    f = dense_net((5, 12, 9, 4), activation=ReLU, seed=3)
    model = LocalGloroNet(f, eps, bound="gloro")
    model.global_norms.converge(model.hidden_seams(), tight_rule())
    x = np.random.default_rng(0).normal(size=(16, 5)).astype(np.float32)
    out = model(x).numpy()
    z = numpy_forward(f, x)
    kernels, last = hidden_kernels(f)
    lipschitz = np.prod([np.linalg.svd(k, compute_uv=False)[0] for k in kernels])
    w = last.kernel.numpy().astype(np.float64)
    expected = []
    for zs in z:
        j = int(np.argmax(zs))
        expected.append(max(zs[i] + eps * lipschitz * np.linalg.norm(w[:, i] - w[:, j])
                            for i in range(4) if i != j))
    np.testing.assert_allclose(out[:, :4], z, rtol=RTOL, atol=1e-5)
    np.testing.assert_allclose(out[:, 4], expected, rtol=RTOL, atol=1e-5)


def test_ties_are_never_certified():
    f = dense_net((4, 8, 3), activation=ReLU, seed=1)
    last = f.layers[-1]
    kernel = last.kernel.numpy()
    kernel[:, 1] = kernel[:, 0]  # classes 0 and 1 always tie
    last.kernel.assign(kernel)
    last.bias.assign([5.0, 5.0, -5.0])  # ... and beat class 2
    model = LocalGloroNet(f, 1e-3)
    x = np.random.default_rng(1).uniform(size=(8, 4)).astype(np.float32)
    out = model(x).numpy()
    logits, bottom = out[:, :3], out[:, 3]
    np.testing.assert_array_equal(logits[:, 0], logits[:, 1])
    assert np.all(logits[:, 0] > logits[:, 2])
    assert not np.any(gl.training.certified(logits, bottom).numpy())
    # a tie is refused by the tie rule alone, however low the bottom logit
    assert not np.any(gl.training.certified(logits, bottom - 100.0).numpy())
    assert np.all(gl.training.certified(logits + [[1e-3, 0, 0]], bottom - 100.0).numpy())
    model.compile(loss="crossentropy")
    metrics = model.evaluate(x, np.zeros(8, np.int32), verbose=0, return_dict=True)
    assert metrics["rejection_rate"] == 1.0
    assert metrics["vra"] == 0.0
    assert metrics["clean_acc"] == 1.0


def test_local_bottom_at_most_global_at_most_gloro():
    f = dense_net((6, 24, 24, 5), seed=7)
    for layer in f.layers:
        if isinstance(layer, ReLUTheta):  # small thresholds: many saturated neurons
            layer.theta.assign(np.full(layer.theta.shape, 0.3, np.float32))
    x = np.random.default_rng(2).normal(size=(64, 6)).astype(np.float32)
    bottoms = {}
    for bound in ("local", "global", "gloro"):
        model = LocalGloroNet(f, 0.2, bound=bound)
        model.global_norms.converge(model.hidden_seams(), tight_rule())
        out = model(x).numpy()
        bottoms[bound] = out[:, -1]
        logits = out[:, :-1]
    np.testing.assert_allclose(logits, numpy_forward(f, x), rtol=RTOL, atol=1e-5)
    assert np.all(bottoms["local"] <= bottoms["global"] + 1e-5)
    assert np.all(bottoms["global"] <= bottoms["gloro"] + 1e-5)
    # strictly tighter somewhere: masked norms, and the penultimate box of the ReLU-thetas
    assert np.any(bottoms["local"] < bottoms["global"] - 1e-3)
    assert np.any(bottoms["global"] < bottoms["gloro"] - 1e-3)
    assert np.all(bottoms["local"] > np.sort(logits, axis=1)[:, -2] - 1e-5)


# ----------------------------------------------------------------------- the Keras API


def test_output_shape_and_predict():
    model = LocalGloroNet(dense_net((8, 16, 5)), 0.1)
    x = np.random.default_rng(0).normal(size=(7, 8)).astype(np.float32)
    assert model(x).shape == (7, 6)
    assert model.compute_output_shape((None, 8)) == (None, 6)
    predicted = model.predict(x, batch_size=4, verbose=0)
    np.testing.assert_allclose(predicted, model(x).numpy(), rtol=1e-6, atol=1e-6)
    assert model.num_classes == 5


def test_epsilon_is_settable_and_validated():
    model = LocalGloroNet(dense_net(), 0.1)
    x = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)
    before = model(x).numpy()
    model.epsilon = 0.5
    assert model.epsilon.dtype == keras.config.floatx()
    assert float(model.epsilon.numpy()) == 0.5
    after = model(x).numpy()
    np.testing.assert_array_equal(after[:, :-1], before[:, :-1])
    assert np.all(after[:, -1] > before[:, -1])  # a larger ball: a larger bottom logit
    model.epsilon = np.float32(0.25)
    assert float(model.epsilon.numpy()) == 0.25
    for bad in (-1, 0, 0.0, float("nan"), float("inf"), np.float32(-0.5)):
        with pytest.raises(ValueError, match="epsilon"):
            model.epsilon = bad
    assert float(model.epsilon.numpy()) == 0.25
    for bad in (-1, 0.0, float("nan")):
        with pytest.raises(ValueError, match="epsilon"):
            LocalGloroNet(dense_net(), bad)


def test_invalid_bound_name():
    with pytest.raises(ValueError, match="bound"):
        LocalGloroNet(dense_net(), 0.1, bound="crown")
    assert LocalGloroNet(dense_net(), 0.1, bound="global").bound == "global"


def test_plain_keras_layers_match_library_layers():
    f = dense_net((6, 10, 10, 3), activation=ReLU, seed=5)
    plain = keras.Sequential([keras.Input((6,)), keras.layers.Dense(10), keras.layers.ReLU(),
                              keras.layers.Dense(10), keras.layers.ReLU(),
                              keras.layers.Dense(3)])
    plain.set_weights(f.get_weights())
    x = np.random.default_rng(3).normal(size=(12, 6)).astype(np.float32)
    ours, theirs = LocalGloroNet(f, 0.3), LocalGloroNet(plain, 0.3)
    for model in (ours, theirs):
        model.global_norms.converge(model.hidden_seams(), tight_rule())
    np.testing.assert_allclose(theirs(x).numpy(), ours(x).numpy(), rtol=1e-5, atol=1e-6)
    a, b = ours.lipschitz_bounds(x), theirs.lipschitz_bounds(x)
    for key in ("local", "global", "sigmas", "varying"):
        np.testing.assert_allclose(b[key], a[key], rtol=1e-5, atol=1e-6)


def test_plain_keras_conv_net_is_accepted():
    f = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, strides=2),
                          keras.layers.ReLU(), keras.layers.Flatten(),
                          keras.layers.Dense(3)])
    model = LocalGloroNet(f, 0.1)
    x = np.random.default_rng(0).uniform(size=(5, 8, 8, 1)).astype(np.float32)
    assert model(x).shape == (5, 4)
    bounds = model.lipschitz_bounds(x, converge=True)
    assert np.all(bounds["local"] <= bounds["global"] * (1 + RTOL))


@pytest.mark.parametrize("layer", [
    lambda: keras.layers.Dropout(0.5, name="my_dropout"),
    lambda: keras.layers.Activation("tanh", name="my_tanh"),
    lambda: keras.layers.ReLU(max_value=6.0, name="my_relu6"),
    lambda: keras.layers.BatchNormalization(name="my_batchnorm"),
])
def test_unknown_layer_is_a_type_error_naming_it(layer):
    layer = layer()
    f = keras.Sequential([keras.Input((4,)), Dense(6), layer, Dense(2)])
    with pytest.raises(TypeError, match=layer.name):
        LocalGloroNet(f, 0.1)


def test_dense_with_activation_is_refused():
    f = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="relu"),
                          Dense(2)])
    with pytest.raises(ValueError, match="activation"):
        LocalGloroNet(f, 0.1)


def test_f_must_be_a_sequential_with_known_input():
    with pytest.raises(TypeError, match="Sequential"):
        LocalGloroNet(Dense(3), 0.1)
    with pytest.raises(ValueError, match="Input"):
        LocalGloroNet(keras.Sequential([Dense(3)]), 0.1)
    with pytest.raises(ValueError, match="last layer"):
        LocalGloroNet(keras.Sequential([keras.Input((3,)), Dense(3), ReLU()]), 0.1)


def test_wrong_input_shape():
    model = LocalGloroNet(dense_net((8, 16, 4)), 0.1)
    for bad in (np.zeros((2, 5), np.float32), np.zeros((2, 8, 1), np.float32),
                np.zeros((8,), np.float32)):
        with pytest.raises(ValueError, match="shape"):
            model(bad)
        with pytest.raises(ValueError, match="shape"):
            model.lipschitz_bounds(bad)
    conv = LocalGloroNet(keras.Sequential([keras.Input((6, 6, 1)), Conv2D(2, 3), Flatten(),
                                           Dense(2)]), 0.1)
    with pytest.raises(ValueError, match="shape"):
        conv(np.zeros((2, 6, 5, 1), np.float32))


def test_local_layers_subset_uses_global_norm_elsewhere():
    f = dense_net((6, 20, 20, 20, 3), seed=11)
    for layer in f.layers:
        if isinstance(layer, ReLUTheta):
            layer.theta.assign(np.full(layer.theta.shape, 0.2, np.float32))
    x = np.random.default_rng(4).normal(size=(32, 6)).astype(np.float32)
    full = LocalGloroNet(f, 0.3).lipschitz_bounds(x, converge=True)
    subset = LocalGloroNet(f, 0.3, local_layers=[1]).lipschitz_bounds(x, converge=True)
    np.testing.assert_allclose(subset["global_sigmas"], full["global_sigmas"], rtol=RTOL)
    for k in (0, 2):  # outside local_layers: exactly the global norm, for every sample
        np.testing.assert_array_equal(subset["sigmas"][:, k],
                                      np.full(32, subset["global_sigmas"][k], np.float32))
    np.testing.assert_allclose(subset["sigmas"][:, 1], full["sigmas"][:, 1], rtol=1e-4)
    assert np.any(full["sigmas"][:, 0] < full["global_sigmas"][0] * 0.99)
    assert np.all(subset["local"] >= full["local"] * (1 - 1e-4))
    assert np.all(subset["local"] <= subset["global"] * (1 + RTOL))
    assert subset["iterations"].shape == (32, 1)
    with pytest.raises(ValueError, match="local_layers"):
        LocalGloroNet(f, 0.3, local_layers=[3])


def test_bounds_are_reproducible_outside_training():
    model = LocalGloroNet(dense_net(), 0.2)
    x = np.random.default_rng(5).normal(size=(10, 8)).astype(np.float32)
    np.testing.assert_array_equal(model(x).numpy(), model(x).numpy())
    a, b = model.lipschitz_bounds(x), model.lipschitz_bounds(x)
    np.testing.assert_array_equal(a["local"], b["local"])


def test_call_accepts_indexed_inputs():
    model = LocalGloroNet(dense_net(), 0.2)
    x = np.random.default_rng(6).normal(size=(3, 8)).astype(np.float32)
    np.testing.assert_array_equal(model((x, np.arange(3))).numpy(), model(x).numpy())
    with pytest.raises(ValueError, match="pair"):
        model((x, np.arange(3), np.arange(3)))
