"""CROWN's backward pass: lower bounds of spec . logits over a norm ball, with every
activation replaced by its linear relaxation over a given pre-activation box."""
import tensorflow as tf

from gloro_local.bounds.linf.interval import as_inputs, input_box
from gloro_local.bounds.linf.relaxations import activation_relaxation
from gloro_local.bounds.linf.specification import specification, worst_logits_from_margins
from gloro_local.layers import ActivationSeam, LinearSeam

__all__ = ["NORMS", "backward_bounds", "backward_from", "close", "linear_output_bounds",
           "specification", "worst_logits_from_margins"]

NORMS = ("linf", "l2")


def _check_norm(norm):
    """ValueError unless ``norm`` is one the pass closes in."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}. Received: norm={norm!r}")


def _check(network, spec, boxes, norm, lower_slopes, clip):
    """ValueError for arguments the pass cannot use."""
    _check_norm(norm)
    if clip is not None and norm != "linf":
        raise ValueError(f"clip applies to norm='linf' only. Received: norm={norm!r}, "
                         f"clip={clip!r}")
    count = sum(isinstance(seam, ActivationSeam) for seam in network.seams)
    if len(boxes) != count:
        raise ValueError(f"boxes needs one (lo, hi) per activation layer ({count}). "
                         f"Received: {len(boxes)} boxes")
    if lower_slopes is not None and len(lower_slopes) != count:
        raise ValueError(f"lower_slopes needs one entry (or None) per activation layer "
                         f"({count}). Received: {len(lower_slopes)} entries")
    if spec.shape.rank != 3 or spec.shape[-1] not in (None, network.num_classes):
        raise ValueError(f"spec must have shape (B, S, {network.num_classes}). Received: "
                         f"spec of shape {tuple(spec.shape)}")


def _transpose(seam, lam, input_shape):
    """A^T applied to every row of lam (B, S) + output shape: (B, S) + input_shape."""
    leading = tf.shape(lam)[:2]
    flat = tf.reshape(lam, tf.concat([[-1], tf.shape(lam)[2:]], 0))
    return tf.reshape(seam.linear_transpose(flat, input_shape),
                      tf.concat([leading, list(input_shape)], 0))


def _inner(lam, values):
    """sum over the neurons of lam (B, S, ...) * values (B, 1, ...) or (1, 1, ...)."""
    return tf.reduce_sum(tf.reshape(lam * values, tf.concat([tf.shape(lam)[:2], [-1]], 0)),
                         axis=-1)


def _dual_norm(lam, norm):
    """||lam||_1 (linf ball) or ||lam||_2 (l2 ball) per row, (B, S); gradient-safe at 0."""
    flat = tf.reshape(lam, tf.concat([tf.shape(lam)[:2], [-1]], 0))
    if norm == "linf":
        return tf.reduce_sum(tf.abs(flat), axis=-1)
    squares = tf.reduce_sum(tf.square(flat), axis=-1)
    positive = squares > 0.0
    return tf.where(positive, tf.sqrt(tf.where(positive, squares, 1.0)), 0.0)


def _output_shape(network, index):
    """The per-sample output shape of seam ``index``."""
    shapes = network.input_shapes[1:] + [network.output_shape]
    return tuple(shapes[index])


def backward_bounds(network, x, epsilon, spec, boxes, norm="linf", lower_slopes=None,
                    clip=None):
    """Lower bounds of spec . f(x') over {x' : ||x' - x||_norm <= eps} (CROWN).

    Start with Lam = spec W_K (the logit layer's adjoint on every row) and c = spec . b_K;
    walk the hidden seams backwards:
    * activation with relaxation a_L z + b_L <= act(z) <= a_U z + b_U over its box:
      Lam <- Lam+ a_L + Lam- a_U, c += sum(Lam+ b_L + Lam- b_U) (Lam+/-: the positive /
      negative parts of Lam before the update), so Lam . act(z) >= new Lam . z + that;
    * linear seam z -> A z + b: c += Lam . b, Lam <- A^T Lam (``linear_transpose``);
    * shape seam: Lam is reshaped to the seam's input shape;
    and close at the input: lower = Lam . x - eps ||Lam||_1 + c (linf) or
    Lam . x - eps ||Lam||_2 + c (l2); with ``clip`` (linf only) the min of Lam . x' over
    the clipped box [max(x - eps, low), min(x + eps, high)].

    The bound holds wherever every activation input lies in its box: ``boxes`` must
    enclose the pre-activations of the whole perturbation set (``ibp`` of the linf box of
    radius eps encloses both the linf and the l2 ball).

    Args:
        network: a ``SeamNetwork``.
        x: inputs, (B,) + network.input_shape; the pass runs in x's dtype.
        epsilon: the radius, a scalar or one per sample (B,).
        spec: (B, S, K) rows (e.g. ``specification``).
        boxes: per activation seam, in network order, its (lo, hi) input box
            (``IntervalPass.pre_activation``).
        norm: 'linf' or 'l2'.
        lower_slopes: None or one entry per activation seam: None (adaptive) or a tensor
            of that activation's input shape (B, ...) with values in [0, 1], shared by
            all S rows.
        clip: None or (low, high): intersect the linf input box with it.

    Returns:
        (B, S) lower bounds.
    """
    x, epsilon = as_inputs(x, epsilon)
    spec = tf.cast(spec, x.dtype)
    _check(network, spec, boxes, norm, lower_slopes, clip)
    logit = network.logit_layer
    lam = _transpose(logit, spec, network.input_shapes[-1])
    bias = logit.add_bias(tf.zeros([1, network.num_classes], x.dtype))
    constant = tf.einsum("bsk,k->bs", spec, bias[0])
    lam, constant = backward_from(network, len(network.seams) - 1, lam, constant, boxes,
                                  lower_slopes)
    return close(lam, constant, x, epsilon, norm, clip)


def backward_from(network, stop, lam, constant, boxes, lower_slopes=None):
    """CROWN's backward walk through seams ``stop - 1`` down to 0.

    ``lam`` (B, S) + the input shape of seam ``stop`` holds S rows of coefficients and
    ``constant`` (B, S) their constants, so that the bound is lam . v + constant for the
    input v of seam ``stop``; each seam is replaced as ``backward_bounds`` says.
    ``boxes`` (and ``lower_slopes``, None or one entry per box) hold the activation seams
    among seams[:stop], in network order.

    Returns:
        (lam, constant): the coefficients on the network input, (B, S) + input shape, and
        the constants (B, S).
    """
    slopes = lower_slopes if lower_slopes is not None else [None] * len(boxes)
    activation = len(boxes)
    for index in reversed(range(stop)):
        seam = network.seams[index]
        if isinstance(seam, LinearSeam):
            zeros = tf.zeros((1,) + _output_shape(network, index), lam.dtype)
            constant += _inner(lam, seam.add_bias(zeros)[:, None])
            lam = _transpose(seam, lam, network.input_shapes[index])
        elif isinstance(seam, ActivationSeam):
            activation -= 1
            lo, hi = boxes[activation]
            relaxation = activation_relaxation(seam, lo, hi, slopes[activation])
            positive, negative = tf.nn.relu(lam), tf.minimum(lam, 0.0)
            a_lower, b_lower, a_upper, b_upper = (part[:, None] for part in relaxation)
            constant += _inner(positive, b_lower) + _inner(negative, b_upper)
            lam = positive * a_lower + negative * a_upper
        else:
            lam = tf.reshape(lam, tf.concat(
                [tf.shape(lam)[:2], list(network.input_shapes[index])], 0))
    return lam, constant


def close(lam, constant, x, epsilon, norm, clip=None):
    """The minimum of lam . x' + constant over the ball ||x' - x||_norm <= eps:
    lam . x - eps ||lam||_1 + constant (linf), lam . x - eps ||lam||_2 + constant (l2);
    with ``clip`` (linf only) over the box [x - eps, x + eps] intersected with it.
    ``x`` and ``epsilon`` as ``as_inputs`` returns them; (B, S)."""
    if clip is not None:
        lo, hi = input_box(x, epsilon, clip)
        return (constant + _inner(tf.nn.relu(lam), lo[:, None])
                + _inner(tf.minimum(lam, 0.0), hi[:, None]))
    radius = tf.reshape(epsilon, [-1, 1])
    return constant + _inner(lam, x[:, None]) - radius * _dual_norm(lam, norm)


def linear_output_bounds(network, index, x, epsilon, boxes, norm="l2", rows_per_chunk=None):
    """Lower and upper bounds of every output of linear seam ``index`` over the ball
    {x' : ||x' - x||_norm <= eps} (CROWN, a pre-activation box).

    Output u of the seam is e_u . (A v + b) for its input v: the backward pass starts at
    rows +e_u (lower bounds) and -e_u (minus the upper bounds) with Lam = A^T (+-e_u),
    c = +-b_u, walks seams ``index - 1`` .. 0 (``backward_from``) and closes at the input
    (``close``). The rows are taken ``rows_per_chunk`` at a time (default: all), so the
    pass holds B * 2 * rows_per_chunk coefficients of each seam's input at once.

    Args:
        network: a ``SeamNetwork``; ``index`` the position of a linear seam in it.
        x: inputs (B,) + network.input_shape; epsilon: scalar or (B,).
        boxes: the (lo, hi) input boxes of the activation seams among seams[:index], in
            network order, enclosing their inputs over the whole ball.
        norm: 'l2' or 'linf'.
        rows_per_chunk: outputs bounded per backward pass (None: all at once).

    Returns:
        (lower, upper), each (B,) + the seam's output shape.
    """
    _check_norm(norm)
    seam = network.seams[index]
    if not isinstance(seam, LinearSeam):
        raise ValueError(f"seam {index} is not a linear layer. Received: {seam.name!r}")
    x, epsilon = as_inputs(x, epsilon)
    shape = _output_shape(network, index)
    size = tf.TensorShape(shape).num_elements()
    chunk = size if rows_per_chunk is None else max(1, min(int(rows_per_chunk), size))
    count = -(-size // chunk)
    batch = tf.shape(x)[0]
    bias = seam.add_bias(tf.zeros((1,) + shape, x.dtype))

    def chunk_bounds(first):
        unit = tf.one_hot(first + tf.range(chunk), size, dtype=x.dtype)  # past size: 0
        spec = tf.reshape(tf.concat([unit, -unit], 0), (1, 2 * chunk) + shape)
        lam = _transpose(seam, spec, network.input_shapes[index])
        lam = tf.broadcast_to(lam, tf.concat([[batch], tf.shape(lam)[1:]], 0))
        constant = tf.broadcast_to(_inner(spec, bias[:, None]), [batch, 2 * chunk])
        lam, constant = backward_from(network, index, lam, constant, boxes)
        lower = close(lam, constant, x, epsilon, norm)
        return tf.stack([lower[:, :chunk], -lower[:, chunk:]])

    if count == 1:
        both = chunk_bounds(0)
    else:
        parts = tf.map_fn(chunk_bounds, tf.range(count) * chunk,
                          fn_output_signature=x.dtype)
        both = tf.reshape(tf.transpose(parts, [1, 2, 0, 3]), [2, batch, count * chunk])
    both = tf.reshape(both[:, :, :size], tf.concat([[2, batch], list(shape)], 0))
    return both[0], both[1]
