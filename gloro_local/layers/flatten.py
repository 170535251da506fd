"""Flatten with the shape seam."""
import keras

from gloro_local.layers.seam import ShapeSeam


@keras.saving.register_keras_serializable(package="gloro_local")
class Flatten(ShapeSeam, keras.layers.Flatten):
    """Flattens (B, ...) to (B, prod(...)); centre, box and masks are reshaped alike."""
