"""Relaxation boxes for the l2 local bound ('local_relaxed', 'local_layerwise_relaxed',
``certify(boxes='relaxation')``).

The output box of every hidden linear layer after the first is intersected with CROWN's
backward-pass bounds closed in l2 (``linear_output_bounds``). Checked: the pass's bounds
are exact where the network is affine over the ball (the row norms of the product of the
weight matrices) and at the first layer, equal whether the rows are taken at once or in
chunks, and enclose every sampled point of the ball on dense and convolutional networks;
the bounds are never looser than 'local' / 'local_layerwise' (worked example, random
networks) and strictly tighter on some points; every point certified on 2-D networks
survives a dense search of its eps-disc; PGD with restarts breaks no point certified on an
MNIST model, where the relaxation certifies a superset of ``certify()``.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import benchmark_module, sample_ball
from test_layerwise_radius import (CASES, assert_not_looser, check_dense_disc, margins,
                                   model_with_store, random_network)
from test_worked_example import X, example
import gloro_local as gl
from gloro_local import LocalGloroNet
from gloro_local.bounds import check_epsilon
from gloro_local.bounds.linf.backward import linear_output_bounds
from gloro_local.bounds.propagation import walk
from gloro_local.bounds.strategies import get_bound
from gloro_local.bounds.strategies.relaxation_boxes import (LocalRelaxedBound,
                                                            relaxation_work, rows_per_chunk)
from gloro_local.evaluation import certify, pgd_l2
from gloro_local.layers import Conv2D, Dense, Flatten, LinearSeam, ReLU

RTOL = 1e-4


def linear_indices(network):
    return [i for i, seam in enumerate(network.seams[:-1]) if isinstance(seam, LinearSeam)]


def walk_boxes(network, x, eps, index):
    """The (lo, hi) input boxes of the activations before seam ``index``, from the
    box-and-ball walk with global norms."""
    from gloro_local.bounds import sound_global_norms
    propagation = walk(network, "global", x, check_epsilon(eps), sound_global_norms(network))
    count = sum(1 for seam in network.seams[:index] if not isinstance(seam, LinearSeam)
                and hasattr(seam, "varying"))
    return [(a.lo, a.hi) for a in propagation.activations[:count]]


def pre_activations(network, points, index):
    """The outputs of linear seam ``index`` at ``points``."""
    value = tf.constant(points)
    for seam in network.seams[:index + 1]:
        value = seam.affine(value) if isinstance(seam, LinearSeam) else seam.call(value)
    return value.numpy()


# (a) the backward pass's bounds -----------------------------------------------------------

def test_exact_where_the_network_is_affine():
    """Large positive biases keep every ReLU active over the ball, so layer 2's output is
    W2 W1 x + const and its exact range is the centre +- eps ||(W2 W1)_u||_2."""
    keras.utils.set_random_seed(3)
    f = keras.Sequential([keras.Input((5,)), Dense(8), ReLU(), Dense(6), ReLU(), Dense(3)])
    f.layers[0].bias.assign(np.full(8, 50.0, np.float32))
    f.layers[2].bias.assign(np.full(6, 50.0, np.float32))
    network = gl.bounds.SeamNetwork(f.layers, (5,))
    x = np.random.default_rng(3).uniform(-1, 1, (4, 5)).astype(np.float32)
    eps = 0.2
    product = f.layers[0].kernel.numpy().astype(np.float64) @ f.layers[2].kernel.numpy()
    centre = pre_activations(network, x, 2)
    lower, upper = linear_output_bounds(network, 2, x, eps, walk_boxes(network, x, eps, 2))
    radius = eps * np.linalg.norm(product, axis=0)
    np.testing.assert_allclose(lower, centre - radius, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(upper, centre + radius, rtol=1e-5, atol=1e-4)
    first_lower, first_upper = linear_output_bounds(network, 0, x, eps, [])
    rows = eps * np.linalg.norm(f.layers[0].kernel.numpy(), axis=0)
    np.testing.assert_allclose(first_lower, pre_activations(network, x, 0) - rows,
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(first_upper, pre_activations(network, x, 0) + rows,
                               rtol=1e-5, atol=1e-5)


def conv_network(seed):
    keras.utils.set_random_seed(seed)
    f = keras.Sequential([keras.Input((6, 6, 1)), Conv2D(3, 3, strides=2, padding="same"),
                          ReLU(), Conv2D(4, 3, padding="same"), ReLU(), Flatten(),
                          Dense(5), ReLU(), Dense(3)])
    for layer in f.layers:
        if hasattr(layer, "bias") and layer.bias is not None:
            layer.bias.assign(np.random.default_rng(seed).normal(0, 0.3, layer.bias.shape))
    return f, gl.bounds.SeamNetwork(f.layers, (6, 6, 1))


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_bounds_enclose_the_ball_and_chunks_agree(kind):
    if kind == "dense":
        _, network = random_network("relu", 2, width=10, depth=3, inputs=4)
        shape = (4,)
    else:
        _, network = conv_network(2)
        shape = (6, 6, 1)
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 1, (3,) + shape).astype(np.float32)
    eps = 0.3
    for index in linear_indices(network)[1:]:
        boxes = walk_boxes(network, x, eps, index)
        lower, upper = linear_output_bounds(network, index, x, eps, boxes)
        chunked = linear_output_bounds(network, index, x, eps, boxes, rows_per_chunk=3)
        np.testing.assert_allclose(chunked[0], lower, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(chunked[1], upper, rtol=1e-5, atol=1e-6)
        for k in range(len(x)):
            points = x[k] + sample_ball(rng, 4000, shape, eps)
            values = pre_activations(network, points, index)
            slack = 1e-5 * (1 + np.abs(values))
            assert np.all(values >= lower.numpy()[k] - slack), (kind, index, k)
            assert np.all(values <= upper.numpy()[k] + slack), (kind, index, k)


def test_bad_arguments_are_refused():
    _, network = example()
    with pytest.raises(ValueError, match="norm must be one of"):
        linear_output_bounds(network, 0, X, 0.1, [], norm="l1")
    with pytest.raises(ValueError, match="not a linear layer"):
        linear_output_bounds(network, 1, X, 0.1, [])
    with pytest.raises(ValueError, match="max_work must be >= 0"):
        LocalRelaxedBound(max_work=-1)
    with pytest.raises(ValueError, match="BoundContext"):
        walk(network, "local_relaxed", X, check_epsilon(0.1), [3.0, 3.0])
    model = LocalGloroNet(example()[0], epsilon=0.1)
    with pytest.raises(ValueError, match="boxes must be one of"):
        certify(model, X, boxes="crown")
    with pytest.raises(ValueError, match="boxes must be one of"):
        model.lipschitz_bounds(X, boxes="both")


def test_cost_rule():
    """The work of a layer is 2 * outputs * the summed input sizes before it; a bound
    whose limit is below it leaves the box alone (and equals 'local')."""
    _, network = conv_network(1)
    index = linear_indices(network)[1]
    assert relaxation_work(network, index) == 2 * (3 * 3 * 4) * (36 + 3 * 3 * 3)
    assert rows_per_chunk(network, index) >= 1
    x = np.random.default_rng(1).uniform(0, 1, (4, 6, 6, 1)).astype(np.float32)
    local = margins(network, x, 0.3, "local")
    off = margins(network, x, 0.3, LocalRelaxedBound(max_work=0))
    np.testing.assert_array_equal(off.bottom, local.bottom)
    for mine, theirs in zip(off.propagation.activations, local.propagation.activations):
        np.testing.assert_array_equal(mine.hi, theirs.hi)


# (b) never looser, sometimes tighter ------------------------------------------------------

PAIRS = [("local_relaxed", "local"), ("local_layerwise_relaxed", "local_layerwise"),
         ("local_layerwise_relaxed", "local")]


def test_worked_example():
    """With no activation between the input and layer 1 the relaxation changes nothing
    before layer 2; the Lipschitz product stays 1 (9 globally)."""
    _, network = example()
    for new, old in PAIRS:
        relaxed = margins(network, X, 0.1, new, [3.0, 3.0])
        assert_not_looser(relaxed, margins(network, X, 0.1, old, [3.0, 3.0]))
        np.testing.assert_allclose(relaxed.lipschitz, [1.0], rtol=1e-5)


@pytest.mark.parametrize("kind", ["relu", "theta", "maxmin"])
def test_random_networks_never_looser(kind):
    _, network = random_network(kind, 0)
    x = np.random.default_rng(10).standard_normal((16, 4)).astype(np.float32)
    for eps in (0.05, 0.3):
        for new, old in PAIRS:
            assert_not_looser(margins(network, x, eps, new), margins(network, x, eps, old))


def test_strictly_tighter_on_a_random_network():
    """At eps 0.3 the relaxation makes more ReLUs constant and lowers the product."""
    _, network = random_network("relu", 0)
    x = np.random.default_rng(10).standard_normal((16, 4)).astype(np.float32)
    local = margins(network, x, 0.3, "local")
    relaxed = margins(network, x, 0.3, "local_relaxed")
    varying = [np.mean(np.asarray(a.varying)) for a in relaxed.propagation.activations]
    before = [np.mean(np.asarray(a.varying)) for a in local.propagation.activations]
    assert varying[1] < before[1] and varying[2] < before[2]
    assert np.mean(np.asarray(relaxed.lipschitz)
                   < np.asarray(local.lipschitz) * (1 - 1e-2)) > 0.25


# (c) soundness by exhaustion on 2-D inputs ------------------------------------------------

@pytest.mark.parametrize("name", list(CASES))
def test_certified_points_survive_the_dense_disc(name):
    check_dense_disc(name, [
        ("local_relaxed", dict(boxes="relaxation")),
        ("local_layerwise_relaxed", dict(radius="layerwise", boxes="relaxation"))])


# (d) MNIST: PGD with restarts, a superset of certify(), training ------------------------

def test_mnist_certified_points_survive_pgd_and_are_a_superset(layerwise_mnist_model):
    model, x, y = layerwise_mnist_model
    paper = certify(model, x, y, cheap_stages=False)
    for radius in ("global", "layerwise"):
        relaxed = certify(model, x, y, cheap_stages=False, radius=radius,
                          boxes="relaxation")
        assert np.all(relaxed.certified[paper.certified])
        decided = np.isfinite(paper.margin)
        assert decided.sum() >= 50
        assert np.all(relaxed.margin[decided] >= paper.margin[decided] - 1e-4)
        rows = np.flatnonzero(relaxed.certified)
        assert rows.size >= 5
        _, broken = pgd_l2(model.f, x[rows], relaxed.prediction[rows], 0.3, steps=50,
                           restarts=3, clip=None)
        assert not np.any(broken.numpy())
    bounds = model.lipschitz_bounds(x, converge=True, boxes="relaxation")
    paper_bounds = model.lipschitz_bounds(x, converge=True)
    assert np.all(bounds["local"] <= paper_bounds["local"] * (1 + RTOL))
    assert np.all(bounds["varying"] <= paper_bounds["varying"] + 1e-6)
    assert np.mean(bounds["local"] < paper_bounds["local"] * (1 - 1e-3)) > 0


def test_training_with_relaxation_boxes():
    """The relaxed bounds train (the gradient flows through the chunked backward pass),
    with a warning that they are meant for certification, and the store is read and
    written as for 'local'."""
    model, store, data = model_with_store("local_layerwise_relaxed")
    before = [w.numpy().copy() for w in model.f.trainable_weights]
    with pytest.warns(UserWarning, match="certification tool"):
        history = model.fit(data, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    weights = model.f.trainable_weights
    assert all(np.any(w.numpy() != b) for w, b in zip(weights, before))
    assert all(np.any(t.numpy() != 0) for t in store.tables if t is not None)
    assert get_bound("local_layerwise_relaxed").per_sample_norms


def test_evaluate_certifies_with_the_chosen_local_bound(layerwise_mnist_model):
    model, x, y = layerwise_mnist_model
    paper = gl.evaluate(model, (x, y), pgd_steps=5, lower_bound_points=0, radius_points=0,
                        progress=False)
    tighter = gl.evaluate(model, (x, y), pgd_steps=5, lower_bound_points=0,
                          radius_points=0, progress=False, radius="layerwise",
                          boxes="relaxation")
    assert paper.summary["local_bound"] == "local"
    assert tighter.summary["local_bound"] == "local_layerwise_relaxed"
    assert np.all(tighter.certificate.certified[paper.certificate.certified])
    assert np.all(tighter.local_lipschitz <= paper.local_lipschitz * (1 + RTOL))
    with pytest.raises(ValueError, match="boxes must be one of"):
        gl.evaluate(model, (x, y), boxes="crown", progress=False)


def test_tighter_bounds_benchmark(layerwise_mnist_model, tmp_path):
    """benchmarks/tighter_bounds.py on a saved model: every way is at most the paper's
    bound on every point, certifies at least as much, and the relaxation's cost is
    reported for the hidden layer after the first."""
    import json
    benchmark = benchmark_module("tighter_bounds")
    model, _, _ = layerwise_mnist_model
    model.save(tmp_path / "m.keras")
    out = tmp_path / "out.json"
    benchmark.main(["--model", str(tmp_path / "m.keras"), "--points", "24",
                    "--batch_size", "12", "--epsilons", "0.3", "--output", str(out)])
    result = json.loads(out.read_text())
    row = result["eps"]["0.3"]
    assert set(row) == {"paper", "layerwise", "relaxation", "both"}
    for way in row.values():
        assert way["ratio"]["max"] <= 1 + RTOL
        assert way["certified_accuracy"] >= row["paper"]["certified_accuracy"]
        assert len(way["constant"]) == 2
    assert len(result["relaxation_ms_per_point"]) == 1  # hidden layers after the first
    assert all(ms is not None and ms > 0 for ms in result["relaxation_ms_per_point"].values())
