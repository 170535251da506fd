"""Layer-wise local radii against the paper's local bound, on one 2C2F MNIST model.

Trains a 2C2F ``LocalGloroNet`` (ReLU-theta, the paper's local bound at
``--train_epsilon``, default 1.58, for ``--epochs`` epochs on the MNIST
training images: ../shared/data/mnist when present, else the sample embedded in the
package) or loads one with ``--model``, then on the first ``--points`` MNIST test images
certifies every point with the local bound alone (``certify(..., cheap_stages=False)``:
no global stage, no attack) with the paper's radius (``radius='global'``: the ball
entering layer l has radius eps * prod_{k<l} ||W_k||) and the layer-wise one
(``radius='layerwise'``: eps * prod_{k<l} sigma_k(x)), at eps 0.3 and 1.58. Prints, per
eps: the per-sample ratio of the Lipschitz bounds layerwise / local (median, 10th and
90th percentile), the fraction of constant neurons per activation layer both ways, the
certified accuracy both ways and the time per point of each; ends with one JSON line
(also written to ``--output``).

    cd /work/main && PYTHONPATH=. python benchmarks/layerwise_radius.py
    PYTHONPATH=. python benchmarks/layerwise_radius.py --model outputs/model.keras
"""
import argparse
import json
import time
from pathlib import Path

import keras
import numpy as np

import gloro_local as gl
from gloro_local.bounds import StoppingRule, bound_pass, certificate_globals
from gloro_local.bounds.passes import local_bound
from gloro_local.evaluation import certify

REPO = Path(__file__).resolve().parents[1]
MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"
EPSILONS = (0.3, 1.58)
RADII = ("global", "layerwise")


def arguments(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="a saved LocalGloroNet (.keras); default: train one")
    p.add_argument("--points", type=int, default=1000, help="MNIST test points")
    p.add_argument("--epochs", type=int, default=5, help="training epochs")
    p.add_argument("--limit_train", type=int, default=5000, help="training images")
    p.add_argument("--train_epsilon", type=float, default=1.58,
                   help="epsilon the model is trained at")
    p.add_argument("--batch_size", type=int, default=256, help="certification batch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", help="also write the JSON line to this file")
    args = p.parse_args(argv)
    if args.points < 1 or args.epochs < 1 or args.limit_train < 1:
        p.error("--points, --epochs and --limit_train must be >= 1")
    if not args.train_epsilon > 0:
        p.error(f"--train_epsilon must be > 0. Received: {args.train_epsilon}")
    return args


def data_dir():
    """../shared/data/mnist when it exists, else None (the embedded sample)."""
    return str(MNIST_DIR) if MNIST_DIR.is_dir() else None


def train_model(args):
    """A 2C2F LocalGloroNet trained with the paper's local bound at ``--train_epsilon``."""
    x, y = gl.data.load_numpy("mnist", "train", data_dir=data_dir())
    order = np.random.default_rng(args.seed).permutation(len(y))[:args.limit_train]
    keras.utils.set_random_seed(args.seed)
    f = gl.architectures.get("2C2F", input_shape=(28, 28, 1), num_classes=10,
                             seed=args.seed)
    model = gl.LocalGloroNet(f, args.train_epsilon, seed=args.seed)
    model.compile(keras.optimizers.Adam(1e-3), loss="crossentropy")
    begin = time.perf_counter()
    model.fit(x[order], y[order], batch_size=128, epochs=args.epochs, verbose=0)
    return model, time.perf_counter() - begin, len(order)


def bound_numbers(model, x, prediction, epsilon, radius, globals_, batch_size):
    """Per-sample Lipschitz products (B,) and varying fractions (B, activations) of the
    local stage's bound (converged, capped norms), as ``certify`` computes them."""
    run = bound_pass(model.network, local_bound(radius), model.local_layers,
                     StoppingRule().check(), model.seed)
    parts = [run(x[b:b + batch_size], epsilon, globals_.sigmas,
                 prediction[b:b + batch_size], globals_.vectors)
             for b in range(0, len(x), batch_size)]
    return (np.concatenate([p["lipschitz"] for p in parts]),
            np.concatenate([p["varying"] for p in parts]))


def main(argv=None):
    args = arguments(argv)
    seconds, trained_on = None, None
    if args.model:
        model = gl.load_model(args.model)
    else:
        model, seconds, trained_on = train_model(args)
    x, y = gl.data.load_numpy("mnist", "test", data_dir=data_dir(), limit=args.points)
    globals_ = certificate_globals(model.network, model.seed)
    prediction = np.argmax(model.network.logits(x).numpy(), -1).astype(np.int32)
    print(f"model: {'loaded ' + args.model if args.model else '2C2F trained'}"
          + (f" ({trained_on} images, {args.epochs} epochs at eps {args.train_epsilon:g},"
             f" {seconds:.1f} s)"
             if seconds else "") + f"; {len(y)} test points; clean accuracy "
          f"{np.mean(prediction == y):.3f}", flush=True)
    results = {}
    for epsilon in EPSILONS:
        row = {}
        for radius in RADII:
            certify(model, x[:8], y[:8], epsilon=epsilon, cheap_stages=False,
                    radius=radius, progress=False)  # traces the pass
            begin = time.perf_counter()
            cert = certify(model, x, y, epsilon=epsilon, cheap_stages=False, radius=radius,
                           batch_size=args.batch_size, progress=False)
            per_point = (time.perf_counter() - begin) / len(y)
            lipschitz, varying = bound_numbers(model, x, prediction, epsilon, radius,
                                               globals_, args.batch_size)
            row[radius] = dict(
                certified_accuracy=float(np.mean(cert.certified)),
                not_converged=int(np.sum(cert.reason == "not converged")),
                ms_per_point=1000 * per_point,
                constant=[float(1 - v) for v in varying.mean(0)],
                lipschitz_median=float(np.median(lipschitz)), lipschitz=lipschitz)
        ratio = row["layerwise"].pop("lipschitz") / row["global"].pop("lipschitz")
        row["ratio"] = dict(median=float(np.median(ratio)),
                            p10=float(np.percentile(ratio, 10)),
                            p90=float(np.percentile(ratio, 90)),
                            max=float(ratio.max()))
        results[f"{epsilon:g}"] = row
        print(f"\neps {epsilon:g}: Lipschitz bound ratio layerwise / local per sample: "
              f"median {row['ratio']['median']:.4f}, 10th pct {row['ratio']['p10']:.4f}, "
              f"90th pct {row['ratio']['p90']:.4f}, max {row['ratio']['max']:.4f}")
        print(f"  {'radius':<10} {'certified':>9} {'not conv.':>9} {'ms/point':>9} "
              f"{'median L':>9}  constant neurons per activation layer")
        for radius in RADII:
            r = row[radius]
            print(f"  {radius:<10} {r['certified_accuracy']:>9.3f} {r['not_converged']:>9d}"
                  f" {r['ms_per_point']:>9.2f} {r['lipschitz_median']:>9.3f}  "
                  + " ".join(f"{c:.3f}" for c in r["constant"]), flush=True)
    summary = dict(benchmark="layerwise_radius", points=len(y),
                   model=args.model or "2C2F", train_seconds=seconds,
                   train_epsilon=None if args.model else args.train_epsilon,
                   clean_accuracy=float(np.mean(prediction == y)), eps=results)
    line = json.dumps(summary)
    print(line)
    if args.output:
        Path(args.output).write_text(line + "\n")


if __name__ == "__main__":
    main()
