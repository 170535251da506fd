"""Empirical lower bound of the local margin Lipschitz constant (GloRo, appendix E).

For a point x, classes (j, i) and the margin m(x') = z_j(x') - z_i(x'), any pair x1 != x2
in the ball B(x, eps) gives
    L_lower = |m(x1) - m(x2)| / ||x1 - x2|| <= Lip(m, B(x, eps)) <= L_upper,
    L_upper = prod_{l<L} sigma_l(x) * ||w_j - w_i||,
the local bound that certification uses (sigma_l(x) the masked norms at eps).
upper / lower >= 1 measures how loose the upper bound is (up to the optimiser's gap).
"""
import weakref
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from gloro_local.attacks import l2_norm, per_sample, project, random_ball
from gloro_local.bounds import StoppingRule, bound_pass, certificate_globals, check_epsilon
from gloro_local.models.certify import check_inputs

_ASCENT = weakref.WeakKeyDictionary()  # classifier -> compiled ascent step


class LipschitzGap(NamedTuple):
    """Per sample: lower (B,) the best ratio found, upper (B,) the local bound of the
    margin's Lipschitz constant, ratio (B,) = upper / lower (inf where lower = 0: no pair
    found that changes the margin), classes (B, 2) the (j, i) pair of the margin
    (prediction and runner-up)."""

    lower: np.ndarray
    upper: np.ndarray
    ratio: np.ndarray
    classes: np.ndarray


def _unit(g):
    return g / per_sample(tf.maximum(l2_norm(g), 1e-30), g)


def _direction(g, noise):
    """g / ||g||, or the random ``noise`` direction where g = 0 (a pair stuck where the
    margin is flat, e.g. every neuron saturated, wanders until it finds slope)."""
    return _unit(tf.where(per_sample(l2_norm(g) == 0.0, g), noise, g))


def _ascent(classifier):
    """One compiled step (x, pairs, d1, d2, size, eps, noise1, noise2) -> (ratio of the
    pair (d1, d2) after separation, whether it is scored, next d1, next d2); cached per
    classifier, so repeated calls do not retrace."""
    if classifier in _ASCENT:
        return _ASCENT[classifier]
    weak = weakref.ref(classifier)  # the cached step must not keep its key alive

    @tf.function(reduce_retracing=True)
    def step(x, pairs, d1, d2, size, epsilon, noise1, noise2):
        min_gap = epsilon / 100.0
        gap = d1 - d2
        push = _unit(gap) * per_sample(tf.maximum(min_gap - l2_norm(gap), 0.0), gap) / 2.0
        d1, d2 = (project(d, x, epsilon, None) for d in (d1 + push, d2 - push))
        with tf.GradientTape() as tape:
            tape.watch([d1, d2])
            margins = [tf.gather(z, pairs[:, 0], batch_dims=1)
                       - tf.gather(z, pairs[:, 1], batch_dims=1)
                       for z in tf.split(weak()(tf.concat([x + d1, x + d2], 0)), 2)]
            ratio = tf.abs(margins[0] - margins[1]) / l2_norm(d1 - d2)
        g1, g2 = tape.gradient(ratio, [d1, d2])
        scored = l2_norm(d1 - d2) >= min_gap * 0.999
        return (ratio, scored, project(d1 + size * _direction(g1, noise1), x, epsilon, None),
                project(d2 + size * _direction(g2, noise2), x, epsilon, None))
    _ASCENT[classifier] = step
    return step


def lipschitz_lower_bound(classifier, x, epsilon, classes, steps=100, restarts=4,
                          step_size=None, seed=0):
    """max over pairs x1, x2 in B(x, eps) of |m(x1) - m(x2)| / ||x1 - x2||, by gradient
    ascent on the ratio from uniformly random pairs.

    Each restart draws d1, d2 uniformly in the ball and takes ``steps`` normalised
    gradient steps on both (size ``step_size`` * (1 - t / steps), default eps / 4; a
    random direction where the gradient is 0), projecting each onto the ball. Pairs
    closer than eps / 100 are pushed apart to that distance and never scored below it,
    so float32 cancellation in m(x1) - m(x2) cannot inflate the ratio. Every returned
    value is the ratio of a feasible pair.

    Args:
        classifier: a batch -> logits callable. x: points (B, ...). epsilon: radius > 0.
        classes: (B, 2) int (j, i) per sample.

    Returns:
        (B,) numpy array of lower bounds.
    """
    epsilon = tf.cast(check_epsilon(epsilon), tf.float32)  # the search runs in float32
    step_size = epsilon / 4.0 if step_size is None else tf.constant(step_size, epsilon.dtype)
    x = tf.convert_to_tensor(x, epsilon.dtype)
    pairs = tf.convert_to_tensor(np.asarray(classes, np.int32))
    generator = tf.random.Generator.from_seed(seed)
    step = _ascent(classifier)
    best = tf.zeros(tf.shape(x)[:1], x.dtype)
    for _ in range(int(restarts)):
        d1, d2 = (random_ball(tf.shape(x), epsilon, generator) for _ in range(2))
        for t in range(int(steps) + 1):
            size = step_size * (1.0 - t / max(int(steps), 1))
            ratio, scored, d1, d2 = step(x, pairs, d1, d2, size, epsilon,
                                         generator.normal(tf.shape(x)),
                                         generator.normal(tf.shape(x)))
            best = tf.where(scored, tf.maximum(best, ratio), best)
    return best.numpy()


def lipschitz_gap(model, x, epsilon=None, steps=100, restarts=4, rule=StoppingRule(),
                  seed=None, globals_=None):
    """Lower (``lipschitz_lower_bound``) and upper (the certificate's local bound, with
    the local ``rule`` and the ``CertificateGlobals``, computed when not given)
    Lipschitz constants of the margin between the predicted class j and the runner-up i
    at x."""
    epsilon = check_epsilon(float(model.epsilon.numpy()) if epsilon is None else epsilon)
    x, _ = check_inputs(model, x)
    seed = model.seed if seed is None else int(seed)
    if globals_ is None:
        globals_ = certificate_globals(model.network, seed)
    logits = model.f(x).numpy()
    order = np.argsort(-logits, axis=1)
    classes = order[:, :2].astype(np.int32)
    run = bound_pass(model.network, "local", model.local_layers, rule, seed)
    out = run(x, float(epsilon.numpy()), globals_.sigmas, classes[:, 0], globals_.vectors)
    w = np.asarray(model.network.logit_layer.kernel.numpy()).T
    upper = out["lipschitz"] * np.linalg.norm(w[classes[:, 0]] - w[classes[:, 1]], axis=1)
    lower = lipschitz_lower_bound(model.f, x, epsilon, classes, steps, restarts, seed=seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(lower > 0, upper / lower, np.inf)
    return LipschitzGap(lower, upper, ratio, classes)
