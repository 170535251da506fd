"""The model's own scalar state, kept in a child layer so that .h5 saving works."""
import keras

from gloro_local.bounds import check_epsilon


@keras.saving.register_keras_serializable(package="gloro_local")
class ModelState(keras.layers.Layer):
    """Holds ``epsilon``, the l2 radius the model certifies, as a non-trainable Keras
    variable (saved with the model, settable by schedules, first-replica aggregation).

    Args:
        epsilon: initial radius, a finite number > 0.
    """

    def __init__(self, epsilon, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = self.add_weight(
            name="epsilon", shape=(),
            initializer=keras.initializers.Constant(float(check_epsilon(epsilon))),
            trainable=False, aggregation="only_first_replica")
        self.built = True

    def get_config(self):
        return {**super().get_config(), "epsilon": float(self.epsilon.numpy())}
