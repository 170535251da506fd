"""CROWN's backward pass against an explicit-matrix computation, its closures, the margin
specification, the optimised slopes and the diagnostics."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import explicit_matrix
from gloro_local.bounds import SeamNetwork, bottom_logit
from gloro_local.bounds.linf import (backward_bounds, ibp, ibp_margin_lower_bounds,
                                     initial_slopes, optimized_lower_slopes, relu_states,
                                     robust_cross_entropy, specification, tightness,
                                     worst_logits_from_margins)
from gloro_local.layers import (ActivationSeam, Conv2D, Dense, Flatten, LinearSeam, MaxMin,
                                ReLU, ReLUTheta)

CLASSES = 3


def bias(stddev=0.3):
    return {"bias_initializer": keras.initializers.RandomNormal(stddev=stddev)}


NETWORKS = {  # name: (input shape, layers, eps)
    "dense": ((5,), lambda: [Dense(10, **bias()), ReLU(), Dense(8, **bias()), ReLU(),
                             Dense(CLASSES, **bias())], 0.15),
    "conv": ((6, 5, 2), lambda: [
        Conv2D(4, 3, strides=2, padding="same", **bias()), ReLU(),
        Conv2D(3, 2, padding="valid", **bias()), keras.layers.ReLU(), Flatten(),
        Dense(8, **bias()), ReLU(), Dense(CLASSES, **bias())], 0.05),
}


def build(input_shape, make_layers, batch=6, seed=0):
    rng = np.random.default_rng(seed)
    f = keras.Sequential([keras.Input(input_shape)] + make_layers())
    x = rng.standard_normal((batch,) + input_shape).astype(np.float32)
    return SeamNetwork(f.layers, input_shape), x, rng.integers(0, CLASSES, batch), rng


def as_matrices(network):
    """The network as ('linear', W, b) with W explicit (out, in) and ('relu',) steps on
    flattened vectors (a reshape is the identity there)."""
    steps = []
    for seam, shape in zip(network.seams, network.input_shapes):
        if isinstance(seam, LinearSeam):
            w = explicit_matrix(seam.linear, shape)
            b = np.asarray(seam.affine(tf.zeros((1,) + shape)), np.float64).reshape(-1)
            steps.append(("linear", w, b))
        elif isinstance(seam, ActivationSeam):
            steps.append(("relu",))
    return steps


def numpy_crown(steps, x, eps, spec, norm, slopes=None):
    """CROWN-IBP with explicit matrices, one sample and one specification row at a time:
    IBP boxes, then c^T W_K D_{L-1} W_{L-1} ... with the diagonal relaxation matrices
    D chosen per sign of the row, closed with the dual norm of the ball."""
    batch = x.shape[0]
    lower = np.zeros(spec.shape[:2])
    for b in range(batch):
        lo, hi = x[b].reshape(-1) - eps, x[b].reshape(-1) + eps
        relaxations = []
        for step in steps[:-1]:
            if step[0] == "linear":
                _, w, bb = step
                mid, rad = w @ ((lo + hi) / 2) + bb, np.abs(w) @ ((hi - lo) / 2)
                lo, hi = mid - rad, mid + rad
            else:
                unstable = (lo < 0) & (hi > 0)
                upper = np.where(unstable, hi / np.where(unstable, hi - lo, 1), lo >= 0)
                a = (hi >= -lo).astype(float) if slopes is None else \
                    np.clip(slopes[len(relaxations)][b].reshape(-1), 0, 1)
                a = np.where(unstable, a, lo >= 0)
                relaxations.append((np.diag(a), np.diag(upper),
                                    np.where(unstable, -upper * lo, 0.0)))
                lo, hi = np.maximum(lo, 0), np.maximum(hi, 0)
        for s in range(spec.shape[1]):
            _, w, bb = steps[-1]
            lam, constant = spec[b, s] @ w, spec[b, s] @ bb
            relaxation = len(relaxations)
            for step in reversed(steps[:-1]):
                if step[0] == "linear":
                    constant += lam @ step[2]
                    lam = lam @ step[1]
                else:
                    relaxation -= 1
                    d_lower, d_upper, b_upper = relaxations[relaxation]
                    positive, negative = np.maximum(lam, 0), np.minimum(lam, 0)
                    constant += negative @ b_upper
                    lam = positive @ d_lower + negative @ d_upper
            dual = np.abs(lam).sum() if norm == "linf" else np.linalg.norm(lam)
            lower[b, s] = lam @ x[b].reshape(-1) - eps * dual + constant
    return lower


@pytest.mark.parametrize("name", list(NETWORKS))
@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("slopes", ["adaptive", "random"])
def test_equals_explicit_matrices(name, norm, slopes):
    """backward_bounds == the explicit-matrix computation in float64."""
    input_shape, make_layers, eps = NETWORKS[name]
    network, x, reference, rng = build(input_shape, make_layers)
    result = ibp(network, x, eps)
    lower_slopes = None
    if slopes == "random":
        lower_slopes = [tf.constant(rng.uniform(-0.2, 1.2, lo.shape), tf.float32)
                        for lo, _ in result.pre_activation]
    spec = specification(reference, CLASSES)
    ours = backward_bounds(network, x, eps, spec, result.pre_activation, norm, lower_slopes)
    unstable = sum(np.mean((lo < 0) & (hi > 0)) for lo, hi in
                   ((np.asarray(lo), np.asarray(hi)) for lo, hi in result.pre_activation))
    assert unstable > 0.1  # the relaxations matter
    want = numpy_crown(as_matrices(network), x.astype(np.float64), eps,
                       np.asarray(spec, np.float64), norm,
                       None if lower_slopes is None else [np.asarray(a) for a in lower_slopes])
    np.testing.assert_allclose(ours, want, rtol=1e-4, atol=1e-4)


def all_active(input_shape, layers):
    """A network with non-negative hidden kernels and large hidden biases, so that every
    ReLU is active on the ball: it is affine there and the backward bound is the exact
    minimum."""
    network, x, reference, _ = build(input_shape, layers)
    for seam in network.seams[:-1]:
        if isinstance(seam, LinearSeam):
            seam.kernel.assign(tf.abs(seam.kernel))
            seam.bias.assign(tf.fill(seam.bias.shape, 20.0))
    return network, x, reference


@pytest.mark.parametrize("layers", ["logit-only", "dense", "conv"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_closure_is_attained(layers, norm):
    """Where the network is affine on the ball, the bound equals spec . f at the minimiser
    x - eps sign(g) (linf) or x - eps g / ||g|| (l2), g the gradient of spec . f."""
    if layers == "logit-only":
        input_shape, make_layers, eps = (4,), lambda: [Dense(CLASSES, **bias())], 0.3
    else:
        input_shape, make_layers, eps = NETWORKS[layers]
    network, x, reference = all_active(input_shape, make_layers)
    spec = specification(reference, CLASSES)
    result = ibp(network, x, eps)
    assert all(np.all(np.asarray(lo) > 0) for lo, _ in result.pre_activation)
    lower = np.asarray(backward_bounds(network, x, eps, spec, result.pre_activation, norm))
    for row in range(CLASSES):
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            value = tf.reduce_sum(network.logits(xt) * spec[:, row], axis=-1)
        g = np.asarray(tape.gradient(value, xt), np.float64)
        axes = tuple(range(1, x.ndim))
        if norm == "linf":
            step = np.sign(g)
        else:
            length = np.sqrt(np.sum(g ** 2, axis=axes, keepdims=True))
            step = g / np.where(length > 0, length, 1)
        worst = tf.constant((x - eps * step).astype(np.float32))
        attained = np.sum(np.asarray(network.logits(worst)) * np.asarray(spec[:, row]), -1)
        np.testing.assert_allclose(lower[:, row], attained, rtol=1e-4, atol=2e-4)


def test_specification_and_worst_logits():
    """Rows e_j - e_i with a zero row j; z*_i = z_j - m_i; the bottom logit lies below z_j
    exactly when every m_i > 0."""
    spec = np.asarray(specification(tf.constant([2, 0]), 3))
    np.testing.assert_array_equal(spec[0], [[-1, 0, 1], [0, -1, 1], [0, 0, 0]])
    np.testing.assert_array_equal(spec[1], [[0, 0, 0], [1, -1, 0], [1, 0, -1]])
    logits = tf.constant([[1.0, 2.0, 3.0], [4.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    margins = tf.constant([[0.5, 0.2, 0.0], [0.0, 1.0, -0.1], [0.0, 3.0, 0.1]])
    reference = tf.constant([2, 0, 0])
    worst = worst_logits_from_margins(logits, margins, reference)
    np.testing.assert_allclose(worst, [[2.5, 2.8, 3.0], [4.0, 3.0, 4.1], [1.0, -2.0, 0.9]])
    bottom = np.asarray(bottom_logit(worst, reference))
    own = np.asarray(logits)[[0, 1, 2], [2, 0, 0]]
    np.testing.assert_array_equal(own > bottom, [True, False, True])
    with pytest.raises(ValueError, match="Received: reference of shape"):
        specification(tf.constant([[1]]), 3)


def test_bad_arguments():
    input_shape, make_layers, eps = NETWORKS["dense"]
    network, x, reference, _ = build(input_shape, make_layers)
    boxes = ibp(network, x, eps).pre_activation
    spec = specification(reference, CLASSES)
    with pytest.raises(ValueError, match="Received: norm='l1'"):
        backward_bounds(network, x, eps, spec, boxes, norm="l1")
    with pytest.raises(ValueError, match="Received: 1 boxes"):
        backward_bounds(network, x, eps, spec, boxes[:1])
    with pytest.raises(ValueError, match="Received: 3 entries"):
        backward_bounds(network, x, eps, spec, boxes, lower_slopes=[None] * 3)
    with pytest.raises(ValueError, match="clip applies to norm='linf' only"):
        backward_bounds(network, x, eps, spec, boxes, norm="l2", clip=(0.0, 1.0))
    with pytest.raises(ValueError, match="Received: spec of shape"):
        backward_bounds(network, x, eps, spec[:, :, :2], boxes)
    with pytest.raises(ValueError, match="Received: eta=0"):
        optimized_lower_slopes(network, x, eps, spec, boxes, eta=0)


def test_clip_only_tightens():
    """Intersecting the input box with [0, 1] minimises the same linear function over a
    subset, so the bound can only rise (and it does for inputs near the border)."""
    input_shape, make_layers, eps = NETWORKS["dense"]
    network, x, reference, _ = build(input_shape, make_layers)
    x = np.clip(np.abs(x) / 3, 0, 1)
    boxes = ibp(network, x, eps, clip=(0.0, 1.0)).pre_activation
    spec = specification(reference, CLASSES)
    free = np.asarray(backward_bounds(network, x, eps, spec, boxes))
    clipped = np.asarray(backward_bounds(network, x, eps, spec, boxes, clip=(0.0, 1.0)))
    assert np.all(clipped >= free - 1e-6)
    assert np.any(clipped > free + 1e-3)


def random_network(seed, width=24):
    return build((4,), lambda: [Dense(width, **bias(0.5)), ReLU(), Dense(width, **bias(0.5)),
                                ReLU(), Dense(CLASSES, **bias())], batch=64, seed=seed)


def test_crown_ibp_is_tighter_than_ibp_in_aggregate():
    """Not a theorem point by point, but on random networks CROWN-IBP's margins beat IBP's
    on average and at most points."""
    wins, gaps = [], []
    for seed in range(4):
        network, x, reference, _ = random_network(seed)
        result = ibp(network, x, 0.1)
        spec = specification(reference, CLASSES)
        crown = np.asarray(backward_bounds(network, x, 0.1, spec, result.pre_activation))
        interval = np.asarray(ibp_margin_lower_bounds(network, result, reference))
        others = np.asarray(spec).any(-1)
        wins.append(np.mean(crown[others] >= interval[others]))
        gaps.append(np.mean(crown[others] - interval[others]))
    assert np.mean(wins) > 0.5
    assert min(gaps) > 0


def test_optimized_slopes_are_one_sign_step():
    """a = clip(a0 - eta sign(grad_a L), 0, 1) from the seeded a0 (oracle: the same
    gradient taken here), None for activations without slopes, reproducible, and no
    gradient reaches the weights through the slopes."""
    network, x, reference, _ = build((4,), lambda: [
        Dense(12, **bias()), ReLU(), Dense(12, **bias()), MaxMin(), Dense(12, **bias()),
        ReLUTheta(theta_init=0.5), Dense(CLASSES)], batch=16)
    eps = 0.2
    boxes = ibp(network, x, eps).pre_activation
    spec = specification(reference, CLASSES)
    a0 = initial_slopes(network, boxes, seed=7)
    assert a0[1] is None and all(np.all((a >= 0) & (a <= 1)) for a in (a0[0], a0[2]))
    watched = [a0[0], a0[2]]
    with tf.GradientTape() as tape:
        tape.watch(watched)
        loss = tf.reduce_sum(robust_cross_entropy(
            backward_bounds(network, x, eps, spec, boxes, lower_slopes=a0)))
    grads = tape.gradient(loss, watched)
    assert any(np.any(np.asarray(g) != 0) for g in grads)
    for eta in (0.3, 1.0):
        with tf.GradientTape(persistent=True) as outer:
            slopes = optimized_lower_slopes(network, x, eps, spec, boxes, eta=eta, seed=7)
            margins = backward_bounds(network, x, eps, spec, boxes, lower_slopes=slopes)
        assert slopes[1] is None
        for a, start, g in zip((slopes[0], slopes[2]), watched, grads):
            np.testing.assert_allclose(a, np.clip(start - eta * np.sign(g), 0, 1), atol=1e-7)
            assert outer.gradient(a, network.layers[0].kernel) is None
        weights = outer.gradient(margins, network.layers[0].kernel)
        assert weights is not None and np.all(np.isfinite(weights))
        again = optimized_lower_slopes(network, x, eps, spec, boxes, eta=eta, seed=7)
        np.testing.assert_array_equal(again[0], slopes[0])


def test_bounds_are_differentiable_in_the_weights():
    """Gradients of the l2 and linf bounds reach every weight and stay finite (the zero
    specification row has a zero dual norm)."""
    input_shape, make_layers, eps = NETWORKS["conv"]
    network, x, reference, _ = build(input_shape, make_layers)
    spec = specification(reference, CLASSES)
    weights = [w for layer in network.layers for w in layer.trainable_weights]
    for norm in ("linf", "l2"):
        with tf.GradientTape() as tape:
            result = ibp(network, x, eps)
            loss = tf.reduce_sum(robust_cross_entropy(
                backward_bounds(network, x, eps, spec, result.pre_activation, norm)))
        grads = tape.gradient(loss, weights)
        assert all(g is not None and np.all(np.isfinite(g)) for g in grads)
        assert all(np.any(np.asarray(g) != 0) for g in grads)


def test_relu_states():
    """Exact fractions of unstable / active / dead neurons, averaged over the batch."""
    lo = tf.constant([[-1.0, 0.0, -2.0, -1.0], [1.0, 2.0, -3.0, -0.5]])
    hi = tf.constant([[1.0, 1.0, -1.0, 0.0], [2.0, 3.0, 1.0, 0.5]])
    (states,) = relu_states([(lo, hi)])
    np.testing.assert_allclose([states.unstable, states.active, states.dead],
                               [3 / 8, 3 / 8, 2 / 8])


def test_tightness_orders_the_relaxations():
    """tightness = -sum_i m_i; on random networks, on average: optimised slopes <
    CROWN-IBP's adaptive slopes < random slopes < IBP (the paper's Figure 4 ordering, in
    aggregate: each relaxation shares the IBP boxes and differs in its lower slopes)."""
    np.testing.assert_allclose(tightness(tf.constant([[0.0, 1.0, -2.5]])), [1.5])
    totals = {"ibp": 0.0, "random": 0.0, "optimized": 0.0, "crown_ibp": 0.0}
    for seed in range(4):
        network, x, reference, _ = random_network(seed)
        result = ibp(network, x, 0.1)
        boxes = result.pre_activation
        spec = specification(reference, CLASSES)
        slopes = {"random": initial_slopes(network, boxes, seed=seed), "crown_ibp": None,
                  "optimized": optimized_lower_slopes(network, x, 0.1, spec, boxes, seed=seed)}
        for name, lower_slopes in slopes.items():
            totals[name] += float(tf.reduce_mean(tightness(backward_bounds(
                network, x, 0.1, spec, boxes, lower_slopes=lower_slopes))))
        totals["ibp"] += float(tf.reduce_mean(tightness(
            ibp_margin_lower_bounds(network, result, reference))))
    assert totals["optimized"] < totals["crown_ibp"] < totals["random"] < totals["ibp"]


def test_runs_compiled_with_an_unknown_batch():
    """IBP, the optimised slopes and both closures trace under tf.function with a
    batch of unknown size and give the eager values."""
    input_shape, make_layers, eps = NETWORKS["conv"]
    network, x, reference, _ = build(input_shape, make_layers)

    def bounds(x, reference):
        result = ibp(network, x, eps)
        spec = specification(reference, CLASSES)
        slopes = optimized_lower_slopes(network, x, eps, spec, result.pre_activation, seed=3)
        return [backward_bounds(network, x, eps, spec, result.pre_activation, norm, slopes)
                for norm in ("linf", "l2")] + [ibp_margin_lower_bounds(network, result,
                                                                         reference)]

    compiled = tf.function(bounds, input_signature=[
        tf.TensorSpec((None,) + input_shape, tf.float32), tf.TensorSpec((None,), tf.int64)])
    for got, want in zip(compiled(x, reference), bounds(x, reference)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
