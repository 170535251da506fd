"""'local_relaxed' and 'local_layerwise_relaxed': the local bounds with CROWN
pre-activation boxes, closed in l2, intersected with the box and ball."""
import tensorflow as tf

from gloro_local.bounds.linf.backward import linear_output_bounds
from gloro_local.bounds.strategies.base import register
from gloro_local.bounds.strategies.local import LocalBound
from gloro_local.bounds.strategies.local_layerwise import LocalLayerwiseBound

MAX_WORK = 2 ** 25  # coefficients one sample's backward passes may touch, per layer
CHUNK_ELEMENTS = 2 ** 18  # coefficients per sample held at once
RELAXATION_SLACK = 1e-5  # relative rounding margin on the relaxation's bounds


def relaxation_work(network, index):
    """The coefficients one sample's backward passes touch for linear seam ``index``:
    2 * its outputs * the summed input sizes of the seams before it."""
    size = tf.TensorShape(network.input_shapes[index + 1]).num_elements()
    before = sum(tf.TensorShape(s).num_elements() for s in network.input_shapes[:index])
    return 2 * size * before


def rows_per_chunk(network, index):
    """Outputs of seam ``index`` bounded per backward pass: CHUNK_ELEMENTS / (2 * the
    largest input of the seams it walks through), at least 1."""
    largest = max(tf.TensorShape(s).num_elements()
                  for s in network.input_shapes[:index + 1])
    return max(1, CHUNK_ELEMENTS // (2 * largest))


class RelaxationBoxes:
    """Tightens the output box of every hidden linear layer after the first with
    CROWN's backward pass, closed in l2 (``linear_output_bounds``):

        lo_u = max(lo_u, c_u + Lam_u . x - eps ||Lam_u||_2 - s),
        hi_u = min(hi_u, c'_u - Lam'_u . x + eps ||Lam'_u||_2 + s)

    for rows +e_u and -e_u, every activation before the layer replaced by its linear
    relaxation over the box the walk found for it (which encloses its inputs over the
    ball); s = RELAXATION_SLACK * (|lower| + |upper|) is a rounding margin. The result
    is the intersection, so it is never looser than the box and ball. The first hidden
    layer is left as it is (with no activation before it the ball's row-norm bound
    eps ||A_u||_2 is already exact), and so is a layer whose backward passes would touch
    more than ``max_work`` coefficients per sample (``relaxation_work``: 2 * outputs *
    summed input sizes of the layers before it; the cost grows as that product).

    Args:
        max_work: the per-sample, per-layer limit (default MAX_WORK = 2**25).
    """

    training_warning = (
        "relaxation boxes are a certification tool: training through their backward "
        "passes cost 243x a 'local' step on 2C2F at batch 32 and ran out of memory at "
        "batch 256 (docs/results.md). Train with 'local' or 'local_layerwise' and certify "
        "with certify(boxes='relaxation').")

    def __init__(self, max_work=MAX_WORK):
        if int(max_work) < 0:
            raise ValueError(f"max_work must be >= 0. Received: max_work={max_work!r}")
        self.max_work = int(max_work)

    def after_linear(self, network, index, state, activations, epsilon, context):
        if not activations or relaxation_work(network, index) > self.max_work:
            return state
        if context is None or context.inputs is None:
            raise ValueError(f"The bound {self.name!r} needs a BoundContext with the "
                             "inputs in its walk. Received: no inputs")
        lower, upper = linear_output_bounds(
            network, index, context.inputs, epsilon, [(a.lo, a.hi) for a in activations],
            "l2", rows_per_chunk(network, index))
        margin = RELAXATION_SLACK * (tf.abs(lower) + tf.abs(upper))
        return state._replace(lo=tf.maximum(state.lo, lower - margin),
                              hi=tf.minimum(state.hi, upper + margin))


@register
class LocalRelaxedBound(RelaxationBoxes, LocalBound):
    """'local' with relaxation boxes (``RelaxationBoxes``): the same masked norms and
    logit step, from boxes at most as wide, so at least as many constant neurons."""

    name = "local_relaxed"


@register
class LocalLayerwiseRelaxedBound(RelaxationBoxes, LocalLayerwiseBound):
    """'local_layerwise' with relaxation boxes (``RelaxationBoxes``): layer-wise local
    radii and CROWN boxes, each intersected with the other."""

    name = "local_layerwise_relaxed"
