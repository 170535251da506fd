"""The mixing weight beta of a LinfCertifiedNet, kept in a child layer (saved with it)."""
import math

import keras


def check_unit_interval(value, name):
    """``value`` as a float; ValueError unless it is a real number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1]. Received: {name}={value!r}")
    return float(value)


@keras.saving.register_keras_serializable(package="gloro_local")
class MixingState(keras.layers.Layer):
    """Holds ``beta`` in [0, 1], the weight of the linear-relaxation margins against the
    IBP margins in training, m = (1 - beta) m_IBP + beta m_relaxation (a non-trainable
    Keras variable, set by ``BetaSchedule``).

    Args:
        beta: initial weight, a number in [0, 1].
    """

    def __init__(self, beta=1.0, **kwargs):
        super().__init__(**kwargs)
        self.beta = self.add_weight(
            name="beta", shape=(),
            initializer=keras.initializers.Constant(check_unit_interval(beta, "beta")),
            trainable=False, aggregation="only_first_replica")
        self.built = True

    def get_config(self):
        return {**super().get_config(), "beta": float(self.beta.numpy())}
