"""gl.wrap: a LocalGloroNet from a plain Keras classifier, a LocalGloroNet or a saved file
of either, with the plain model's logits unchanged."""
import keras
import numpy as np
import pytest

import gloro_local as gl


def plain_classifier(seed=0):
    """A small plain keras.Sequential on 8x8x1 images, 3 classes, random weights."""
    init = keras.initializers.GlorotUniform(seed=seed)
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3, strides=2, padding="same", kernel_initializer=init),
        keras.layers.ReLU(),
        keras.layers.Flatten(),
        keras.layers.Dense(16, kernel_initializer=init),
        keras.layers.ReLU(),
        keras.layers.Dense(3, kernel_initializer=init, bias_initializer="ones"),
    ])


def images(count=6):
    return np.random.default_rng(0).random((count, 8, 8, 1), dtype=np.float32)


def check_wraps(plain, wrapped, epsilon):
    assert isinstance(wrapped, gl.LocalGloroNet)
    assert float(wrapped.epsilon.numpy()) == pytest.approx(epsilon)
    x = images()
    outputs = wrapped(x).numpy()
    assert outputs.shape == (6, 4)  # 3 logits and the bottom logit
    np.testing.assert_array_equal(outputs[:, :3], plain(x).numpy())


def test_wrap_a_plain_classifier_keeps_its_logits():
    plain = plain_classifier()
    wrapped = gl.wrap(plain, 0.1, bound="global")
    check_wraps(plain, wrapped, 0.1)
    assert wrapped.bound == "global" and wrapped.f is plain


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_wrap_a_saved_plain_classifier(tmp_path, suffix):
    plain = plain_classifier(seed=3)
    path = tmp_path / f"plain{suffix}"
    plain.save(path)
    check_wraps(plain, gl.wrap(path, 0.2), 0.2)
    check_wraps(plain, gl.wrap(str(path), 0.2), 0.2)
    certificate = gl.wrap(path, 0.01).certify(images(), np.int32([0, 1, 2, 0, 1, 2]))
    assert len(certificate.certified) == 6


def test_wrap_a_local_gloro_net_and_its_file(tmp_path):
    model = gl.LocalGloroNet(plain_classifier(), epsilon=0.3)
    model.compile(keras.optimizers.Adam(1e-3), loss="crossentropy")
    assert gl.wrap(model) is model
    assert gl.wrap(model, 0.5) is model and float(model.epsilon.numpy()) == 0.5
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = gl.wrap(path)
    assert isinstance(loaded, gl.LocalGloroNet)
    assert float(loaded.epsilon.numpy()) == 0.5
    np.testing.assert_array_equal(loaded(images()).numpy(), model(images()).numpy())
    with pytest.raises(ValueError, match=r"Received: \['bound'\] for a LocalGloroNet"):
        gl.wrap(model, bound="gloro")


def test_wrap_errors(tmp_path):
    with pytest.raises(ValueError, match="needs epsilon.*Received: epsilon=None"):
        gl.wrap(plain_classifier())
    with pytest.raises(FileNotFoundError, match="nowhere.keras"):
        gl.wrap(tmp_path / "nowhere.keras", 0.1)
    (tmp_path / "model.txt").write_text("not a model")
    with pytest.raises(ValueError, match="Expected a .keras or .h5 file"):
        gl.wrap(tmp_path / "model.txt", 0.1)
    (tmp_path / "broken.keras").write_bytes(b"PK not really a zip")
    with pytest.raises(ValueError, match="Could not load a Keras model from"):
        gl.wrap(tmp_path / "broken.keras", 0.1)
    with pytest.raises(TypeError, match="Received: model_or_path of type ndarray"):
        gl.wrap(np.zeros(3), 0.1)
    dropout = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8),
                                keras.layers.Dropout(0.5), keras.layers.Dense(3)])
    with pytest.raises(TypeError, match="'dropout.*' of type Dropout is not supported"):
        gl.wrap(dropout, 0.1)
    inputs = keras.Input((4,))
    functional = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    with pytest.raises(TypeError, match="of type Functional"):
        gl.wrap(functional, 0.1)
