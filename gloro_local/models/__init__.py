"""The Keras model that wires layers and bounds together."""
from gloro_local.models.local_gloro_net import LocalGloroNet
from gloro_local.models.state import ModelState

__all__ = ["LocalGloroNet", "ModelState"]
