"""What every certified Keras model of the library shares: the wrapped classifier, the
radius variable, ``model(x) = [z, bottom]``, the SavedModel export and the config."""
import keras
import tensorflow as tf

from gloro_local.bounds import SeamNetwork, check_epsilon
from gloro_local.models.state import ModelState


class CertifiedModel:
    """A mixin for ``keras.Model`` subclasses that certify a classifier ``f``.

    ``model(x) = [z, bottom]`` (B, K + 1): the logits and the bottom logit of the
    subclass's ``margins(x)`` at ``model.epsilon`` against the predicted class; x is
    certified at the model's estimate when z_j > bottom. Subclasses call
    ``wrap_classifier(f, epsilon)`` in ``__init__`` and define ``margins`` and
    ``get_config`` (whose 'f' entry ``from_config`` deserializes).
    """

    def wrap_classifier(self, f, epsilon):
        """Checks ``f`` (a built ``keras.Sequential`` starting with ``keras.Input``), wraps
        its layers in a ``SeamNetwork`` and creates the radius variable."""
        if not isinstance(f, keras.Sequential):
            raise TypeError(f"f must be a keras.Sequential. Received: {type(f).__name__}")
        try:
            input_shape = tuple(f.input_shape[1:])
        except (AttributeError, ValueError) as error:
            raise ValueError("f must start with keras.Input(shape) so that its input "
                             "shape is known.") from error
        self.f = f
        self.network = SeamNetwork(f.layers, input_shape)
        self.state = ModelState(epsilon, name="model_state")

    @property
    def epsilon(self):
        """The radius, a Keras variable; assign a finite number > 0 to change it."""
        return self.state.epsilon

    @epsilon.setter
    def epsilon(self, value):
        self.state.epsilon.assign(check_epsilon(value))

    @property
    def num_classes(self):
        return self.network.num_classes

    def call(self, inputs, training=False):
        x, _ = self.split_index(inputs)
        if x.shape[0] == 0:  # an empty batch: nothing to bound
            self.network.check_shape(x.shape)
            return tf.zeros((0, self.num_classes + 1), tf.float32)
        result = self.margins(x, training=False)
        return tf.concat([result.logits, result.bottom[:, None]], axis=-1)

    def compute_output_shape(self, input_shape):
        return (None, self.num_classes + 1)

    def export(self, filepath, format="tf_saved_model", verbose=True, input_signature=None,
               **kwargs):
        """Writes a deployable SavedModel whose ``serve`` endpoint (and
        ``serving_default`` signature) maps a float32 batch to ``[logits, bottom]``
        (B, classes + 1), like ``model(x)``; ``tf.saved_model.load(filepath)`` runs it in a
        process that never imports gloro_local. ``input_signature`` defaults to
        (None,) + the network's input shape in float32; the other arguments are those of
        ``keras.Model.export``. ``model.f.export(path)`` exports the plain classifier."""
        if input_signature is None:
            input_signature = [tf.TensorSpec((None,) + self.network.input_shape, tf.float32)]
        return super().export(filepath, format=format, verbose=verbose,
                              input_signature=input_signature, **kwargs)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        f = keras.saving.deserialize_keras_object(config.pop("f"),
                                                  custom_objects=custom_objects)
        return cls(f, **config)
