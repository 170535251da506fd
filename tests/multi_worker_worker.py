"""One process of tests/test_multi_worker.py: trains a small LocalGloroNet with the store.

    TF_CONFIG=... python tests/multi_worker_worker.py worker OUT.npz
    python tests/multi_worker_worker.py single OUT.npz WORKER_0.npz WORKER_1.npz
    TF_CONFIG=... python tests/multi_worker_worker.py backup OUT.npz BACKUP_DIR [KILL_AT]

'worker' trains under MultiWorkerMirroredStrategy (created first, before any other
TensorFlow op) on the index shard of this worker (``multi_worker.sharded_dataset``);
'single' trains one process on the same global batches: batch s is the concatenation
over workers w of the batch s worker w trained on (logged by the store). Both write the
weights, the schedule values, the store's tables and bytes, and (per epoch and sample)
how many times this process wrote the sample's row.
'backup' trains under BackupAndRestore (``WorkerBackupAndRestore``), saving every epoch;
with KILL_AT = 'e,b' worker 1 kills itself (SIGKILL) at batch b of epoch e.
"""
import functools
import os
import signal
import sys

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gloro_local import multi_worker  # noqa: E402

MODE = sys.argv[1]
STRATEGY = multi_worker.multi_worker_strategy() if MODE != "single" else None

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import gloro_local as gl  # noqa: E402
from gloro_local import data  # noqa: E402
from gloro_local.layers import Dense, Flatten, ReLUTheta  # noqa: E402
from gloro_local.training import EpsilonSchedule, LambdaSchedule  # noqa: E402
from gloro_local.training.iterate_store import IterateStore  # noqa: E402
from gloro_local.training.worker_backup import WorkerBackupAndRestore  # noqa: E402
from gloro_local.training.worker_shard import worker_shard  # noqa: E402

N_SAMPLES, BATCH, EPOCHS, WORKERS = 64, 16, 2, 2
LOAD = functools.partial(data.load, "mnist", "train", with_index=True, shuffle=True,
                         limit=N_SAMPLES, seed=3)


