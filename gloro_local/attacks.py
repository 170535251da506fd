"""Adversarial attacks: ``pgd_l2``, untargeted l2 projected gradient descent (PGD)."""
import weakref

import numpy as np
import tensorflow as tf

from gloro_local.bounds import check_epsilon

_ASCENT = weakref.WeakKeyDictionary()  # classifier -> compiled gradient step


def l2_norm(x):
    """||x|| per sample: (B,)."""
    return tf.sqrt(tf.reduce_sum(tf.square(x), axis=tf.range(1, tf.rank(x))))


def per_sample(values, like):
    """(B,) values reshaped to broadcast against ``like`` (B, ...)."""
    return tf.reshape(values, [-1] + [1] * (len(like.shape) - 1))


def project(delta, x, epsilon, clip):
    """Projects delta onto the ball ||delta|| <= eps, then clips x + delta to ``clip``;
    since x lies inside ``clip``, clipping only shrinks |delta| and stays in the ball."""
    norm = per_sample(l2_norm(delta), delta)
    delta = delta * tf.minimum(1.0, epsilon / tf.maximum(norm, 1e-12))
    if clip is None:
        return delta
    return tf.clip_by_value(x + delta, clip[0], clip[1]) - x


def random_ball(shape, epsilon, generator):
    """Uniform samples from the l2 ball of radius eps."""
    direction = generator.normal(shape)
    direction = direction / per_sample(l2_norm(direction), direction)
    dims = float(np.prod(shape[1:]))
    radius = epsilon * generator.uniform(shape[:1]) ** (1.0 / dims)
    return direction * per_sample(radius, direction)


def _ascent(classifier):
    """Compiled (x, y, delta) -> (gradient of CE(y, logits(x + delta)) in delta, whether
    x + delta is misclassified); one per classifier, so repeated attacks do not retrace."""
    if classifier not in _ASCENT:
        weak = weakref.ref(classifier)  # the cached step must not keep its key alive

        @tf.function(reduce_retracing=True)
        def ascend(x, y, delta):
            with tf.GradientTape() as tape:
                tape.watch(delta)
                logits = weak()(x + delta)
                loss = tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)
            wrong = tf.not_equal(tf.argmax(logits, -1, output_type=tf.int32), y)
            return tape.gradient(loss, delta), wrong
        _ASCENT[classifier] = ascend
    return _ASCENT[classifier]


def pgd_l2(classifier, x, y, epsilon, steps=100, step_size=None, restarts=1,
           clip=(0.0, 1.0), seed=0):
    """Searches ||delta|| <= eps (and x + delta in ``clip``) for a misclassification.

    Each restart begins at a uniform random point of the ball and takes ``steps``
    normalised-gradient ascent steps delta <- P(delta + step_size * grad / ||grad||) on
    the cross-entropy of label ``y`` (default step_size = eps / 4), P projecting onto
    the ball and then the pixel range. The returned point of each sample is the first
    misclassified iterate found (x itself when none was found).

    Args:
        classifier: callable mapping a batch to logits (e.g. ``model.f``).
        x: inputs (B, ...). y: labels (B,) to move away from (often the prediction).
        epsilon: l2 radius > 0. clip: pixel range (lo, hi) that ``x`` lies in, or None.

    Returns:
        (x_adv, broken): adversarial inputs and a (B,) bool mask of misclassified ones.
    """
    epsilon = tf.cast(check_epsilon(epsilon), tf.float32)  # attacks run in float32
    if step_size is not None and not step_size > 0:
        raise ValueError(f"step_size must be > 0, got {step_size}.")
    if int(steps) < 0 or int(restarts) < 1:
        raise ValueError(f"Need steps >= 0 and restarts >= 1, got {steps}, {restarts}.")
    step_size = epsilon / 4.0 if step_size is None else tf.constant(step_size, epsilon.dtype)
    x = tf.convert_to_tensor(x, epsilon.dtype)
    if clip is not None and not bool(tf.reduce_all((x >= clip[0]) & (x <= clip[1]))):
        raise ValueError(f"Inputs lie outside the clip range {tuple(clip)}; pass clip=None "
                         "for inputs that are not pixels in that range.")
    y = tf.cast(tf.reshape(y, [-1]), tf.int32)
    generator = tf.random.Generator.from_seed(seed)
    ascend = _ascent(classifier)
    best = x
    broken = tf.zeros(tf.shape(y), tf.bool)
    for _ in range(int(restarts)):
        delta = project(random_ball(tf.shape(x), epsilon, generator), x, epsilon, clip)
        for step in range(int(steps) + 1):
            grad, wrong = ascend(x, y, delta)
            fresh = tf.logical_and(wrong, tf.logical_not(broken))
            best = tf.where(per_sample(fresh, x), x + delta, best)
            broken = tf.logical_or(broken, wrong)
            if step == steps or bool(tf.reduce_all(broken)):
                break
            grad = grad / per_sample(tf.maximum(l2_norm(grad), 1e-12), grad)
            delta = project(delta + step_size * grad, x, epsilon, clip)
        if bool(tf.reduce_all(broken)):
            break
    return best, broken
