"""gloro_local: l2-certifiably-robust Keras networks with efficient local Lipschitz bounds."""
from gloro_local import architectures, attacks, bounds, data, evaluation, layers, training
from gloro_local.evaluation import evaluate
from gloro_local.models import LinfCertifiedNet, LocalGloroNet
from gloro_local.saving import load_model
from gloro_local.wrapping import wrap

__version__ = "0.1.0"
__all__ = ["LinfCertifiedNet", "LocalGloroNet", "architectures", "attacks", "bounds", "data", "evaluate",
           "evaluation", "layers", "load_model", "training", "wrap"]
