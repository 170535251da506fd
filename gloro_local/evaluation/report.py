"""``evaluate``: clean, PGD and certified accuracy of a model, with bound statistics."""
import dataclasses
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Optional

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from gloro_local.attacks import pgd_l2, pgd_linf
from gloro_local.bounds import StoppingRule, bound_pass, certificate_globals
from gloro_local.bounds.passes import local_bound
from gloro_local.evaluation.lower_bound import LipschitzGap, lipschitz_gap
from gloro_local.layers import ActivationSeam
from gloro_local.models import Certificate, LinfCertifiedNet
from gloro_local.models.certified_radius import certified_radius_checked, check_search
from gloro_local.models.certify import certificate_epsilon, certify_checked, check_inputs

RADIUS_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
ATTACKS = {"l2": pgd_l2, "linf": pgd_linf}
# The stages of an l2 evaluation that an l-infinity model does not have, and why.
LINF_SKIPPED = {
    "global bound": "no Lipschitz bound: the relaxations bound the margins directly",
    "local bounds": "no Lipschitz bound: the relaxations bound the margins directly",
    "lower bound": "the Lipschitz lower-bound ratio compares l2 Lipschitz bounds",
    "radius": "the certified radius searches the l2 bounds of a LocalGloroNet",
}


@dataclass
class Report:
    """What ``evaluate`` measured.

    summary: JSON-ready dict (norm, accuracies, reasons, bound statistics, seconds per
    stage; for an l-infinity model the relaxations tried and, under 'skipped', the l2
    stages not run with the reason).
    certificate: the full certification pipeline's ``Certificate``; its ``radius`` holds
    the certified radius of the first ``radius_points`` points (nan after them).
    local_lipschitz (M,): prod_l sigma_l(x), converged, on the first M = ``bound_points``
    points; global_lipschitz (B,): prod_l ||W_l||; iterations (M, local layers)
    power-iteration steps to converge; varying (M, activations) fraction of neurons that
    may move;
    gap: ``LipschitzGap`` of the first points (None when not computed).
    """

    summary: dict
    certificate: Certificate
    local_lipschitz: np.ndarray
    global_lipschitz: np.ndarray
    iterations: np.ndarray
    varying: np.ndarray
    gap: Optional[LipschitzGap]

    def table(self):
        """The summary as aligned text lines."""
        s = self.summary
        linf = s.get("norm") == "linf"
        pipeline = ("linf relaxations" if linf else "local") + ", full pipeline"
        rows = [("norm", s.get("norm", "l2")), ("points", s["points"]),
                ("epsilon", s["epsilon"]), ("clean accuracy", s["clean_accuracy"]),
                (f"PGD{'-linf' if linf else ''} accuracy", s["pgd_accuracy"]),
                (f"certified accuracy ({pipeline})", s["vra_local"]),
                ("certified accuracy (global bound alone)", s["vra_global"]),
                ("mean local bound", s.get("mean_local_bound")),
                ("mean global bound", s.get("mean_global_bound")),
                ("points not converged", s.get("not_converged"))]
        rows = [(name, value) for name, value in rows if value is not None]
        rows += [(f"varying neurons, {name}", value)
                 for name, value in s.get("varying_fraction", {}).items()]
        rows += [(f"mean iterations, {name}", value)
                 for name, value in s.get("mean_iterations", {}).items()]
        if s.get("radius"):
            rows += [(f"{stat} certified radius ({s['radius']['points']} pts)",
                      s["radius"][stat]) for stat in ("mean", "median")]
        if s.get("lower_bound"):
            rows.append((f"median upper/lower Lipschitz ({s['lower_bound']['points']} pts)",
                         s["lower_bound"]["median_ratio"]))
        rows += [(f"reason: {reason}", count) for reason, count in s["reasons"].items()]
        rows += [(f"seconds: {stage}", value) for stage, value in s["seconds"].items()]
        rows += [(f"skipped: {stage}", note) for stage, note in s.get("skipped", {}).items()]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {_fmt(value)}" for name, value in rows)

    def save_json(self, path):
        with open(path, "w") as f:
            json.dump(self.summary, f, indent=2)


def _fmt(value):
    return f"{value:.4f}" if isinstance(value, float) else str(value)


