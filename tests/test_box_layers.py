"""``box_layers``: in training, only the first k hidden linear layers carry the box x +- eps
through; the later ones bound their outputs by the ball alone, z(x) -+ r ||A_i||.

Checked: a ball-only layer's bounds are exactly the ball formula (explicit Dense
matrix); on random stacks of Dense / Conv2D / Flatten and every activation, for every k,
the pre-activation boxes of the walk enclose every sampled point of the eps-ball (with
sound global norms), contain the full box-and-ball boxes, and equal them when k covers
every layer; the box image is computed for exactly the first k layers; a model trains
with the option, keeps it through get_config and saving, and certifies exactly as the
same weights without it (certificates always use the full box); bad values are refused.
``benchmarks/box_usage.py`` reports that the box never tightens the first Dense layer
(there it maps x +- eps to z -+ eps ||A_i||_1 >= eps ||A_i||_2, the ball's bound).
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import benchmark_module, dense_mnist_model, sample_ball
from test_random_stacks import disc_network, image_network
from gloro_local import LocalGloroNet
from gloro_local.bounds import check_epsilon, sound_global_norms
from gloro_local.bounds.network import SeamNetwork
from gloro_local.bounds.propagation import walk
from gloro_local.evaluation import certify
from gloro_local.layers import ActivationSeam, BoundState, Dense, LinearSeam, ReLUTheta

NETWORKS = [("disc", seed) for seed in range(4)] + [("image", seed) for seed in range(3)]


def network_of(kind, seed):
    f = (disc_network if kind == "disc" else image_network)(seed)
    return SeamNetwork(f.layers, f.input_shape[1:])


def activation_inputs(network, points):
    """The input of every activation seam (in walk order) and of the logit layer."""
    value, seen = tf.constant(points), []
    for seam in network.seams[:-1]:
        if isinstance(seam, ActivationSeam):
            seen.append(value.numpy())
        value = seam.affine(value) if isinstance(seam, LinearSeam) else seam.call(value)
    return seen + [value.numpy()]


def boxes(propagation):
    pen = propagation.penultimate
    return ([(a.lo.numpy(), a.hi.numpy()) for a in propagation.activations]
            + [(pen.lo.numpy(), pen.hi.numpy())])


def test_a_ball_only_layer_keeps_the_ball_formula():
    layer = Dense(3)
    layer.build((None, 4))
    rng = np.random.default_rng(0)
    A = rng.standard_normal((3, 4)).astype("float32")
    b = rng.standard_normal(3).astype("float32")
    layer.kernel.assign(A.T)
    layer.bias.assign(b)
    x = rng.standard_normal((2, 4)).astype("float32")
    radius = np.array([0.5, 2.0], "float32")
    state = BoundState(tf.constant(x), tf.constant(x - 100.0), tf.constant(x + 100.0),
                       tf.constant(radius))
    out = layer.propagate(state, 3.0, box=False)
    ball = radius[:, None] * np.linalg.norm(A, axis=1)[None, :]
    centre = x @ A.T + b
    np.testing.assert_allclose(out.centre, centre, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.lo, centre - ball, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.hi, centre + ball, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.radius, 3.0 * radius)
    tight = BoundState(tf.constant(x), tf.constant(x - 1e-3), tf.constant(x + 1e-3),
                       tf.constant(radius))
    assert np.all(layer.propagate(tight, 3.0).hi.numpy() < centre + ball)


@pytest.mark.parametrize("kind,seed", NETWORKS)
def test_boxes_enclose_the_ball_and_nest_for_every_k(kind, seed):
    network = network_of(kind, seed)
    norms = sound_global_norms(network)
    layers = len(network.hidden)
    eps = 0.3
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, (3,) + network.input_shape).astype("float32")
    full = boxes(walk(network, "global", x, check_epsilon(eps), norms))
    for k in range(layers + 1):
        found = boxes(walk(network, "local", x, check_epsilon(eps), norms, box_layers=k))
        for (lo, hi), (full_lo, full_hi) in zip(found, full):
            assert np.all(lo <= full_lo + 1e-6) and np.all(hi >= full_hi - 1e-6)
            if k == layers:
                np.testing.assert_array_equal(lo, full_lo)
                np.testing.assert_array_equal(hi, full_hi)
        for i in range(len(x)):
            points = x[i] + sample_ball(rng, 2000, network.input_shape, eps)
            for (lo, hi), values in zip(found, activation_inputs(network, points)):
                slack = 1e-4 * (1.0 + np.abs(values))
                assert np.all(values >= lo[i] - slack), (k, i)
                assert np.all(values <= hi[i] + slack), (k, i)


def record_box_images(monkeypatch):
    """A list that records (seam, uniform) for every box image a walk takes: through
    ``LinearSeam.box`` (uniform False) or ``uniform_box_radius`` (True)."""
    calls = []
    box, uniform = LinearSeam.box, LinearSeam.uniform_box_radius

    def counted(self, lo, hi):
        calls.append((self, False))
        return box(self, lo, hi)

    def counted_uniform(self, half_width, like):
        calls.append((self, True))
        return uniform(self, half_width, like)

    monkeypatch.setattr(LinearSeam, "box", counted)
    monkeypatch.setattr(LinearSeam, "uniform_box_radius", counted_uniform)
    return calls


def test_the_box_image_is_taken_for_the_first_k_layers_only(monkeypatch):
    network = network_of("image", 0)
    calls = record_box_images(monkeypatch)
    x = np.zeros((1,) + network.input_shape, "float32")
    norms = sound_global_norms(network)
    hidden = [network.seams[i] for i in network.hidden]
    for k in range(len(hidden) + 1):
        calls.clear()
        walk(network, "local", x, check_epsilon(0.1), norms, box_layers=k)
        assert [seam for seam, _ in calls] == hidden[:k]


def small_model(**options):
    f = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(4, 3, padding="same"),
                          ReLUTheta(), keras.layers.Conv2D(4, 3, strides=2),
                          ReLUTheta(), keras.layers.Flatten(), keras.layers.Dense(8),
                          ReLUTheta(), keras.layers.Dense(3)])
    model = LocalGloroNet(f, epsilon=0.2, training_dtype="float32", **options)
    model.compile(keras.optimizers.Adam(1e-3), loss="crossentropy")
    return model


def test_training_saving_and_certificates(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (64, 6, 6, 1)).astype("float32")
    y = rng.integers(0, 3, 64)
    model = small_model(box_layers=1)
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    path = str(tmp_path / "m.keras")
    model.save(path)
    again = keras.models.load_model(path)
    assert again.box_layers == 1 and again.get_config()["box_layers"] == 1
    full = small_model()
    full.set_weights(model.get_weights())
    np.testing.assert_array_equal(model.predict(x, verbose=0), full.predict(x, verbose=0))
    ours = certify(model, x, y, attack_steps=0, cheap_stages=False)
    theirs = certify(full, x, y, attack_steps=0, cheap_stages=False)
    np.testing.assert_array_equal(ours.certified, theirs.certified)
    np.testing.assert_array_equal(ours.margin, theirs.margin)
    np.testing.assert_array_equal(ours.lipschitz, theirs.lipschitz)


def test_the_training_loss_sees_the_ball_only_bounds():
    rng = np.random.default_rng(1)
    x = tf.constant(rng.uniform(0.0, 1.0, (8, 6, 6, 1)).astype("float32"))
    full, cut = small_model(), small_model(box_layers=0)
    cut.set_weights(full.get_weights())
    wide = cut.margins(x, training=True).propagation.penultimate
    tight = full.margins(x, training=True).propagation.penultimate
    assert np.all(wide.hi.numpy() >= tight.hi.numpy() - 1e-6)
    assert np.any(wide.hi.numpy() > tight.hi.numpy() + 1e-6)
    inference = cut.margins(x).propagation.penultimate
    np.testing.assert_array_equal(inference.hi, full.margins(x).propagation.penultimate.hi)


@pytest.mark.parametrize("value", [True, -1, 4, 1.5, "2", float("nan")])
def test_bad_values_are_refused(value):
    with pytest.raises(ValueError, match=r"box_layers must be None or an integer in "
                                         r"\[0, 3\].*Received: box_layers="):
        small_model(box_layers=value)


def test_box_usage_benchmark(tmp_path):
    import json
    model = dense_mnist_model((32, 16), 300)
    model.save(tmp_path / "m.keras")
    out = tmp_path / "out.json"
    benchmark_module("box_usage").main([str(tmp_path / "m.keras"), "--points", "16",
                                        "--epsilon", "0.5", "--output", str(out)])
    rows = json.loads(out.read_text())["layers"]
    assert [row["layer"] for row in rows] == [layer.name for layer in model.f.layers
                                              if isinstance(layer, Dense)][:2]
    first, second = rows
    assert first["lower_tightened"] == 0.0 and first["upper_tightened"] == 0.0
    assert first["width_with_box"] == pytest.approx(first["width_ball_only"], rel=1e-6)
    for row in rows:
        assert 0.0 <= row["lower_tightened"] <= 1.0 and 0.0 <= row["upper_tightened"] <= 1.0
        assert row["width_with_box"] <= row["width_ball_only"] * (1 + 1e-6)
        assert row["constant_with_box"] >= row["constant_ball_only"]
