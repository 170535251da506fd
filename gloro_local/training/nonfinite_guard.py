"""Stops training at the first NaN / Inf loss, before anything can save the model."""
import math

import keras


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Raises FloatingPointError at the end of the first batch whose loss is NaN or Inf.

    ``LocalGloroNet.fit`` adds it first to the callback list (like
    ``keras.callbacks.TerminateOnNaN``, but raising): the error leaves ``fit`` at once,
    so no epoch-end callback (``ModelCheckpoint``, ``BackupAndRestore``) ever writes a
    model with non-finite weights. It also records the current epoch and batch, which
    ``position()`` describes for the model's other one-line training errors.
    """

    def __init__(self):
        super().__init__()
        self.epoch = 0
        self.batch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self.batch = batch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise FloatingPointError(
                f"The training loss is {float(loss)}{self.position()}; training stopped "
                "before any callback saved the model. The inputs and labels were finite "
                "and valid, so the optimisation diverged: lower the learning rate or the "
                "training epsilon.")

    def position(self):
        """' (epoch E, batch B)', 1-based, of the batch being trained."""
        return f" (epoch {self.epoch + 1}, batch {self.batch + 1})"
