"""Which shard of the samples this process keeps under MultiWorkerMirroredStrategy."""
import tensorflow as tf


def worker_shard(strategy=None):
    """``(N, w)``: the number of workers and this worker's index, numbered as
    ``tf.distribute.InputContext.input_pipeline_id`` numbers them (the chief, if the
    cluster has one, is 0, then worker i is i + 1; without a chief worker i is i).
    ``(1, 0)`` for every strategy other than a ``MultiWorkerMirroredStrategy`` over more
    than one worker. Sharding is by worker, so each worker must run one replica
    (``num_replicas_in_sync == N``): ValueError otherwise.

    Args:
        strategy: a ``tf.distribute.Strategy``; default: the current one.
    """
    strategy = strategy or tf.distribute.get_strategy()
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 1, 0
    resolver = strategy.cluster_resolver
    cluster = resolver.cluster_spec().as_dict()
    chiefs = len(cluster.get("chief", []))
    workers = chiefs + len(cluster.get("worker", []))
    if workers <= 1:
        return 1, 0
    if strategy.num_replicas_in_sync != workers:
        raise ValueError("The sharded iterate store keeps one shard per worker, so every "
                         "worker must run one replica (one device). Received: "
                         f"{strategy.num_replicas_in_sync} replicas on {workers} workers")
    index = 0 if resolver.task_type == "chief" else int(resolver.task_id) + chiefs
    return workers, index
