"""training_dtype='bfloat16' / 'mixed' speed up training steps only; inference stays
float32. 'mixed' walks (boxes, masks, clean pass) in float32 and iterates in bfloat16."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import gloro_local as gl
from gloro_local.bounds import MaskedOperator
from gloro_local.layers import LinearSeam
from gloro_local.training.precision import bound_dtypes, describe


def _model(dtype):
    f = gl.architectures.cnn_2C2F(seed=3)
    model = gl.LocalGloroNet(f, 0.3, training_dtype=dtype, lam_sparse=0.1)
    model.compile(keras.optimizers.SGD(0.0), loss="crossentropy")
    model.attach_store(32)
    return model


def _batch():
    rng = np.random.default_rng(0)
    return ((rng.random((32, 28, 28, 1), dtype=np.float32), np.arange(32)),
            rng.integers(0, 10, 32))


@pytest.mark.parametrize("dtype", ["bfloat16", "mixed"])
def test_low_precision_training_loss_close_to_float32(dtype):
    inputs, y = _batch()
    logs = {name: _model(name).train_on_batch(inputs, y, return_dict=True)
            for name in ("float32", dtype)}
    for key in ("loss", "local_bound", "varying"):
        assert logs[dtype][key] == pytest.approx(logs["float32"][key], rel=0.03), key
    assert logs[dtype]["global_bound"] == pytest.approx(logs["float32"]["global_bound"],
                                                        rel=1e-6)


def test_mixed_walks_in_float32_and_iterates_in_bfloat16(monkeypatch):
    walked, iterated = set(), set()
    propagate, gram_step = LinearSeam.propagate, MaskedOperator.gram_step

    def spy_walk(self, state, *args, **kwargs):
        walked.add(state.centre.dtype)
        return propagate(self, state, *args, **kwargs)

    def spy_iteration(self, u):
        if u.shape[0] == 32:  # the per-sample iterations (the global ones stay float32)
            iterated.update([u.dtype] + [mask.dtype for mask in self.masks()])
        return gram_step(self, u)

    monkeypatch.setattr(LinearSeam, "propagate", spy_walk)
    monkeypatch.setattr(MaskedOperator, "gram_step", spy_iteration)
    inputs, y = _batch()
    model = _model("mixed")
    logs = model.train_on_batch(inputs, y, return_dict=True)
    assert walked == {tf.float32} and iterated == {tf.bfloat16}
    assert np.isfinite(logs["loss"])


def test_bound_dtypes():
    assert bound_dtypes("float32") == ("float32", "float32")
    assert bound_dtypes("bfloat16") == ("bfloat16", "bfloat16")
    assert bound_dtypes("mixed") == ("float32", "bfloat16")
    assert describe("mixed") == "float32 with bfloat16 power iterations"
    assert describe("bfloat16") == "bfloat16"


def test_inference_and_certificates_ignore_training_dtype():
    rng = np.random.default_rng(1)
    x = rng.random((8, 28, 28, 1), dtype=np.float32)
    fast, exact = _model("bfloat16"), _model("float32")
    mixed = _model("mixed")
    np.testing.assert_array_equal(mixed(x).numpy(), exact(x).numpy())
    np.testing.assert_array_equal(fast(x).numpy(), exact(x).numpy())
    np.testing.assert_array_equal(fast.lipschitz_bounds(x)["local"],
                                  exact.lipschitz_bounds(x)["local"])
    assert fast(x).dtype == "float32"


def test_unknown_training_dtype_is_refused():
    with pytest.raises(ValueError, match="training_dtype"):
        gl.LocalGloroNet(gl.architectures.cnn_2C2F(), 0.3, training_dtype="float16")
