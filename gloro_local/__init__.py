"""gloro_local: l2-certifiably-robust Keras networks with efficient local Lipschitz bounds."""
from gloro_local import bounds, layers, training
from gloro_local.models import LocalGloroNet
from gloro_local.saving import load_model

__version__ = "0.1.0"
__all__ = ["LocalGloroNet", "bounds", "layers", "load_model", "training"]
