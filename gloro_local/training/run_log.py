"""The per-epoch history and seconds of a training run, kept beside its backup."""
import json
import os
import time

import keras
import numpy as np


def write_json(path, payload):
    """Writes ``payload`` as indented JSON (arrays as lists)."""
    with open(path, "w") as handle:
        json.dump(payload, handle, indent=2, default=lambda v: np.asarray(v).tolist())


class RunLog(keras.callbacks.Callback):
    """Keeps the history and the seconds of every finished epoch in ``path`` (next to the
    ``BackupAndRestore`` backup), so that a resumed run reports the epochs trained before
    the interruption too. The first epoch of a ``fit`` call says where training resumed;
    logged epochs from there on (never backed up) are dropped. With ``write=False`` (the
    workers other than the chief) it reads the file but never writes it."""

    def __init__(self, path, write=True):
        super().__init__()
        self.path, self.write = path, write
        self.history, self.seconds = {}, []
        self._begin = None

    def on_train_begin(self, logs=None):
        if os.path.exists(self.path):
            with open(self.path) as handle:
                saved = json.load(handle)
            self.history, self.seconds = saved["history"], saved["seconds"]

    def on_epoch_begin(self, epoch, logs=None):
        if self._begin is None:
            self.seconds = self.seconds[:epoch]
            self.history = {key: values[:epoch] for key, values in self.history.items()}
        self._begin = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._begin)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        if self.write:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            write_json(self.path, {"history": self.history, "seconds": self.seconds})
