"""Bad input never passes silently through the model API: epsilon, NaN/Inf, labels,
empty batches, shapes on every call path, activations inside linear layers."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import gloro_local as gl
from gloro_local.bounds import check_epsilon, input_checks
from gloro_local.layers import Conv2D, Dense, ReLU


def small_model(**kwargs):
    f = keras.Sequential([keras.Input((4, 4, 1)), Conv2D(4, 3), ReLU(),
                          keras.layers.Flatten(), Dense(3)])
    return gl.LocalGloroNet(f, 0.3, **kwargs)


def data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(size=(n, 4, 4, 1)).astype(np.float32), np.arange(n) % 3


def compiled(**kwargs):
    model = small_model()
    model.compile(keras.optimizers.Adam(1e-3), **kwargs)
    return model


# ------------------------------------------------------------------------------- epsilon

@pytest.mark.parametrize("eps", [True, False, "0.3", None, 1j, [0.3], np.array([0.3, 0.2]),
                                 tf.constant(True), tf.constant("0.3"), np.bool_(True)])
def test_epsilon_must_be_a_real_number(eps):
    with pytest.raises(ValueError, match="epsilon must be .*Received: epsilon="):
        check_epsilon(eps)


@pytest.mark.parametrize("eps", [np.float32(0.25), np.int64(2), np.array(0.25),
                                 tf.constant(0.25), keras.Variable(0.25), 0.25, 2])
def test_real_epsilons_are_accepted(eps):
    assert float(check_epsilon(eps)) == pytest.approx(float(np.asarray(eps)))


def test_epsilon_type_is_checked_on_every_entry_point():
    model = small_model()
    x, _ = data(4)
    with pytest.raises(ValueError, match="bool"):
        small_model().__class__(model.f, True)
    with pytest.raises(ValueError, match="str"):
        model.epsilon = "0.3"
    with pytest.raises(ValueError, match="bool"):
        model.certify(x, epsilon=True)
    assert float(model.epsilon.numpy()) == pytest.approx(0.3)


# ------------------------------------------------------------------------------- NaN / Inf

@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_raise_on_every_path(bad):
    model = small_model()
    x, _ = data(8)
    x[3, 1, 2, 0] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        model(x)
    model.predict(x[:2], verbose=0)  # trace predict on good data first
    with pytest.raises(ValueError, match="^Inputs contain NaN or Inf.$"):
        model.predict(x, verbose=0)
    with pytest.raises(ValueError, match="sample 3"):
        model.lipschitz_bounds(x)
    with pytest.raises(ValueError, match="sample 3"):
        model.lipschitz_bounds(x, converge=True)
    with pytest.raises(ValueError, match="sample 3"):
        model.certify(x)


def test_nan_in_training_data_stops_fit_at_its_batch_before_any_update(tmp_path):
    model = compiled()
    x, y = data(32)
    x[20, 0, 0, 0] = np.nan  # batch 2 of batch size 16
    checkpoint = tmp_path / "model.keras"
    model.fit(x[:16], y[:16], batch_size=16, epochs=1, verbose=0)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=r"^Inputs contain NaN or Inf \(epoch 1, batch 2\)\.$"):
        model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0,
                  callbacks=[keras.callbacks.ModelCheckpoint(str(checkpoint))])
    after = model.get_weights()
    assert all(np.all(np.isfinite(w)) for w in after)
    assert not checkpoint.exists()
    assert any(not np.array_equal(b, a) for b, a in zip(before, after))  # batch 1 trained


def test_non_finite_loss_stops_fit_before_a_checkpoint_is_written(tmp_path):
    model = compiled()
    x, y = data(32)
    weights = np.ones(32, np.float32)
    weights[5] = np.inf  # finite inputs and labels, non-finite loss
    checkpoint = tmp_path / "model.keras"
    with pytest.raises(FloatingPointError, match=r"loss is (nan|inf) \(epoch 1, batch 1\)"):
        model.fit(x, y, sample_weight=weights, batch_size=16, epochs=2, shuffle=False,
                  verbose=0, callbacks=[keras.callbacks.ModelCheckpoint(str(checkpoint))])
    assert not checkpoint.exists()


# --------------------------------------------------------------------------------- labels

@pytest.mark.parametrize("labels, match", [
    ([0.5, 1, 2, 0, 1, 2, 0, 1], "integer class ids. Received: label 0.5 at index 0"),
    ([0, 1, 2, 3, 1, 2, 0, 1], r"\[0, 3\). Received: label 3 at index 3"),
    ([0, 1, 2, 0, -1, 2, 0, 1], r"\[0, 3\). Received: label -1 at index 4"),
    ([True] * 8, "dtype bool"),
    (["a"] * 8, "dtype <U1"),
    ([0, 1, 2], "8 inputs but 3 labels|'y' sizes: 3"),  # the latter: Keras's own check
])
def test_bad_array_labels_are_refused_before_fit_starts(labels, match):
    model = compiled()
    x, _ = data(8)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=match):
        model.fit(x, np.array(labels), epochs=1, verbose=0)
    with pytest.raises(ValueError, match=match):
        model.certify(x, np.array(labels))
    assert all(np.array_equal(b, a) for b, a in zip(before, model.get_weights()))


def test_bad_validation_and_evaluate_labels_are_refused():
    model = compiled()
    x, y = data(8)
    with pytest.raises(ValueError, match="label 7"):
        model.fit(x, y, validation_data=(x, np.full(8, 7)), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="label 1.5"):
        model.evaluate(x, np.full(8, 1.5), verbose=0)


@pytest.mark.parametrize("labels, match", [
    (np.full(16, 1.5, np.float32), r"^Labels must be integer class ids \(epoch 1, batch 1\)\.$"),
    (np.full(16, 5), r"^Labels must be class ids < 3 \(epoch 1, batch 1\)\.$"),
    (np.full(16, -2), r"^Labels must be class ids >= 0 \(epoch 1, batch 1\)\.$"),
])
def test_bad_labels_in_a_dataset_are_one_line(labels, match):
    model = compiled()
    x, _ = data(16)
    dataset = tf.data.Dataset.from_tensor_slices((x, labels)).batch(8)
    with pytest.raises(ValueError, match=match):
        model.fit(dataset, epochs=1, verbose=0)


# ------------------------------------------------------------------------ empty batches

def test_empty_inputs_give_empty_results():
    model = small_model()
    empty = np.zeros((0, 4, 4, 1), np.float32)
    assert model(empty).shape == (0, 4)
    assert model.predict(empty, verbose=0).shape == (0, 4)
    certificate = model.certify(empty, np.zeros(0, np.int32))
    assert certificate.certified.shape == (0,) and certificate.counts() == {}
    assert certificate.iterations.shape == (0, 1)
    for converge in (False, True):
        bounds = model.lipschitz_bounds(empty, converge=converge)
        assert bounds["local"].shape == (0,) and bounds["sigmas"].shape == (0, 1)


def test_empty_input_of_the_wrong_shape_is_still_refused():
    with pytest.raises(ValueError, match=r"\(4, 4, 1\)"):
        small_model()(np.zeros((0, 5, 5, 1), np.float32))


# ------------------------------------------------------------------------------ shapes

@pytest.mark.parametrize("shape", [(5, 5, 5, 1), (5, 4, 4, 2), (5, 4, 4), (5, 16)])
def test_wrong_shape_after_a_good_predict_is_refused(shape):
    """(5, 4, 4, 2) would otherwise run as a grouped convolution and return numbers."""
    model = small_model()
    x, _ = data(5)
    model.predict(x, verbose=0)
    with pytest.raises(ValueError, match=r"^Expected inputs of shape \(batch,\) \+ "
                                         r"\(4, 4, 1\)"):
        model.predict(np.zeros(shape, np.float32), verbose=0)
    with pytest.raises(ValueError, match=r"\(4, 4, 1\)"):
        model(np.zeros(shape, np.float32))
    with pytest.raises(ValueError, match=r"\(4, 4, 1\)"):
        model.certify(np.zeros(shape, np.float32))


def test_integer_images_are_their_float_values():
    model = small_model()
    x = np.random.default_rng(0).integers(0, 3, (6, 4, 4, 1)).astype(np.uint8)
    np.testing.assert_array_equal(model(x).numpy(), model(x.astype(np.float32)).numpy())


# ---------------------------------------------------------------- layers the model refuses

def test_dense_1_logit_layer_is_refused_when_the_model_is_built():
    f = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5), keras.layers.ReLU(),
                          keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="at least 2 classes"):
        gl.LocalGloroNet(f, 0.3)


def test_softmax_inside_the_logit_layer_says_to_output_raw_logits():
    f = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5), keras.layers.ReLU(),
                          keras.layers.Dense(3, activation="softmax")])
    with pytest.raises(ValueError, match="not supported.*raw logits.*activation='softmax'"):
        gl.LocalGloroNet(f, 0.3)


@pytest.mark.parametrize("make", [lambda: keras.layers.Dense(5, activation="relu"),
                                  lambda: Dense(5, activation="tanh")])
def test_hidden_activation_inside_dense_says_how_to_write_it(make):
    with pytest.raises(ValueError, match=r"not supported.*activation=None\) followed by.*"
                                         r"keras.layers.ReLU\(\)"):
        gl.LocalGloroNet(keras.Sequential([keras.Input((4,)), make(), Dense(3)]), 0.3)


def test_keras_activation_relu_layer_is_the_relu():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4)).astype(np.float32)
    dense = keras.layers.Dense(6)
    logits = keras.layers.Dense(3)
    with_relu = keras.Sequential([keras.Input((4,)), dense, keras.layers.ReLU(), logits])
    with_activation = keras.Sequential([keras.Input((4,)), dense,
                                        keras.layers.Activation("relu"), logits])
    a = gl.LocalGloroNet(with_relu, 0.3)
    b = gl.LocalGloroNet(with_activation, 0.3)
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    np.testing.assert_array_equal(a.certify(x).margin, b.certify(x).margin)
    with pytest.raises(TypeError, match="Activation"):
        gl.LocalGloroNet(keras.Sequential([keras.Input((4,)), dense,
                                           keras.layers.Activation("tanh"), logits]), 0.3)


# ------------------------------------------------------------------- image value range

@pytest.mark.parametrize("scale, dtype", [(255, np.uint8), (255.0, np.float32)])
def test_images_in_0_255_get_a_warning(monkeypatch, scale, dtype):
    monkeypatch.setattr(input_checks, "_WARNED", set())
    model = compiled()
    x, y = data(16)
    pixels = (x * scale).astype(dtype)
    with pytest.warns(UserWarning, match=r"training inputs .*expects float images in \[0, 1\]"):
        model.fit(pixels, y, epochs=1, verbose=0)
    with pytest.warns(UserWarning, match=r"inputs .*expects float images in \[0, 1\]"):
        model.certify(pixels[:4], attack_steps=0)


def test_images_in_0_1_get_no_warning(monkeypatch, recwarn):
    monkeypatch.setattr(input_checks, "_WARNED", set())
    model = compiled()
    x, y = data(16)
    model.fit(x, y, epochs=1, verbose=0)
    model.certify(x[:4], attack_steps=0)
    assert not [w for w in recwarn if "expects float images" in str(w.message)]
