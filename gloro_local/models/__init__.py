"""The Keras model that wires layers and bounds together, and its certificates."""
from gloro_local.models.certificate import REASONS, Certificate
from gloro_local.models.certify import certify
from gloro_local.models.linf_certified_net import LinfCertifiedNet
from gloro_local.models.local_gloro_net import LocalGloroNet
from gloro_local.models.mixing_state import MixingState
from gloro_local.models.state import ModelState

__all__ = ["Certificate", "LinfCertifiedNet", "LocalGloroNet", "MixingState", "ModelState",
           "REASONS", "certify"]
