"""Validation of the arrays given to ``certify``, ``lipschitz_bounds`` and ``fit``."""
import numpy as np

from gloro_local.bounds.input_checks import check_images


def check_labels(y, num_classes, count):
    """Integer class ids (count,) from labels (count,), (count, 1) or one-hot (count, K).

    ValueError, naming the first bad label, for a label count other than ``count``,
    non-numeric or boolean labels, fractional or non-finite labels (nothing is truncated
    silently) and class ids outside [0, num_classes).
    """
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == num_classes > 1:
        y = np.argmax(y, axis=1)
    y = y.reshape(-1)
    if y.shape[0] != count:
        raise ValueError(f"Got {count} inputs but {y.shape[0]} labels.")
    if y.dtype.kind not in "iuf":
        raise ValueError(f"labels must be integer class ids. Received: labels of dtype "
                         f"{y.dtype}.")
    if y.dtype.kind == "f":
        fractional = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if fractional.size:
            i = fractional[0]
            raise ValueError(f"labels must be integer class ids. Received: label {y[i]} at "
                             f"index {i}.")
    outside = np.flatnonzero((y < 0) | (y >= num_classes))
    if outside.size:
        i = outside[0]
        raise ValueError(f"labels must be class ids in [0, {num_classes}). Received: label "
                         f"{y[i]} at index {i}.")
    return y.astype(np.int32)


def check_inputs(model, x, y=None):
    """(x float32, y int class ids or None) for ``model``; ValueError for a wrong shape,
    NaN/Inf inputs (naming the first such sample) or bad labels (``check_labels``); a
    warning for images that do not look like [0, 1] floats (``check_images``)."""
    x = np.asarray(check_images(x), np.float32)
    model.network.check_shape(x.shape)
    bad = np.flatnonzero(~np.isfinite(x).all(axis=tuple(range(1, x.ndim))))
    if bad.size:
        raise ValueError(f"Inputs contain NaN or Inf. Received: a non-finite value in "
                         f"sample {bad[0]}.")
    if y is not None:
        y = check_labels(y, model.num_classes, x.shape[0])
    return x, y
