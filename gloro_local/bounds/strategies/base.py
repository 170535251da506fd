"""The one interface every certified bound implements, and the registry of bounds.

A bound pass walks the network once (``gloro_local.bounds.propagation.walk``): it asks
the bound for the state of the input (``initial_state``), then for the state after every
linear layer (``linear_step``), activation (``activation_step``) and reshape
(``shape_step``), and finally turns what the walk found into worst-case logits
(``logit_step``). Just before every hidden linear layer after the first, and before the
logit layer, the walk hands the bound the final masks of the hidden layer before it
(``before_linear``), so that a bound may rescale the ball with what they tell, and after
every hidden linear layer's step it may tighten that layer's output box
(``after_linear``). A new
bound is one new module: a subclass registered with ``@register``; nothing else in the
package changes.
"""
import abc
from typing import Any, List, NamedTuple, Optional

import tensorflow as tf

from gloro_local.layers import BoundState


class Margins(NamedTuple):
    """What a bound pass found for a batch.

    logits (B, K); worst (B, K): the worst-case logits z* relative to ``reference``
    (z*_j = z_j); bottom (B,): max_{i != j} z*_i; lipschitz (B,): product of the hidden
    layers' norms the bound used (l2 bounds; ones for bounds that use none);
    global_lipschitz (B,): product of their global norms; sigmas: per hidden layer the
    (B,) norm used; power: per hidden layer the power-iteration result or None;
    propagation: the walk (boxes, masks)."""

    logits: tf.Tensor
    worst: tf.Tensor
    bottom: tf.Tensor
    lipschitz: tf.Tensor
    global_lipschitz: tf.Tensor
    sigmas: List[tf.Tensor]
    power: List[Optional[Any]]
    propagation: Any


class BoundContext(NamedTuple):
    """Everything a logit step may need besides the walk.

    global_sigmas: an upper bound (certification: sound) or an estimate (training) of
        every hidden linear layer's spectral norm (scalars).
    starts: per hidden layer, per-sample power-iteration start vectors or None.
    budget: power-iteration steps (training) or a ``StoppingRule``.
    worst_steps: clipping steps of the worst-logit iteration (None: exact).
    capped: inference / certification (True) rather than training (False).
    inputs: the input batch, in the walk's dtype (linear-relaxation bounds close their
        backward pass at it).
    beta: weight of a relaxation's margins against IBP's (``crown_ibp``, ``optimized``):
        m = (1 - beta) m_IBP + beta m_relaxation; 1: the relaxation alone.
    eta: the sign-gradient step of the optimised relaxation.
    seed: seed of the optimised relaxation's start slopes (None: a fresh draw).
    iteration_dtype: dtype of the per-sample power iterations (None: the walk's).
    """

    global_sigmas: list
    starts: list
    budget: Any
    worst_steps: Optional[int] = None
    capped: bool = False
    inputs: Any = None
    beta: Any = 1.0
    eta: float = 1.0
    seed: Optional[int] = None
    iteration_dtype: Any = None


class Bound(abc.ABC):
    """A certified bound on the logits over a norm ball of radius eps around x.

    Attributes:
        name: the registry key (``gl.LocalGloroNet(..., bound=name)``).
        norm: the norm of the perturbation it certifies ('l2' or 'linf').
        tracks_masks: whether the walk records which neurons may move (the boxes must
            then enclose every activation reachable in the ball).
        uses_norms: whether it needs the hidden layers' global spectral norms.
        per_sample_norms: whether its logit step runs per-sample power iterations
            (whose start vectors the iterate store keeps across epochs).
        training_warning: None, or what ``fit`` warns about before training with it
            (a bound meant for certification).
    """

    name = None
    norm = "l2"
    tracks_masks = True
    uses_norms = True
    per_sample_norms = False
    training_warning = None

    @abc.abstractmethod
    def initial_state(self, x, epsilon):
        """The ``BoundState`` of the input batch ``x`` for radius ``epsilon``."""

    @abc.abstractmethod
    def linear_step(self, seam, state, layer_norm):
        """The state after a ``LinearSeam``; ``layer_norm`` bounds its spectral norm."""

    def ball_step(self, seam, state, layer_norm):
        """The state after a ``LinearSeam`` that does not carry the box through
        (``walk``'s ``box_layers``): bounds with an l2 ball keep the ball's bounds alone;
        the default, for bounds without one, is ``linear_step``."""
        return self.linear_step(seam, state, layer_norm)

    def activation_step(self, seam, state):
        """The state after an ``ActivationSeam`` (default: its box and ball rule)."""
        return seam.propagate(state)

    def shape_step(self, seam, state):
        """The state after a ``ShapeSeam`` (a pure reshape)."""
        return seam.propagate(state)

    def before_linear(self, network, k, state, in_masks, out_masks, context):
        """The state entering the linear layer after hidden linear layer ``k``, once that
        layer's masks ``in_masks[k]`` / ``out_masks[k]`` are final, and what the bound
        records for layer ``k`` (``Propagation.records``).

        Args:
            network: the ``SeamNetwork``.
            k: index of the hidden linear layer just finished (into ``hidden_layers``).
            state: the ``BoundState`` after its activations and reshapes.
            in_masks, out_masks: the walk's masks so far (one per hidden layer <= k).
            context: the walk's ``BoundContext``, or None (a walk without one).

        Returns:
            (state, record); the default keeps the state and records None.
        """
        return state, None

    def after_linear(self, network, index, state, activations, epsilon, context):
        """The state after hidden linear seam ``index`` (``network.seams[index]``), given
        its ``linear_step`` result ``state``, the ``ActivationBox``es of the activations
        before it, the walk's ``epsilon`` and ``context``; the default keeps ``state``.
        A bound may only tighten the box: it must still enclose every output reachable
        in the ball."""
        return state

    @abc.abstractmethod
    def logit_step(self, network, propagation, epsilon, reference, context):
        """``Margins`` from the walk's ``Propagation`` against class ``reference`` (B,)
        (None: the predicted class), with a ``BoundContext``."""


_REGISTRY = {}


def register(cls):
    """Class decorator: makes ``cls()`` available as ``get_bound(cls.name)``."""
    if not cls.name or cls.name in _REGISTRY:
        raise ValueError(f"a bound needs a new, non-empty name. Received: {cls.name!r}")
    _REGISTRY[cls.name] = cls()
    return cls


def bound_names(norm=None):
    """Registered bound names, for ``norm`` ('l2' / 'linf') or all."""
    return tuple(name for name, bound in _REGISTRY.items()
                 if norm is None or bound.norm == norm)


def get_bound(bound, norm=None):
    """The ``Bound`` named ``bound`` (or ``bound`` itself when it is one); ValueError for
    an unknown name or a bound of another norm than ``norm``."""
    found = bound if isinstance(bound, Bound) else _REGISTRY.get(bound)
    if found is None or (norm is not None and found.norm != norm):
        raise ValueError(f"bound must be one of {bound_names(norm)}. Received: "
                         f"bound={bound!r}")
    return found


def initial_box_ball(x, epsilon):
    """(x, x - eps, x + eps, eps, eps): the clean point, its box and its ball (eps a
    scalar); the box is x +- eps in every coordinate, so eps is its ``half_width``."""
    radius = tf.fill(tf.shape(x)[:1], epsilon)
    return BoundState(x, x - epsilon, x + epsilon, radius, epsilon)
