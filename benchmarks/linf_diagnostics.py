"""The diagnostics "Loss Landscape Matters" plots, on one fixed l-infinity model.

Trains a ``LinfCertifiedNet`` with the preset 'quick_mnist_linf' (Small network,
CROWN-IBP, eps 0.1, eps_train 0.2) on MNIST training images (../shared/data/mnist when
present, else the sample embedded in the package), or loads one with ``--model``, and
on the first ``--points`` MNIST test images at its epsilon prints:

* per activation layer, the fractions of unstable / active / dead ReLUs, from the IBP
  pre-activation boxes of the l-infinity ball (``gl.bounds.linf.relu_states``; they sum
  to 1 per layer);
* for every relaxation, on the same points and labels, the paper's tightness measure
  (``gl.bounds.linf.tightness``: minus the sum over the classes of the lower bounds m_i
  of z_y - z_i, smaller is tighter), mean and median over the points: 'ibp'; 'crown_ibp'
  (IBP boxes, CROWN's adaptive lower slopes); 'optimized' (one projected sign-gradient
  step from a ~ U[0, 1], eq. 6, seeded); 'random' (the lower slopes a ~ U[0, 1] alone,
  ``initial_slopes`` with the same seed).

Ends with one JSON line (also written to ``--output``). Runs in about three minutes on
2 CPU cores with the defaults.

    cd /work/main && PYTHONPATH=. python benchmarks/linf_diagnostics.py
    PYTHONPATH=. python benchmarks/linf_diagnostics.py --model outputs/model.keras
"""
import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

import gloro_local as gl
from gloro_local import experiment
from gloro_local.bounds.linf import (backward_bounds, ibp, ibp_margin_lower_bounds,
                                     initial_slopes, optimized_lower_slopes, relu_states,
                                     specification, tightness)
from gloro_local.layers import ActivationSeam

REPO = Path(__file__).resolve().parents[1]
MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"
RELAXATIONS = ("ibp", "crown_ibp", "optimized", "random")


def arguments(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="a saved LinfCertifiedNet (.keras / .h5); default: "
                   "train one with the preset 'quick_mnist_linf'")
    p.add_argument("--epsilon", type=float, default=None,
                   help="radius of the diagnostics (default: the model's epsilon)")
    p.add_argument("--points", type=int, default=200, help="MNIST test points")
    p.add_argument("--limit_train", type=int, default=3000,
                   help="training images when training (default 3000)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of training and of the random / optimised start slopes")
    p.add_argument("--output", help="also write the JSON line to this file")
    args = p.parse_args(argv)
    if args.points < 1 or args.limit_train < 1:
        p.error("--points and --limit_train must be >= 1")
    if args.epsilon is not None and not args.epsilon > 0:
        p.error(f"--epsilon must be > 0. Received: {args.epsilon}")
    return args


def data_dir():
    """../shared/data/mnist when it exists, else None (the embedded sample)."""
    return str(MNIST_DIR) if MNIST_DIR.is_dir() else None


def train_model(limit_train, seed):
    """A LinfCertifiedNet trained with the preset 'quick_mnist_linf' (no files kept)."""
    with tempfile.TemporaryDirectory() as folder:
        config = experiment.Config.from_preset(
            "quick_mnist_linf", data_dir=data_dir(), limit_train=limit_train, seed=seed,
            output_dir=folder, verbose=0)
        model, _, seconds, _ = experiment.train(config)
    return model, seconds


def activation_names(network):
    """The names of the activation layers of a SeamNetwork, in order."""
    return [layer.name for layer, seam in zip(network.layers, network.seams)
            if isinstance(seam, ActivationSeam)]


def relu_fractions(network, x, epsilon):
    """Per activation layer name, {'unstable', 'active', 'dead'} fractions of its neurons
    over the points (IBP boxes of the l-infinity ball of radius epsilon)."""
    boxes = ibp(network, x, epsilon).pre_activation
    return {name: {key: float(value) for key, value in state._asdict().items()}
            for name, state in zip(activation_names(network), relu_states(boxes))}


