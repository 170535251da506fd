"""LinfCertifiedNet: l-infinity certified training with linear relaxations."""
import keras
import tensorflow as tf

from gloro_local.bounds import check_bound, compute_margins
from gloro_local.models.certified_model import CertifiedModel
from gloro_local.models.linf_certify import certify_linf
from gloro_local.models.mixing_state import MixingState
from gloro_local.models.training_steps import TrainingSteps

RELAXATIONS = ("ibp", "crown_ibp", "optimized")


@keras.saving.register_keras_serializable(package="gloro_local")
class LinfCertifiedNet(TrainingSteps, CertifiedModel, keras.Model):
    """A classifier ``f`` certified against l-infinity perturbations ||delta||_inf <= eps:
    ``model(x) = [z, bottom]``, as ``LocalGloroNet`` but with linear-relaxation bounds
    ("Loss Landscape Matters", ICLR 2021 submission; Zhang et al. 2020; Gowal et al.
    2018).

    For every class i and the reference j (label in training, prediction at inference)
    a lower bound m_i <= min_{||delta||_inf <= eps} z_j(x + delta) - z_i(x + delta) gives
    the worst-case logits z*_i = z_j - m_i and bottom = max_{i != j} z*_i; x is certified
    iff z_j > bottom iff every m_i > 0. ``relaxation`` picks m:
    'ibp': interval bound propagation; 'crown_ibp': IBP pre-activation boxes and CROWN's
    backward pass, m_i = Lambda_i . x - eps ||Lambda_i||_1 + c_i; 'optimized': CROWN-IBP
    whose unstable-ReLU lower slopes take one projected sign-gradient step from
    a ~ U[0, 1] (eq. 6). In training m = (1 - beta) m_IBP + beta m_relaxation (eq. 7;
    ``model.beta``, a variable for ``BetaSchedule``), and the loss
    ``'mixed_crossentropy'`` is kappa CE(z) + (1 - kappa) CE(z*) (``KappaSchedule``).

    Args:
        f: a built ``keras.Sequential`` (starting with ``keras.Input``) of supported
            layers ending in a Dense logit layer with at least two units.
        epsilon: the l-infinity radius (finite, > 0); ``model.epsilon`` is a variable.
        relaxation: 'ibp', 'crown_ibp' or 'optimized'.
        beta: initial mixing weight of the relaxation against IBP in training, in [0, 1]
            (``model(x)`` and ``certify`` use the relaxation alone).
        eta: the sign-gradient step of 'optimized' (>= 1 in the paper).
        seed: seed of the 'optimized' start slopes outside training and of PGD in
            ``certify`` (training draws fresh slopes every step).
    """

    def __init__(self, f, epsilon, relaxation="crown_ibp", beta=1.0, eta=1.0, seed=0,
                 **kwargs):
        super().__init__(**kwargs)
        if relaxation not in RELAXATIONS:
            raise ValueError(f"relaxation must be one of {RELAXATIONS}. Received: "
                             f"relaxation={relaxation!r}")
        self.wrap_classifier(f, epsilon)
        self.bound = check_bound(relaxation, norm="linf")
        self.mixing = MixingState(beta, name="mixing")
        self.eta = float(eta)
        if not self.eta > 0:
            raise ValueError(f"eta must be > 0. Received: eta={eta!r}")
        self.seed = int(seed)
        self.store = None
        self.lam_sparse = 0.0
        self.lam_theta = 0.0
        self.built = True

    @property
    def beta(self):
        """The weight of the relaxation against IBP in training, a Keras variable."""
        return self.mixing.beta

    @property
    def relaxation(self):
        return self.bound

    def margins(self, x, reference=None, training=False, index=None):
        """The bound pass of ``relaxation`` at the current epsilon (``Margins``); in
        training mixed with IBP by ``beta`` and with fresh 'optimized' start slopes."""
        x = self.network.check_input(x)
        options = dict(beta=self.mixing.beta if training else 1.0, eta=self.eta,
                       seed=None if training else self.seed)
        return compute_margins(self.network, x, tf.cast(self.state.epsilon, tf.float32),
                               [], self.bound, reference, [], 0, **options)

    def certify(self, x, y=None, **kwargs):
        """Certificates for ``x`` (see ``gloro_local.models.linf_certify.certify_linf``)."""
        return certify_linf(self, x, y, **kwargs)

    def get_config(self):
        return {**super().get_config(), "f": keras.saving.serialize_keras_object(self.f),
                "epsilon": float(self.state.epsilon.numpy()), "relaxation": self.bound,
                "beta": float(self.mixing.beta.numpy()), "eta": self.eta,
                "seed": self.seed}
