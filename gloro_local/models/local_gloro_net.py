"""LocalGloroNet: a Keras model whose extra output is the GloRo bottom logit."""
import numbers

import keras
import tensorflow as tf

from gloro_local.bounds import (GlobalNorms, StoppingRule, check_bound, compute_margins,
                                random_start, warm_start)
from gloro_local.models.bound_queries import BoundQueries
from gloro_local.models.certified_model import CertifiedModel
from gloro_local.models.training_steps import TrainingSteps
from gloro_local.training.precision import bound_dtypes, resolve_training_dtype


def check_box_layers(box_layers, hidden):
    """``box_layers`` (None or an integer in [0, hidden]); ValueError otherwise."""
    if box_layers is None:
        return None
    if (isinstance(box_layers, bool) or not isinstance(box_layers, numbers.Real)
            or not float(box_layers).is_integer() or not 0 <= box_layers <= hidden):
        raise ValueError(f"box_layers must be None or an integer in [0, {hidden}] (the "
                         f"network has {hidden} hidden linear layers). Received: "
                         f"box_layers={box_layers!r}")
    return int(box_layers)


@keras.saving.register_keras_serializable(package="gloro_local")
class LocalGloroNet(TrainingSteps, BoundQueries, CertifiedModel, keras.Model):
    """A classifier ``f`` with a certified bottom logit: ``model(x) = [z, bottom]``.

    For input x, radius eps and reference class j (the prediction at inference, the label
    in training), bounds are propagated through the hidden layers (docs/design.md)
    and the logit layer's worst case is taken over the ball of radius
        r(x) = eps * prod_{l<L} sigma_l(x)
    intersected with the penultimate box:
        z*_i = z_i + max_{delta} (w_i - w_j).delta,   bottom = max_{i != j} z*_i.
    x is certified at eps when z_j > bottom. ``bound`` chooses sigma_l on one code path:
    'local' (masked per-sample norms, the paper's method), 'global' (global layer norms,
    BCP-style) or 'gloro' (global norms, ball only: z*_i = z_i + r ||w_i - w_j||, the
    original GloRo net). ``model(x)`` is a monitoring estimate; ``certify`` is the
    certificate.

    Args:
        f: a built ``keras.Sequential`` (starting with ``keras.Input``) of supported layers
            ending in a Dense logit layer.
        epsilon: the l2 radius (finite, > 0); ``model.epsilon`` is a settable variable.
        bound: 'local', 'global' or 'gloro'.
        power_iterations: power-iteration steps per training step (local and global
            norms; 2 with stored per-sample vectors is the paper's best setting).
        eval_iterations, eval_tol: ``max_iterations`` and ``tol`` of the per-sample
            ``StoppingRule`` of ``model(x)``; samples that do not converge fall back to
            the global norm. ``model(x)`` uses the stored global estimates and is a
            monitoring value; ``certify`` is the certificate.
        worst_logit_steps: clipping steps of the worst-logit iteration in training
            (None: exact); inference is always exact.
        local_layers: indices (into the hidden linear layers) that get per-sample norms;
            the others use their global norm. None: all.
        lam_sparse, lam_theta: weights of the sparsity hinge (docs/design.md).
        seed: seed of the random power-iteration start vectors.
        training_dtype: dtype of the box propagation and power iteration in training
            steps: 'auto' (bfloat16 where the hardware computes it natively: GPUs of
            compute capability >= 8.0, CPUs with AMX or AVX512-BF16; float32 elsewhere;
            the choice is logged), 'float32', 'bfloat16' (faster convolutions, at 3
            significant digits) or 'mixed' (boxes, masks and the clean pass in float32,
            the power iterations in bfloat16: ``precision.bound_dtypes``). Inference,
            ``lipschitz_bounds`` and ``certify`` always compute in float32.
        box_gradient: False stops the gradient at the box entering every linear layer
            in training (each box is then differentiable in its own layer's weights
            only): on 4C3F the box pass with its gradient costs about 1.9x less and a
            local-bound training step about 1.55x less; certificates are unchanged in
            kind (docs/results.md measures the effect on certified accuracy).
        box_layers: None (the paper's bound: every hidden linear layer intersects the
            box with the ball) or an integer k >= 0: in training only the first k hidden
            linear layers carry the box x +- eps through, the later ones bound their
            outputs by the ball alone, z(x) -+ r ||A_i|| (sound and cheaper: two of the
            three convolutions of the box pass and their gradients are skipped; looser
            only where the box would have been tighter, which ``box_usage.py`` in
            benchmarks/ measures per layer). Inference, ``lipschitz_bounds`` and
            ``certify`` always use the full box.
    """

    def __init__(self, f, epsilon, bound="local", power_iterations=2, eval_iterations=100,
                 eval_tol=1e-3, worst_logit_steps=10, local_layers=None, lam_sparse=0.0,
                 lam_theta=0.0, seed=0, training_dtype="auto", box_gradient=True,
                 box_layers=None, **kwargs):
        super().__init__(**kwargs)
        self.wrap_classifier(f, epsilon)
        self.bound = check_bound(bound)
        hidden_shapes = [shape for _, shape in self.network.hidden_layers()]
        self.global_norms = GlobalNorms(hidden_shapes, seed=seed, name="global_norms")
        self.global_norms.built = True
        hidden = range(len(hidden_shapes))
        if local_layers is None:
            local_layers = list(hidden)
        unknown = sorted(set(local_layers) - set(hidden))
        if unknown:
            raise ValueError(f"local_layers {unknown} out of range: the network has "
                             f"{len(hidden_shapes)} hidden linear layers.")
        self.local_layers = sorted(set(local_layers))
        self.power_iterations = int(power_iterations)
        self.eval_iterations = int(eval_iterations)
        self.eval_tol = float(eval_tol)
        StoppingRule(self.eval_iterations, self.eval_tol).check()
        self.worst_logit_steps = worst_logit_steps
        self.lam_sparse = float(lam_sparse)
        self.lam_theta = float(lam_theta)
        self.seed = int(seed)
        self.training_dtype_option = training_dtype
        self.training_dtype = resolve_training_dtype(training_dtype)
        self.box_gradient = bool(box_gradient)
        self.box_layers = check_box_layers(box_layers, len(hidden_shapes))
        self.store = None
        self.built = True

    def hidden_seams(self):
        return [seam for seam, _ in self.network.hidden_layers()]

    def starts(self, batch, index=None, training=False):
        """Per hidden layer: stored vectors (store attached and index given), fresh random
        vectors (other local layers in training), a warm start from the stored global
        vector outside training (the same for every sample), or None (layers that use
        their global norm)."""
        stored = self.store.gather(index) if (self.store and index is not None) else None
        starts = []
        for k, (_, shape) in enumerate(self.network.hidden_layers()):
            if k not in self.local_layers:
                starts.append(None)
            elif stored is not None and stored[k] is not None:
                starts.append(stored[k])
            elif training:
                starts.append(random_start(shape, batch))
            else:
                starts.append(warm_start(self.global_norms.iterates[k], batch,
                                         (self.seed, k)))
        return starts

    def margins(self, x, reference=None, training=False, index=None):
        """The bound pass of ``bound`` at the current epsilon (``Margins``), with the
        stored global estimates (warm-started ``power_iterations`` steps in training)."""
        x = self.network.check_input(x)
        walk_dtype, iteration_dtype = (bound_dtypes(self.training_dtype) if training
                                       else ("float32", "float32"))
        epsilon = tf.cast(self.state.epsilon, walk_dtype)
        global_sigmas = self.global_norms.norms(self.hidden_seams(),
                                                self.power_iterations if training else 0)
        if training:
            budget = dict(budget=self.power_iterations, worst_steps=self.worst_logit_steps,
                          capped=False, box_gradient=self.box_gradient,
                          box_layers=self.box_layers, iteration_dtype=iteration_dtype)
        else:
            budget = dict(budget=StoppingRule(self.eval_iterations, self.eval_tol),
                          worst_steps=None, capped=True)
        return compute_margins(self.network, x, epsilon, global_sigmas, self.bound,
                               reference, self.starts(tf.shape(x)[0], index, training),
                               **budget)

    def get_config(self):
        return {**super().get_config(), "f": keras.saving.serialize_keras_object(self.f),
                "epsilon": float(self.state.epsilon.numpy()), "bound": self.bound,
                "power_iterations": self.power_iterations,
                "eval_iterations": self.eval_iterations, "eval_tol": self.eval_tol,
                "worst_logit_steps": self.worst_logit_steps,
                "local_layers": list(self.local_layers), "lam_sparse": self.lam_sparse,
                "lam_theta": self.lam_theta, "seed": self.seed,
                "training_dtype": self.training_dtype_option,
                "box_gradient": self.box_gradient, "box_layers": self.box_layers}