@contextmanager
def _timed(seconds, stage):
    start = time.perf_counter()
    yield
    seconds[stage] = round(time.perf_counter() - start, 3)


def _arrays(data):
    """(x, y) numpy arrays from a pair of arrays or a dataset of (x, y) batches (an
    ``(x, index)`` input is accepted too); ValueError when there is no example."""
    if isinstance(data, tf.data.Dataset):
        xs, ys = [], []
        for x, y in data.as_numpy_iterator():
            xs.append(x[0] if isinstance(x, tuple) else x)
            ys.append(y)
        x, y = (np.concatenate(xs), np.concatenate(ys)) if xs else (np.zeros(0), None)
    else:
        x, y = (np.asarray(part) for part in data)
    if x.shape[0] == 0:
        raise ValueError("evaluate needs at least one labelled example. Received: data "
                         "with 0 examples.")
    return x, y


def _batches(n, batch_size, desc, progress):
    return tqdm(range(0, n, batch_size), desc=desc, disable=not progress, unit="batch")


def pgd_accuracy(classifier, x, y, epsilon, steps=100, restarts=1, clip=(0.0, 1.0),
                 batch_size=256, progress=False, seed=0, norm="l2"):
    """(accuracy, robust): the fraction of points classified correctly and not broken by
    ``pgd_l2`` (``norm='l2'``) or ``pgd_linf`` (``norm='linf'``) with ``steps``,
    ``restarts``, pixels clipped to ``clip``, and the (B,) mask."""
    if norm not in ATTACKS:
        raise ValueError(f"norm must be one of {tuple(ATTACKS)}. Received: norm={norm!r}")
    attack = ATTACKS[norm]
    broken = np.concatenate([
        attack(classifier, x[b:b + batch_size], y[b:b + batch_size], epsilon, steps=steps,
               restarts=restarts, clip=clip, seed=seed + b)[1].numpy()
        for b in _batches(x.shape[0], batch_size, "pgd", progress)])
    correct = np.argmax(_logits(classifier, x, batch_size), 1) == y
    robust = correct & ~broken
    return float(robust.mean()), robust


def _logits(classifier, x, batch_size):
    return np.concatenate([np.asarray(classifier(x[b:b + batch_size]))
                           for b in range(0, x.shape[0], batch_size)])


def evaluate(model, data, epsilon=None, pgd_steps=100, restarts=1, tol=1e-4,
             max_iterations=2000, batch_size=256, lower_bound_points=100,
             clip=(0.0, 1.0), progress=True, seed=None, bound_points=None, global_bound=True,
             radius_points=100, radius_rtol=1e-2, radius="global", boxes="interval"):
    """Evaluates ``model`` on labelled ``data`` at radius ``epsilon`` (default
    ``model.epsilon``). Stages, each timed; the sound global norms and top singular
    vectors (``certificate_globals``) are computed once and shared by every stage:

    clean: accuracy of argmax z. pgd: ``pgd_accuracy`` (``pgd_steps`` steps, ``restarts``,
    pixels clipped to ``clip``). certify: ``certify`` (global bound, PGD, converged
    local bound with the ``StoppingRule(max_iterations, tol)``) ->
    VRA(local). global bound (``global_bound``): VRA of the box-and-ball bound with the
    global norms alone, r = eps prod ||W_l||. local bounds: the converged local bound on
    the first ``bound_points`` points (None: every point; 0 skips the stage):
    prod sigma_l(x), iterations per layer, varying fractions. lower bound:
    ``lipschitz_gap`` on the first ``lower_bound_points`` points (0 skips it). radius:
    ``certified_radius`` with the 'local' bound (the largest eps that ``certify`` would
    certify, to a relative ``radius_rtol``; 0 for wrong and tied points) on the first
    ``radius_points`` points (None: every point; 0 skips it): summary['radius'] holds
    its mean, median, quantiles and values. ``radius`` and ``boxes`` choose the local bound
    of the certify and local-bounds stages as ``certify`` does (``local_bound``; default
    the paper's 'local'); summary['local_bound'] names it. The certified radius always
    searches the paper's 'local' bound.

    A ``LinfCertifiedNet`` is evaluated by ``evaluate_linf`` (PGD-linf, ``model.certify``
    with all its relaxations; the l2 stages are skipped with a note in the summary).

    Returns:
        a ``Report``.

    Raises:
        ValueError for data with no example, bad inputs, labels or epsilon.
    """
    if isinstance(model, LinfCertifiedNet):
        return evaluate_linf(model, data, epsilon, pgd_steps=pgd_steps, restarts=restarts,
                             batch_size=batch_size, clip=clip, progress=progress, seed=seed)
    epsilon = certificate_epsilon(model, epsilon)
    rule = StoppingRule(int(max_iterations), tol).check()
    check_search("local", radius_rtol, 1)
    local_name = local_bound(radius, boxes)
    seed = model.seed if seed is None else int(seed)
    x, y = check_inputs(model, *_arrays(data))
    n, seconds = x.shape[0], {}
    globals_ = certificate_globals(model.network, seed)
    with _timed(seconds, "clean"):
        logits = _logits(model.f, x, batch_size)
        prediction = np.argmax(logits, 1)
        correct = prediction == y
    with _timed(seconds, "pgd"):
        pgd, _ = pgd_accuracy(model.f, x, y, epsilon, pgd_steps, restarts, clip, batch_size,
                              progress, seed)
    with _timed(seconds, "certify"):
        certificate = certify_checked(model, x, y, epsilon, globals_, rule,
                                      batch_size=batch_size, progress=progress, seed=seed,
                                      local=local_name)
    vra_global = None
    if global_bound:
        with _timed(seconds, "global bound"):
            top2 = np.sort(logits, 1)[:, -2:]
            bottom = _per_batch(bound_pass(model.network, "global"), x, epsilon, globals_,
                                prediction, batch_size, "global bound", progress)["bottom"]
            vra_global = float((correct & (top2[:, 1] > top2[:, 0])
                                & (top2[:, 1] > bottom)).mean())
    m = n if bound_points is None else min(int(bound_points), n)
    local = None
    if m:
        with _timed(seconds, "local bounds"):
            local = _per_batch(bound_pass(model.network, local_name, model.local_layers,
                                          rule, seed), x[:m], epsilon, globals_,
                               prediction[:m], batch_size, "local bounds", progress)
    gap = None
    if lower_bound_points:
        with _timed(seconds, "lower bound"):
            gap = lipschitz_gap(model, x[:lower_bound_points], epsilon, rule=rule, seed=seed,
                                globals_=globals_)
    r = n if radius_points is None else min(int(radius_points), n)
    radius = None
    if r:
        with _timed(seconds, "radius"):
            radius = certified_radius_checked(model, x[:r], y[:r], globals_, rule,
                                              rtol=radius_rtol, batch_size=batch_size,
                                              progress=progress, seed=seed)
        certificate = dataclasses.replace(certificate, radius=np.concatenate(
            [radius, np.full(n - r, np.nan, np.float32)]))
    global_lipschitz = certificate.global_lipschitz
    summary = dict(
        norm="l2", points=int(n), epsilon=epsilon, local_bound=local_name,
        clean_accuracy=float(correct.mean()), pgd_accuracy=pgd,
        vra_local=certificate.certified_accuracy(y), vra_global=vra_global,
        reasons=certificate.counts(), mean_global_bound=float(global_lipschitz.mean()),
        global_sigmas=[float(s) for s in globals_.sigmas], bound_points=int(m),
        tol=float(tol), max_iterations=int(max_iterations),
        lower_bound=None if gap is None else _gap_summary(gap),
        radius=None if radius is None else _radius_summary(radius, radius_rtol),
        seconds=seconds)
    if local is not None:
        summary.update(
            mean_local_bound=float(local["lipschitz"].mean()),
            median_local_over_global=float(np.median(local["lipschitz"]
                                                     / global_lipschitz[:m])),
            not_converged=int((~local["converged"]).sum()),
            varying_fraction=dict(zip(_activation_names(model),
                                      local["varying"].mean(0).round(4).tolist())),
            mean_iterations=dict(zip(_local_layer_names(model),
                                     local["iterations"].mean(0).round(1).tolist())))
    empty = np.zeros((0,))
    return Report(summary, certificate,
                  empty if local is None else local["lipschitz"], global_lipschitz,
                  empty if local is None else local["iterations"],
                  empty if local is None else local["varying"], gap)


