"""Sound certification: converged global bound, then PGD, then the converged local bound."""
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from gloro_local.bounds import check_epsilon, compute_margins
from gloro_local.evaluation.certificate import Certificate
from gloro_local.evaluation.pgd import pgd_l2


def _finite(tensor, what):
    if not bool(tf.reduce_all(tf.math.is_finite(tensor))):
        raise FloatingPointError(f"Non-finite {what} during certification; refusing to "
                                 "certify (check the weights and inputs).")
    return tensor.numpy()


def _check_inputs(model, x, y):
    x = np.asarray(x, np.float32)
    model.network.check_input(x)
    if not np.all(np.isfinite(x)):
        raise ValueError("Inputs contain NaN or Inf.")
    if y is not None:
        y = np.asarray(y).reshape(-1)
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"Got {x.shape[0]} inputs but {y.shape[0]} labels.")
        if np.any(y < 0) or np.any(y >= model.num_classes):
            raise ValueError(f"labels must be class ids in [0, {model.num_classes}).")
    return x, y


def certify(model, x, y=None, epsilon=None, tol=1e-3, max_iterations=2000,
            global_tol=1e-6, attack_steps=20, cheap_stages=True, batch_size=256,
            progress=None, seed=0):
    """Certifies each sample of ``x`` against l2 perturbations of size ``epsilon``.

    Order (DESIGN.md section 6): the global vectors are converged to ``global_tol``; ties
    are never certified; the exact box-and-ball bound with converged global norms
    certifies what it can ('global'); PGD marks points it breaks ('attacked'); the rest get
    the local bound, with per-sample power iteration from random vectors until
    ||u_t+1 - u_t|| <= ``tol`` (at most ``max_iterations`` steps). A layer that did not
    converge for a sample uses its global norm instead (always sound); such a sample that
    is still not certified is reported 'not converged'. The first two stages only save
    time: ``cheap_stages=False`` sends every point to the local bound and certifies the
    same points. Any NaN or Inf in a bound raises FloatingPointError.

    Args:
        model: a ``LocalGloroNet``. x: inputs (B, ...). y: optional labels; a wrong
            prediction is then never certified ('wrong class').
        epsilon: radius (default ``model.epsilon``).
        attack_steps: PGD steps of the attack stage (0 disables the stage).

    Returns:
        a ``Certificate``.
    """
    epsilon = check_epsilon(float(model.epsilon.numpy()) if epsilon is None else epsilon)
    x, y = _check_inputs(model, x, y)
    seams = model.hidden_seams()
    global_sigmas, converged = model.global_norms.converge(seams, tol=global_tol,
                                                           max_iterations=100000)
    if not all(converged):
        raise RuntimeError(f"The global power iteration did not converge to {global_tol}.")
    parts = []
    batches = range(0, x.shape[0], batch_size)
    show = progress if progress is not None else len(batches) > 1
    for begin in tqdm(batches, desc="certify", disable=not show, unit="batch"):
        labels = None if y is None else y[begin:begin + batch_size]
        parts.append(_certify_batch(model, x[begin:begin + batch_size], labels, epsilon,
                                    global_sigmas, tol, max_iterations,
                                    attack_steps if cheap_stages else 0, cheap_stages,
                                    seed + begin))
    fields = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    return Certificate(epsilon=float(epsilon.numpy()), **fields)


def _certify_batch(model, x, y, epsilon, global_sigmas, tol, max_iterations,
                   attack_steps, cheap_stages, seed):
    batch = x.shape[0]
    logits = _finite(model.f(x), "logits")
    prediction = np.argmax(logits, -1).astype(np.int32)
    top2 = np.sort(logits, -1)[:, -2:]
    reason = np.full(batch, "bound too loose", dtype=object)
    reason[top2[:, 1] <= top2[:, 0]] = "tie"
    if y is not None:
        reason[(prediction != y) & (reason != "tie")] = "wrong class"
    margin = np.full(batch, np.nan, np.float32)
    lipschitz = np.full(batch, np.nan, np.float32)
    iterations = np.zeros((batch, len(model.local_layers)), np.int32)
    global_lipschitz = np.full(batch, float(np.prod([float(s) for s in global_sigmas])),
                               np.float32)
    open_ = reason == "bound too loose"

    def decide(result, rows, name):
        bottom = _finite(result.bottom, "bound")
        top = np.take_along_axis(result.logits.numpy(), prediction[rows, None], 1)[:, 0]
        ok = top > bottom
        margin[rows] = top - bottom
        lipschitz[rows] = result.lipschitz.numpy()
        reason[rows[ok]] = name
        return ok

    if cheap_stages and open_.any():
        rows = np.flatnonzero(open_)
        result = compute_margins(model.network, x[rows], epsilon, global_sigmas, "global",
                                 prediction[rows], None, 0)
        decide(result, rows, "global")
        open_ = reason == "bound too loose"
    if attack_steps and open_.any():
        rows = np.flatnonzero(open_)
        _, broken = pgd_l2(model.f, x[rows], prediction[rows], epsilon, steps=attack_steps,
                           seed=seed)
        reason[rows[broken.numpy()]] = "attacked"
        open_ = reason == "bound too loose"
    if open_.any():
        rows = np.flatnonzero(open_)
        starts = [tf.random.stateless_normal((rows.size,) + tuple(shape), seed=[seed, k])
                  if k in model.local_layers else None
                  for k, (_, shape) in enumerate(model.network.hidden_layers())]
        result = compute_margins(model.network, x[rows], epsilon, global_sigmas, "local",
                                 prediction[rows], starts, max_iterations, tol,
                                 fallback_to_global=True)
        ok = decide(result, rows, "local")
        power = [p for p in result.power if p is not None]
        if power:
            iterations[rows] = np.stack([p.iterations.numpy() for p in power], axis=1)
            all_converged = np.all(np.stack([p.converged.numpy() for p in power], 1), 1)
            reason[rows[~ok & ~all_converged]] = "not converged"
    return dict(prediction=prediction, certified=np.isin(reason, ("global", "local")),
                reason=reason.astype(str), margin=margin, lipschitz=lipschitz,
                global_lipschitz=global_lipschitz, iterations=iterations)
