"""Per-sample power-iteration vectors kept across epochs (the paper's "saved u")."""
import keras
import tensorflow as tf

SHIFT = 7919  # a prime: the cyclic shift between the first starts of consecutive samples


class IterateStore:
    """One float16 table per selected hidden linear layer, one row per stored sample.

    ``gather(index)`` returns float32 start vectors for a batch of sample indices;
    ``scatter(index, vectors)`` writes the vectors back after the batch's power iteration.
    Rows start at 0 and a row still at 0 is gathered as the sample's own seeded random
    vector: one standard normal vector per layer (seed ``(seed, layer)``), cyclically
    shifted by 7919 * index, so that every sample gets its own start whatever batch,
    replica or worker it is in, and creating the store draws nothing (60,000 MNIST 4C3F
    rows in about a second, with no transient copies). The tables are ``tf.Variable``s
    that Keras does not track, so they stay out of saved model files.

    Sharding (``shards`` = N > 1, one shard per worker of a
    ``MultiWorkerMirroredStrategy``): shard w owns the samples with ``index % N == w``
    and keeps sample i in local row ``i // N`` of tables of ``ceil(num_samples / N)``
    rows (the same shape on every worker). The tables are per-worker variables
    (``synchronization=ON_READ``, of which ``tables`` holds this worker's copy: the
    strategy then runs one replica per worker): nothing is sent between workers after
    creation (creating a variable under the strategy broadcasts the chief's zeros), and
    the input pipeline must bring every sample to the worker that owns it
    (``data.load(..., shard=(N, w))``). A sample that arrives at another shard is not
    stored: it starts from its seeded vector (as on its first visit), and the metric
    ``store_misses`` counts it (summed over workers, reset every epoch).

    Without sharding under a strategy (``MirroredStrategy``), indices and vectors of every
    replica are all-gathered before the scatter, so each replica's copy receives every row
    (a plain scatter would silently keep only the local replica's rows).

    Memory: 2 bytes * rows * sum of the selected layers' input sizes (``nbytes``), with
    rows = ceil(num_samples / N); MNIST 4C3F (all six hidden layers, 48,336 numbers,
    96,672 B per sample: half the fp32 reference's 193,344 B) at 60,000 samples: 5.4 GiB
    per replica unsharded, 5.4 / N GiB per worker over N workers.

    Args:
        num_samples: size of the indexed dataset.
        input_shapes: per hidden layer, the input shape, or None to keep no vectors for it.
        seed: seed of the samples' first start vectors.
        shards, shard: the number of shards N and the one this store keeps (0 <= w < N).
    """

    def __init__(self, num_samples, input_shapes, seed=0, shards=1, shard=0):
        if num_samples <= 0:
            raise ValueError(f"num_samples must be > 0. Received: num_samples={num_samples}")
        if shards < 1 or not 0 <= shard < shards:
            raise ValueError("shard must be in [0, shards) with shards >= 1. Received: "
                             f"shards={shards}, shard={shard}")
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.shards, self.shard = int(shards), int(shard)
        self.rows = -(-self.num_samples // self.shards)
        self.tables = [None if shape is None else self._table(k, shape)
                       for k, shape in enumerate(input_shapes)]
        self.misses = keras.metrics.Sum(name="store_misses") if self.shards > 1 else None

    def _table(self, layer, shape):
        synchronization = (tf.VariableSynchronization.ON_READ if self.shards > 1
                           else tf.VariableSynchronization.AUTO)
        table = tf.Variable(tf.zeros((self.rows,) + tuple(shape), tf.float16),
                            trainable=False, name=f"stored_iterate_{layer}",
                            synchronization=synchronization,
                            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        if self.shards > 1:  # this worker's copy (one replica): a plain variable
            table = tf.distribute.get_strategy().experimental_local_results(table)[0]
        return table

    @property
    def nbytes(self):
        """Bytes of this store's tables (on this worker; per replica when unsharded)."""
        return sum(t.shape.num_elements() * t.dtype.size for t in self.tables
                   if t is not None)

    def check_index(self, index):
        index = tf.reshape(tf.cast(index, tf.int64), [-1])
        checks = [tf.debugging.assert_non_negative(index, message="sample index must be >= 0"),
                  tf.debugging.assert_less(index, tf.constant(self.num_samples, tf.int64),
                                           message=f"sample index must be < {self.num_samples} "
                                                   "(the store's num_samples)")]
        # in a graph, the checks must run before the gather that uses the index
        with tf.control_dependencies([c for c in checks if c is not None]):
            return tf.identity(index)

    def owned(self, index):
        """True where sample ``index`` belongs to this store's shard."""
        return tf.equal(tf.math.floormod(index, self.shards), self.shard)

    def gather(self, index):
        owned = self.owned(index)
        if self.misses is not None:  # times the replicas: Keras logs their mean
            context = tf.distribute.get_replica_context()
            replicas = context.num_replicas_in_sync if context is not None else 1
            self.misses.update_state(tf.reduce_sum(tf.cast(~owned, tf.float32)) * replicas)
        local = tf.where(owned, index // self.shards, tf.zeros_like(index))
        return [None if table is None else self._rows(table, index, local, owned, k)
                for k, table in enumerate(self.tables)]

    def _rows(self, table, index, local, owned, layer):
        rows = tf.cast(tf.gather(table, local), tf.float32)
        fresh = tf.reduce_all(tf.equal(tf.reshape(rows, [tf.shape(rows)[0], -1]), 0.0), 1)
        fresh = tf.logical_or(fresh, ~owned)

        def first_starts():
            size = table.shape[1:].num_elements()
            base = tf.random.stateless_normal([size], seed=[self.seed, layer])
            shift = tf.math.floormod(tf.cast(index, tf.int64) * SHIFT, size)
            positions = tf.math.floormod(tf.range(size, dtype=tf.int64)[None, :]
                                         + shift[:, None], size)
            starts = tf.reshape(tf.gather(base, positions), tf.shape(rows))
            mask = tf.reshape(fresh, [-1] + [1] * (len(table.shape) - 1))
            return tf.where(mask, starts, rows)

        return tf.cond(tf.reduce_any(fresh), first_starts, lambda: rows)

    def scatter(self, index, vectors):
        # in the tables' dtype first: half the bytes to gather, and collectives take no
        # bfloat16 (training_dtype='bfloat16')
        vectors = [None if v is None or table is None else tf.cast(v, table.dtype)
                   for v, table in zip(vectors, self.tables)]
        context = tf.distribute.get_replica_context()
        if self.shards > 1:
            owned = self.owned(index)
            index = tf.boolean_mask(index, owned) // self.shards
            vectors = [None if v is None else tf.boolean_mask(v, owned) for v in vectors]
        elif context is not None and context.num_replicas_in_sync > 1:
            index = context.all_gather(index, axis=0)
            vectors = [None if v is None else context.all_gather(v, axis=0)
                       for v in vectors]
        for table, values in zip(self.tables, vectors):
            if table is not None:
                # scatter_update: a MirroredVariable has no scatter_nd_update
                table.scatter_update(tf.IndexedSlices(values, index))
