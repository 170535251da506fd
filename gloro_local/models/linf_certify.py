"""Certification of a LinfCertifiedNet: IBP, then PGD, then the linear relaxations."""
import numpy as np
import tensorflow as tf

from gloro_local.attacks import pgd_linf
from gloro_local.bounds import compute_margins
from gloro_local.models.certificate import Certificate
from gloro_local.models.certify import (certificate_epsilon, finite_or_raise, first_reasons,
                                        over_batches)
from gloro_local.models.inputs import check_inputs

STAGES = ("ibp", "crown_ibp", "optimized")


def linf_pass(model, relaxation, seed):
    """A compiled ``run(x, epsilon, reference)`` -> (logits, bottom) numpy arrays of one
    relaxation in float32 (beta = 1: the relaxation alone), cached on the network."""
    key = ("linf", relaxation, float(model.eta), int(seed))
    network = model.network
    if key not in network.compiled:
        signature = [tf.TensorSpec((None,) + tuple(network.input_shape), tf.float32),
                     tf.TensorSpec([], tf.float32), tf.TensorSpec([None], tf.int32)]

        @tf.function(input_signature=signature)
        def run(x, epsilon, reference):
            result = compute_margins(network, x, epsilon, [], relaxation, reference, [], 0,
                                     beta=1.0, eta=model.eta, seed=int(seed))
            return result.logits, result.bottom

        network.compiled[key] = lambda x, eps, ref: tuple(
            t.numpy() for t in run(tf.convert_to_tensor(x, tf.float32),
                                   tf.constant(eps, tf.float32),
                                   tf.convert_to_tensor(ref, tf.int32)))
    return network.compiled[key]


def certify_linf(model, x, y=None, epsilon=None, relaxations=STAGES, attack_steps=20,
                 batch_size=256, progress=None, seed=None):
    """Certifies each sample of ``x`` against l-infinity perturbations of size eps.

    Every relaxation gives sound lower bounds m_i of z_j - z_i over the whole box
    {x' : ||x' - x||_inf <= eps} (no clipping to the pixel range), so a point is certified
    as soon as one of them has every m_i > 0 (z_j > bottom). Stages, cheapest first:
    ties are never certified; wrong predictions (labels given) are not certified;
    ``relaxations[0]`` (default IBP); PGD-linf (``attack_steps``, unclipped) marks the
    points it breaks 'attacked'; then the other relaxations in order ('crown_ibp', then
    'optimized' with seeded start slopes). Everything runs in float32 from the weights;
    nothing the model stores changes the result.

    Args:
        model: a ``LinfCertifiedNet``. x: inputs (B, ...). y: optional labels.
        epsilon: radius (default ``model.epsilon``).
        relaxations: the relaxations to try, in order (names from 'ibp', 'crown_ibp',
            'optimized').
        attack_steps: PGD-linf steps of the attack stage (0 disables it).
        progress: show a progress bar (default: when there is more than one batch).
        seed: seed of PGD and of the 'optimized' start slopes (default ``model.seed``).

    Returns:
        a ``Certificate``: reason is the relaxation that certified the point, or
        'attacked', 'tie', 'wrong class', 'bound too loose'; bound the last relaxation
        computed; margin z_j - bottom of that relaxation; lipschitz and global_lipschitz
        are nan (no norm is used); iterations has no columns.
    """
    unknown = [r for r in relaxations if r not in STAGES]
    if not relaxations or unknown:
        raise ValueError(f"relaxations must be a non-empty list from {STAGES}. Received: "
                         f"relaxations={relaxations!r}")
    epsilon = certificate_epsilon(model, epsilon)
    seed = model.seed if seed is None else int(seed)
    x, y = check_inputs(model, x, y)
    passes = [(name, linf_pass(model, name, seed)) for name in relaxations]
    fields = over_batches(x, y, batch_size, progress, lambda xb, yb, begin: _certify_batch(
        model, passes, xb, yb, epsilon, attack_steps, seed + begin))
    nan = np.full(x.shape[0], np.nan, np.float32)
    return Certificate(epsilon=epsilon, lipschitz=nan, global_lipschitz=nan.copy(),
                       iterations=np.zeros((x.shape[0], 0), np.int32), **fields)


def _certify_batch(model, passes, x, y, epsilon, attack_steps, seed):
    logits, prediction, reason, bound, margin = first_reasons(model, x, y)

    def decide(name, run):
        rows = np.flatnonzero(reason == "bound too loose")
        if rows.size:
            bottom = finite_or_raise(run(x[rows], epsilon, prediction[rows])[1], "bound")
            top = logits[rows, prediction[rows]]
            margin[rows] = top - bottom
            bound[rows] = name
            reason[rows[top > bottom]] = name

    decide(*passes[0])
    if attack_steps:
        _attack(model, x, prediction, reason, epsilon, attack_steps, seed)
    for name, run in passes[1:]:
        decide(name, run)
    certified = np.isin(reason, [name for name, _ in passes])
    return dict(prediction=prediction, certified=certified, reason=reason.astype(str),
                bound=bound.astype(str), margin=margin)


def _attack(model, x, prediction, reason, epsilon, steps, seed):
    """Marks the points PGD-linf breaks among those still undecided."""
    rows = np.flatnonzero(reason == "bound too loose")
    if rows.size:
        _, broken = pgd_linf(model.f, x[rows], prediction[rows], epsilon, steps=steps,
                             clip=None, seed=seed)
        reason[rows[broken.numpy()]] = "attacked"
