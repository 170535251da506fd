"""gloro_local: l2-certifiably-robust Keras networks with efficient local Lipschitz bounds."""
from gloro_local import bounds, layers

__version__ = "0.1.0"
__all__ = ["bounds", "layers"]
