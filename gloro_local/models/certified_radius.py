"""Per-sample certified radius: the largest eps at which a point is certified.

'gloro' (ball only, global norms) has a closed form. 'local' (what ``certify``
certifies: the global box-and-ball bound or the converged local bound) and 'global' (the
box-and-ball bound alone) depend on eps through the boxes and the masks, so their radius
is found by probing the bound at single values of eps: a galloping search up from the
closed form, then bisection in log scale. Every probe is one bound pass at a scalar eps
on one sample, with the certificate's sound global norms and stopping rule.
"""
import math

import numpy as np
from tqdm.auto import tqdm

from gloro_local.bounds import (StoppingRule, bound_pass, certificate_globals, check_bound,
                                logits_pass)
from gloro_local.models.certify import check_inputs

GROWTH = 2.0  # factor of the galloping search while no probe has been refused


def gloro_radius(logits, kernel, lipschitz):
    """The GloRo certified radius of each row of ``logits``:
        r = min_{i != j} (z_j - z_i) / (L ||w_j - w_i||),   j = argmax z,
    with L = ``lipschitz`` (product of the hidden layers' global norms) and w_i the
    columns of the logit layer's ``kernel`` (d, K). The GloRo bound certifies x at every
    eps < r (at eps = r the margin is 0); r = 0 where the top logit is not unique, and
    r = inf where no pair can change (w_i = w_j, or L = 0). Computed in float64.

    Returns:
        (B,) float64 radii.
    """
    logits = np.asarray(logits, np.float64)
    w = np.asarray(kernel, np.float64).T
    top = np.argmax(logits, axis=1)
    margin = logits[np.arange(len(top)), top][:, None] - logits
    spread = float(lipschitz) * np.linalg.norm(w[None, :, :] - w[top][:, None, :], axis=-1)
    others = np.arange(logits.shape[1])[None, :] != top[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(spread > 0, margin / spread, np.where(margin > 0, np.inf, 0.0))
    return np.maximum(np.min(np.where(others, ratio, np.inf), axis=1), 0.0)


def search_radius(certified_at, start, rtol=1e-2, max_steps=30):
    """The largest probe at which ``certified_at`` held: lo of a bracket [lo, hi].

    Probes, each rounded to float32 (the precision of the bound passes and of
    ``certify``'s epsilon): first ``start``; while no probe was refused, lo * GROWTH;
    then the log-scale midpoint sqrt(lo * hi) (hi / 2 while lo = 0). A certified probe
    raises lo, a refused one lowers hi; the search stops once hi <= lo * (1 + ``rtol``),
    after ``max_steps`` probes, or when float32 has no value strictly inside the bracket.
    The result is always a probe that was certified (or 0), whether or not certification
    is monotone in eps.

    Returns:
        (lo, hi, probes): hi is inf while nothing was refused.
    """
    lo, hi, probe = 0.0, math.inf, start
    for step in range(int(max_steps)):
        probe = float(np.float32(probe))
        if not lo < probe < hi:
            return lo, hi, step
        if certified_at(probe):
            lo = probe
        else:
            hi = probe
        if hi <= lo * (1.0 + rtol):
            return lo, hi, step + 1
        probe = lo * GROWTH if math.isinf(hi) else (math.sqrt(lo * hi) if lo > 0 else hi / 2)
    return lo, hi, int(max_steps)


def check_search(bound, rtol, max_steps):
    """ValueError unless ``bound`` is one of BOUNDS, ``rtol`` a finite number > 0 and
    ``max_steps`` >= 1 (the options of ``certified_radius``)."""
    check_bound(bound)
    if not (isinstance(rtol, (int, float)) and math.isfinite(rtol) and rtol > 0):
        raise ValueError(f"rtol must be a finite number > 0. Received: rtol={rtol!r}")
    if int(max_steps) < 1:
        raise ValueError(f"max_steps must be >= 1. Received: max_steps={max_steps!r}")


def certified_radius(model, x, y=None, bound="local", rtol=1e-2, max_steps=30, tol=1e-4,
                     max_iterations=2000, batch_size=256, progress=None, seed=None,
                     solver="lobpcg"):
    """The largest eps at which each sample of ``x`` is certified, with ``certify``'s
    soundness rules (sound global norms from ``certificate_globals``; local norms
    converged by ``StoppingRule(max_iterations, tol, solver)``, capped by the global
    ones; a tie, a wrong class when labels are given, or a non-finite bound certifies
    nothing: radius 0 at that probe, and a sample with non-finite logits gets 0).

    bound:
        'gloro': the closed form ``gloro_radius``, r = min_{i != j} (z_j - z_i) /
            (prod_l ||W_l|| ||w_j - w_i||), certified at every eps < r.
        'global': the box-and-ball bound with the global norms (certify's first stage).
        'local' (default): what ``certify`` certifies, the global bound or the local one.
    For 'global' and 'local', ``search_radius`` from the closed-form radius (which they
    certify whenever 'gloro' does: their perturbation set is the ball intersected with
    a box, with norms no larger) returns a probe r that the bound certified, within
    ``rtol`` of the smallest refused probe above it (unless ``max_steps`` ran out or
    nothing above r was refused). Certification with these bounds grows monotonically
    with eps in exact arithmetic (boxes grow, masks keep fewer neurons constant, masked
    norms grow); iterative local norms and the global fallback of a layer that did not
    converge can break that, which is why the result is always a certified probe, never
    an interpolation.

    Args:
        model: a ``LocalGloroNet``. x: inputs (B, ...). y: optional labels.
        rtol: relative width of the final bracket. max_steps: probes per sample.
        tol, max_iterations, solver, seed: as in ``certify``.
        batch_size: batch of the clean logits. progress: a progress bar over the
            samples (default: when there is more than one batch).

    Returns:
        (B,) float32 numpy array of radii.

    Raises:
        ValueError for bad inputs, labels or parameters; FloatingPointError for a NaN or
        Inf weight.
    """
    check_search(bound, rtol, max_steps)
    seed = model.seed if seed is None else int(seed)
    rule = StoppingRule(int(max_iterations), tol, solver).check()
    x, y = check_inputs(model, x, y)
    return certified_radius_checked(model, x, y, certificate_globals(model.network, seed),
                                    rule, bound, rtol, max_steps, batch_size, progress,
                                    seed)


def certified_radius_checked(model, x, y, globals_, rule, bound="local", rtol=1e-2,
                             max_steps=30, batch_size=256, progress=None, seed=0):
    """``certified_radius`` on validated arrays with the ``CertificateGlobals`` already
    computed (``evaluate`` shares them with its other stages)."""
    n = x.shape[0]
    if n == 0:
        return np.zeros(0, np.float32)
    logits = np.concatenate([logits_pass(model.network)(x[b:b + batch_size])
                             for b in range(0, n, batch_size)])
    finite = np.all(np.isfinite(logits), axis=1)
    closed = np.zeros(n)
    closed[finite] = gloro_radius(logits[finite], model.network.logit_layer.kernel.numpy(),
                                  np.prod(np.asarray(globals_.sigmas, np.float64)))
    prediction = np.argmax(logits, axis=1).astype(np.int32)
    if y is not None:
        closed[prediction != y] = 0.0
    if bound == "gloro":
        return closed.astype(np.float32)
    passes = [bound_pass(model.network, "global")]
    if bound == "local":
        passes.append(bound_pass(model.network, "local", model.local_layers, rule, seed))
    radius = np.zeros(n, np.float32)
    show = progress if progress is not None else n > batch_size
    for i in tqdm(range(n), desc=f"certified radius ({bound})", unit="point",
                  disable=not show):
        if closed[i] == 0.0:
            continue
        probe = _Probe(passes, x[i:i + 1], prediction[i:i + 1], globals_)
        start = closed[i] * (1.0 - rtol / 2) if math.isfinite(closed[i]) else 1.0
        radius[i] = search_radius(probe, start, rtol, max_steps)[0]
    return radius


class _Probe:
    """certified_at(eps) for one sample: top logit > bottom logit of the first pass that
    says so, each bound finite (a non-finite bound certifies nothing)."""

    def __init__(self, passes, x, prediction, globals_):
        self.passes, self.x, self.prediction, self.globals_ = passes, x, prediction, globals_

    def __call__(self, epsilon):
        for run in self.passes:
            out = run(self.x, epsilon, self.globals_.sigmas, self.prediction,
                      self.globals_.vectors)
            top = out["logits"][0, self.prediction[0]]
            bottom = out["bottom"][0]
            if np.isfinite(top) and np.isfinite(bottom) and top > bottom:
                return True
        return False
