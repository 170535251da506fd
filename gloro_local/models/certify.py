"""Certification: sound global bound, then PGD, then the converged local bound."""
import numpy as np
from tqdm.auto import tqdm

from gloro_local.attacks import pgd_l2
from gloro_local.bounds import (StoppingRule, bound_pass, certificate_globals, check_epsilon,
                                logits_pass)
from gloro_local.bounds.passes import local_bound
from gloro_local.models.certificate import Certificate
from gloro_local.models.inputs import check_inputs


def finite_or_raise(values, what):
    """``values`` if all finite; FloatingPointError otherwise (never certify on NaN)."""
    if not np.all(np.isfinite(values)):
        raise FloatingPointError(f"Non-finite {what} during certification; refusing to "
                                 "certify (check the weights and inputs).")
    return values


def certify(model, x, y=None, epsilon=None, tol=1e-4, max_iterations=2000, attack_steps=20,
            cheap_stages=True, batch_size=256, progress=None, seed=None, solver="lobpcg",
            radius="global", boxes="interval"):
    """Certifies each sample of ``x`` against l2 perturbations of size ``epsilon``.

    Every global norm is a sound upper bound (``sound_global_norms``), computed once from
    the weights with the layers' top singular vectors (``certificate_globals``); nothing
    the model stores (power-iteration vectors, cached passes) changes the result, and
    everything runs in float32. Stages: ties are never certified;
    the box-and-ball bound with the global norms certifies what it can ('global'); PGD
    (unclipped: the certificate covers the whole ball) marks points it breaks
    ('attacked'); the rest get the local bound, with per-sample masked power iteration
    from the layer's top singular vector (plus a fixed seeded vector) until the
    ``StoppingRule(max_iterations, tol, solver)`` holds (samples that converged leave
    the iteration). Each local norm is capped by the layer's global bound, replaced by
    it where the layer did not converge or masks nothing; a sample whose layers did not
    all converge and that is still not certified is reported 'not converged'. The first
    two stages only save time: the local bound certifies whatever the global one does,
    so ``cheap_stages=False`` (every point to the local bound) certifies the same points.
    With ``radius='layerwise'`` the local stage is 'local_layerwise': the ball entering
    hidden layer l has the local radius eps * prod_{k<l} sigma_k(x) (each sigma_k the
    capped, converged norm the certificate uses) instead of eps * prod_{k<l} ||W_k||, so
    its boxes, masks and masked norms are at most those of 'local' and it certifies a
    superset of the points. With ``boxes='relaxation'`` the local stage also tightens the
    output box of every hidden layer after the first with CROWN's backward pass closed in
    l2, intersected with the box and ball ('local_relaxed' / 'local_layerwise_relaxed';
    layers whose pass would cost more than ``RelaxationBoxes.max_work`` keep their box):
    again never looser, so again a superset.

    The one assumption: a local (masked, per-sample) norm is an iterative estimate (the
    norm of the final unit vector through the masked operator, so never above the exact
    norm) that approaches the exact norm from below; the stopping rule is what makes it
    accurate (see docs/method.md).

    Args:
        model: a ``LocalGloroNet``. x: inputs (B, ...). y: optional labels; a wrong
            prediction is then never certified ('wrong class').
        epsilon: radius (default ``model.epsilon``).
        tol, max_iterations, solver: the local ``StoppingRule`` ('lobpcg': block
            iteration, the default; 'power': plain power iteration).
        attack_steps: PGD steps of the attack stage (0 disables the stage).
        progress: show a progress bar (default: when there is more than one batch).
        seed: seed of the start vectors and of PGD (default ``model.seed``).
        radius: the ball radius of the local stage's boxes, 'global' (the paper's) or
            'layerwise' (``local_bound``).
        boxes: the local stage's boxes, 'interval' (the paper's box and ball) or
            'relaxation' (also intersected with CROWN's l2 bounds; ``local_bound``).

    Returns:
        a ``Certificate``.

    Raises:
        ValueError for bad inputs, labels, epsilon or budget; FloatingPointError for a
        NaN or Inf in a weight or a bound.
    """
    epsilon = certificate_epsilon(model, epsilon)
    seed = model.seed if seed is None else int(seed)
    rule = StoppingRule(int(max_iterations), tol, solver).check()
    local = local_bound(radius, boxes)
    x, y = check_inputs(model, x, y)
    return certify_checked(model, x, y, epsilon, certificate_globals(model.network, seed),
                           rule, attack_steps, cheap_stages, batch_size, progress, seed,
                           local)


