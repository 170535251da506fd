"""Certification throughput: the full pipeline against the local bound on every sample.

On real MNIST test images (../shared/data/mnist, else the embedded sample), for each
architecture of --archs (trained here: ReLU-theta, a few epochs on the 5k training subset
at eps; or --model PATH), times
  (a) ``certify(..., cheap_stages=True)``: converged global bound, PGD, then the converged
      local bound only for the points still open;
  (b) ``certify(..., cheap_stages=False)``: the converged local bound on every point;
after one untimed warm-up call each (tracing), and checks that both certify the same
points. Prints a table, then one line of JSON (samples/s of both modes per model and
their ratio).

Usage: python benchmarks/bench_certify.py [--limit 1000] [--epsilon 0.3] [--archs 2C2F,4C3F]
       python benchmarks/bench_certify.py --model PATH [--limit 10000]
"""
import argparse
import json
import sys
import time
from pathlib import Path

import keras
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing the package
import gloro_local as gl  # noqa: E402
from gloro_local import LocalGloroNet, architectures  # noqa: E402

MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"


def arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=1000, help="test points")
    parser.add_argument("--epsilon", type=float, default=0.3)
    parser.add_argument("--epochs", type=int, default=3, help="training epochs")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--archs", default="2C2F,4C3F", help="architectures to train")
    parser.add_argument("--solver", default="lobpcg", choices=["lobpcg", "power"],
                        help="per-sample solver of the local bound")
    parser.add_argument("--model", default=None, help="a saved model instead of training")
    parser.add_argument("--pipeline_only", action="store_true",
                        help="time the full pipeline only (no local-on-every-point run)")
    return parser.parse_args()


def train(x, y, arch, epsilon, epochs):
    keras.utils.set_random_seed(0)
    order = np.random.default_rng(0).permutation(len(y))  # the 5k subset is sorted by class
    model = LocalGloroNet(architectures.get(arch, activation="relu_theta", seed=0), epsilon)
    model.compile(keras.optimizers.Adam(1e-3), loss="crossentropy")
    model.fit(x[order], y[order], batch_size=128, epochs=epochs, verbose=0)
    return model


def timed_certify(model, x, y, epsilon, batch_size, cheap, solver):
    gl.evaluation.certify(model, x[:32], y[:32], epsilon, cheap_stages=cheap,
                          progress=False, solver=solver)  # warm-up: tracing
    start = time.perf_counter()
    cert = gl.evaluation.certify(model, x, y, epsilon, cheap_stages=cheap,
                                 batch_size=batch_size, progress=False, solver=solver)
    return cert, time.perf_counter() - start


def measure(model, x, y, args):
    rows = {}
    modes = (("full pipeline", True),) + (() if args.pipeline_only
                                          else (("local on every point", False),))
    for name, cheap in modes:
        cert, seconds = timed_certify(model, x, y, args.epsilon, args.batch_size, cheap,
                                      args.solver)
        rows[name] = dict(seconds=round(seconds, 2), samples_per_s=round(len(y) / seconds, 2),
                          vra=cert.certified_accuracy(y), reasons=cert.counts(),
                          certified=cert.certified)
    full = rows["full pipeline"]
    certified = full.pop("certified")
    if args.pipeline_only:
        return dict(full_pipeline=full)
    every = rows["local on every point"]
    same = bool(np.array_equal(certified, every.pop("certified")))
    return dict(full_pipeline=full, local_every_point=every, same_certified=same,
                speedup=round(every["seconds"] / full["seconds"], 2))


def main():
    args = arguments()
    data_dir = MNIST_DIR if MNIST_DIR.is_dir() else None
    x, y = gl.data.load_numpy("mnist", "test", data_dir=data_dir, limit=args.limit)
    models = {}
    if args.model:
        models[args.model] = lambda: gl.load_model(args.model)
    else:
        train_data = gl.data.load_numpy("mnist", "train", data_dir=data_dir)
        for arch in args.archs.split(","):
            models[f"{arch} relu_theta, {args.epochs} epochs"] = (
                lambda arch=arch: train(*train_data, arch, args.epsilon, args.epochs))
    print(f"{len(y)} MNIST test points from {data_dir or 'the embedded sample'}; "
          f"eps {args.epsilon}; local solver {args.solver}")
    width = max(28, *(len(source) + 2 for source in models))
    print(f"{'model':<{width}}{'mode':<22}{'seconds':>9}{'samples/s':>11}{'VRA':>8}  reasons")
    results, same = {}, True
    for source, build in models.items():
        result = measure(build(), x, y, args)
        for mode in ("full_pipeline", "local_every_point")[:1 if args.pipeline_only else 2]:
            row = result[mode]
            print(f"{source:<{width}}{mode:<22}{row['seconds']:>9.2f}"
                  f"{row['samples_per_s']:>11.2f}"
                  f"{row['vra']:>8.3f}  {row['reasons']}")
        results[source] = result
        if not args.pipeline_only:
            print(f"{source:<{width}}speed-up {result['speedup']:.2f}x; same certified points: "
                  f"{result['same_certified']}")
            same = same and result["same_certified"]
    print(json.dumps({"points": len(y), "epsilon": args.epsilon, "solver": args.solver,
                      "results": results}))
    if not same:
        sys.exit("the two modes certified different points")


if __name__ == "__main__":
    main()
