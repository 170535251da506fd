"""Flatten with the shape seam."""
import keras

from gloro_local.layers.seam import ShapeSeam
from gloro_local.layers.validation import require_channels_last


@keras.saving.register_keras_serializable(package="gloro_local")
class Flatten(ShapeSeam, keras.layers.Flatten):
    """Flattens (B, ...) to (B, prod(...)) in channels_last order; centre, box and masks
    are reshaped alike. ``data_format`` must be 'channels_last' (channels_first would
    transpose before flattening, which is not a pure reshape)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        require_channels_last(self)