def evaluate_linf(model, data, epsilon=None, pgd_steps=100, restarts=1, batch_size=256,
                  clip=(0.0, 1.0), progress=True, seed=None,
                  relaxations=("ibp", "crown_ibp", "optimized"), attack_steps=20):
    """Evaluates a ``LinfCertifiedNet`` on labelled ``data`` at the l-infinity radius
    ``epsilon`` (default ``model.epsilon``). Stages, each timed:

    clean: accuracy of argmax z. pgd: ``pgd_accuracy`` with PGD-linf (``pgd_steps``
    steps, 100 in the paper; ``restarts``; pixels clipped to ``clip``). certify:
    ``model.certify`` with ``relaxations`` (cheapest first) and its ``attack_steps``
    PGD stage -> certified accuracy (summary 'vra_local', as for l2 models, and
    'certified_accuracy'). The l2 stages (global and local Lipschitz bounds, the
    lower-bound ratio, the certified radius) do not apply; summary['skipped'] says why.

    Returns:
        a ``Report`` whose Lipschitz arrays are empty and gap None.

    Raises:
        ValueError for data with no example, bad inputs, labels, epsilon or relaxations.
    """
    epsilon = certificate_epsilon(model, epsilon)
    seed = model.seed if seed is None else int(seed)
    x, y = check_inputs(model, *_arrays(data))
    seconds = {}
    with _timed(seconds, "clean"):
        correct = np.argmax(_logits(model.f, x, batch_size), 1) == y
    with _timed(seconds, "pgd"):
        pgd, _ = pgd_accuracy(model.f, x, y, epsilon, pgd_steps, restarts, clip, batch_size,
                              progress, seed, norm="linf")
    with _timed(seconds, "certify"):
        certificate = model.certify(x, y, epsilon=epsilon, relaxations=tuple(relaxations),
                                    attack_steps=attack_steps, batch_size=batch_size,
                                    progress=progress, seed=seed)
    vra = certificate.certified_accuracy(y)
    summary = dict(
        norm="linf", points=int(x.shape[0]), epsilon=epsilon, relaxation=model.relaxation,
        relaxations=list(relaxations), clean_accuracy=float(correct.mean()),
        pgd_accuracy=pgd, pgd_steps=int(pgd_steps), vra_local=vra, certified_accuracy=vra,
        vra_global=None, reasons=certificate.counts(), lower_bound=None, radius=None,
        seconds=seconds, skipped=dict(LINF_SKIPPED))
    empty = np.zeros((0,))
    return Report(summary, certificate, empty, empty.copy(), empty.copy(), empty.copy(),
                  None)


def _gap_summary(gap):
    """Ratio statistics over the points where a pair moved the margin (lower > 0)."""
    ratio = gap.ratio[gap.lower > 0]
    return dict(points=int(gap.lower.size), flat_points=int((gap.lower == 0).sum()),
                mean_lower=float(gap.lower.mean()), mean_upper=float(gap.upper.mean()),
                median_ratio=float(np.median(ratio)) if ratio.size else None,
                max_ratio=float(ratio.max()) if ratio.size else None)


def _radius_summary(radius, rtol):
    """The distribution of the certified radii (0 for points not certified at any eps)."""
    values = radius.astype(np.float64)
    return dict(points=int(values.size), bound="local", rtol=float(rtol),
                mean=float(values.mean()), median=float(np.median(values)),
                min=float(values.min()), max=float(values.max()),
                quantiles={f"{q:g}": float(np.quantile(values, q)) for q in RADIUS_QUANTILES},
                values=[float(v) for v in values])


def _per_batch(run, x, epsilon, globals_, reference, batch_size, desc, progress):
    parts = [run(x[b:b + batch_size], epsilon, globals_.sigmas, reference[b:b + batch_size],
                 globals_.vectors)
             for b in _batches(x.shape[0], batch_size, desc, progress)]
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def _activation_names(model):
    return [layer.name for layer, seam in zip(model.network.layers, model.network.seams)
            if isinstance(seam, ActivationSeam)]


def _local_layer_names(model):
    hidden = [model.network.layers[i].name for i in model.network.hidden]
    return [hidden[k] for k in model.local_layers]
