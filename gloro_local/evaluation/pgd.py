"""Untargeted l2 projected gradient descent (PGD) on a classifier's logits."""
import keras
import numpy as np
import tensorflow as tf

from gloro_local.bounds import check_epsilon


def _norm(x):
    return tf.sqrt(tf.reduce_sum(tf.square(x), axis=tf.range(1, tf.rank(x))))


def _per_sample(values, like):
    return tf.reshape(values, [-1] + [1] * (len(like.shape) - 1))


def project(delta, x, epsilon, clip):
    """Projects delta onto the ball ||delta|| <= eps, then clips x + delta to ``clip``;
    since x lies inside ``clip``, clipping only shrinks |delta| and stays in the ball."""
    norm = _per_sample(_norm(delta), delta)
    delta = delta * tf.minimum(1.0, epsilon / tf.maximum(norm, 1e-12))
    if clip is None:
        return delta
    return tf.clip_by_value(x + delta, clip[0], clip[1]) - x


def _random_ball(shape, epsilon, generator):
    """Uniform samples from the l2 ball of radius eps."""
    direction = generator.normal(shape)
    direction = direction / _per_sample(_norm(direction), direction)
    dims = float(np.prod(shape[1:]))
    radius = epsilon * generator.uniform(shape[:1]) ** (1.0 / dims)
    return direction * _per_sample(radius, direction)


def pgd_l2(classifier, x, y, epsilon, steps=100, step_size=None, restarts=1,
           clip=(0.0, 1.0), seed=0):
    """Searches ||delta|| <= eps (and x + delta in ``clip``) for a misclassification.

    Each restart begins at a uniform random point of the ball and takes ``steps``
    normalised-gradient ascent steps of size ``step_size`` (default eps / 4) on the
    cross-entropy of label ``y``, projecting after each step. The returned point of each
    sample is the first misclassified iterate found (x itself when none was found).

    Args:
        classifier: callable mapping a batch to logits (e.g. ``model.f``).
        x: inputs (B, ...). y: labels (B,) to move away from (often the prediction).
        epsilon: l2 radius > 0. clip: pixel range or None.

    Returns:
        (x_adv, broken): adversarial inputs and a (B,) bool mask of misclassified ones.
    """
    epsilon = check_epsilon(epsilon)
    step_size = epsilon / 4.0 if step_size is None else tf.constant(step_size, epsilon.dtype)
    x = tf.convert_to_tensor(x, epsilon.dtype)
    y = tf.cast(tf.reshape(y, [-1]), tf.int32)
    generator = tf.random.Generator.from_seed(seed)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)

    @tf.function
    def ascend(delta):
        """Gradient of the loss at x + delta, and whether x + delta is misclassified."""
        with tf.GradientTape() as tape:
            tape.watch(delta)
            logits = classifier(x + delta)
            loss = loss_fn(y, logits)
        wrong = tf.not_equal(tf.argmax(logits, -1, output_type=tf.int32), y)
        return tape.gradient(loss, delta), wrong

    best = x
    broken = tf.zeros(tf.shape(y), tf.bool)
    for _ in range(restarts):
        delta = project(_random_ball(tf.shape(x), epsilon, generator), x, epsilon, clip)
        for step in range(steps + 1):
            grad, wrong = ascend(delta)
            fresh = tf.logical_and(wrong, tf.logical_not(broken))
            best = tf.where(_per_sample(fresh, x), x + delta, best)
            broken = tf.logical_or(broken, wrong)
            if step == steps or bool(tf.reduce_all(broken)):
                break
            grad = grad / _per_sample(tf.maximum(_norm(grad), 1e-12), grad)
            delta = project(delta + step_size * grad, x, epsilon, clip)
        if bool(tf.reduce_all(broken)):
            break
    return best, broken
