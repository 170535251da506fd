"""``wrap``: a LocalGloroNet from a trained model or a saved model file."""
import os

import keras

from gloro_local.models import LocalGloroNet
from gloro_local.saving import load_model


def wrap(model_or_path, epsilon=None, **kwargs):
    """A ``LocalGloroNet`` for ``model_or_path``, ready to ``certify``.

    Args:
        model_or_path: a ``LocalGloroNet`` (returned as it is, with ``epsilon`` set when
            given), a plain ``keras.Sequential`` classifier of Conv2D / Dense / ReLU /
            Flatten layers ending in a linear Dense logit layer (wrapped as
            ``LocalGloroNet(model, epsilon, **kwargs)``, its layers and weights shared),
            or the path of a ``.keras`` / ``.h5`` file holding either.
        epsilon: the l2 radius; required for a plain classifier.
        **kwargs: further ``LocalGloroNet`` arguments (bound, power_iterations, ...), for a
            plain classifier only.

    Raises:
        FileNotFoundError: no file at the path.
        ValueError: another extension, a file that is not a Keras model, epsilon missing
            for a plain classifier, or kwargs given for a LocalGloroNet.
        TypeError: a model that is not a keras.Sequential, or a layer the bounds do not
            support (named in the message).
    """
    model = model_or_path
    if isinstance(model_or_path, (str, os.PathLike)):
        model = _load(os.fspath(model_or_path))
    if isinstance(model, LocalGloroNet):
        if kwargs:
            raise ValueError("wrap takes LocalGloroNet arguments for plain classifiers only. "
                             f"Received: {sorted(kwargs)} for a LocalGloroNet")
        if epsilon is not None:
            model.epsilon = epsilon
        return model
    if not isinstance(model, keras.Sequential):
        raise TypeError("wrap needs a LocalGloroNet, a keras.Sequential classifier or the "
                        "path of a .keras / .h5 file of either. Received: "
                        f"model_or_path of type {type(model).__name__}")
    if epsilon is None:
        raise ValueError("wrap needs epsilon to wrap a plain Keras classifier. "
                         f"Received: epsilon=None for {model.name!r}")
    return LocalGloroNet(model, epsilon, **kwargs)


def _load(path):
    """The model saved at ``path`` (LocalGloroNet or plain Keras)."""
    try:
        return load_model(path, compile=False)
    except FileNotFoundError:
        raise
    except Exception as error:  # corrupt or foreign files fail in many ways
        raise ValueError(f"Could not load a Keras model from {path!r}: "
                         f"{type(error).__name__}: {error}") from error
