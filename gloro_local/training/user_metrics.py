"""The metrics a user passes to ``compile(metrics=[...])``, next to the robust ones."""
import keras

from gloro_local.training.metrics import RobustMetrics

RESERVED = ("loss", *RobustMetrics.NAMES)


def user_metrics(metrics, taken=()):
    """Keras metric objects for ``compile(metrics=...)``, updated with (labels, [z, bottom]).

    Each metric sees the integer class ids and ``model(x)``'s output: the K logits and
    the bottom logit. A sparse accuracy over that output counts a point as correct
    when z_label beats every other logit *and* the bottom, i.e. the training-time VRA
    estimate; 'accuracy' / 'acc' mean ``SparseCategoricalAccuracy`` (labels are class
    ids). Strings, metric instances and functions ``fn(y_true, y_pred)`` are accepted;
    ValueError for a dict or nested list (the model has one output) and for a name the
    robust metrics already use, that another metric of the list uses or that is in
    ``taken`` (the names of metrics made before, e.g. the unweighted ones).
    """
    if metrics is None:
        return []
    if isinstance(metrics, dict) or not isinstance(metrics, (list, tuple)):
        raise ValueError("metrics must be a list (LocalGloroNet has one output). Received: "
                         f"metrics={metrics!r}")
    made = [_metric(m) for m in metrics]
    names = [m.name for m in made]
    clash = sorted({n for n in names if n in RESERVED or n in taken or names.count(n) > 1})
    if clash:
        raise ValueError(f"metric names {clash} are taken (by the robust metrics "
                         f"{list(RESERVED)}, or by another user metric). Received: "
                         f"metrics={metrics!r}")
    return made


def _metric(metric):
    if isinstance(metric, (list, tuple, dict)):
        raise ValueError("metrics must be a flat list (LocalGloroNet has one output). "
                         f"Received: {metric!r}")
    if isinstance(metric, str) and metric in RESERVED:
        raise ValueError(f"metric name {metric!r} is taken by the robust metrics "
                         f"{list(RESERVED)}. Received: {metric!r}")
    if metric in ("accuracy", "acc"):
        return keras.metrics.SparseCategoricalAccuracy(name=metric)
    if isinstance(metric, str):
        return keras.metrics.get(metric)
    if isinstance(metric, keras.metrics.Metric):
        return metric
    if callable(metric):
        return keras.metrics.MeanMetricWrapper(metric, name=metric.__name__)
    raise ValueError(f"Unknown metric. Received: {metric!r}")
