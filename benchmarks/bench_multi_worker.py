"""Training steps per second of one process against two MultiWorkerMirroredStrategy
workers on this machine (loopback, CPU), and the iterate store's bytes per worker.

Both train the same LocalGloroNet (local bound, stored per-sample vectors, float32
bounds, 2 power iterations) on the same global batch: one process reads batches of
``--batch``, each of the two workers batches of ``--batch / 2`` from its index shard
(``multi_worker.sharded_dataset``). Steps per second are 1 / the median step time over
the epochs after the first (which traces the step); the workers step in lockstep, so the
median is the same on both, while a worker's first step of an epoch also waits for the
other's epoch-end work. Epoch seconds (median over the same epochs) include that work:
the global norms' convergence (``ConvergeGlobalNorms``) and the next epoch's input
iterators. On a machine of 2 cores the two workers share the cores one
process uses, so no speed-up is expected: the figure shows the cost of the strategy and
of the gradient all-reduce. Prints a table, then one line of JSON with the ratios.

    python benchmarks/bench_multi_worker.py [--arch 2C2F] [--batch 64] [--samples 1024]
"""
import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import keras  # noqa: E402  (importing runs no TensorFlow op: the strategy can follow)
import tensorflow as tf  # noqa: E402

import gloro_local as gl  # noqa: E402
from gloro_local import architectures, data, multi_worker  # noqa: E402


def child(args):
    """One training process: a worker of TF_CONFIG's cluster (the strategy made first,
    before any TensorFlow op), or the one process."""
    strategy = (multi_worker.multi_worker_strategy() if "TF_CONFIG" in os.environ
                else tf.distribute.get_strategy())
    with strategy.scope():
        model = gl.LocalGloroNet(architectures.get(args.arch, seed=0), 0.3, bound="local",
                                 training_dtype="float32")
        model.compile(keras.optimizers.Adam(1e-3), loss="crossentropy")
        store = model.attach_store(args.samples)
    load = functools.partial(data.load, "mnist", "train", with_index=True, shuffle=True,
                             limit=args.samples, seed=0)
    if "TF_CONFIG" in os.environ:
        dataset = multi_worker.sharded_dataset(strategy, load, args.batch, args.samples)
    else:
        dataset = load(batch_size=args.batch)
    clock = StepClock()
    model.fit(dataset, epochs=args.epochs, verbose=0, callbacks=[clock])
    with open(args.out, "w") as handle:
        json.dump({"steps_per_s": 1.0 / statistics.median(clock.steps),
                   "epoch_s": statistics.median(clock.epochs),
                   "steps": int(model.optimizer.iterations.numpy()),
                   "store_bytes": store.nbytes}, handle)


class StepClock(keras.callbacks.Callback):
    """Seconds of every training step and of every epoch (begin to end, epoch-end work
    included) after the first epoch (which traces the step)."""

    def __init__(self):
        super().__init__()
        self.steps, self.epochs, self._epoch, self._begin = [], [], 0, {}

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._begin["epoch"] = epoch, time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        self._begin["step"] = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self._epoch > 0:
            self.steps.append(time.perf_counter() - self._begin["step"])

    def on_epoch_end(self, epoch, logs=None):
        if epoch > 0:
            self.epochs.append(time.perf_counter() - self._begin["epoch"])


def launch(args, workers, folder):
    """Runs ``workers`` training processes (0: one process without a strategy); returns
    their results."""
    common = ["--arch", args.arch, "--batch", str(args.batch), "--samples",
              str(args.samples), "--epochs", str(args.epochs)]
    env = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
    ports = multi_worker.free_loopback_ports(max(workers, 1))
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes, outs = [], []
    for w in range(max(workers, 1)):
        out = os.path.join(folder, f"run{workers}_{w}.json")
        task_env = dict(env) if workers == 0 else dict(env, TF_CONFIG=json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": w}}))
        processes.append(subprocess.Popen(
            [sys.executable, __file__, "--child", "--out", out, *common], env=task_env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        outs.append(out)
    for process in processes:
        _, err = process.communicate(timeout=1800)
        if process.returncode:
            sys.exit(f"bench_multi_worker.py: a training process failed:\n{err[-3000:]}")
    results = []
    for out in outs:
        with open(out) as handle:
            results.append(json.load(handle))
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="2C2F")
    parser.add_argument("--batch", type=int, default=64, help="global batch size (even)")
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    with tempfile.TemporaryDirectory() as folder:
        one = launch(args, 0, folder)[0]
        two = launch(args, 2, folder)
    worker_rate = min(r["steps_per_s"] for r in two)
    worker_epoch = max(r["epoch_s"] for r in two)
    print(f"{args.arch}, local bound with the store, global batch {args.batch}, "
          f"{args.samples} samples, {one['steps'] // args.epochs} steps per epoch")
    print(f"{'run':22} {'steps/s':>8} {'epoch s':>8} {'store bytes':>12}")
    print(f"{'1 process':22} {one['steps_per_s']:8.2f} {one['epoch_s']:8.2f} "
          f"{one['store_bytes']:12,d}")
    for w, result in enumerate(two):
        print(f"{f'2 workers: worker {w}':22} {result['steps_per_s']:8.2f} "
              f"{result['epoch_s']:8.2f} {result['store_bytes']:12,d}")
    print(json.dumps({
        "benchmark": "multi_worker", "arch": args.arch, "batch": args.batch,
        "samples": args.samples, "steps_per_s_1": round(one["steps_per_s"], 3),
        "steps_per_s_2": round(worker_rate, 3),
        "step_speedup_2_over_1": round(worker_rate / one["steps_per_s"], 3),
        "epoch_s_1": round(one["epoch_s"], 3), "epoch_s_2": round(worker_epoch, 3),
        "epoch_speedup_2_over_1": round(one["epoch_s"] / worker_epoch, 3),
        "store_bytes_1": one["store_bytes"],
        "store_bytes_per_worker_2": [r["store_bytes"] for r in two],
        "store_bytes_ratio": round(two[0]["store_bytes"] / one["store_bytes"], 4)}))


if __name__ == "__main__":
    main()