def margins(network, x, y, epsilon, relaxation, eta=1.0, seed=0):
    """(B, K) lower bounds m_i of z_y - z_i over the l-infinity ball of ``relaxation``
    ('ibp', 'crown_ibp', 'optimized' or 'random'), all on the same IBP boxes."""
    x = tf.convert_to_tensor(x, tf.float32)
    epsilon = tf.constant(epsilon, tf.float32)
    reference = tf.convert_to_tensor(y, tf.int32)
    interval = ibp(network, x, epsilon)
    if relaxation == "ibp":
        return ibp_margin_lower_bounds(network, interval, reference)
    spec = specification(reference, network.num_classes)
    boxes = interval.pre_activation
    if relaxation == "crown_ibp":
        slopes = None
    elif relaxation == "optimized":
        slopes = optimized_lower_slopes(network, x, epsilon, spec, boxes, eta=eta, seed=seed)
    elif relaxation == "random":
        slopes = initial_slopes(network, boxes, seed)
    else:
        raise ValueError(f"relaxation must be one of {RELAXATIONS}. Received: "
                         f"relaxation={relaxation!r}")
    return backward_bounds(network, x, epsilon, spec, boxes, lower_slopes=slopes)


def tightness_table(model, x, y, epsilon, seed=0, batch_size=100):
    """Per relaxation, {'mean', 'median'} of the tightness measure over the points, and
    the (B,) values. The seeded start slopes are drawn per batch of ``batch_size``, so
    'optimized' and 'random' depend on it (as on the seed)."""
    values = {}
    for relaxation in RELAXATIONS:
        parts = [tightness(margins(model.network, x[b:b + batch_size], y[b:b + batch_size],
                                   epsilon, relaxation, model.eta, seed)).numpy()
                 for b in range(0, len(y), batch_size)]
        values[relaxation] = np.concatenate(parts)
    stats = {name: {"mean": float(v.mean()), "median": float(np.median(v))}
             for name, v in values.items()}
    return stats, values


def main(argv=None):
    args = arguments(argv)
    seconds = None
    if args.model:
        model = gl.load_model(args.model, compile=False)
        if not isinstance(model, gl.LinfCertifiedNet):
            raise SystemExit(f"linf_diagnostics.py: error: {args.model!r} holds a "
                             f"{type(model).__name__}, not a LinfCertifiedNet")
    else:
        model, seconds = train_model(args.limit_train, args.seed)
    epsilon = round(float(model.epsilon.numpy()), 7) if args.epsilon is None else args.epsilon
    x, y = gl.data.load_numpy("mnist", "test", data_dir=data_dir(), limit=args.points)
    certificate = model.certify(x, y, epsilon=epsilon, attack_steps=0, progress=False)
    print(f"{len(y)} MNIST test points from {data_dir() or 'the embedded sample'}; "
          f"l-infinity eps {epsilon:g}; model {args.model or 'quick_mnist_linf'} "
          f"({model.relaxation}); clean {float((certificate.prediction == y).mean()):.3f}"
          f", certified {certificate.certified_accuracy(y):.3f}")
    fractions = relu_fractions(model.network, x, epsilon)
    print(f"\n{'layer':<16}{'unstable':>10}{'active':>10}{'dead':>10}")
    for name, row in fractions.items():
        print(f"{name:<16}{row['unstable']:>10.4f}{row['active']:>10.4f}{row['dead']:>10.4f}")
    stats, _ = tightness_table(model, x, y, epsilon, args.seed)
    print(f"\n{'relaxation':<16}{'mean tightness':>16}{'median':>12}   (smaller is tighter)")
    for name, row in stats.items():
        print(f"{name:<16}{row['mean']:>16.3f}{row['median']:>12.3f}")
    result = dict(points=len(y), epsilon=epsilon, model=args.model or "quick_mnist_linf",
                  model_relaxation=model.relaxation, training_seconds=seconds,
                  certified_accuracy=certificate.certified_accuracy(y),
                  relu_states=fractions, tightness=stats)
    line = json.dumps(result)
    print(line)
    if args.output:
        Path(args.output).write_text(line + "\n")
    return result


if __name__ == "__main__":
    main()
