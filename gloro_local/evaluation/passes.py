"""Compiled bound passes over a batch, shared by certification and evaluation reports."""
import weakref

import keras
import numpy as np
import tensorflow as tf

from gloro_local.bounds import MaskedOperator, compute_margins, random_start

_COMPILED = weakref.WeakKeyDictionary()  # model -> {key: compiled function}


def _cached(model, key, build):
    """``build()`` once per model and key; the cached function must not refer to the
    model itself (only to its layers), or the model would never be freed."""
    cache = _COMPILED.setdefault(model, {})
    if key not in cache:
        cache[key] = build()
    return cache[key]


def check_weights(model):
    """FloatingPointError when a weight of the classifier is NaN or Inf (DESIGN rule 4)."""
    for weight in model.f.weights:
        if not np.all(np.isfinite(np.asarray(weight.numpy()))):
            raise FloatingPointError(f"The model's weight {weight.path!r} contains NaN or "
                                     "Inf; refusing to compute bounds.")


def converged_global_norms(model, tol, floor_tol=1e-3, max_iterations=100000,
                           patience=1000):
    """The global norms ||W_l|| of every hidden linear layer: power iteration
    u <- A^T A u / ||A^T A u||, warm-started from the model's stored vectors (which it
    updates), sigma_l = ||A u||, until the step ||u_t+1 - u_t|| <= ``tol``.

    In float32 the step can stall above a tight ``tol`` when the top singular values
    nearly coincide (u then wanders in their span while sigma is already accurate): the
    iteration also stops when the step has not reached a new minimum for ``patience``
    steps, and is accepted if its last step is <= ``floor_tol`` (certification passes its
    local tolerance: a global norm is never held to less than a local one).

    Raises FloatingPointError for non-finite weights, vectors or norms, RuntimeError when
    a layer ends with a step above ``floor_tol``.
    """
    check_weights(model)
    norms = model.global_norms
    for iterate in norms.iterates:
        if not np.all(np.isfinite(iterate.numpy())):
            raise FloatingPointError("The stored global power-iteration vectors contain "
                                     "NaN or Inf.")
    converge = _cached(model, ("global", tol, max_iterations, patience),
                       lambda: _compile_converge(model.hidden_seams(), norms, tol,
                                                 max_iterations, patience))
    sigmas, steps = converge()
    for k, (sigma, step) in enumerate(zip(sigmas, steps)):
        if not np.isfinite(float(sigma)):
            raise FloatingPointError(f"Non-finite global norm of hidden layer {k}.")
        if not float(step) <= max(tol, floor_tol):
            raise RuntimeError(f"The global power iteration of hidden layer {k} did not "
                               f"converge: last step {float(step):.2e} > {max(tol, floor_tol)}.")
    return sigmas


def _compile_converge(seams, norms, tol, max_iterations, patience):
    @tf.function
    def converge():
        sigmas, steps = [], []
        for seam, shape, iterate in zip(seams, norms.input_shapes, norms.iterates):
            operator = MaskedOperator(seam, shape)

            def cond(t, u, step, best, since):
                return (t < max_iterations) & (step > tol) & (since < patience)

            def body(t, u, step, best, since, operator=operator):
                new = operator.step(u)
                step = tf.norm(new - u)
                return (t + 1, new, step, tf.minimum(best, step),
                        tf.where(step < best, 0, since + 1))

            inf = tf.constant(np.inf, iterate.dtype)
            _, u, step, _, _ = tf.while_loop(
                cond, body, [0, operator.start(iterate), inf, inf, 0])
            iterate.assign(u)
            sigmas.append(operator.sigma(u)[0])
            steps.append(step)
        return sigmas, steps
    return converge


def _fraction(mask, batch):
    if mask is None:
        return tf.ones([batch])
    return tf.reduce_mean(mask, axis=tf.range(1, tf.rank(mask)))


def bound_pass(model, bound, tol=None, max_iterations=0):
    """A compiled function ``run(x, epsilon, global_sigmas, reference, seed)`` -> dict.

    ``bound`` is 'global' (r = eps * prod_l ||W_l||) or 'local' (r = eps * prod_l
    sigma_l(x), per-sample masked power iteration of the model's ``local_layers`` from
    random vectors seeded by (seed, layer), until ||u_t+1 - u_t|| <= ``tol`` or
    ``max_iterations``; a layer that did not converge uses its global norm). The logit
    layer's worst case is exact (box intersected with the ball), against class
    ``reference`` (B,) int32.

    Returned per-sample tensors: logits (B, K), bottom (B,) = max_{i != j} z*_i,
    lipschitz (B,) the product used, iterations (B, local layers), converged (B,) all
    local layers met ``tol`` (True for 'global'), varying (B, activations) the fraction of
    neurons that may move. Passes are cached per model, so repeated calls do not retrace.
    """
    local = set(model.local_layers) if bound == "local" else set()
    return _cached(model, (bound, tol, int(max_iterations)),
                   lambda: _compile_pass(model.network, local, bound, tol,
                                         int(max_iterations)))


def _compile_pass(network, local, bound, tol, max_iterations):
    shapes = [shape for _, shape in network.hidden_layers()]
    dtype = keras.config.floatx()
    scalar = tf.TensorSpec([], dtype)
    signature = [tf.TensorSpec((None,) + tuple(network.input_shape), dtype), scalar,
                 [scalar] * len(shapes), tf.TensorSpec([None], tf.int32),
                 tf.TensorSpec([], tf.int64)]

    @tf.function(input_signature=signature)  # one trace for every batch size
    def run(x, epsilon, global_sigmas, reference, seed):
        batch = tf.shape(x)[0]
        starts = [random_start(shape, batch, tf.stack([seed, k])) if k in local else None
                  for k, shape in enumerate(shapes)]
        result = compute_margins(network, x, epsilon, global_sigmas, bound, reference,
                                 starts, max_iterations, tol, fallback_to_global=True)
        power = [p for p in result.power if p is not None]
        iterations = (tf.stack([p.iterations for p in power], 1) if power
                      else tf.zeros([batch, 0], tf.int32))
        converged = tf.reduce_all(tf.stack([p.converged for p in power], 1), 1) if power \
            else tf.ones([batch], tf.bool)
        activations = result.propagation.activations
        varying = (tf.stack([_fraction(a.varying, batch) for a in activations], 1)
                   if activations else tf.zeros([batch, 0]))
        return dict(logits=result.logits, bottom=result.bottom, lipschitz=result.lipschitz,
                    iterations=iterations, converged=converged, varying=varying)

    def call(x, epsilon, global_sigmas, reference, seed):
        outputs = run(tf.convert_to_tensor(x, dtype), epsilon,
                      [tf.cast(s, dtype) for s in global_sigmas],
                      tf.convert_to_tensor(reference, tf.int32), tf.constant(seed, tf.int64))
        return {key: value.numpy() for key, value in outputs.items()}

    return call
