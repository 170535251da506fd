"""compile / fit / train_step / test_step of LocalGloroNet."""
import warnings

import keras
import numpy as np
import tensorflow as tf

from gloro_local.bounds.input_checks import check_images, one_line_errors
from gloro_local.bounds.strategies import get_bound
from gloro_local.models.inputs import check_labels
from gloro_local.training.callbacks import ConvergeGlobalNorms
from gloro_local.training.iterate_store import IterateStore
from gloro_local.training.labels import class_ids
from gloro_local.training.losses import get_loss
from gloro_local.training.metrics import RobustMetrics
from gloro_local.training.nonfinite_guard import NonFiniteLossGuard
from gloro_local.training.user_metrics import user_metrics
from gloro_local.training.worker_shard import worker_shard


def _replicas():
    return tf.distribute.get_strategy().num_replicas_in_sync


class TrainingSteps:
    """Training with Keras ``compile``/``fit``: one bound propagation per batch, the
    configured number of power iterations, the robust loss on [z, bottom, z*] plus
    ``lam_sparse`` times the sparsity hinge, the robust metrics and the user's.

    Bad data stops training with one line: labels given as arrays are checked before
    ``fit`` starts; non-finite or wrongly shaped inputs and bad labels in a dataset stop
    it at the batch that holds them, before that batch changes a weight; a NaN / Inf loss
    stops it before any callback saves the model (``NonFiniteLossGuard``).
    """

    def compile(self, optimizer="adam", loss="crossentropy", metrics=None,
                weighted_metrics=None, **kwargs):
        """Like ``keras.Model.compile``; ``loss`` is 'crossentropy' (GloRo CE), 'trades',
        'bcp' or a ``RobustLoss`` instance. ``metrics`` and ``weighted_metrics`` (the
        latter weighted by ``sample_weight``) are updated with the class ids and
        [z, bottom], next to the robust metrics (``user_metrics``)."""
        self.user_metrics = user_metrics(metrics)
        self.weighted_user_metrics = user_metrics(
            weighted_metrics, taken=[m.name for m in self.user_metrics])
        self.robust_loss = get_loss(loss)
        self.robust_metrics = RobustMetrics(lipschitz=get_bound(self.bound).uses_norms)
        self.loss_mean = keras.metrics.Mean(name="loss")
        super().compile(optimizer=optimizer, loss=self.robust_loss, **kwargs)
        if self.optimizer is not None and not self.optimizer.built:
            # built now, on every trainable variable: the .h5 loader would build it on
            # model._trainable_variables (the model's own, none) and lose its state
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)

    def get_compile_config(self):
        """Keras's compile config plus the user metrics (they are not passed to Keras)."""
        config = super().get_compile_config()
        if config:  # {} when the model was never compiled
            for key, made in (("metrics", getattr(self, "user_metrics", [])),
                              ("weighted_metrics", getattr(self, "weighted_user_metrics",
                                                           []))):
                config[key] = [keras.saving.serialize_keras_object(m) for m in made] or None
        return config

    def compile_from_config(self, config):
        """Restores the compiled loss and optimizer of a saved model."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.optimizer is not None:
            self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self):
        if not getattr(self, "robust_metrics", None):
            return []
        misses = getattr(getattr(self, "store", None), "misses", None)
        return [self.loss_mean, *self.robust_metrics, *getattr(self, "user_metrics", []),
                *getattr(self, "weighted_user_metrics", []),
                *([] if misses is None else [misses])]

    def fit(self, *args, callbacks=None, **kwargs):
        """``keras.Model.fit`` that also converges the global norms at every epoch end
        (``ConvergeGlobalNorms`` is added unless one is given). It goes first in the
        callback list, so checkpoints saved at an epoch's end hold converged norms;
        ``NonFiniteLossGuard`` goes before it. Labels given as arrays (``y`` and in
        ``validation_data``) are validated first (``check_labels``), and images given as an
        array that do not look like [0, 1] floats get a warning (``check_images``);
        errors raised inside a step are one line naming the epoch and batch."""
        callbacks = list(callbacks or [])
        note = get_bound(self.bound).training_warning
        if note:
            warnings.warn(f"bound={self.bound!r}: {note}", stacklevel=2)
        if hasattr(self, "global_norms") and not any(
                isinstance(c, ConvergeGlobalNorms) for c in callbacks):
            callbacks.insert(0, ConvergeGlobalNorms())
        guard = NonFiniteLossGuard()
        callbacks.insert(0, guard)
        data = args[0] if args else kwargs.get("x")
        if isinstance(data, (tf.data.Dataset, tf.distribute.DistributedDataset)):
            kwargs.setdefault("shuffle", False)  # a dataset shuffles itself; Keras warns
        self._note_worker_spec(data)
        self._check_array_labels(args[1] if len(args) > 1 else kwargs.get("y"))
        if isinstance(data, np.ndarray):
            check_images(data, "training inputs")
        validation = kwargs.get("validation_data")
        if isinstance(validation, (tuple, list)) and len(validation) >= 2:
            self._check_array_labels(validation[1])
        with one_line_errors(guard.position):
            return super().fit(*args, callbacks=callbacks, **kwargs)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras (3.15) builds the model from a first batch that it reduces with one
        # strategy.reduce over the whole nested batch, which MultiWorkerMirroredStrategy
        # refuses (and reading it would start an extra pass over the data, shifting a
        # reshuffled dataset's epochs): only shapes and dtypes matter, so a multi-worker
        # dataset's element_spec stands in for the batch.
        spec = getattr(self, "_worker_element_spec", None)
        if iterator is not None and spec is not None:
            iterator, data_batch = None, spec
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def _note_worker_spec(self, data):
        self._worker_element_spec = None
        if (isinstance(data, tf.distribute.DistributedDataset)
                and worker_shard(self.distribute_strategy)[0] > 1):
            # one replica per worker: each per-replica spec holds one tensor spec
            spec = data.element_spec
            self._worker_element_spec = tf.nest.pack_sequence_as(
                spec, tf.nest.flatten(spec, expand_composites=True))

    def evaluate(self, *args, **kwargs):
        """``keras.Model.evaluate`` with labels and inputs checked as in ``fit``."""
        self._check_array_labels(args[1] if len(args) > 1 else kwargs.get("y"))
        self._note_worker_spec(args[0] if args else kwargs.get("x"))
        with one_line_errors():
            return super().evaluate(*args, **kwargs)

    def predict(self, x, *args, **kwargs):
        """``keras.Model.predict``: (B, classes + 1) [z, bottom]; an empty array gives an
        empty result, a wrong shape or a NaN / Inf input a one-line ValueError."""
        if isinstance(x, (np.ndarray, tf.Tensor, list)) and len(x) == 0:
            return np.zeros((0, self.num_classes + 1), np.float32)
        with one_line_errors():
            return super().predict(x, *args, **kwargs)

    def _check_array_labels(self, y):
        if isinstance(y, (np.ndarray, list, tf.Tensor)):
            check_labels(y, self.num_classes, len(y))

    def attach_store(self, num_samples, seed=None):
        """Keeps per-sample power-iteration vectors of the local layers for a dataset of
        ``num_samples`` examples that yields ``((x, index), y)``; call inside the
        strategy scope when distributing. ``seed`` (default: the model's) seeds the
        samples' first start vectors. Under a ``MultiWorkerMirroredStrategy`` over N
        workers the store is sharded (``worker_shard``): worker w keeps the samples with
        ``index % N == w``, and its dataset must bring it exactly those
        (``data.load(..., shard=(N, w))``, docs/multi_worker.md). Returns the
        ``IterateStore``."""
        shapes = [shape if k in self.local_layers else None
                  for k, (_, shape) in enumerate(self.network.hidden_layers())]
        shards, shard = worker_shard(self.distribute_strategy)
        self.store = IterateStore(num_samples, shapes,
                                  seed=self.seed if seed is None else seed,
                                  shards=shards, shard=shard)
        self.train_function = None  # a traced train step holds the previous tables
        return self.store

    def split_index(self, x):
        """(x, index) from a dataset element's inputs; index is None when absent."""
        if isinstance(x, (tuple, list)):
            if len(x) != 2:
                raise ValueError("Inputs must be x or a pair (x, sample_index), got "
                                 f"{len(x)} tensors.")
            return x[0], x[1]
        return x, None

    def _step(self, data, training):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x, index = self.split_index(x)
        use_store = (training and self.store is not None
                     and get_bound(self.bound).per_sample_norms)
        if use_store:
            if index is None:
                raise ValueError(
                    "This model keeps per-sample power-iteration vectors (attach_store), so "
                    "the dataset must yield ((x, index), y); use "
                    "gloro_local.data.load(..., with_index=True).")
            index = self.store.check_index(index)
        else:
            index = None  # only the local bound's power iterations use stored vectors
        labels = class_ids(y, self.num_classes)
        reference = labels if self.robust_loss.reference == "label" else None
        with tf.GradientTape() as tape:
            result = self.margins(x, reference, training=training, index=index)
            y_pred = tf.concat([result.logits, result.bottom[:, None], result.worst], -1)
            loss = self.compute_loss(x=x, y=labels, y_pred=y_pred,
                                     sample_weight=sample_weight, training=training)
            if self.lam_sparse and result.propagation.activations:
                sparsity = tf.add_n([tf.cast(a.seam.sparsity(a.lo, a.hi, self.lam_theta),
                                             loss.dtype)
                                     for a in result.propagation.activations])
                loss = loss + self.lam_sparse * sparsity / _replicas()
            scaled = self.optimizer.scale_loss(loss) if training else loss
        if training:
            weights = self.trainable_weights
            self.optimizer.apply_gradients(zip(tape.gradient(scaled, weights), weights))
            if use_store:
                self.store.scatter(index, [None if p is None else p.u for p in result.power])
        self._update_metrics(loss, labels, result, sample_weight)
        return self._logs()

    def _logs(self):
        # Keras (3.15) reduces a multi-worker step's outputs with strategy.reduce(MEAN,
        # axis=0), which refuses scalars (tensorflow#72388): there each result is (1,)
        # and the mean over workers is the scalar.
        if worker_shard(self.distribute_strategy)[0] > 1:
            return {m.name: tf.reshape(m.result(), [1]) for m in self.metrics}
        return {m.name: m.result() for m in self.metrics}

    def _update_metrics(self, loss, labels, result, sample_weight):
        self.loss_mean.update_state(loss * _replicas())
        varying = [tf.reduce_mean(tf.cast(a.varying, tf.float32),
                                  axis=tf.range(1, tf.rank(a.varying)))
                   for a in result.propagation.activations if a.varying is not None]
        fraction = (tf.add_n(varying) / len(varying) if varying
                    else tf.ones_like(result.lipschitz))
        self.robust_metrics.update(labels, result.logits, result.bottom, result.lipschitz,
                                   result.global_lipschitz, fraction)
        outputs = tf.concat([result.logits, result.bottom[:, None]], axis=-1)
        for metric in self.user_metrics:
            metric.update_state(labels, outputs)
        for metric in self.weighted_user_metrics:
            metric.update_state(labels, outputs, sample_weight=sample_weight)

    def train_step(self, data):
        return self._step(data, training=True)

    def test_step(self, data):
        return self._step(data, training=False)

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self(x, training=False)