class CountingStore(IterateStore):
    """The store, also counting per epoch how many times this process wrote each
    sample's row (a row of sample i is written when i's worker owns it, i % N == w, the
    documented sharding, and the store is asked to scatter it) and logging the indices
    of every batch it trained on, in order."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.writes = self._local(tf.zeros([self.num_samples], tf.int32))
        self.trained = self._local(tf.fill([EPOCHS * N_SAMPLES], tf.constant(-1, tf.int64)))
        self.seen = self._local(tf.zeros([], tf.int64))

    def _local(self, value):
        sync = (dict(synchronization=tf.VariableSynchronization.ON_READ,
                     aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
                if self.shards > 1 else {})
        variable = tf.Variable(value, trainable=False, **sync)
        return tf.distribute.get_strategy().experimental_local_results(variable)[0]

    def scatter(self, index, vectors):
        owned = tf.boolean_mask(index, tf.equal(index % self.shards, self.shard))
        self.writes.scatter_add(tf.IndexedSlices(tf.ones_like(owned, tf.int32), owned))
        size = tf.size(index, tf.int64)
        self.trained.scatter_update(tf.IndexedSlices(index, self.seen + tf.range(size)))
        self.seen.assign_add(size)
        super().scatter(index, vectors)


class Record(keras.callbacks.Callback):
    """Per epoch: the write counts (then reset), epsilon, lambda and the global iterates."""

    def __init__(self):
        super().__init__()
        self.writes, self.epsilon, self.lam, self.iterates, self.misses = [], [], [], [], []

    def on_epoch_end(self, epoch, logs=None):
        store = self.model.store
        self.writes.append(store.writes.numpy())
        store.writes.assign(tf.zeros_like(store.writes))
        self.epsilon.append(float(self.model.epsilon.numpy()))
        self.lam.append(float(self.model.robust_loss.lam.numpy()))
        self.iterates.append(np.concatenate(
            [v.numpy().ravel() for v in self.model.global_norms.iterates]))
        self.misses.append(float(logs.get("store_misses", -1.0)))


class Kill(keras.callbacks.Callback):
    def __init__(self, epoch, batch):
        super().__init__()
        self.at, self.epoch = (epoch, batch), None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            os.kill(os.getpid(), signal.SIGKILL)


class FirstEpoch(keras.callbacks.Callback):
    """The epoch fit starts at and the weights it starts from (after the restore)."""

    def __init__(self):
        super().__init__()
        self.epoch, self.weights, self.iterations = None, None, None

    def on_epoch_begin(self, epoch, logs=None):
        if self.epoch is None:
            self.epoch = epoch
            self.weights = [w.numpy() for w in self.model.weights]
            self.iterations = int(self.model.optimizer.iterations.numpy())


class SaveEpochWeights(keras.callbacks.Callback):
    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        if multi_worker.is_chief(self.model.distribute_strategy):
            np.savez(f"{self.path}.epoch{epoch}.npz",
                     *[w.numpy() for w in self.model.weights])


def net():
    init = keras.initializers.GlorotNormal
    return keras.Sequential([
        keras.Input((28, 28, 1)), Flatten(), Dense(12, kernel_initializer=init(0)),
        ReLUTheta(), Dense(12, kernel_initializer=init(1)), ReLUTheta(),
        Dense(10, kernel_initializer=init(2))])


def build():
    model = gl.LocalGloroNet(net(), 0.3, bound="local", lam_sparse=0.05,
                             training_dtype="float32")
    model.compile(keras.optimizers.SGD(0.2), loss="trades")
    shapes = [shape for _, shape in model.network.hidden_layers()]
    shards, shard = worker_shard()
    model.store = CountingStore(N_SAMPLES, shapes, seed=model.seed, shards=shards,
                                shard=shard)
    return model


def schedules():
    return [EpsilonSchedule(0.3, 2, eps_test=0.3), LambdaSchedule(0.5, 2.0, 2)]


def single(out, *worker_files):
    """Trains on the global batches the workers trained on: batch s is the
    concatenation over workers of their batch s (their logged indices)."""
    logs = [np.load(path)["trained"] for path in worker_files]
    logs = [log[log >= 0] for log in logs]  # the log has room for every sample
    per_worker = BATCH // WORKERS
    index = np.concatenate([log.reshape(-1, per_worker) for log in logs], axis=1).ravel()
    x, y = data.load_numpy("mnist", "train", limit=N_SAMPLES)
    batches = tf.data.Dataset.from_tensor_slices(((x[index], index), y[index])).batch(BATCH)
    model = build()
    initial = [w.numpy() for w in model.weights]
    record = Record()
    model.fit(batches, epochs=EPOCHS, verbose=0, steps_per_epoch=N_SAMPLES // BATCH,
              callbacks=schedules() + [record])
    write(out, model, record, initial)


def worker(out):
    with STRATEGY.scope():
        model = build()
    initial = [w.numpy() for w in model.weights]
    record = Record()
    model.fit(multi_worker.sharded_dataset(STRATEGY, LOAD, BATCH, N_SAMPLES),
              epochs=EPOCHS, verbose=0, callbacks=schedules() + [record])
    write(out, model, record, initial)


def backup(out, backup_dir, kill_at=None):
    with STRATEGY.scope():
        model = build()
    first = FirstEpoch()
    callbacks = [WorkerBackupAndRestore(backup_dir), first, SaveEpochWeights(out)]
    if kill_at and worker_shard(STRATEGY)[1] == 1:
        callbacks.append(Kill(*map(int, kill_at.split(","))))
    history = model.fit(multi_worker.sharded_dataset(STRATEGY, LOAD, BATCH, N_SAMPLES),
                        epochs=EPOCHS, verbose=0, callbacks=callbacks)
    arrays = {f"weight_{k}": w.numpy() for k, w in enumerate(model.weights)}
    arrays.update({f"first_weight_{k}": w for k, w in enumerate(first.weights)})
    np.savez(out, first_epoch=first.epoch, first_iterations=first.iterations,
             epochs_run=len(history.history["loss"]), **arrays)


def write(out, model, record, initial):
    store = model.store
    arrays = {f"weight_{k}": w.numpy() for k, w in enumerate(model.weights)}
    arrays.update({f"initial_weight_{k}": w for k, w in enumerate(initial)})
    arrays.update({f"store_{k}": t.numpy() for k, t in enumerate(store.tables)})
    np.savez(out, writes=np.array(record.writes), trained=store.trained.numpy(),
             epsilon=record.epsilon, lam=record.lam, iterates=np.array(record.iterates),
             misses=record.misses,
             store_bytes=store.nbytes, shard=np.array([store.shards, store.shard]), **arrays)


if __name__ == "__main__":
    {"single": single, "worker": worker, "backup": backup}[MODE](*sys.argv[2:])
