"""Where the box x +- eps is tighter than the ball, layer by layer (for ``box_layers``).

The l2 walk bounds every hidden linear layer's outputs by the box image intersected with
the ball, z(x) -+ r ||A_i|| (r = eps * prod_{k<l} ||W_k||, sound global norms). With
``LocalGloroNet(box_layers=k)`` training keeps the box for the first k layers only. This
script shows what the box buys at each layer of a model: on the first ``--points``
MNIST test images at ``--epsilon`` it walks once with the box everywhere and once with
the ball alone (``box_layers=0``) and prints, per hidden linear layer, the fraction of
neurons whose lower / upper bound the box tightens, the mean width of both boxes, and
the fraction of the following activation's neurons that are constant (deleted from the
local norm) either way. It ends with one JSON line (also written to ``--output``).

    PYTHONPATH=. python benchmarks/box_usage.py outputs/model.keras --epsilon 1.58
"""
import argparse
import json
from pathlib import Path

import numpy as np

import gloro_local as gl
from gloro_local.bounds import check_epsilon, sound_global_norms, walk
from gloro_local.layers import ActivationSeam, LinearSeam

REPO = Path(__file__).resolve().parents[1]
MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"


def arguments(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="a saved LocalGloroNet (.keras)")
    p.add_argument("--epsilon", type=float, default=None,
                   help="radius (default: the model's epsilon)")
    p.add_argument("--points", type=int, default=512, help="MNIST test points")
    p.add_argument("--data_dir", default=str(MNIST_DIR) if MNIST_DIR.is_dir() else None,
                   help="MNIST folder (default ../shared/data/mnist when present, else the "
                        "embedded sample)")
    p.add_argument("--output", help="also write the JSON line to this file")
    args = p.parse_args(argv)
    if args.points < 1:
        p.error(f"--points must be >= 1. Received: {args.points}")
    if args.epsilon is not None and not args.epsilon > 0:
        p.error(f"--epsilon must be > 0. Received: {args.epsilon}")
    return args


def output_boxes(network, propagation):
    """Per hidden linear layer: its name and the output box the walk gave the first
    activation after it (None when none follows before the next linear layer)."""
    boxes, activations = [], iter(propagation.activations)
    waiting = False
    for seam in network.seams[:-1]:
        if isinstance(seam, LinearSeam):
            boxes.append([seam.name, None])
            waiting = True
        elif isinstance(seam, ActivationSeam):
            found = next(activations)
            if waiting:
                boxes[-1][1] = found
            waiting = False
    return boxes


def box_usage(model, x, epsilon):
    """Rows (one per hidden linear layer) of what the box adds to the ball at ``epsilon``
    (see the module docstring)."""
    network, eps = model.network, check_epsilon(epsilon)
    norms = sound_global_norms(network)
    both = output_boxes(network, walk(network, "global", x, eps, norms))
    ball = output_boxes(network, walk(network, "global", x, eps, norms, box_layers=0))
    rows = []
    for (name, full), (_, alone) in zip(both, ball):
        if full is None:
            rows.append(dict(layer=name))
            continue
        lo, hi, ball_lo, ball_hi = (np.asarray(t) for t in
                                    (full.lo, full.hi, alone.lo, alone.hi))
        slack = 1e-6 * (1.0 + np.abs(ball_lo) + np.abs(ball_hi))
        rows.append(dict(
            layer=name, lower_tightened=float(np.mean(lo > ball_lo + slack)),
            upper_tightened=float(np.mean(hi < ball_hi - slack)),
            width_with_box=float(np.mean(hi - lo)),
            width_ball_only=float(np.mean(ball_hi - ball_lo)),
            constant_with_box=(None if full.varying is None
                               else float(1 - np.mean(full.varying))),
            constant_ball_only=(None if alone.varying is None
                                else float(1 - np.mean(alone.varying)))))
    return rows


def main(argv=None):
    args = arguments(argv)
    model = gl.load_model(args.model)
    epsilon = args.epsilon or float(model.epsilon)
    x, _ = gl.data.load_numpy("mnist", "test", data_dir=args.data_dir, limit=args.points)
    rows = box_usage(model, x, epsilon)
    print(f"{args.model}: {len(x)} MNIST test points, eps {epsilon:g}")
    print(f"{'layer':<16} {'lo tightened':>12} {'hi tightened':>12} {'width box+ball':>15} "
          f"{'width ball':>11} {'constant box+ball':>18} {'constant ball':>14}")
    for row in rows:
        if len(row) == 1:
            print(f"{row['layer']:<16} (no activation follows)")
            continue
        constant = [("-" if row[k] is None else f"{row[k]:.4f}")
                    for k in ("constant_with_box", "constant_ball_only")]
        print(f"{row['layer']:<16} {row['lower_tightened']:>12.4f} "
              f"{row['upper_tightened']:>12.4f} {row['width_with_box']:>15.4g} "
              f"{row['width_ball_only']:>11.4g} {constant[0]:>18} {constant[1]:>14}")
    line = json.dumps({"benchmark": "box_usage", "model": args.model, "epsilon": epsilon,
                       "points": len(x), "layers": rows})
    print(line)
    if args.output:
        Path(args.output).write_text(line + "\n")


if __name__ == "__main__":
    main()
