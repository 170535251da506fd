"""Local vs global vs GloRo bound at equal training budget (Huang et al. 2021, table 1).

Trains the same architecture with ``bound='local'``, ``'global'`` and ``'gloro'`` (same
seed, initial weights, data order, epochs, epsilon / learning-rate schedules, optimizer,
GloRo cross-entropy loss, ReLU-theta activations) on the offline 5k MNIST training
subset, then evaluates each model with ``gl.evaluate`` on the MNIST test set (full 10k by
default) at eps = 1.58 and, for 2C2F, also at eps = 0.3 (each radius trains its own
three models, with eps_train = 1.1 * eps ramped linearly over the first half of the
epochs). Prints one table per radius in the paper's format (clean / PGD / certified
accuracy, mean local and global Lipschitz bound, training time and its ratio to GloRo),
then one final JSON line (also written to ``--output``).

The claim checked: training with the local bound gives higher certified *and* clean
accuracy than the global bound at equal budget.

    cd /work/main && PYTHONPATH=. python benchmarks/compare_local_global.py
"""
import argparse
import json
import os
import sys
import time

import keras
import numpy as np

import gloro_local as gl
from gloro_local.training import EpsilonSchedule, LearningRateSchedule

BOUNDS = ("local", "global", "gloro")
DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                            "shared", "data", "mnist")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="2C2F")
    p.add_argument("--epsilon", type=float, default=1.58,
                   help="test radius; eps_train = 1.1 * epsilon")
    p.add_argument("--extra_epsilons", default=None,
                   help="comma-separated further radii, each trained and evaluated on its "
                        "own (default: 0.3 for 2C2F, none otherwise; 'none' disables)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--limit_test", type=int, default=10000,
                   help="test points (the full MNIST test set has 10000)")
    p.add_argument("--pgd_steps", type=int, default=50)
    p.add_argument("--bound_points", type=int, default=1000,
                   help="points for the mean local bound statistics (certificates always "
                        "cover every test point)")
    p.add_argument("--power_iterations", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--end_lr", type=float, default=None,
                   help="if set, LearningRateSchedule decays lr to end_lr after half the "
                        "epochs (paper eq. 27)")
    p.add_argument("--bounds", default=",".join(BOUNDS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data_dir", default=os.path.normpath(DEFAULT_DATA))
    p.add_argument("--output", default="compare_local_global.json")
    p.add_argument("--save_dir", default=None,
                   help="if set, saves each trained model as "
                        "<save_dir>/<arch>_<bound>_eps<eps>.keras")
    p.add_argument("--verbose", type=int, default=2, help="keras fit verbosity")
    args = p.parse_args(argv)
    if args.extra_epsilons is None:
        args.extra_epsilons = [0.3] if args.arch.upper() == "2C2F" else []
    elif args.extra_epsilons.strip().lower() in ("", "none"):
        args.extra_epsilons = []
    else:
        args.extra_epsilons = [float(e) for e in args.extra_epsilons.split(",")]
    args.bounds = [b.strip() for b in args.bounds.split(",") if b.strip()]
    return args


def train_one(args, bound, epsilon, input_shape, num_classes):
    """Builds, compiles and fits one model; returns (model, seconds, last-epoch logs)."""
    keras.utils.set_random_seed(args.seed)  # same initial weights and data order per bound
    f = gl.architectures.get(args.arch, input_shape=input_shape, num_classes=num_classes,
                             seed=args.seed)
    model = gl.LocalGloroNet(f, epsilon, bound=bound,
                             power_iterations=args.power_iterations, seed=args.seed)
    model.compile(keras.optimizers.Adam(args.lr), loss="crossentropy")
    use_store = bound == "local"
    if use_store:
        model.attach_store(5000, seed=args.seed)
    train = gl.data.load("mnist", "train", batch_size=args.batch_size, shuffle=True,
                         with_index=use_store, data_dir=args.data_dir, seed=args.seed)
    callbacks = [EpsilonSchedule(1.1 * epsilon, max(args.epochs // 2, 0),
                                 eps_test=epsilon, shape="linear")]
    if args.end_lr is not None:
        callbacks.append(LearningRateSchedule(args.lr, args.end_lr, args.epochs // 2,
                                              args.epochs))
    begin = time.perf_counter()
    history = model.fit(train, epochs=args.epochs, callbacks=callbacks,
                        verbose=args.verbose)
    seconds = time.perf_counter() - begin
    return model, seconds, {k: float(v[-1]) for k, v in history.history.items()}


def run_epsilon(args, epsilon, x_test, y_test, input_shape, num_classes):
    rows = []
    for bound in args.bounds:
        print(f"\n=== {args.arch}  eps={epsilon}  bound={bound}: training "
              f"{args.epochs} epochs ===", flush=True)
        model, seconds, logs = train_one(args, bound, epsilon, input_shape, num_classes)
        if args.save_dir:
            os.makedirs(args.save_dir, exist_ok=True)
            path = os.path.join(args.save_dir, f"{args.arch}_{bound}_eps{epsilon}.keras")
            model.save(path)
            print(f"saved {path}", flush=True)
        begin = time.perf_counter()
        report = gl.evaluate(model, (x_test, y_test), epsilon, pgd_steps=args.pgd_steps,
                             lower_bound_points=0, progress=False, seed=args.seed,
                             bound_points=args.bound_points)
        s = report.summary
        rows.append(dict(bound=bound, epsilon=epsilon, clean=s["clean_accuracy"],
                         pgd=s["pgd_accuracy"], vra=s["vra_local"],
                         vra_global_bound=s["vra_global"],
                         mean_local_bound=s["mean_local_bound"],
                         mean_global_bound=s["mean_global_bound"],
                         median_local_over_global=s["median_local_over_global"],
                         not_converged=s["not_converged"], reasons=s["reasons"],
                         train_seconds=round(seconds, 1),
                         eval_seconds=round(time.perf_counter() - begin, 1),
                         final_train_logs=logs))
        print(f"done: clean {s['clean_accuracy']:.4f} PGD {s['pgd_accuracy']:.4f} "
              f"VRA {s['vra_local']:.4f} (global bound alone {s['vra_global']:.4f}); "
              f"train {seconds:.1f} s, eval {rows[-1]['eval_seconds']:.1f} s; "
              f"reasons {s['reasons']}; eval stages {s['seconds']}", flush=True)
    gloro = next((r["train_seconds"] for r in rows if r["bound"] == "gloro"), None)
    for r in rows:
        r["time_ratio_to_gloro"] = (round(r["train_seconds"] / gloro, 2)
                                    if gloro else None)
    return rows


NAMES = {"local": "Local-Lip (local bound)", "global": "global bound (box+ball)",
         "gloro": "GloRo (global, ball only)"}


def table(rows, arch, epochs, points):
    head = (f"| {'Method':<26} | Clean (%) | PGD (%) | Certified (%) | "
            f"mean local Lip | mean global Lip | train (s) | x GloRo |")
    lines = [f"MNIST {arch}, eps = {rows[0]['epsilon']}, {epochs} epochs on 5k images, "
             f"{points} test points", head,
             "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"]
    for r in rows:
        ratio = "-" if r["time_ratio_to_gloro"] is None else f"{r['time_ratio_to_gloro']:.2f}"
        lines.append(f"| {NAMES.get(r['bound'], r['bound']):<26} | {100 * r['clean']:9.2f} | "
                     f"{100 * r['pgd']:7.2f} | {100 * r['vra']:13.2f} | "
                     f"{r['mean_local_bound']:14.3f} | {r['mean_global_bound']:15.3f} | "
                     f"{r['train_seconds']:9.1f} | {ratio:>7} |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    x_test, y_test = gl.data.load_numpy("mnist", "test", args.data_dir, args.limit_test)
    x_train, y_train = gl.data.load_numpy("mnist", "train", args.data_dir)
    if len(y_train) != 5000:
        print(f"warning: expected the 5k training subset, found {len(y_train)} images",
              file=sys.stderr)
    input_shape, num_classes = x_test.shape[1:], int(y_train.max()) + 1
    results, tables = [], []
    for epsilon in [args.epsilon] + list(args.extra_epsilons):
        rows = run_epsilon(args, epsilon, x_test, y_test, input_shape, num_classes)
        results.extend(rows)
        tables.append(table(rows, args.arch, args.epochs, len(y_test)))
        print("\n" + tables[-1] + "\n", flush=True)
    print("\n\n".join(tables))
    payload = dict(arch=args.arch, epochs=args.epochs, batch_size=args.batch_size,
                   power_iterations=args.power_iterations, pgd_steps=args.pgd_steps,
                   lr=args.lr, end_lr=args.end_lr, seed=args.seed,
                   train_points=int(len(y_train)), test_points=int(len(y_test)),
                   eps_train_factor=1.1, eps_ramp_epochs=args.epochs // 2,
                   total_seconds=round(time.perf_counter() - start, 1), results=results)
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(payload, handle, indent=2)
    print(json.dumps(payload, default=lambda v: np.asarray(v).tolist()), flush=True)
    return payload


if __name__ == "__main__":
    main()
