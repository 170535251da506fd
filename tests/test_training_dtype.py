"""training_dtype='bfloat16' speeds up training steps only; inference stays float32."""
import keras
import numpy as np
import pytest

import gloro_local as gl


def _model(dtype):
    f = gl.architectures.cnn_2C2F(seed=3)
    model = gl.LocalGloroNet(f, 0.3, training_dtype=dtype, lam_sparse=0.1)
    model.compile(keras.optimizers.SGD(0.0), loss="crossentropy")
    model.attach_store(32)
    return model


def test_bfloat16_training_loss_close_to_float32():
    rng = np.random.default_rng(0)
    x = rng.random((32, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 32)
    index = np.arange(32)
    logs = {dtype: _model(dtype).train_on_batch((x, index), y, return_dict=True)
            for dtype in ("float32", "bfloat16")}
    for key in ("loss", "local_bound", "varying"):
        assert logs["bfloat16"][key] == pytest.approx(logs["float32"][key], rel=0.03), key
    assert logs["bfloat16"]["global_bound"] == pytest.approx(logs["float32"]["global_bound"],
                                                             rel=1e-6)


def test_inference_and_certificates_ignore_training_dtype():
    rng = np.random.default_rng(1)
    x = rng.random((8, 28, 28, 1), dtype=np.float32)
    fast, exact = _model("bfloat16"), _model("float32")
    np.testing.assert_array_equal(fast(x).numpy(), exact(x).numpy())
    np.testing.assert_array_equal(fast.lipschitz_bounds(x)["local"],
                                  exact.lipschitz_bounds(x)["local"])
    assert fast(x).dtype == "float32"


def test_unknown_training_dtype_is_refused():
    with pytest.raises(ValueError, match="training_dtype"):
        gl.LocalGloroNet(gl.architectures.cnn_2C2F(), 0.3, training_dtype="float16")
