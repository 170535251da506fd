"""Training options for speed: training_dtype='auto', box_gradient=False, the defaults."""
import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

import gloro_local as gl
from gloro_local.bounds import check_epsilon, propagate
from gloro_local.layers import Dense, ReLU
from gloro_local.training.precision import fast_bfloat16, resolve_training_dtype


def cpuinfo(tmp_path, flags):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 avx2 {flags}\n")
    return path


@pytest.mark.parametrize("flags, expected", [("avx512f avx512_bf16", "bfloat16"),
                                             ("amx_tile amx_bf16", "bfloat16"),
                                             ("avx512f avx512_vnni", "float32")])
def test_auto_picks_bfloat16_only_with_native_support(tmp_path, caplog, flags, expected):
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU decides before the CPU flags")
    with caplog.at_level(logging.INFO, logger="gloro_local"):
        assert resolve_training_dtype("auto", cpuinfo(tmp_path, flags)) == expected
    assert expected in caplog.text  # the choice is said in the log
    assert fast_bfloat16(tmp_path / "missing") is False  # unknown hardware: float32


def test_explicit_training_dtypes_are_kept_and_others_refused(tmp_path):
    path = cpuinfo(tmp_path, "avx512_bf16")
    assert resolve_training_dtype("float32", path) == "float32"
    assert resolve_training_dtype("bfloat16", path) == "bfloat16"
    with pytest.raises(ValueError, match="Received: training_dtype='float16'"):
        resolve_training_dtype("float16", path)


def small_model(**kwargs):
    init = keras.initializers.GlorotUniform
    f = keras.Sequential([keras.Input((3,)), Dense(6, kernel_initializer=init(1)), ReLU(),
                          Dense(5, kernel_initializer=init(2)), ReLU(),
                          Dense(2, kernel_initializer=init(3))])
    return gl.LocalGloroNet(f, 0.5, bound="global", **kwargs)


def test_defaults_and_config_round_trip():
    model = small_model()
    assert model.power_iterations == 2 and model.box_gradient
    assert model.training_dtype == resolve_training_dtype("auto")
    config = small_model(box_gradient=False, training_dtype="float32").get_config()
    again = gl.LocalGloroNet.from_config(config)
    assert again.box_gradient is False and again.training_dtype == "float32"
    assert gl.LocalGloroNet.from_config(model.get_config()).training_dtype_option == "auto"


def box_width_gradients(box_gradient):
    """Gradients of the penultimate box width in a net whose ball never clips the box."""
    model = small_model()
    x = tf.constant(np.random.default_rng(0).random((4, 3)), tf.float32)
    huge = [tf.constant(1e6)] * 2
    with tf.GradientTape() as tape:
        prop = propagate(model.network, x, check_epsilon(0.5), huge, box_gradient)
        width = tf.reduce_sum(prop.penultimate.hi - prop.penultimate.lo)
    kernels = [model.f.layers[0].kernel, model.f.layers[2].kernel]
    return width.numpy(), tape.gradient(width, kernels, unconnected_gradients="zero")


def test_box_gradient_false_keeps_values_and_cuts_the_path_through_earlier_layers():
    width, (first, second) = box_width_gradients(True)
    width_cut, (first_cut, second_cut) = box_width_gradients(False)
    assert width_cut == width  # the same box
    assert np.abs(first).max() > 0  # the full gradient reaches the first layer
    np.testing.assert_array_equal(first_cut, 0.0)  # the cut one does not
    np.testing.assert_allclose(second_cut, second, rtol=1e-6)  # its own layer: unchanged


def test_box_gradient_false_trains_and_certifies():
    rng = np.random.default_rng(1)
    x = rng.random((64, 3)).astype(np.float32)
    y = (x[:, 0] > 0.5).astype(np.int64)
    model = small_model(box_gradient=False, training_dtype="float32")
    model.compile(keras.optimizers.Adam(1e-2), loss="crossentropy")
    history = model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    reference = small_model(training_dtype="float32")
    reference.set_weights(model.get_weights())
    first = model.certify(x[:8], attack_steps=0)
    second = reference.certify(x[:8], attack_steps=0)
    np.testing.assert_array_equal(first.certified, second.certified)  # training-only option
