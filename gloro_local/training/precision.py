"""Which dtype the training-time bound computations use."""
import logging
from pathlib import Path

import tensorflow as tf

TRAINING_DTYPES = ("auto", "float32", "bfloat16", "mixed")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
CPUINFO = Path("/proc/cpuinfo")

logger = logging.getLogger("gloro_local")


def fast_bfloat16(cpuinfo=CPUINFO):
    """True when this machine computes bfloat16 convolutions natively: a GPU of compute
    capability 8.0 or newer, or a CPU that reports AVX512-BF16 or AMX-BF16 (read from
    ``cpuinfo``, Linux); False where that cannot be told."""
    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if capability and tuple(capability) >= (8, 0):
            return True
    try:
        flags = Path(cpuinfo).read_text().split()
    except OSError:
        return False
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def bound_dtypes(training_dtype):
    """(walk dtype, iteration dtype) of a resolved ``training_dtype``: the boxes, masks
    and clean pass run in the first, the training power iterations (their operator
    applications and ``training_sigma``) in the second. 'mixed' keeps the bounds in
    float32 and iterates in bfloat16: a fixed number of steps only chooses the
    direction u, and sigma = ||B u|| moves by at most 2^-8 relative with bfloat16
    rounding, far less than the steps themselves leave."""
    if training_dtype == "mixed":
        return "float32", "bfloat16"
    return training_dtype, training_dtype


def describe(training_dtype):
    """How a resolved ``training_dtype`` computes the training bounds, for run logs."""
    walk, iteration = bound_dtypes(training_dtype)
    return walk if walk == iteration else f"{walk} with {iteration} power iterations"


def resolve_training_dtype(name, cpuinfo=CPUINFO):
    """'float32', 'bfloat16' or 'mixed' (``bound_dtypes``) for a ``training_dtype``
    argument: 'auto' picks bfloat16 where ``fast_bfloat16`` holds, float32 elsewhere,
    and logs the choice (logger 'gloro_local', level INFO). Raises ValueError for any
    other name."""
    if name not in TRAINING_DTYPES:
        raise ValueError(f"training_dtype must be one of {TRAINING_DTYPES}. "
                         f"Received: training_dtype={name!r}")
    if name != "auto":
        return name
    chosen = "bfloat16" if fast_bfloat16(cpuinfo) else "float32"
    logger.info("training_dtype='auto': bound computations in training run in %s (%s)",
                chosen, "this machine has native bfloat16" if chosen == "bfloat16"
                else "no native bfloat16 found")
    return chosen
