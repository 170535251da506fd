"""gloro_local: l2-certifiably-robust Keras networks with efficient local Lipschitz bounds."""
from gloro_local import architectures, bounds, data, layers, training
from gloro_local.models import LocalGloroNet
from gloro_local.saving import load_model

__version__ = "0.1.0"
__all__ = ["LocalGloroNet", "architectures", "bounds", "data", "layers", "load_model",
           "training"]
