"""Compiled bound passes over a batch, owned by the network they walk.

Inference-side bound computations (certification, ``lipschitz_bounds``, evaluation
reports) run through ``bound_pass``. Each pass is traced once for every batch size and
cached on the ``SeamNetwork`` under a key holding everything it depends on (the bound,
the layers with per-sample norms, the stopping rule and the start seed), so changing
any of them gives a new pass and never a stale one. Passes always compute in float32,
whatever ``keras.config.floatx()`` is.
"""
import tensorflow as tf

from gloro_local.bounds.margins import compute_margins
from gloro_local.bounds.power_iteration import StoppingRule
from gloro_local.bounds.start_vectors import warm_start
from gloro_local.bounds.strategies import get_bound

DTYPE = tf.float32
RADII = ("global", "layerwise")
BOXES = ("interval", "relaxation")
LOCAL_BOUNDS = {("global", "interval"): "local",
                ("layerwise", "interval"): "local_layerwise",
                ("global", "relaxation"): "local_relaxed",
                ("layerwise", "relaxation"): "local_layerwise_relaxed"}


def local_bound(radius, boxes="interval"):
    """The local bound of a ball ``radius`` rule and a ``boxes`` rule.

    radius: 'global' (the paper's: the ball entering layer l has radius
    eps * prod_{k<l} ||W_k||) or 'layerwise' (eps * prod_{k<l} sigma_k(x), the masked
    norms of the layers before it). boxes: 'interval' (the paper's box-and-ball walk) or
    'relaxation' (CROWN pre-activation bounds closed in l2, intersected with it).
    Returns 'local', 'local_layerwise', 'local_relaxed' or 'local_layerwise_relaxed';
    ValueError for any other rule."""
    if radius not in RADII:
        raise ValueError(f"radius must be one of {RADII}. Received: radius={radius!r}")
    if boxes not in BOXES:
        raise ValueError(f"boxes must be one of {BOXES}. Received: boxes={boxes!r}")
    return LOCAL_BOUNDS[(radius, boxes)]


def bound_pass(network, bound, local_layers=(), rule=StoppingRule(), seed=0):
    """A function ``run(x, epsilon, global_sigmas, reference)`` -> dict of numpy arrays.

    ``bound`` is 'global' (r = eps * prod_l ||W_l||), 'local' (r = eps * prod_l
    sigma_l(x): per-sample masked power iteration of the hidden layers ``local_layers``
    from the fixed vector of seed (``seed``, layer), until ``rule`` holds (an int: that
    many steps, for monitoring); a layer that did not converge, or whose neurons all
    vary, uses its global norm; no sigma_l(x) exceeds it) or 'local_layerwise' (the same
    norms, with the ball entering every layer of radius eps * prod_{k<l} sigma_k(x):
    tighter boxes and masks). ``global_sigmas`` should be ``sound_global_norms``. The
    logit layer's worst case is exact (box intersected with the ball), against class
    ``reference`` (B,) int.

    Returned per-sample arrays: logits (B, K), bottom (B,) = max_{i != j} z*_i,
    lipschitz (B,) the product used, sigmas (B, hidden layers) the norm used per layer,
    iterations (B, local layers), converged (B,) all local layers met ``rule`` (True for
    'global'), varying (B, activations) the fraction of neurons each activation lets
    move.
    """
    local = tuple(sorted(set(local_layers))) if get_bound(bound).per_sample_norms else ()
    budget = rule.check() if isinstance(rule, StoppingRule) else int(rule)
    key = (bound, local, budget, int(seed))
    if key not in network.compiled:
        network.compiled[key] = _compile(network, bound, local, budget, int(seed))
    return network.compiled[key]


def logits_pass(network):
    """A function ``run(x)`` -> (B, K) numpy logits of the network in float32 (the clean
    pass that certification predicts with), cached on the network."""
    if "logits" not in network.compiled:
        spec = tf.TensorSpec((None,) + tuple(network.input_shape), DTYPE)
        run = tf.function(lambda x: network.logits(x), input_signature=[spec])
        network.compiled["logits"] = lambda x: run(tf.convert_to_tensor(x, DTYPE)).numpy()
    return network.compiled["logits"]


def _fraction(mask, batch):
    if mask is None:
        return tf.ones([batch], DTYPE)
    return tf.reduce_mean(tf.cast(mask, DTYPE), axis=tf.range(1, tf.rank(mask)))


def _stack(values, batch, dtype, empty_value):
    if values:
        return tf.stack(values, 1)
    return tf.fill([batch, 0], tf.constant(empty_value, dtype))


def _compile(network, bound, local, rule, seed):
    shapes = [shape for _, shape in network.hidden_layers()]
    scalar = tf.TensorSpec([], DTYPE)
    signature = [tf.TensorSpec((None,) + tuple(network.input_shape), DTYPE), scalar,
                 [scalar] * len(shapes), tf.TensorSpec([None], tf.int32),
                 [tf.TensorSpec((1,) + tuple(shape), DTYPE) for shape in shapes]]

    @tf.function(input_signature=signature)
    def run(x, epsilon, global_sigmas, reference, vectors):
        batch = tf.shape(x)[0]
        starts = [warm_start(vector, batch, (seed, k)) if k in local else None
                  for k, vector in enumerate(vectors)]
        result = compute_margins(network, x, epsilon, global_sigmas, bound, reference,
                                 starts, rule, capped=True)
        power = [p for p in result.power if p is not None]
        converged = (tf.reduce_all(tf.stack([p.converged for p in power], 1), 1)
                     if power else tf.ones([batch], tf.bool))
        return dict(
            logits=result.logits, bottom=result.bottom, lipschitz=result.lipschitz,
            sigmas=_stack(result.sigmas, batch, DTYPE, 0.0),
            iterations=_stack([p.iterations for p in power], batch, tf.int32, 0),
            converged=converged,
            varying=_stack([_fraction(a.varying, batch)
                            for a in result.propagation.activations], batch, DTYPE, 0.0))

    def call(x, epsilon, global_sigmas, reference, vectors):
        outputs = run(tf.convert_to_tensor(x, DTYPE), tf.cast(epsilon, DTYPE),
                      [tf.constant(s, DTYPE) for s in global_sigmas],
                      tf.convert_to_tensor(reference, tf.int32),
                      [tf.cast(v, DTYPE) for v in vectors])
        return {key: value.numpy() for key, value in outputs.items()}

    return call
