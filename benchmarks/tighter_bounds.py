"""Tighter local bounds than the paper's: layer-wise radii and relaxation boxes.

Trains a 2C2F ``LocalGloroNet`` (ReLU-theta, the paper's local bound at
``--train_epsilon``, default 1.58, for ``--epochs`` epochs on the MNIST training images:
../shared/data/mnist when present, else the sample embedded in the package) or loads one
with ``--model``, then certifies the first ``--points`` MNIST test images with the local
bound alone (no global stage, no attack: every point gets the bound) at eps 0.3 and 1.58,
four ways:

* paper: the paper's local bound ('local': boxes clipped by the ball of radius
  eps * prod_{k<l} ||W_k||);
* layerwise: + layer-wise local radii ('local_layerwise': eps * prod_{k<l} sigma_k(x));
* relaxation: + relaxation boxes ('local_relaxed': each hidden layer's box intersected
  with CROWN's backward-pass bounds closed in l2);
* both ('local_layerwise_relaxed').

Prints, per eps and way: certified accuracy, samples that did not converge, ms per point,
the median Lipschitz product, the fraction of constant neurons per activation layer, and
the per-sample ratio of the Lipschitz products to the paper's (median, 10th and 90th
percentile); then the cost of the relaxation per hidden layer (ms per point of its
backward passes alone, at eps 0.3, batch ``--batch_size``) and ends with one JSON line
(also written to ``--output``). ``--max_work`` raises the relaxation's per-layer limit
(``RelaxationBoxes.max_work``; e.g. for 4C3F, whose layers all exceed the default).

    cd /work/main && PYTHONPATH=. python benchmarks/tighter_bounds.py
    PYTHONPATH=. python benchmarks/tighter_bounds.py --model outputs/model.keras
"""
import argparse
import functools
import json
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import gloro_local as gl
from gloro_local.bounds import StoppingRule, bound_pass, certificate_globals, check_epsilon
from gloro_local.bounds.linf.backward import linear_output_bounds
from gloro_local.bounds.propagation import walk
from gloro_local.bounds.strategies import LocalLayerwiseRelaxedBound, LocalRelaxedBound
from gloro_local.bounds.strategies.relaxation_boxes import (MAX_WORK, relaxation_work,
                                                            rows_per_chunk)
from gloro_local.layers import ActivationSeam, LinearSeam
from gloro_local.models.certify import certify_checked

REPO = Path(__file__).resolve().parents[1]
MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"
EPSILONS = (0.3, 1.58)
WAYS = ("paper", "layerwise", "relaxation", "both")


def arguments(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="a saved LocalGloroNet (.keras); default: train one")
    p.add_argument("--points", type=int, default=1000, help="MNIST test points")
    p.add_argument("--epochs", type=int, default=5, help="training epochs")
    p.add_argument("--limit_train", type=int, default=5000, help="training images")
    p.add_argument("--train_epsilon", type=float, default=1.58,
                   help="epsilon the model is trained at")
    p.add_argument("--batch_size", type=int, default=256, help="certification batch")
    p.add_argument("--max_work", type=int, default=MAX_WORK,
                   help="the relaxation's per-sample, per-layer limit")
    p.add_argument("--epsilons", default=",".join(f"{e:g}" for e in EPSILONS))
    p.add_argument("--ways", default=",".join(WAYS),
                   help="comma-separated subset of paper,layerwise,relaxation,both "
                        "(paper always runs: the ratios are to it)")
    p.add_argument("--data_dir", default=str(MNIST_DIR) if MNIST_DIR.is_dir() else None,
                   help="MNIST folder (default ../shared/data/mnist when present, else the "
                        "embedded sample)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", help="also write the JSON line to this file")
    args = p.parse_args(argv)
    if args.points < 1 or args.epochs < 1 or args.limit_train < 1:
        p.error("--points, --epochs and --limit_train must be >= 1")
    if not args.train_epsilon > 0:
        p.error(f"--train_epsilon must be > 0. Received: {args.train_epsilon}")
    args.epsilons = [float(e) for e in args.epsilons.split(",")]
    ways = {w.strip() for w in args.ways.split(",") if w.strip()} | {"paper"}
    if ways - set(WAYS):
        p.error(f"unknown --ways {sorted(ways - set(WAYS))}; choose from {list(WAYS)}")
    args.ways = [w for w in WAYS if w in ways]
    return args


def train_model(args):
    """A 2C2F LocalGloroNet trained with the paper's local bound at ``--train_epsilon``."""
    x, y = gl.data.load_numpy("mnist", "train", data_dir=args.data_dir)
    order = np.random.default_rng(args.seed).permutation(len(y))[:args.limit_train]
    keras.utils.set_random_seed(args.seed)
    f = gl.architectures.get("2C2F", input_shape=(28, 28, 1), num_classes=10,
                             seed=args.seed)
    model = gl.LocalGloroNet(f, args.train_epsilon, seed=args.seed)
    model.compile(keras.optimizers.Adam(1e-3), loss="crossentropy")
    begin = time.perf_counter()
    model.fit(x[order], y[order], batch_size=128, epochs=args.epochs, verbose=0)
    return model, time.perf_counter() - begin, len(order)


def bounds_of(max_work):
    """The bound of each way (the relaxed ones with the given per-layer limit)."""
    return {"paper": "local", "layerwise": "local_layerwise",
            "relaxation": LocalRelaxedBound(max_work),
            "both": LocalLayerwiseRelaxedBound(max_work)}


