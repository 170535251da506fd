"""Robust losses on the training outputs [logits (K), bottom (1), worst logits (K)]."""
import keras
import tensorflow as tf

from gloro_local.training.labels import class_ids


def split_outputs(y_pred):
    """Splits the (B, 2K + 1) training outputs into logits, bottom (B, 1) and worst."""
    classes = (y_pred.shape[-1] - 1) // 2
    return y_pred[:, :classes], y_pred[:, classes:classes + 1], y_pred[:, classes + 1:]


class RobustLoss(keras.losses.Loss):
    """Base of the robust losses. ``reference`` says which class j the worst-case logits
    are taken against during training: 'label' (y) or 'prediction' (argmax of the clean
    logits). ``lam`` is a non-negative Keras variable that a lambda schedule may change.
    """

    reference = "label"

    def __init__(self, lam=1.0, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        if lam < 0:
            raise ValueError(f"lam must be >= 0, got {lam}.")
        self.lam = keras.Variable(float(lam), trainable=False, name="lam")

    def get_config(self):
        return {**super().get_config(), "lam": float(self.lam.numpy())}


def _ce(labels, logits):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)


@keras.saving.register_keras_serializable(package="gloro_local")
class GloroCrossEntropy(RobustLoss):
    """GloRo cross-entropy (Local-Lip-G): CE([z, bottom], y) on the K + 1 logits, with
    bottom = max_{i != y} z*_i; ``lam`` is unused (kept for a uniform interface)."""

    def call(self, y_true, y_pred):
        logits, bottom, _ = split_outputs(y_pred)
        labels = class_ids(y_true, logits.shape[-1])
        return _ce(labels, tf.concat([logits, bottom], -1))


@keras.saving.register_keras_serializable(package="gloro_local")
class Trades(RobustLoss):
    """GloRo-T: CE(z, y) + lam * KL(softmax([z, -inf]) || softmax([z, bottom])), the bottom
    logit taken against the predicted class (``reference = 'prediction'``)."""

    reference = "prediction"

    def call(self, y_true, y_pred):
        logits, bottom, _ = split_outputs(y_pred)
        labels = class_ids(y_true, logits.shape[-1])
        clean = tf.nn.softmax(logits)
        robust_log = tf.nn.log_softmax(tf.concat([logits, bottom], -1))[:, :-1]
        kl = tf.reduce_sum(clean * (tf.nn.log_softmax(logits) - robust_log), -1)
        return _ce(labels, logits) + self.lam * kl


@keras.saving.register_keras_serializable(package="gloro_local")
class BCPLoss(RobustLoss):
    """Local-Lip-B: (1 - lam) CE(z, y) + lam CE(z*, y), z* the worst-case logits against y;
    lam is ramped from 0 to 1 by ``LambdaSchedule``. Also the mixed loss of CROWN-IBP and
    "Loss Landscape Matters" (eq. 7), kappa CE(z, y) + (1 - kappa) CE(z*, y), with
    kappa = 1 - lam (``'mixed_crossentropy'``, ``KappaSchedule``)."""

    def call(self, y_true, y_pred):
        logits, _, worst = split_outputs(y_pred)
        labels = class_ids(y_true, logits.shape[-1])
        return (1.0 - self.lam) * _ce(labels, logits) + self.lam * _ce(labels, worst)


LOSSES = {"crossentropy": GloroCrossEntropy, "trades": Trades, "bcp": BCPLoss,
          "mixed_crossentropy": BCPLoss}


def get_loss(loss, **kwargs):
    """A robust loss from a name in LOSSES or a RobustLoss instance."""
    if isinstance(loss, RobustLoss):
        return loss
    if isinstance(loss, str) and loss in LOSSES:
        return LOSSES[loss](**kwargs)
    raise ValueError(f"loss must be one of {sorted(LOSSES)} or a RobustLoss, got {loss!r}.")
