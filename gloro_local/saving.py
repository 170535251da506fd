"""Loading saved LocalGloroNet and LinfCertifiedNet models (.keras and legacy .h5) without custom_objects."""
import os

import keras

from gloro_local import bounds, layers, models, training


def custom_objects():
    """The serializable gloro_local classes by bare name (the .h5 loader needs them).

    Dense, Conv2D, Flatten and ReLU are left out: their files name them
    'gloro_local>Dense' etc. (found through the registry), while a bare 'Dense' or 'ReLU'
    is a plain Keras layer and must stay one."""
    classes = [layers.ReLUTheta, layers.MaxMin, layers.ClippedMaxMin, bounds.GlobalNorms,
               models.ModelState, models.MixingState, models.LocalGloroNet,
               models.LinfCertifiedNet, training.GloroCrossEntropy,
               training.Trades, training.BCPLoss]
    return {cls.__name__: cls for cls in classes}


def load_model(path, compile=True):
    """Loads a model saved with ``model.save('m.keras')`` or ``model.save('m.h5')``.

    Raises FileNotFoundError for a missing file and ValueError for another extension.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No saved model at {path!r}.")
    if not path.endswith((".keras", ".h5")):
        raise ValueError(f"Expected a .keras or .h5 file, got {path!r}.")
    return keras.models.load_model(path, custom_objects=custom_objects(), compile=compile)