def certificate_epsilon(model, epsilon):
    """The radius to certify at, a validated float: ``epsilon``, or the model's."""
    return float(check_epsilon(float(model.epsilon.numpy()) if epsilon is None
                               else epsilon).numpy())


def over_batches(x, y, batch_size, progress, certify_batch):
    """The fields of ``certify_batch(x_batch, y_batch, begin)`` (dicts of per-sample
    arrays) over consecutive batches of ``x`` (and ``y``, or None), concatenated; an
    empty ``x`` is one empty batch. ``progress``: show a bar (None: when there is more
    than one batch)."""
    parts = []
    batches = range(0, max(x.shape[0], 1), batch_size)
    show = progress if progress is not None else len(batches) > 1
    for begin in tqdm(batches, desc="certify", disable=not show, unit="batch"):
        labels = None if y is None else y[begin:begin + batch_size]
        parts.append(certify_batch(x[begin:begin + batch_size], labels, begin))
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def certify_checked(model, x, y, epsilon, globals_, rule, attack_steps=20,
                    cheap_stages=True, batch_size=256, progress=None, seed=0,
                    local="local"):
    """``certify`` on validated arrays with the ``CertificateGlobals`` already computed
    (``evaluate`` shares them between its stages); ``local`` is the local stage's bound
    (``local_bound``)."""
    passes = {"global": bound_pass(model.network, "global"),
              "local": bound_pass(model.network, local, model.local_layers, rule, seed)}
    fields = over_batches(x, y, batch_size, progress, lambda xb, yb, begin: _certify_batch(
        model, passes, xb, yb, epsilon, globals_, attack_steps if cheap_stages else 0,
        cheap_stages, seed + begin))
    return Certificate(epsilon=epsilon, global_lipschitz=np.full(
        x.shape[0], np.prod(globals_.sigmas), np.float32), **fields)


def first_reasons(model, x, y):
    """(logits, prediction, reason, bound, margin) before any bound: the clean float32
    logits, their argmax, reason 'tie' where the top logit is not unique (never
    certified), 'wrong class' where labels ``y`` are given and differ, else 'bound too
    loose'; bound 'none' and margin nan until a bound is computed."""
    batch = x.shape[0]
    logits = finite_or_raise(logits_pass(model.network)(x), "logits")
    prediction = np.argmax(logits, -1).astype(np.int32)
    top2 = np.sort(logits, -1)[:, -2:]
    reason = np.full(batch, "bound too loose", dtype=object)
    reason[top2[:, 1] <= top2[:, 0]] = "tie"
    if y is not None:
        reason[(prediction != y) & (reason != "tie")] = "wrong class"
    return (logits, prediction, reason, np.full(batch, "none", dtype=object),
            np.full(batch, np.nan, np.float32))


def _certify_batch(model, passes, x, y, epsilon, globals_, attack_steps, cheap_stages, seed):
    batch = x.shape[0]
    _, prediction, reason, bound, margin = first_reasons(model, x, y)
    lipschitz = np.full(batch, np.nan, np.float32)
    iterations = np.zeros((batch, len(model.local_layers)), np.int32)

    def decide(name, rows):
        out = passes[name](x[rows], epsilon, globals_.sigmas, prediction[rows],
                           globals_.vectors)
        bottom = finite_or_raise(out["bottom"], "bound")
        top = np.take_along_axis(out["logits"], prediction[rows, None], 1)[:, 0]
        ok = top > bottom
        margin[rows] = top - bottom
        lipschitz[rows] = finite_or_raise(out["lipschitz"], "Lipschitz bound")
        bound[rows] = name
        reason[rows[ok]] = name
        return ok, out

    if cheap_stages and np.any(reason == "bound too loose"):
        decide("global", np.flatnonzero(reason == "bound too loose"))
    if attack_steps and np.any(reason == "bound too loose"):
        rows = np.flatnonzero(reason == "bound too loose")
        _, broken = pgd_l2(model.f, x[rows], prediction[rows], epsilon, steps=attack_steps,
                           clip=None, seed=seed)
        reason[rows[broken.numpy()]] = "attacked"
    if np.any(reason == "bound too loose"):
        rows = np.flatnonzero(reason == "bound too loose")
        ok, out = decide("local", rows)
        iterations[rows] = out["iterations"]
        reason[rows[~ok & ~out["converged"]]] = "not converged"
    return dict(prediction=prediction, certified=np.isin(reason, ("global", "local")),
                reason=reason.astype(str), bound=bound.astype(str), margin=margin,
                lipschitz=lipschitz, iterations=iterations)
