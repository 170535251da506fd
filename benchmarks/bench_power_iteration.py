"""Cost of one per-sample masked power iteration per hidden layer vs. one plain training step.

MNIST 4C3F (ReLU-theta) at batch 256 on real MNIST test images (../shared/data/mnist, else
the embedded sample). Measures, interleaved so that machine noise hits both alike:
  (a) ms per iteration u <- B^T B u / ||.|| for every hidden linear layer, with the
      masks of a propagation at eps, in a tf.function: ``MaskedOperator.gram_step`` (the
      training step) and ``MaskedOperator.step`` (certification: it also returns sigma
      and checks for a collapsed iterate);
  (b) ms per plain training step (tf.function: forward, sparse cross-entropy, Adam update);
  (c) their ratios. Prints a table, then one line of JSON with the figures.

Usage: python benchmarks/bench_power_iteration.py [--repeats 10] [--epsilon 0.3]
"""
import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import keras
import tensorflow as tf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing the package
from gloro_local import architectures, data  # noqa: E402
from gloro_local.bounds import (MaskedOperator, SeamNetwork, check_epsilon,  # noqa: E402
                                propagate, random_start, sound_global_norms)

BATCH = 256
MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"


def mnist_batch():
    """The first 256 real MNIST test images and labels, and where they came from."""
    data_dir = MNIST_DIR if MNIST_DIR.is_dir() else None
    x, y = data.load_numpy("mnist", "test", data_dir=data_dir, limit=BATCH)
    return tf.constant(x), tf.constant(y), str(data_dir or "embedded sample")


def timed(fn, *args):
    """Milliseconds taken by fn(*args), waiting for the result."""
    start = time.perf_counter()
    result = fn(*args)
    tf.nest.map_structure(lambda t: t.numpy(), result)
    return 1000.0 * (time.perf_counter() - start)


def plain_step_fn(model):
    """A compiled training step: forward, sparse cross-entropy, Adam update."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer = keras.optimizers.Adam(1e-3)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss
    return step


def power_iteration_fns(model, x, epsilon):
    """Per hidden linear layer: (name, shapes, training step, certification step, start
    vector), the steps as tf.functions."""
    network = SeamNetwork(model.layers, x.shape[1:])
    hidden = network.hidden_layers()
    propagation = propagate(network, x, check_epsilon(epsilon), sound_global_norms(network))
    fns = []
    for index, (seam, shape), in_mask, out_mask in zip(
            network.hidden, hidden, propagation.in_masks, propagation.out_masks):
        operator = MaskedOperator(seam, shape, in_mask, out_mask)
        out_shape = model.layers[index].output.shape[1:]
        shapes = "x".join(map(str, shape)) + " -> " + "x".join(map(str, out_shape))
        fns.append((model.layers[index].name, shapes,
                    tf.function(lambda u, operator=operator: operator.gram_step(u)),
                    tf.function(lambda u, operator=operator: operator.step(u)[0]),
                    operator.start(random_start(shape, x.shape[0]))))
    return fns


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--epsilon", type=float, default=0.3)
    args = parser.parse_args()
    tf.get_logger().setLevel("ERROR")  # one trace per layer's step is expected, not a retrace

    load = os.getloadavg()[0]
    x, y, source = mnist_batch()
    model = architectures.cnn_4C3F(activation="relu_theta", seed=0)
    plain = plain_step_fn(model)
    layers = power_iteration_fns(model, x, args.epsilon)

    plain_ms, train_ms, certify_ms = [], [[] for _ in layers], [[] for _ in layers]
    for repeat in range(args.warmup + args.repeats):
        plain_time = timed(plain, x, y)
        layer_times = [(timed(train, u), timed(certify, u)) for _, _, train, certify, u in layers]
        if repeat >= args.warmup:
            plain_ms.append(plain_time)
            for a, b, (t_train, t_certify) in zip(train_ms, certify_ms, layer_times):
                a.append(t_train)
                b.append(t_certify)

    plain_median = statistics.median(plain_ms)
    rows = [dict(layer=name, shapes=shapes, pi_ms=round(statistics.median(a), 2),
                 certify_ms=round(statistics.median(b), 2),
                 ratio=round(statistics.median(a) / plain_median, 4))
            for (name, shapes, _, _, _), a, b in zip(layers, train_ms, certify_ms)]
    total = sum(row["pi_ms"] for row in rows)
    total_certify = sum(row["certify_ms"] for row in rows)

    print(f"MNIST 4C3F (relu_theta), batch {BATCH}, eps {args.epsilon}, images: {source}; "
          f"TF {tf.__version__}, {args.repeats} repeats after {args.warmup} warm-up, "
          f"medians; {os.cpu_count()} CPUs, load average before the run {load:.2f}")
    print(f"{'layer':<12} {'input -> output':<30} {'ms / PI':>9} {'PI / step':>10} "
          f"{'ms certify':>11}")
    for row in rows:
        print(f"{row['layer']:<12} {row['shapes']:<30} {row['pi_ms']:>9.1f} "
              f"{row['ratio']:>10.3f} {row['certify_ms']:>11.1f}")
    print(f"{'all hidden layers':<43} {total:>9.1f} {total / plain_median:>10.3f} "
          f"{total_certify:>11.1f}")
    print(f"{'plain training step (forward + CE + Adam)':<43} {plain_median:>9.1f}")
    print(json.dumps(dict(
        batch=BATCH, epsilon=args.epsilon, images=source, repeats=args.repeats,
        cpus=os.cpu_count(), load_average=round(load, 2),
        plain_step_ms=round(plain_median, 2), layers=rows,
        pi_all_layers_ms=round(total, 2), pi_all_layers_ratio=round(total / plain_median, 4),
        certify_step_all_layers_ms=round(total_certify, 2))))

if __name__ == "__main__":
    main()
