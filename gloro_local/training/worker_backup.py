"""keras.callbacks.BackupAndRestore for one process or many workers."""
import os
import shutil

import keras

from gloro_local.training.worker_shard import worker_shard


class WorkerBackupAndRestore(keras.callbacks.Callback):
    """``keras.callbacks.BackupAndRestore(backup_dir)`` that every worker of a
    ``MultiWorkerMirroredStrategy`` runs (Keras's own writes the same files from every
    worker). Every worker restores from ``backup_dir`` at the start of ``fit``: the
    weights, the optimizer state and the epoch to resume at, the epoch after the last
    one backed up (Keras restores at epoch granularity). Every worker saves at the same
    points, as TensorFlow requires of multi-worker saves, but only the chief (worker 0)
    writes ``backup_dir``; worker w writes to ``<parent of backup_dir>/workertemp_<w>``
    and deletes it at once. ``backup_dir`` must be on a filesystem every worker reads
    (NFS, GCS, ...). With one process it is Keras's callback. The per-sample iterate
    store is not backed up: after a restart its rows start again from each sample's
    seeded vector, as in one process.

    Args:
        backup_dir: the chief's backup folder (not used for anything else).
        save_freq: 'epoch' or a number of batches, as in Keras.
        delete_checkpoint: delete the backup when ``fit`` finishes.
    """

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint=True):
        super().__init__()
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq, self.delete_checkpoint = save_freq, delete_checkpoint
        self.restore = keras.callbacks.BackupAndRestore(
            self.backup_dir, save_freq=save_freq, delete_checkpoint=delete_checkpoint)
        self.save, self.temp = self.restore, None

    def set_model(self, model):
        super().set_model(model)
        shard = worker_shard(model.distribute_strategy)[1]
        if shard:
            self.temp = os.path.join(os.path.dirname(os.path.abspath(self.backup_dir)),
                                     f"workertemp_{shard}")
            self.save = keras.callbacks.BackupAndRestore(
                self.temp, save_freq=self.save_freq, delete_checkpoint=True)
        for callback in {id(self.restore): self.restore, id(self.save): self.save}.values():
            callback.set_model(model)

    def _drop_temp(self):
        if self.temp is not None:
            shutil.rmtree(self.temp, ignore_errors=True)

    def on_train_begin(self, logs=None):
        self._drop_temp()
        self.restore.on_train_begin(logs)

    def on_train_batch_end(self, batch, logs=None):
        self.save.on_train_batch_end(batch, logs)
        self._drop_temp()

    def on_epoch_end(self, epoch, logs=None):
        self.save.on_epoch_end(epoch, logs)
        self._drop_temp()

    def on_train_end(self, logs=None):
        if self.temp is None:
            self.save.on_train_end(logs)
        self._drop_temp()
