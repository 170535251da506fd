"""Training over several machines: ``tf.distribute.MultiWorkerMirroredStrategy`` from
``TF_CONFIG``, and the per-worker input pipeline that brings every sample to the worker
whose shard of the iterate store keeps it (docs/multi_worker.md)."""
import json
import os
import socket

import tensorflow as tf

from gloro_local.training.worker_shard import worker_shard

ROLES = ("chief", "worker")


def _bad(text, reason):
    return ValueError(f"TF_CONFIG {reason} (see docs/multi_worker.md). Received: "
                      f"TF_CONFIG={text!r}")


def read_tf_config():
    """The ``TF_CONFIG`` environment variable as a dict, checked: JSON with
    ``cluster`` = {'worker': ['host:port', ...]} (and optionally one 'chief') and
    ``task`` = {'type': 'worker' or 'chief', 'index': i} naming one of its addresses.
    ValueError with the received text otherwise."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise ValueError("strategy 'multi_worker' reads the cluster from the TF_CONFIG "
                         "environment variable, which is not set (see "
                         "docs/multi_worker.md). Received: TF_CONFIG=None")
    try:
        config = json.loads(text)
    except json.JSONDecodeError:
        raise _bad(text, "is not JSON") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster.get("worker") and not cluster.get("chief"):
        raise _bad(text, "needs a 'cluster' with a list of 'worker' addresses")
    for role, addresses in cluster.items():
        if role not in ROLES + ("evaluator",) or not isinstance(addresses, list) or not all(
                isinstance(a, str) and a.rpartition(":")[2].isdigit() for a in addresses):
            raise _bad(text, f"cluster['{role}'] must be a list of 'host:port' strings")
    if len(cluster.get("chief", [])) > 1:
        raise _bad(text, "may name one chief")
    if (not isinstance(task, dict) or task.get("type") not in ROLES
            or not isinstance(task.get("index"), int)
            or not 0 <= task["index"] < len(cluster.get(task["type"], []))):
        raise _bad(text, "needs a 'task' {'type': 'worker' or 'chief', 'index': i} naming "
                         "one address of the cluster")
    return config


def multi_worker_strategy():
    """A ``MultiWorkerMirroredStrategy`` over the cluster of ``TF_CONFIG`` (checked by
    ``read_tf_config``). Create it at the start of the program, before any other
    TensorFlow op. Collectives use RING on CPU-only machines and NCCL (AUTO) with GPUs."""
    read_tf_config()
    implementation = (tf.distribute.experimental.CommunicationImplementation.AUTO
                      if tf.config.list_physical_devices("GPU") else
                      tf.distribute.experimental.CommunicationImplementation.RING)
    options = tf.distribute.experimental.CommunicationOptions(implementation=implementation)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def is_chief(strategy=None):
    """True on the worker that writes files: the chief, or worker 0 without a chief (and
    in every single-process run)."""
    return worker_shard(strategy)[1] == 0


def sharded_dataset(strategy, make, batch_size, num_samples):
    """The training input of ``fit`` under ``strategy``: worker w reads
    ``make(shard=(N, w), batch_size=batch_size // N)``, a dataset of the samples with
    ``index % N == w`` in batches of ``batch_size // N`` (e.g.
    ``functools.partial(data.load, name, 'train', with_index=True)``), so that every
    sample comes back to the worker whose store shard keeps it. Every worker runs
    ceil(floor(num_samples / N) / (batch_size / N)) steps per epoch (the batch count of
    the smallest shard), so a worker leaves out at most one sample an epoch, and only
    when N does not divide ``num_samples``.

    Args:
        strategy: the ``MultiWorkerMirroredStrategy`` (any strategy with one worker
            gives ``make(shard=(1, 0), batch_size=batch_size)``).
        make: ``make(shard=(N, w), batch_size=per_worker_batch)`` -> ``tf.data.Dataset``.
        batch_size: the global batch size, a multiple of the number of workers N.
        num_samples: the number of samples in the dataset (indices 0 ... n - 1).
    """
    shards, shard = worker_shard(strategy)
    if batch_size % shards:
        raise ValueError(f"batch_size must be a multiple of the {shards} workers. "
                         f"Received: batch_size={batch_size}")
    per_worker = batch_size // shards
    steps = -(-(num_samples // shards) // per_worker)

    def dataset(context):
        if (context.num_input_pipelines, context.input_pipeline_id) != (shards, shard):
            raise ValueError("the input pipelines must be the store's shards. Received: "
                             f"pipeline {context.input_pipeline_id} of "
                             f"{context.num_input_pipelines}, shard {shard} of {shards}")
        return make(shard=(shards, shard), batch_size=per_worker).take(steps)

    return strategy.distribute_datasets_from_function(dataset)


def free_loopback_ports(count):
    """``count`` TCP ports free on 127.0.0.1 right now, for a cluster of ``count``
    workers on one machine (trying multi-worker training locally, tests, benchmarks)."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports
