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
accuracy than the global bound at equal budget. ``--bounds`` takes any l2 bound, e.g.
``local,local_layerwise`` to train the paper's local bound against the layer-wise one;
a model trained with a tighter local bound ('local_layerwise', 'local_relaxed', ...) is
certified with that bound (``gl.evaluate(radius=, boxes=)``).

``--equal_time`` adds a second budget, equal wall-clock training time: the local model is
trained first (``--epochs`` epochs, training time T); each other bound's per-epoch time
t_epoch is taken from its own equal-epoch run (fit seconds / ``--epochs``, so it includes
the first epoch's tracing), and it is trained again from scratch for
E = max(epochs, round(T / t_epoch)) epochs, with its epsilon ramp over the first E // 2
epochs and its learning-rate schedule over E epochs (the same rules as the equal-epoch
run, scaled to its own epoch count). When E == epochs the equal-epoch model is reused, not
retrained. (The JSON also gives, for information, the E that excludes the first epoch's
tracing: T = t_first + (E - 1) * mean(later epochs); on 3-epoch runs it is larger.) Both budgets appear in one table per radius (columns "epochs" and "train (s)")
and in the JSON (``budget`` = 'epochs' or 'time' per row).

``--local_kwargs`` passes a JSON object of extra keyword arguments to
``gl.LocalGloroNet`` for the local model only (they override the script's
``power_iterations`` and ``seed``; ``f``, ``epsilon`` and ``bound`` are refused); the
names are checked by constructing a LocalGloroNet before any training. LocalGloroNet
forwards names it does not declare to ``keras.Model``, which rejects unknown ones
(ValueError) but accepts its own (``name``, ``trainable``, ``dtype``, ...): the script
warns about those. ``--label`` names the local row in the table.

    cd /work/main && PYTHONPATH=. python benchmarks/compare_local_global.py
    PYTHONPATH=. python benchmarks/compare_local_global.py --equal_time
    PYTHONPATH=. python benchmarks/compare_local_global.py --bounds local,gloro \
        --local_kwargs '{"power_iterations": 1, "local_layers": [1, 2]}' --label "local, 1 it"
"""
import argparse
import inspect
import json
import os
import sys
import time

import keras
import numpy as np

import gloro_local as gl
from gloro_local.bounds.passes import LOCAL_BOUNDS
from gloro_local.bounds.strategies import get_bound
from gloro_local.training import EpsilonSchedule, LearningRateSchedule

BOUNDS = ("local", "global", "gloro")
# a model trained with a tighter local bound is certified with that bound
CERTIFIED_WITH = {name: dict(radius=radius, boxes=boxes)
                  for (radius, boxes), name in LOCAL_BOUNDS.items()}
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
                        "<save_dir>/<arch>_<bound>_eps<eps>.keras (equal-time models: "
                        "..._eps<eps>_<E>ep.keras; a local model with --local_kwargs: "
                        "..._<label>.keras)")
    p.add_argument("--verbose", type=int, default=2, help="keras fit verbosity")
    p.add_argument("--equal_time", action="store_true",
                   help="also train every non-local bound for as many epochs as fit in the "
                        "local model's training time: E = max(epochs, round(T / t_epoch))")
    p.add_argument("--local_kwargs", default=None,
                   help="JSON object of extra keyword arguments of gl.LocalGloroNet for the "
                        "local model only, e.g. '{\"power_iterations\": 1}'")
    p.add_argument("--label", default=None, help="name of the local row in the table")
    p.add_argument("--no_store", action="store_true",
                   help="no per-sample store: the local bound's power iterations start "
                        "from fresh random vectors at every step (the paper's Table 1 "
                        "comparison)")
    args = p.parse_args(argv)
    try:
        args.local_kwargs = json.loads(args.local_kwargs) if args.local_kwargs else {}
    except json.JSONDecodeError as error:
        p.error(f"--local_kwargs is not valid JSON: {error}")
    if not isinstance(args.local_kwargs, dict):
        p.error(f"--local_kwargs must be a JSON object, got {args.local_kwargs!r}")
    reserved = sorted(set(args.local_kwargs) & {"f", "epsilon", "bound"})
    if reserved:
        p.error(f"--local_kwargs may not set {reserved}: the script sets them")
    if args.label is None:
        args.label = NAMES["local"] + (
            " " + json.dumps(args.local_kwargs, separators=(",", ":"))
            if args.local_kwargs else "")
    if args.extra_epsilons is None:
        args.extra_epsilons = [0.3] if args.arch.upper() == "2C2F" else []
    elif args.extra_epsilons.strip().lower() in ("", "none"):
        args.extra_epsilons = []
    else:
        args.extra_epsilons = [float(e) for e in args.extra_epsilons.split(",")]
    args.bounds = [b.strip() for b in args.bounds.split(",") if b.strip()]
    if args.equal_time:
        if "local" not in args.bounds:
            p.error("--equal_time needs 'local' in --bounds (its training time is the budget)")
        args.bounds = ["local"] + [b for b in args.bounds if b != "local"]  # local first
    return args


def model_kwargs(args, bound):
    """Keyword arguments of gl.LocalGloroNet besides f and epsilon for ``bound``."""
    kwargs = dict(bound=bound, power_iterations=args.power_iterations, seed=args.seed)
    if bound == "local":
        kwargs.update(args.local_kwargs)
    return kwargs


def check_local_kwargs(args, input_shape, num_classes):
    """Builds the local model once before any training, so that LocalGloroNet (and
    keras.Model, to which it forwards names it does not declare) rejects a bad
    --local_kwargs at once; warns about names that only keras.Model accepts."""
    if not args.local_kwargs:
        return
    own = set(inspect.signature(gl.LocalGloroNet.__init__).parameters)
    passed_on = sorted(set(args.local_kwargs) - own)
    f = gl.architectures.get(args.arch, input_shape=input_shape, num_classes=num_classes,
                             seed=args.seed)
    try:
        gl.LocalGloroNet(f, args.epsilon, **model_kwargs(args, "local"))
    except (TypeError, ValueError) as error:
        sys.exit(f"--local_kwargs rejected by gl.LocalGloroNet: {error}")
    if passed_on:
        print(f"warning: --local_kwargs {passed_on} are not LocalGloroNet parameters; "
              "LocalGloroNet passes them on to keras.Model, which accepted them",
              file=sys.stderr, flush=True)


class EpochTimer(keras.callbacks.Callback):
    """Wall seconds of every epoch (on_epoch_begin to on_epoch_end, after the epoch-end
    ConvergeGlobalNorms, which LocalGloroNet.fit puts first)."""

    def __init__(self):
        super().__init__()
        self.seconds, self._begin = [], None

    def on_epoch_begin(self, epoch, logs=None):
        self._begin = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(round(time.perf_counter() - self._begin, 2))


def train_one(args, bound, epsilon, epochs, input_shape, num_classes):
    """Builds, compiles and fits one model for ``epochs`` epochs (eps ramp over the first
    epochs // 2, lr schedule over all of them); returns (model, seconds, last-epoch logs,
    per-epoch seconds)."""
    keras.utils.set_random_seed(args.seed)  # same initial weights and data order per bound
    f = gl.architectures.get(args.arch, input_shape=input_shape, num_classes=num_classes,
                             seed=args.seed)
    model = gl.LocalGloroNet(f, epsilon, **model_kwargs(args, bound))
    model.compile(keras.optimizers.Adam(args.lr), loss="crossentropy")
    use_store = get_bound(bound).per_sample_norms and not args.no_store
    if use_store:
        model.attach_store(5000)
    train = gl.data.load("mnist", "train", batch_size=args.batch_size, shuffle=True,
                         with_index=use_store, data_dir=args.data_dir, seed=args.seed)
    timer = EpochTimer()
    callbacks = [EpsilonSchedule(1.1 * epsilon, max(epochs // 2, 0),
                                 eps_test=epsilon, shape="linear")]
    if args.end_lr is not None:
        callbacks.append(LearningRateSchedule(args.lr, args.end_lr, epochs // 2, epochs))
    callbacks.append(timer)
    begin = time.perf_counter()
    history = model.fit(train, epochs=epochs, callbacks=callbacks, verbose=args.verbose)
    seconds = time.perf_counter() - begin
    return (model, seconds, {k: float(v[-1]) for k, v in history.history.items()},
            timer.seconds)


def fit_and_evaluate(args, bound, epsilon, epochs, budget, x_test, y_test, input_shape,
                     num_classes):
    """Trains ``bound`` for ``epochs`` epochs and evaluates it; returns its result row."""
    print(f"\n=== {args.arch}  eps={epsilon}  bound={bound}: training {epochs} epochs "
          f"(equal {'time' if budget == 'time' else 'epochs'}) ===", flush=True)
    model, seconds, logs, epoch_seconds = train_one(args, bound, epsilon, epochs,
                                                    input_shape, num_classes)
    if args.save_dir:
        os.makedirs(args.save_dir, exist_ok=True)
        suffix = "" if epochs == args.epochs else f"_{epochs}ep"
        if bound == "local" and args.local_kwargs:
            suffix += "_" + "".join(c if c.isalnum() else "-" for c in args.label)
        path = os.path.join(args.save_dir, f"{args.arch}_{bound}_eps{epsilon}{suffix}.keras")
        model.save(path)
        print(f"saved {path}", flush=True)
    begin = time.perf_counter()
    report = gl.evaluate(model, (x_test, y_test), epsilon, pgd_steps=args.pgd_steps,
                         lower_bound_points=0, radius_points=0, progress=False,
                         seed=args.seed, bound_points=args.bound_points,
                         **CERTIFIED_WITH.get(bound, {}))
    s = report.summary
    row = dict(bound=bound, label=args.label if bound == "local" else NAMES.get(bound, bound),
               budget=budget, epochs=epochs, eps_ramp_epochs=epochs // 2, epsilon=epsilon,
               clean=s["clean_accuracy"], pgd=s["pgd_accuracy"], vra=s["vra_local"],
               vra_global_bound=s["vra_global"], mean_local_bound=s["mean_local_bound"],
               mean_global_bound=s["mean_global_bound"],
               median_local_over_global=s["median_local_over_global"],
               not_converged=s["not_converged"], reasons=s["reasons"],
               train_seconds=round(seconds, 1), epoch_seconds=epoch_seconds,
               eval_seconds=round(time.perf_counter() - begin, 1), final_train_logs=logs)
    if bound == "local":
        row["model_kwargs"] = model_kwargs(args, "local")
    print(f"done: clean {s['clean_accuracy']:.4f} PGD {s['pgd_accuracy']:.4f} "
          f"VRA {s['vra_local']:.4f} (global bound alone {s['vra_global']:.4f}); "
          f"train {seconds:.1f} s (epochs {epoch_seconds}), eval {row['eval_seconds']:.1f} s; "
          f"reasons {s['reasons']}; eval stages {s['seconds']}", flush=True)
    return row, seconds


def run_epsilon(args, epsilon, x_test, y_test, input_shape, num_classes):
    """Equal-epoch rows for every bound, then (``--equal_time``) the equal-time rows.
    Returns (rows, equal-time summary or None)."""
    rows, seconds = [], {}
    common = (x_test, y_test, input_shape, num_classes)
    for bound in args.bounds:
        row, seconds[bound] = fit_and_evaluate(args, bound, epsilon, args.epochs, "epochs",
                                               *common)
        rows.append(row)
    summary = None
    if args.equal_time:
        reference = seconds["local"]
        rows[0]["time_reference"] = True
        summary = dict(reference_bound="local", reference_seconds=round(reference, 1),
                       per_epoch_seconds={}, epochs={}, reused={},
                       epochs_if_first_epoch_excluded={})
        for bound in args.bounds[1:]:
            base = next(r for r in rows if r["bound"] == bound and r["budget"] == "epochs")
            t_epoch = seconds[bound] / args.epochs
            epochs = max(args.epochs, round(reference / t_epoch))
            summary["per_epoch_seconds"][bound] = round(t_epoch, 2)
            summary["epochs"][bound] = epochs
            summary["reused"][bound] = epochs == args.epochs
            # For information only (not used): the first epoch carries the tracing, so
            # t_epoch overstates the later epochs' cost; solving
            # T = t_first + (E - 1) * mean(later epochs) gives this E instead.
            first, later = base["epoch_seconds"][0], base["epoch_seconds"][1:]
            steady = (max(args.epochs, round(1 + (reference - first) * len(later) / sum(later)))
                      if later and sum(later) > 0 else None)
            summary["epochs_if_first_epoch_excluded"][bound] = steady
            print(f"\nequal time: local trained {reference:.1f} s; {bound} took "
                  f"{t_epoch:.2f} s per epoch over its first {args.epochs} (epochs "
                  f"{base['epoch_seconds']}) -> E = max({args.epochs}, "
                  f"round({reference / t_epoch:.2f})) = {epochs} (first epoch excluded: "
                  f"{steady})", flush=True)
            if epochs == args.epochs:  # the equal-epoch model is the equal-time model
                row = dict(base, budget="time", reused_equal_epochs_run=True)
                print(f"{bound}: E = {epochs} = --epochs, reusing the equal-epoch model",
                      flush=True)
            else:
                row, _ = fit_and_evaluate(args, bound, epsilon, epochs, "time", *common)
            rows.append(row)
    gloro = next((r["train_seconds"] for r in rows
                  if r["bound"] == "gloro" and r["budget"] == "epochs"), None)
    for r in rows:
        r["time_ratio_to_gloro"] = (round(r["train_seconds"] / gloro, 2)
                                    if gloro else None)
    return rows, summary


NAMES = {"local": "Local-Lip (local bound)", "global": "global bound (box+ball)",
         "gloro": "GloRo (global, ball only)"}


def table(rows, arch, points, equal_time):
    """One table per radius; with --equal_time a Budget column tells the equal-epoch rows
    (the local row is both budgets' reference) from the equal-time rows."""
    width = max([26] + [len(r["label"]) for r in rows])
    budget = {"epochs": "equal epochs", "time": "equal time"}
    head = (f"| {'Method':<{width}} | " + ("Budget       | " if equal_time else "") +
            "epochs | Clean (%) | PGD (%) | Certified (%) | mean local Lip | "
            "mean global Lip | train (s) | x GloRo |")
    epochs = sorted({r["epochs"] for r in rows})
    lines = [f"MNIST {arch}, eps = {rows[0]['epsilon']}, "
             f"{'/'.join(map(str, epochs))} epochs on 5k images, {points} test points", head,
             "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"]
    for r in rows:
        ratio = "-" if r["time_ratio_to_gloro"] is None else f"{r['time_ratio_to_gloro']:.2f}"
        kind = "both (ref.)" if r.get("time_reference") else budget[r["budget"]]
        if r.get("reused_equal_epochs_run"):
            kind += "*"
        lines.append(f"| {r['label']:<{width}} | " +
                     (f"{kind:<12} | " if equal_time else "") +
                     f"{r['epochs']:6d} | {100 * r['clean']:9.2f} | "
                     f"{100 * r['pgd']:7.2f} | {100 * r['vra']:13.2f} | "
                     f"{r['mean_local_bound']:14.3f} | {r['mean_global_bound']:15.3f} | "
                     f"{r['train_seconds']:9.1f} | {ratio:>7} |")
    if any(r.get("reused_equal_epochs_run") for r in rows):
        lines.append("* E = --epochs: the equal-epoch model, not retrained")
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
    check_local_kwargs(args, input_shape, num_classes)
    results, tables, equal_time = [], [], []
    for epsilon in [args.epsilon] + list(args.extra_epsilons):
        rows, summary = run_epsilon(args, epsilon, x_test, y_test, input_shape, num_classes)
        results.extend(rows)
        if summary:
            equal_time.append(dict(epsilon=epsilon, **summary))
        tables.append(table(rows, args.arch, len(y_test), args.equal_time))
        print("\n" + tables[-1] + "\n", flush=True)
    print("\n\n".join(tables))
    payload = dict(arch=args.arch, epochs=args.epochs, batch_size=args.batch_size,
                   power_iterations=args.power_iterations, pgd_steps=args.pgd_steps,
                   lr=args.lr, end_lr=args.end_lr, seed=args.seed,
                   train_points=int(len(y_train)), test_points=int(len(y_test)),
                   eps_train_factor=1.1, eps_ramp_epochs=args.epochs // 2,
                   label=args.label, local_kwargs=args.local_kwargs,
                   equal_time=equal_time or None,
                   total_seconds=round(time.perf_counter() - start, 1), results=results)
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(payload, handle, indent=2)
    print(json.dumps(payload, default=lambda v: np.asarray(v).tolist()), flush=True)
    return payload


if __name__ == "__main__":
    main()
