"""How far the sound global norms sit above converged power-iteration estimates, and the
VRA this costs.

Certificates use ``sound_global_norms`` (Dense: exact float64 top singular value; Conv2D:
circular-embedding / window-count bound; each times 1 + 1e-5, rounded up to float32)
instead of power-iteration estimates of the global norms. For each model (``--models``,
loaded with ``gl.load_model``; without paths a 2C2F ReLU-theta is trained here for a few
epochs on the 5k MNIST training subset, as ``bench_certify.py`` does), on the first
``--limit`` MNIST test images (../shared/data/mnist, else the embedded sample), this
prints

  * per hidden linear layer: the converged power-iteration estimate of ||W_l|| (from the
    fixed start of ``top_singular_vectors``, ``StoppingRule(50000, 1e-7)``, sigma in
    float32), a float64 reference (Dense: exact SVD; every layer: ARPACK on the layer's
    float64 operator, unless ``--no_reference``), the sound bound, and sound / estimate;
  * VRA of the real pipeline (``model.certify``) and of the same pipeline with the
    converged estimates substituted for the sound norms (``certify_checked`` with
    ``CertificateGlobals(estimates, vectors)``, the same start vectors), their difference
    in points, the reasons, and the VRA of the global stage alone both ways;

then one final JSON line (also written to ``--output`` if given).

Usage:
    python benchmarks/sound_norm_gap.py --models a.keras b.keras --limit 10000 \\
        [--epsilon 1.58] [--output gap.json]
    python benchmarks/sound_norm_gap.py            # trains a quick 2C2F at eps 0.3

Without ``--epsilon`` each loaded model is certified at its own ``model.epsilon`` (the
test radius the training schedule left it at).
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing the package
import gloro_local as gl  # noqa: E402
from gloro_local import LocalGloroNet, architectures  # noqa: E402
from gloro_local.bounds import (CertificateGlobals, MaskedOperator, StoppingRule,  # noqa: E402
                                bound_pass, certificate_globals, fixed_start, logits_pass,
                                power_iteration, sound_global_norms)
from gloro_local.layers.dense import DenseSeam  # noqa: E402
from gloro_local.models.certify import certify_checked, check_inputs  # noqa: E402

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                            "shared", "data", "mnist")
ESTIMATE_RULE = StoppingRule(50000, 1e-7)


def arguments(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=[],
                   help="saved .keras models (none: train a quick 2C2F)")
    p.add_argument("--limit", type=int, default=1000, help="MNIST test points")
    p.add_argument("--epsilon", type=float, default=None,
                   help="radius (default: each model's own epsilon; 0.3 for the quick "
                        "model)")
    p.add_argument("--epochs", type=int, default=3, help="epochs of the quick model")
    p.add_argument("--batch_size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the start vectors, of PGD and of the quick model")
    p.add_argument("--no_reference", action="store_true",
                   help="skip the float64 ARPACK reference norm of every layer")
    p.add_argument("--data_dir", default=os.path.normpath(DEFAULT_DATA))
    p.add_argument("--output", default=None, help="also write the JSON here")
    return p.parse_args(argv)


def train_quick(data_dir, epsilon, epochs, seed):
    keras.utils.set_random_seed(seed)
    x, y = gl.data.load_numpy("mnist", "train", data_dir=data_dir)
    order = np.random.default_rng(seed).permutation(len(y))  # the 5k subset is sorted
    model = LocalGloroNet(architectures.cnn_2C2F(activation="relu_theta", seed=seed),
                          epsilon)
    model.compile(keras.optimizers.Adam(1e-3), loss="crossentropy")
    model.fit(x[order], y[order], batch_size=128, epochs=epochs, verbose=0)
    return model


def converged_estimates(network, seed):
    """Per hidden layer (estimate, iterations, converged, u): power iteration of A_l from
    the fixed start ``top_singular_vectors`` uses, until ``ESTIMATE_RULE`` holds; the
    estimate is ``MaskedOperator.sigma(u)`` (float32)."""
    out = []
    for k, (seam, shape) in enumerate(network.hidden_layers()):
        operator = MaskedOperator(seam, shape)
        run = tf.function(lambda op=operator, s=shape, k=k: power_iteration(
            op, fixed_start(s, (seed, k)), ESTIMATE_RULE))
        result = run()
        out.append((float(operator.sigma(result.u).numpy()[0]),
                    int(result.iterations.numpy()[0]), bool(result.converged.numpy()[0]),
                    result.u))
    return out


def reference_norm(seam, shape):
    """||A_l||_2 in float64 by ARPACK (scipy ``svds``) on the layer's own linear map and
    its adjoint, run in float64."""
    from scipy.sparse.linalg import LinearOperator, svds
    n_in = int(np.prod(shape))
    out_shape = tuple(seam.linear(tf.zeros((1,) + tuple(shape), tf.float64)).shape[1:])
    n_out = int(np.prod(out_shape))

    def matvec(v):
        u = tf.constant(np.asarray(v, np.float64).reshape((1,) + tuple(shape)))
        return seam.linear(u).numpy().reshape(-1)

    def rmatvec(w):
        v = tf.constant(np.asarray(w, np.float64).reshape((1,) + out_shape))
        return seam.linear_transpose(v, shape).numpy().reshape(-1)

    operator = LinearOperator((n_out, n_in), matvec=matvec, rmatvec=rmatvec,
                              dtype=np.float64)
    return float(svds(operator, k=1, return_singular_vectors=False, tol=0,
                      random_state=0, solver="arpack")[0])


def global_stage(network, x, y, epsilon, sigmas, vectors, batch_size):
    """VRA of the box-and-ball bound with the global norms ``sigmas`` alone."""
    certified = []
    for begin in range(0, x.shape[0], batch_size):
        xb, yb = x[begin:begin + batch_size], y[begin:begin + batch_size]
        prediction = np.argmax(logits_pass(network)(xb), 1).astype(np.int32)
        out = bound_pass(network, "global")(xb, epsilon, sigmas, prediction, vectors)
        top2 = np.sort(out["logits"], 1)[:, -2:]
        certified.append((prediction == yb) & (top2[:, 1] > top2[:, 0])
                         & (top2[:, 1] > out["bottom"]))
    return float(np.concatenate(certified).mean())


def layer_rows(network, estimates, sound, reference):
    rows = []
    for k, ((seam, shape), (estimate, iterations, converged, _)) in enumerate(
            zip(network.hidden_layers(), estimates)):
        exact = None
        if isinstance(seam, DenseSeam):
            exact = float(np.linalg.svd(np.asarray(seam.kernel.numpy(), np.float64),
                                        compute_uv=False)[0])
        ref = reference_norm(seam, shape) if reference else None
        name = network.layers[network.hidden[k]].name
        rows.append(dict(layer=k, name=name, type=type(seam).__name__,
                         input_shape=list(shape), estimate=estimate,
                         estimate_iterations=iterations, estimate_converged=converged,
                         dense_svd_f64=exact, reference_f64=ref, sound=sound[k],
                         ratio=sound[k] / estimate,
                         sound_over_reference=None if ref is None else sound[k] / ref,
                         estimate_over_reference=None if ref is None else estimate / ref))
    return rows


def study(model, source, x, y, epsilon, args):
    network = model.network
    x, y = check_inputs(model, x, y)
    begin = time.perf_counter()
    estimates = converged_estimates(network, args.seed)
    estimate_seconds = time.perf_counter() - begin
    sound = sound_global_norms(network)
    layers = layer_rows(network, estimates, sound, not args.no_reference)
    real_globals = certificate_globals(network, args.seed)
    substituted = CertificateGlobals([e for e, _, _, _ in estimates], real_globals.vectors)

    model.certify(x[:32], y[:32], epsilon=epsilon, progress=False)  # warm-up: tracing
    begin = time.perf_counter()
    cert_sound = model.certify(x, y, epsilon=epsilon, batch_size=args.batch_size,
                               progress=False, seed=args.seed)
    sound_seconds = time.perf_counter() - begin
    begin = time.perf_counter()
    cert_estimate = certify_checked(model, x, y, epsilon, substituted, StoppingRule(),
                                    batch_size=args.batch_size, progress=False,
                                    seed=args.seed)
    estimate_cert_seconds = time.perf_counter() - begin
    vra_sound, vra_estimate = (cert_sound.certified_accuracy(y),
                               cert_estimate.certified_accuracy(y))
    only_estimate = int(np.sum(cert_estimate.certified & ~cert_sound.certified))
    only_sound = int(np.sum(cert_sound.certified & ~cert_estimate.certified))
    return dict(
        model=source, points=int(len(y)), epsilon=epsilon, layers=layers,
        product_estimate=float(np.prod([e for e, _, _, _ in estimates])),
        product_sound=float(np.prod(sound)),
        vra_sound=vra_sound, vra_estimate=vra_estimate,
        vra_difference_points=round(100 * (vra_sound - vra_estimate), 4),
        certified_only_with_estimate=only_estimate, certified_only_with_sound=only_sound,
        reasons_sound=cert_sound.counts(), reasons_estimate=cert_estimate.counts(),
        vra_global_stage_sound=global_stage(network, x, y, epsilon, sound,
                                            real_globals.vectors, args.batch_size),
        vra_global_stage_estimate=global_stage(network, x, y, epsilon, substituted.sigmas,
                                               real_globals.vectors, args.batch_size),
        seconds=dict(estimates=round(estimate_seconds, 1),
                     certify_sound=round(sound_seconds, 1),
                     certify_estimate=round(estimate_cert_seconds, 1)))


def _fmt(value, width, spec):
    return "-".rjust(width) if value is None else format(value, f"{width}{spec}")


def _minus_one(value):
    return None if value is None else value - 1


def print_result(r):
    print(f"\nmodel: {r['model']}; {r['points']} MNIST test points; eps {r['epsilon']}")
    head = (f"{'layer':<6}{'type':<12}{'input':<12}{'estimate':>12}{'iters':>8}"
            f"{'dense SVD64':>13}{'ref f64':>13}{'sound':>13}{'sound/est-1':>13}"
            f"{'sound/ref-1':>13}{'est/ref-1':>12}")
    print(head)
    print("-" * len(head))
    for row in r["layers"]:
        iters = f"{row['estimate_iterations']}{'' if row['estimate_converged'] else '*'}"
        print(f"{row['layer']:<6}{row['type']:<12}{'x'.join(map(str, row['input_shape'])):<12}"
              f"{row['estimate']:>12.7f}{iters:>8}"
              f"{_fmt(row['dense_svd_f64'], 13, '.7f')}{_fmt(row['reference_f64'], 13, '.7f')}"
              f"{row['sound']:>13.7f}{row['ratio'] - 1:>13.3e}"
              f"{_fmt(_minus_one(row['sound_over_reference']), 13, '.3e')}"
              f"{_fmt(_minus_one(row['estimate_over_reference']), 12, '.2e')}")
    print("(* the estimate's iteration stopped at max_iterations without meeting tol 1e-7)")
    print(f"product of norms: estimate {r['product_estimate']:.6f}, sound "
          f"{r['product_sound']:.6f} (ratio {r['product_sound'] / r['product_estimate']:.7f})")
    print(f"{'certificate globals':<28}{'VRA':>8}{'global stage':>14}  reasons")
    print(f"{'sound (model.certify)':<28}{r['vra_sound']:>8.4f}"
          f"{r['vra_global_stage_sound']:>14.4f}  {r['reasons_sound']}")
    print(f"{'converged estimates':<28}{r['vra_estimate']:>8.4f}"
          f"{r['vra_global_stage_estimate']:>14.4f}  {r['reasons_estimate']}")
    print(f"VRA sound - estimate: {r['vra_difference_points']:+.2f} points; certified only "
          f"with the estimates: {r['certified_only_with_estimate']}, only with the sound "
          f"norms: {r['certified_only_with_sound']}; seconds {r['seconds']}")


def main(argv=None):
    args = arguments(argv)
    data_dir = args.data_dir if os.path.isdir(args.data_dir) else None
    x, y = gl.data.load_numpy("mnist", "test", data_dir=data_dir, limit=args.limit)
    sources = list(args.models) or [None]
    results = []
    for source in sources:
        if source is None:
            epsilon = 0.3 if args.epsilon is None else args.epsilon
            begin = time.perf_counter()
            model = train_quick(data_dir, epsilon, args.epochs, args.seed)
            name = (f"2C2F relu_theta, {args.epochs} epochs on the MNIST training subset "
                    f"({time.perf_counter() - begin:.0f} s)")
        else:
            model, name = gl.load_model(source), source
            epsilon = (float(model.epsilon.numpy()) if args.epsilon is None
                       else args.epsilon)
        epsilon = float(np.float32(epsilon))
        results.append(study(model, name, x, y, round(epsilon, 6), args))
        print_result(results[-1])
    payload = dict(data=str(data_dir or "embedded sample"), limit=args.limit,
                   estimate_rule=dict(ESTIMATE_RULE._asdict()), results=results)
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(payload, handle, indent=2)
    print(json.dumps(payload), flush=True)
    return payload


if __name__ == "__main__":
    main()
