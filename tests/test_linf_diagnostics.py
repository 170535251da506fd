"""benchmarks/linf_diagnostics.py: ReLU-state fractions and the tightness of every
relaxation, each checked against an independent computation on one trained model."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import benchmark_module
import gloro_local as gl
from gloro_local.bounds import check_epsilon, compute_margins
from gloro_local.bounds.linf import backward_bounds, ibp, specification
from gloro_local.layers import Conv2D, Dense, Flatten, ReLU

EPS = 0.05
diagnostics = benchmark_module("linf_diagnostics")


@pytest.fixture(scope="module")
def trained():
    """(model, x, y): a small conv LinfCertifiedNet trained two epochs, 60 test points."""
    keras.utils.set_random_seed(4)
    x, y = gl.data.load_numpy("mnist", "train")
    f = keras.Sequential([keras.Input((28, 28, 1)), Conv2D(8, 4, strides=2), ReLU(),
                          Flatten(), Dense(48), ReLU(), Dense(10)])
    model = gl.LinfCertifiedNet(f, EPS, relaxation="crown_ibp")
    model.compile(keras.optimizers.Adam(2e-3), loss="mixed_crossentropy")
    model.fit(x, y, batch_size=100, epochs=2, verbose=0,
              callbacks=[gl.training.EpsilonSchedule(EPS, 1),
                         gl.training.KappaSchedule(1.0, 0.0, 1)])
    xt, yt = gl.data.load_numpy("mnist", "test", limit=60)
    return model, xt, yt


def test_relu_fractions_sum_to_one_and_count_the_boxes(trained):
    model, x, _ = trained
    fractions = diagnostics.relu_fractions(model.network, x, EPS)
    assert list(fractions) == diagnostics.activation_names(model.network)
    assert len(fractions) == 2
    boxes = ibp(model.network, x, EPS).pre_activation
    for row, (lo, hi) in zip(fractions.values(), boxes):
        assert sum(row.values()) == pytest.approx(1.0, abs=1e-6)
        lo, hi = lo.numpy(), hi.numpy()
        assert row["unstable"] == pytest.approx(((lo < 0) & (hi > 0)).mean(), abs=1e-6)
        assert row["dead"] == pytest.approx((hi <= 0).mean(), abs=1e-6)
    assert any(row["unstable"] > 0 for row in fractions.values())


@pytest.mark.parametrize("relaxation", ["ibp", "crown_ibp", "optimized"])
def test_tightness_equals_the_registered_bound(trained, relaxation):
    """The measure -sum_i m_i with m_i = z_y - z*_i from the model's own bound pass."""
    model, x, y = trained
    stats, values = diagnostics.tightness_table(model, x, y, EPS, seed=3, batch_size=60)
    result = compute_margins(model.network, tf.constant(x, tf.float32), check_epsilon(EPS),
                             [], relaxation, tf.constant(y, tf.int32), [], 0, seed=3)
    own = np.take_along_axis(result.logits.numpy(), y[:, None].astype(int), 1)
    expected = -(own - result.worst.numpy()).sum(1)
    np.testing.assert_allclose(values[relaxation], expected, rtol=1e-4, atol=1e-3)
    assert stats[relaxation]["mean"] == pytest.approx(expected.mean(), rel=1e-4, abs=1e-3)
    assert stats[relaxation]["median"] == pytest.approx(np.median(expected), rel=1e-4,
                                                        abs=1e-3)


def test_random_slopes_are_uniform_draws_in_the_backward_pass(trained):
    model, x, y = trained
    _, values = diagnostics.tightness_table(model, x, y, EPS, seed=3, batch_size=60)
    xs = tf.constant(x, tf.float32)
    boxes = ibp(model.network, xs, EPS).pre_activation
    slopes = [tf.random.stateless_uniform(tf.shape(lo), [3, k]) for k, (lo, _) in
              enumerate(boxes)]
    for slope in slopes:
        assert 0.0 <= float(tf.reduce_min(slope)) and float(tf.reduce_max(slope)) <= 1.0
    m = backward_bounds(model.network, xs, EPS, specification(tf.constant(y), 10), boxes,
                        lower_slopes=slopes).numpy()
    np.testing.assert_allclose(values["random"], -m.sum(1), rtol=1e-4, atol=1e-3)
    assert not np.allclose(values["random"], values["crown_ibp"])


def test_script_prints_the_table_and_a_json_line(trained, tmp_path, capsys):
    model, _, _ = trained
    path = tmp_path / "linf.keras"
    model.save(path)
    result = diagnostics.main(["--model", str(path), "--points", "30",
                               "--output", str(tmp_path / "out.json")])
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-1]) == json.loads((tmp_path / "out.json").read_text())
    assert result["points"] == 30 and result["epsilon"] == pytest.approx(EPS)
    assert set(result["tightness"]) == {"ibp", "crown_ibp", "optimized", "random"}
    assert any(line.startswith("crown_ibp") for line in lines)
    with pytest.raises(ValueError, match="relaxation must be one of"):
        diagnostics.margins(model.network, np.zeros((1, 28, 28, 1), np.float32), [0], EPS,
                            "cap")
