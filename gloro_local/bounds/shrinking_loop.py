"""The loop that every converging per-sample solver runs on: samples that stopped leave it.

A solver keeps a state of batch-first tensors. It always holds ``u`` (the iterate),
``steps`` (int32 steps taken), ``done`` (the sample stopped: converged or failed) and
``failed`` (it stopped without converging), plus whatever else the solver carries. Each
step advances every live sample that is not done and leaves a done sample exactly as it
was. Once at least ``COMPACT_FRACTION`` of the live samples are done (and at least one),
they are written to the finished state and leave: the samples that converge slowly never
hold the others' compute, and each sample's arithmetic is that of a loop over it alone.
"""
import tensorflow as tf

COMPACT_FRACTION = 1 / 16
FINISHED = ("u", "steps", "done", "failed")


def shrinking_loop(operator, state, step, max_iterations):
    """Runs ``step(operator_of_the_live_samples, state, t) -> state`` until every sample is
    done or ``max_iterations`` steps ran; returns the finished state (the ``FINISHED``
    keys) of every sample in the original order. ``operator`` is a ``MaskedOperator``
    whose per-sample masks follow the live samples (``masks`` / ``with_masks``)."""
    batch = tf.shape(state["u"])[0]
    live = dict(state, index=tf.range(batch), masks=operator.masks())
    finished = {key: state[key] for key in FINISHED}

    def retire(live, finished):
        rows = live["index"][:, None]
        finished = {key: tf.tensor_scatter_nd_update(finished[key], rows, live[key])
                    for key in FINISHED}
        keep = tf.where(tf.logical_not(live["done"]))[:, 0]
        return tf.nest.map_structure(lambda t: tf.gather(t, keep), live), finished

    def cond(t, live, finished):
        return tf.logical_and(t < max_iterations, tf.size(live["index"]) > 0)

    def body(t, live, finished):
        masks, index = live["masks"], live["index"]
        core = {key: value for key, value in live.items() if key not in ("masks", "index")}
        live = dict(step(operator.with_masks(masks), core, t), masks=masks, index=index)
        done = tf.reduce_sum(tf.cast(live["done"], tf.float32))
        size = tf.cast(tf.size(index), tf.float32)
        live, finished = tf.cond(done >= tf.maximum(1.0, COMPACT_FRACTION * size),
                                 lambda: retire(live, finished), lambda: (live, finished))
        return t + 1, live, finished

    invariants = tf.nest.map_structure(
        lambda t: tf.TensorShape([None]).concatenate(t.shape[1:]), live)
    _, live, finished = tf.while_loop(
        cond, body, (tf.constant(0), live, finished),
        shape_invariants=(tf.TensorShape([]), invariants,
                          tf.nest.map_structure(lambda t: t.shape, finished)))
    return retire(live, finished)[1]
