"""Adversarial attacks: untargeted projected gradient descent (PGD) in the l2 ball
(``pgd_l2``) and the l-infinity ball (``pgd_linf``), sharing one ascent and restart loop."""
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


def clip_pixels(delta, x, clip):
    """delta' = clip(x + delta, lo, hi) - x (delta itself when ``clip`` is None); since x
    lies inside ``clip``, every |delta'_i| <= |delta_i|, so delta' stays in any l_p ball
    that delta was in."""
    if clip is None:
        return delta
    return tf.clip_by_value(x + delta, clip[0], clip[1]) - x


def project(delta, x, epsilon, clip):
    """Projects delta onto the l2 ball ||delta|| <= eps, then clips x + delta to ``clip``."""
    norm = per_sample(l2_norm(delta), delta)
    return clip_pixels(delta * tf.minimum(1.0, epsilon / tf.maximum(norm, 1e-12)), x, clip)


def project_linf(delta, x, epsilon, clip):
    """Projects delta onto the l-infinity ball, delta_i <- min(max(delta_i, -eps), eps), then
    clips x + delta to ``clip``; both are boxes, so this is the exact projection onto
    their intersection."""
    return clip_pixels(tf.clip_by_value(delta, -epsilon, epsilon), x, clip)


def random_ball(shape, epsilon, generator):
    """Uniform samples from the l2 ball of radius eps."""
    direction = generator.normal(shape)
    direction = direction / per_sample(l2_norm(direction), direction)
    dims = float(np.prod(shape[1:]))
    radius = epsilon * generator.uniform(shape[:1]) ** (1.0 / dims)
    return direction * per_sample(radius, direction)


def random_box(shape, epsilon, generator):
    """Uniform samples from the l-infinity ball [-eps, eps]^d."""
    return generator.uniform(shape, -epsilon, epsilon)


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


def _checked(x, y, epsilon, steps, step_size, restarts, clip):
    """Validated (x, y, epsilon, step_size or None) in float32 / int32; ValueError on a bad
    radius, step count, restart count, step size, or inputs outside ``clip``."""
    epsilon = tf.cast(check_epsilon(epsilon), tf.float32)  # attacks run in float32
    if step_size is not None and not step_size > 0:
        raise ValueError(f"step_size must be > 0. Received: step_size={step_size!r}")
    if int(steps) < 0:
        raise ValueError(f"steps must be an integer >= 0. Received: steps={steps!r}")
    if int(restarts) < 1:
        raise ValueError(f"restarts must be an integer >= 1. Received: restarts={restarts!r}")
    x = tf.convert_to_tensor(x, tf.float32)
    if clip is not None and not bool(tf.reduce_all((x >= clip[0]) & (x <= clip[1]))):
        raise ValueError(f"Inputs lie outside the clip range; pass clip=None for inputs that "
                         f"are not pixels in that range. Received: clip={tuple(clip)}")
    y = tf.cast(tf.reshape(y, [-1]), tf.int32)
    step_size = None if step_size is None else tf.constant(step_size, tf.float32)
    return x, y, epsilon, step_size


def _search(classifier, x, y, steps, restarts, seed, start, move):
    """The PGD loop of both norms: each restart draws delta = start(generator) and takes
    ``steps`` ascent steps delta <- move(delta, grad); per sample, the first misclassified
    x + delta is kept (x itself when none is found). Stops once every sample is broken."""
    generator = tf.random.Generator.from_seed(seed)
    ascend = _ascent(classifier)
    best = x
    broken = tf.zeros(tf.shape(y), tf.bool)
    for _ in range(int(restarts)):
        delta = start(generator)
        for step in range(int(steps) + 1):
            grad, wrong = ascend(x, y, delta)
            fresh = tf.logical_and(wrong, tf.logical_not(broken))
            best = tf.where(per_sample(fresh, x), x + delta, best)
            broken = tf.logical_or(broken, wrong)
            if step == int(steps) or bool(tf.reduce_all(broken)):
                break
            delta = move(delta, grad)
        if bool(tf.reduce_all(broken)):
            break
    return best, broken


def pgd_l2(classifier, x, y, epsilon, steps=100, step_size=None, restarts=1,
           clip=(0.0, 1.0), seed=0):
    """Searches ||delta||_2 <= eps (and x + delta in ``clip``) for a misclassification.

    Each restart begins at a uniform random point of the ball and takes ``steps``
    normalised-gradient ascent steps delta <- P(delta + step_size * grad / ||grad||) on
    the cross-entropy of label ``y`` (default step_size = eps / 4), P projecting onto
    the ball and then the pixel range. The returned point of each sample is the first
    misclassified iterate found (x itself when none was found).

    Args:
        classifier: callable mapping a batch to logits (e.g. ``model.f``).
        x: inputs (B, ...). y: labels (B,) to move away from (often the prediction).
        epsilon: l2 radius > 0. clip: pixel range (lo, hi) that ``x`` lies in, or None.
        steps: ascent steps >= 0 per restart. restarts: random starts >= 1.
        seed: seed of the random starts (the same seed gives the same result).

    Returns:
        (x_adv, broken): float32 adversarial inputs and a (B,) bool mask of misclassified
        ones.
    """
    x, y, epsilon, step_size = _checked(x, y, epsilon, steps, step_size, restarts, clip)
    step_size = epsilon / 4.0 if step_size is None else step_size

    def move(delta, grad):
        grad = grad / per_sample(tf.maximum(l2_norm(grad), 1e-12), grad)
        return project(delta + step_size * grad, x, epsilon, clip)

    return _search(
        classifier, x, y, steps, restarts, seed, move=move,
        start=lambda generator: project(random_ball(tf.shape(x), epsilon, generator), x,
                                        epsilon, clip))


def pgd_linf(classifier, x, y, epsilon, steps=100, step_size=None, restarts=1,
             clip=(0.0, 1.0), seed=0):
    """Searches ||delta||_inf <= eps (and x + delta in ``clip``) for a misclassification.

    Each restart begins at a uniform random point of the box [-eps, eps]^d and takes
    ``steps`` signed-gradient ascent steps (Madry et al., 2018)

        delta <- clip(x + clip(delta + step_size * sign(grad), -eps, eps), lo, hi) - x

    on the cross-entropy of label ``y``; the two clips are the exact projection onto the
    intersection of the two boxes. The default step_size = 2.5 * eps / max(steps, 1)
    (Madry et al.'s rule: ``steps`` steps can cross the box 1.25 times, so every corner is
    reachable from any start; eps / 40 for the 100 steps of the l-infinity papers). The
    returned point of each sample is the first misclassified iterate found (x itself when
    none was found). Arguments and results as ``pgd_l2``, with ``epsilon`` the
    l-infinity radius > 0.
    """
    x, y, epsilon, step_size = _checked(x, y, epsilon, steps, step_size, restarts, clip)
    step_size = 2.5 * epsilon / max(int(steps), 1) if step_size is None else step_size
    return _search(
        classifier, x, y, steps, restarts, seed,
        move=lambda delta, grad: project_linf(delta + step_size * tf.sign(grad), x, epsilon,
                                              clip),
        start=lambda generator: project_linf(random_box(tf.shape(x), epsilon, generator), x,
                                             epsilon, clip))