def bound_numbers(model, bound, x, prediction, epsilon, globals_, batch_size):
    """Per-sample Lipschitz products (B,) and varying fractions (B, activations) of the
    local bound (converged, capped norms), as certification computes them."""
    run = bound_pass(model.network, bound, model.local_layers, StoppingRule().check(),
                     model.seed)
    parts = [run(x[b:b + batch_size], epsilon, globals_.sigmas,
                 prediction[b:b + batch_size], globals_.vectors)
             for b in range(0, len(x), batch_size)]
    return (np.concatenate([p["lipschitz"] for p in parts]),
            np.concatenate([p["varying"] for p in parts]))


def relaxation_cost(model, x, epsilon, globals_, max_work):
    """ms per point of the relaxation's backward passes alone, per hidden linear layer
    after the first (None where the layer exceeds ``max_work``)."""
    network = model.network
    x = tf.constant(x)
    eps = check_epsilon(epsilon)
    propagation = walk(network, "global", x, eps, globals_.sigmas)
    boxes = [(a.lo, a.hi) for a in propagation.activations]
    linear = [i for i, s in enumerate(network.seams[:-1]) if isinstance(s, LinearSeam)]
    costs = {}
    for index in linear[1:]:
        if relaxation_work(network, index) > max_work:
            costs[index] = None
            continue
        count = sum(isinstance(s, ActivationSeam) for s in network.seams[:index])
        run = tf.function(functools.partial(
            linear_output_bounds, network, index, epsilon=eps, boxes=boxes[:count],
            norm="l2", rows_per_chunk=rows_per_chunk(network, index)))
        run(x)
        begin = time.perf_counter()
        run(x)
        costs[index] = 1000 * (time.perf_counter() - begin) / int(x.shape[0])
    return {f"seam {i} ({network.seams[i].name}, work {relaxation_work(network, i):,})":
            cost for i, cost in costs.items()}


def main(argv=None):
    args = arguments(argv)
    seconds, trained_on = None, None
    if args.model:
        model = gl.load_model(args.model)
    else:
        model, seconds, trained_on = train_model(args)
    x, y = gl.data.load_numpy("mnist", "test", data_dir=args.data_dir,
                              limit=args.points)
    globals_ = certificate_globals(model.network, model.seed)
    prediction = np.argmax(model.network.logits(x).numpy(), -1).astype(np.int32)
    print(f"model: {'loaded ' + args.model if args.model else '2C2F trained'}"
          + (f" ({trained_on} images, {args.epochs} epochs at eps {args.train_epsilon:g},"
             f" {seconds:.1f} s)"
             if seconds else "") + f"; {len(y)} test points; clean accuracy "
          f"{np.mean(prediction == y):.3f}", flush=True)
    bounds = bounds_of(args.max_work)
    rule = StoppingRule().check()
    results = {}
    for epsilon in args.epsilons:
        row = {}
        for way in args.ways:
            certify_checked(model, x[:8], y[:8], epsilon, globals_, rule, cheap_stages=False,
                            progress=False, local=bounds[way])  # traces the pass
            begin = time.perf_counter()
            cert = certify_checked(model, x, y, epsilon, globals_, rule, cheap_stages=False,
                                   batch_size=args.batch_size, progress=False,
                                   local=bounds[way])
            per_point = (time.perf_counter() - begin) / len(y)
            lipschitz, varying = bound_numbers(model, bounds[way], x, prediction, epsilon,
                                               globals_, args.batch_size)
            row[way] = dict(
                certified_accuracy=float(np.mean(cert.certified)),
                not_converged=int(np.sum(cert.reason == "not converged")),
                ms_per_point=1000 * per_point,
                constant=[float(1 - v) for v in varying.mean(0)],
                lipschitz_median=float(np.median(lipschitz)), lipschitz=lipschitz)
        paper = row["paper"]["lipschitz"]
        for way in args.ways:
            ratio = row[way]["lipschitz"] / paper
            row[way]["ratio"] = dict(median=float(np.median(ratio)),
                                     p10=float(np.percentile(ratio, 10)),
                                     p90=float(np.percentile(ratio, 90)),
                                     max=float(ratio.max()))
        for way in args.ways:
            row[way].pop("lipschitz")
        results[f"{epsilon:g}"] = row
        print(f"\neps {epsilon:g}")
        print(f"  {'way':<11} {'certified':>9} {'not conv.':>9} {'ms/point':>9} "
              f"{'median L':>9} {'ratio p10 / median / p90':>26}  constant neurons per "
              "activation layer")
        for way in args.ways:
            r = row[way]
            ratio = r["ratio"]
            print(f"  {way:<11} {r['certified_accuracy']:>9.4f} {r['not_converged']:>9d}"
                  f" {r['ms_per_point']:>9.2f} {r['lipschitz_median']:>9.3f} "
                  f"{ratio['p10']:>8.4f} {ratio['median']:>8.4f} {ratio['p90']:>8.4f}  "
                  + " ".join(f"{c:.3f}" for c in r["constant"]), flush=True)
    cost = (relaxation_cost(model, x[:args.batch_size], args.epsilons[0], globals_,
                            args.max_work)
            if {"relaxation", "both"} & set(args.ways) else {})
    if cost:
        print("\nrelaxation cost, ms per point of its backward passes per layer "
              f"(batch {min(args.batch_size, len(x))}; skipped: above max_work "
              f"{args.max_work:,}):")
    for layer, ms in cost.items():
        print(f"  {layer}: {'skipped' if ms is None else f'{ms:.2f} ms'}")
    summary = dict(benchmark="tighter_bounds", points=len(y),
                   model=args.model or "2C2F", train_seconds=seconds,
                   train_epsilon=None if args.model else args.train_epsilon,
                   max_work=args.max_work, clean_accuracy=float(np.mean(prediction == y)),
                   relaxation_ms_per_point=cost, eps=results)
    line = json.dumps(summary)
    print(line)
    if args.output:
        Path(args.output).write_text(line + "\n")


if __name__ == "__main__":
    main()
