"""Sound upper bounds of the global norms of every hidden linear layer (certificates)."""
from typing import List, NamedTuple

import numpy as np
import tensorflow as tf

from gloro_local.bounds.start_vectors import top_singular_vectors

SAFE_RANGE = (1e-30, 1e30)


def check_weights(layers):
    """FloatingPointError when a weight of ``layers`` is NaN or Inf (no bound is computed
    from it, and nothing is silently replaced by 0); ValueError for a quantized layer,
    whose kernel is not the weight the bounds read."""
    for layer in layers:
        if getattr(layer, "quantization_mode", None) is not None:
            raise ValueError(f"Layer {layer.name!r} is quantized "
                             f"({layer.quantization_mode}); gloro_local bounds need float "
                             "kernels.")
        for weight in layer.weights:
            if not np.all(np.isfinite(np.asarray(weight.numpy()))):
                raise FloatingPointError(f"The model's weight {weight.path!r} contains NaN "
                                         "or Inf; refusing to compute bounds.")


def sound_global_norms(network):
    """Per hidden linear layer, a float32-representable float >= ||A_l||_2, from the
    layer's ``norm_upper_bound`` (Dense: the exact top singular value in float64; Conv2D:
    the circular-embedding bound), each with a rounding margin. These, never
    power-iteration estimates, are the global norms that enter a certificate: the ball
    radius that clips the boxes, the global stage, and the cap on every local norm."""
    check_weights(network.layers)
    norms = [float(seam.norm_upper_bound(shape)) for seam, shape in network.hidden_layers()]
    for k, norm in enumerate(norms):
        if norm and not SAFE_RANGE[0] <= norm <= SAFE_RANGE[1]:
            raise FloatingPointError(
                f"Hidden layer {k} has norm {norm:.3g}, outside {SAFE_RANGE}: float32 bound "
                "arithmetic at that scale under- or overflows; rescale the weights.")
    return norms


class CertificateGlobals(NamedTuple):
    """What a certificate takes from the weights once, before any sample: ``sigmas``, a
    sound upper bound of every hidden layer's norm, and ``vectors``, an estimate of every
    hidden layer's top right singular vector (only a start for power iteration)."""

    sigmas: List[float]
    vectors: List[tf.Tensor]


def certificate_globals(network, seed=0):
    """``CertificateGlobals`` of ``network`` from its weights alone (``sound_global_norms``
    and ``top_singular_vectors`` from seed ``seed``)."""
    sigmas = sound_global_norms(network)
    return CertificateGlobals(sigmas, top_singular_vectors(network, seed))
