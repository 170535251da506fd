"""Every layer trains with plain Keras, round-trips its config and saves exactly."""
import keras
import numpy as np
import pytest

from gloro_local.layers import (ClippedMaxMin, Conv2D, Dense, Flatten, MaxMin, ReLU, ReLUTheta,
                                as_seam)

CLASSES = (Dense, Conv2D, Flatten, ReLU, ReLUTheta, MaxMin, ClippedMaxMin)
MODELS = {  # the layer under test: (input shape, layers)
    "Dense": ((6,), lambda: [Dense(8), Dense(3, use_bias=False)]),
    "Conv2D": ((6, 6, 2), lambda: [Conv2D(4, 3, strides=2, padding="same"), Flatten(),
                                   Dense(3)]),
    "Flatten": ((3, 3, 2), lambda: [Flatten(), Dense(3)]),
    "ReLU": ((6,), lambda: [Dense(8), ReLU(), Dense(3)]),
    "ReLUTheta": ((6,), lambda: [Dense(8), ReLUTheta(theta_init=0.5), Dense(3)]),
    "MaxMin": ((6,), lambda: [Dense(8), MaxMin(), Dense(3)]),
    "ClippedMaxMin": ((6, 6, 2), lambda: [Conv2D(4, 3), ClippedMaxMin(0.8, -0.3),
                                          Flatten(), Dense(3)]),
}


def data(input_shape, n=32):
    rng = np.random.default_rng(0)
    return (2 * rng.standard_normal((n,) + input_shape).astype(np.float32),
            rng.integers(0, 3, n))


def build(name):
    input_shape, make_layers = MODELS[name]
    return keras.Sequential([keras.Input(input_shape)] + make_layers())


@pytest.fixture(params=list(MODELS), scope="module")
def trained(request):
    """(name, model after one epoch of fit, inputs, weights before training)."""
    keras.utils.set_random_seed(0)
    model = build(request.param)
    before = [w.numpy() for w in model.weights]
    model.compile(optimizer=keras.optimizers.Adam(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = data(MODELS[request.param][0])
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    return request.param, model, x, before


def test_fit_updates_every_weight(trained):
    name, model, _, before = trained
    assert any(type(layer).__name__ == name for layer in model.layers)
    for variable, old in zip(model.weights, before):
        assert not np.array_equal(variable.numpy(), old), variable.path


def test_config_round_trip(trained):
    _, model, x, _ = trained
    clone = keras.Sequential.from_config(model.get_config())
    for layer, copy in zip(model.layers, clone.layers):
        assert type(copy) is type(layer)
        assert copy.get_config() == layer.get_config()
        if type(layer) in CLASSES:
            again = type(layer).from_config(layer.get_config())
            assert again.get_config() == layer.get_config()
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(clone.predict(x, verbose=0), model.predict(x, verbose=0))


def test_constructor_arguments_survive_config():
    theta = ReLUTheta.from_config(ReLUTheta(theta_init=0.25).get_config())
    clipped = ClippedMaxMin.from_config(ClippedMaxMin(0.8, -0.3).get_config())
    assert theta.theta_init == 0.25
    assert (clipped.upper_init, clipped.lower_init) == (0.8, -0.3)
    assert ClippedMaxMin(0.7).lower_init == -0.7
    for cls in CLASSES:
        assert keras.saving.get_registered_name(cls) == f"gloro_local>{cls.__name__}"


@pytest.mark.parametrize("extension", ["keras", "h5"])
def test_save_and_reload_exactly(trained, extension, tmp_path):
    _, model, x, _ = trained
    path = str(tmp_path / f"model.{extension}")
    model.save(path)
    custom = {cls.__name__: cls for cls in CLASSES} if extension == "h5" else None
    loaded = keras.models.load_model(path, custom_objects=custom)
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    assert len(loaded.weights) == len(model.weights)
    for new, old in zip(loaded.weights, model.weights):
        np.testing.assert_array_equal(new.numpy(), old.numpy())
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_theta_stays_nonnegative_under_huge_steps():
    """Saturated neurons output theta; a target of -10 pushes theta far below 0."""
    model = keras.Sequential([keras.Input((3,)), ReLUTheta()])
    model.compile(optimizer=keras.optimizers.SGD(100.0), loss="mse")
    x = np.full((16, 3), 5.0, np.float32)
    model.fit(x, np.full((16, 3), -10.0, np.float32), batch_size=4, epochs=2, verbose=0)
    theta = model.layers[0].theta.numpy()
    assert np.all(theta >= 0.0)
    np.testing.assert_array_equal(theta, 0.0)  # the constraint was really exercised


@pytest.mark.parametrize("make", [ReLU, keras.layers.ReLU, ReLUTheta, ClippedMaxMin])
def test_varying_mask_is_exact(make):
    """For a monotone activation and lo < hi, a neuron is constant over the box exactly when
    act(lo) == act(hi). Rows 0-7 start exactly at the upper threshold (theta, A), rows
    8-15 end exactly at the lower one (0, B)."""
    layer = as_seam(make())
    rng = np.random.default_rng(0)
    lo = rng.uniform(-2.0, 2.0, (64, 6)).astype(np.float32)
    width = rng.uniform(0.01, 1.0, lo.shape).astype(np.float32)
    layer.build(lo.shape)
    lower, upper = np.zeros(6, np.float32), None
    if isinstance(layer, ReLUTheta):
        layer.theta.assign(rng.uniform(0.1, 1.5, layer.theta.shape))
        upper = layer.theta.numpy()
    if isinstance(layer, ClippedMaxMin):
        layer.upper.assign(rng.uniform(-0.5, 1.0, layer.upper.shape))
        layer.lower.assign(rng.uniform(-1.0, 0.5, layer.lower.shape))
        upper, lower = np.tile(layer.upper.numpy(), 2), np.tile(layer.lower.numpy(), 2)
    if upper is not None:
        lo[:8] = upper
    lo[8:16] = lower - width[8:16]
    hi = lo + width
    hi[8:16] = lower
    expected = (layer.call(lo).numpy() != layer.call(hi).numpy()).astype(np.float32)
    varying = np.asarray(layer.varying(lo, hi))
    np.testing.assert_array_equal(varying, expected)
    assert 0.1 < varying.mean() < 0.9
