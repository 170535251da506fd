"""What Keras users expect: their compile metrics, a deployable SavedModel export, and the
whole API under the mixed_bfloat16 policy."""
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import gloro_local as gl
from gloro_local.layers import Conv2D, Dense, ReLUTheta


def make_model(**kwargs):
    f = keras.Sequential([keras.Input((6, 6, 1)), Conv2D(4, 3), ReLUTheta(),
                          keras.layers.Flatten(), Dense(3)])
    return gl.LocalGloroNet(f, 0.05, **kwargs)


def data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, 6, 6, 1)).astype(np.float32)
    return x, (x[:, :3].sum(axis=(1, 2, 3)) > x[:, 3:].sum(axis=(1, 2, 3))).astype(np.int32)


# ------------------------------------------------------------------------ compile metrics

def mean_weighted(values, weights):
    return float(np.sum(values * weights) / np.sum(weights))


def test_compile_metrics_are_reported_and_equal_their_oracle():
    model = make_model()
    x, y = data()
    weights = np.linspace(0.5, 2.0, len(y)).astype(np.float32)

    def top_logit(y_true, y_pred):
        return y_pred[:, 0]

    model.compile(keras.optimizers.Adam(1e-2), metrics=["accuracy", top_logit],
                  weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="w_acc")])
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert {"accuracy", "top_logit", "w_acc", "vra", "clean_acc"} <= set(history.history)
    result = model.evaluate(x, y, sample_weight=weights, batch_size=16, verbose=0,
                            return_dict=True)
    outputs = model.predict(x, verbose=0)  # [z, bottom]: reference = the prediction
    correct = (np.argmax(outputs, -1) == y).astype(np.float64)
    assert result["accuracy"] == pytest.approx(correct.mean(), abs=1e-6)
    assert result["w_acc"] == pytest.approx(mean_weighted(correct, weights), abs=1e-6)
    assert result["top_logit"] == pytest.approx(outputs[:, 0].mean(), abs=1e-5)
    # accuracy over [z, bottom] is the VRA estimate: never above clean accuracy
    assert result["accuracy"] == pytest.approx(result["vra"], abs=1e-6)


def test_compile_metrics_survive_saving(tmp_path):
    model = make_model()
    x, y = data()
    model.compile("adam", metrics=["accuracy"])
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = gl.load_model(path)
    expected = model.evaluate(x, y, verbose=0, return_dict=True)
    got = loaded.evaluate(x, y, verbose=0, return_dict=True)
    assert got["accuracy"] == pytest.approx(expected["accuracy"])


def test_a_name_in_both_metric_lists_is_refused():
    with pytest.raises(ValueError, match="taken"):
        make_model().compile("adam", metrics=["accuracy"], weighted_metrics=["accuracy"])


def test_an_uncompiled_model_loads_uncompiled(tmp_path):
    model = make_model()
    model.save(tmp_path / "model.keras")
    assert not gl.load_model(tmp_path / "model.keras").compiled


@pytest.mark.parametrize("metrics, match", [(["vra"], "taken"), (["accuracy", "accuracy"],
                                            "taken"), ({"out": "accuracy"}, "list"),
                                            ([["accuracy"]], "flat list")])
def test_bad_compile_metrics_are_refused(metrics, match):
    with pytest.raises(ValueError, match=match):
        make_model().compile("adam", metrics=metrics)


# -------------------------------------------------------------------------------- export

def test_export_loads_and_runs_without_gloro_local(tmp_path):
    model = make_model()
    x, _ = data(8)
    model.export(str(tmp_path / "exported"), verbose=False)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", model(x).numpy())
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        import tensorflow as tf
        loaded = tf.saved_model.load({str(tmp_path / "exported")!r})
        x = np.load({str(tmp_path / "x.npy")!r})
        served = loaded.serve(x).numpy()
        default = loaded.signatures["serving_default"](tf.constant(x))
        (signature,) = default.values()
        assert "gloro_local" not in sys.modules, "the SavedModel imported gloro_local"
        np.testing.assert_array_equal(served, np.load({str(tmp_path / "expected.npy")!r}))
        np.testing.assert_array_equal(signature.numpy(), served)
        print("ok", served.shape)
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ok (8, 4)" in done.stdout


def test_exported_classifier_alone_is_the_plain_network(tmp_path):
    model = make_model()
    x, _ = data(8)
    model.f.export(str(tmp_path / "f"), verbose=False,
                   input_signature=[keras.InputSpec(shape=(None, 6, 6, 1), dtype="float32")])
    import tensorflow as tf
    loaded = tf.saved_model.load(str(tmp_path / "f"))
    served = loaded.serve(x).numpy()
    np.testing.assert_array_equal(served, model(x).numpy()[:, :-1])


# ----------------------------------------------------------------------- mixed precision

@pytest.fixture
def mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_whole_api_under_mixed_bfloat16(mixed_bfloat16, tmp_path):
    model = make_model()
    assert model.f.layers[0].compute_dtype == "bfloat16"
    x, y = data()
    model.compile("adam", metrics=["accuracy"])
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    outputs = model(x)
    assert outputs.shape == (48, 4) and outputs.dtype == "float32"
    np.testing.assert_allclose(model.predict(x, verbose=0), outputs.numpy(), rtol=1e-5,
                               atol=1e-6)
    assert np.isfinite(model.evaluate(x, y, verbose=0, return_dict=True)["loss"])
    certificate = model.certify(x, y)
    assert certificate.margin.dtype == np.float32 and len(certificate.reason) == 48
    keras.mixed_precision.set_global_policy("float32")
    float32_certificate = make_model_from(model).certify(x, y)
    np.testing.assert_array_equal(certificate.certified, float32_certificate.certified)
    model.save(tmp_path / "model.keras")
    np.testing.assert_array_equal(gl.load_model(tmp_path / "model.keras")(x).numpy(),
                                  outputs.numpy())


def make_model_from(model):
    """The same weights in a float32 model: certification computes in float32 anyway."""
    copy = make_model()
    copy.set_weights(model.get_weights())
    return copy
