"""Metrics of a GloRo-style model, updated from labels, logits and the bottom logit."""
import keras
import tensorflow as tf


def certified(logits, bottom):
    """True where the top clean logit is unique and beats the bottom logit strictly."""
    top2 = tf.math.top_k(logits, k=2).values
    return tf.logical_and(top2[:, 0] > top2[:, 1], top2[:, 0] > bottom)


class RobustMetrics:
    """clean_acc: argmax z == y; vra: correct and certified (verified-robust accuracy);
    rejection_rate: fraction not certified (the bottom class wins or the top logit ties);
    local_bound / global_bound: mean products of the hidden layers' local / global norms;
    varying: mean fraction of activation neurons that may move."""

    NAMES = ("clean_acc", "vra", "rejection_rate", "local_bound", "global_bound", "varying")
    LIPSCHITZ = ("local_bound", "global_bound", "varying")

    def __init__(self, lipschitz=True):
        """``lipschitz=False`` (bounds that use no norm): no local_bound, global_bound
        and varying trackers."""
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self.NAMES
                         if lipschitz or name not in self.LIPSCHITZ}

    def update(self, labels, logits, bottom, lipschitz, global_lipschitz, varying):
        correct = tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels)
        robust = certified(logits, bottom)
        values = {"clean_acc": correct, "vra": tf.logical_and(correct, robust),
                  "rejection_rate": tf.logical_not(robust), "local_bound": lipschitz,
                  "global_bound": global_lipschitz, "varying": varying}
        for name, tracker in self.trackers.items():
            tracker.update_state(tf.cast(values[name], tf.float32))

    def __iter__(self):
        return iter(self.trackers.values())
