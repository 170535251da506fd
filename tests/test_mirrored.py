"""fit under tf.distribute.MirroredStrategy (2 logical CPU devices) against one device.

The runs happen in tests/mirrored_worker.py, in a subprocess, because logical devices
must be configured before TensorFlow initialises. Both runs start from the same weights
and see the same batches in the same order; training-time power iterations start from
the (deterministic) per-sample store, so the two runs must agree to float tolerance.
Every batch splits evenly over the replicas: with an uneven last batch, Keras 3 weights
the replicas' mean losses equally, not their samples, for plain Keras models too.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

WORKER = Path(__file__).resolve().parent / "mirrored_worker.py"
N_WEIGHTS = 11  # 2 x (kernel, bias, theta) + logit (kernel, bias) + epsilon + 2 iterates
ITERATES = (9, 10)
SCENARIO = "local_store"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mirrored")
    out = folder / "runs.npz"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, str(WORKER), str(out), str(folder)], env=env,
                            capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        pytest.fail(f"mirrored_worker.py failed ({result.returncode}):\n"
                    f"{result.stderr[-4000:]}")
    with np.load(out) as npz:
        return {key: npz[key] for key in npz.files}


def test_same_weights_as_one_device(runs, scenario=SCENARIO):
    for k in range(N_WEIGHTS):
        single = runs[f"{scenario}/single/weight_{k}"]
        mirrored = runs[f"{scenario}/mirrored/weight_{k}"]
        # global iterates converge to a tolerance of 1e-5 at the epoch's end
        atol = 1e-5 if k in ITERATES else 1e-6
        np.testing.assert_allclose(mirrored, single, rtol=1e-5, atol=atol, err_msg=f"weight {k}")
    # both runs started from the same weights, and training moved them
    for k in (0, 3, 6):  # the kernels
        initial = runs[f"{scenario}/single/initial_weight_{k}"]
        np.testing.assert_array_equal(runs[f"{scenario}/mirrored/initial_weight_{k}"], initial)
        assert np.abs(runs[f"{scenario}/single/weight_{k}"] - initial).max() > 1e-3


def test_linf_model_trains_alike_under_mirrored_strategy(runs, scenario="linf_crown_ibp"):
    """LinfCertifiedNet (CROWN-IBP mixed with IBP, the mixed loss) under MirroredStrategy
    ends with the weights of one device."""
    names = sorted({key.rsplit("/", 1)[1] for key in runs
                    if key.startswith(f"{scenario}/single/weight_")})
    assert len(names) >= 6
    for name in names:
        np.testing.assert_allclose(runs[f"{scenario}/mirrored/{name}"],
                                   runs[f"{scenario}/single/{name}"], rtol=1e-5, atol=1e-6,
                                   err_msg=name)
    assert np.abs(runs[f"{scenario}/single/weight_0"]
                  - runs[f"{scenario}/single/initial_weight_0"]).max() > 1e-3
    loss = runs[f"{scenario}/single/loss"]
    assert np.all(np.isfinite(loss))


def test_bfloat16_bounds_train_under_mirrored_strategy(runs, scenario="local_store_bf16"):
    loss = runs[f"{scenario}/mirrored/loss"]
    assert np.all(np.isfinite(loss)) and loss[-1] < loss[0]
    for k in (0, 3, 6):  # the kernels: the same training up to bfloat16 rounding
        np.testing.assert_allclose(runs[f"{scenario}/mirrored/weight_{k}"],
                                   runs[f"{scenario}/single/weight_{k}"], atol=2e-2)
    tables = [key for key in runs if key.startswith(f"{scenario}/mirrored/store_")]
    assert tables and all(np.any(runs[key] != 0) for key in tables)  # rows were written


def test_same_metrics_as_one_device(runs, scenario=SCENARIO):
    for key in ("loss", "vra", "varying"):
        np.testing.assert_allclose(runs[f"{scenario}/mirrored/{key}"],
                                   runs[f"{scenario}/single/{key}"], rtol=1e-5, atol=1e-6,
                                   err_msg=key)
    loss = runs[f"{scenario}/single/loss"]
    assert np.all(np.isfinite(loss)) and loss[-1] < loss[0]


def test_store_loses_no_row(runs):
    for k in (0, 1):
        initial = runs[f"local_store/initial_store_{k}"].astype(np.float32)
        single = runs[f"local_store/single/store_{k}"].astype(np.float32)
        mirrored = runs[f"local_store/mirrored/store_{k}"].astype(np.float32)
        rows = len(initial)
        changed = np.any(mirrored != initial, axis=tuple(range(1, initial.ndim)))
        assert changed.all(), f"layer {k}: {np.sum(~changed)} of {rows} rows never written"
        # every row holds what the single-device run wrote (fp16 storage)
        np.testing.assert_allclose(mirrored, single, atol=2e-3, err_msg=f"layer {k}")
        norms = np.linalg.norm(mirrored.reshape(rows, -1), axis=1)
        np.testing.assert_allclose(norms, 1.0, atol=2e-2)
        # each replica's copy received every row
        for j in (0, 1):
            copy = runs[f"local_store/mirrored/replica_{j}_store_{k}"]
            np.testing.assert_array_equal(copy, runs[f"local_store/mirrored/store_{k}"])


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_save_and_load_after_mirrored_training(runs, fmt):
    np.testing.assert_array_equal(runs[f"saved/{fmt}/outputs"], runs["saved/outputs"])
    for k in range(N_WEIGHTS):
        np.testing.assert_array_equal(runs[f"saved/{fmt}/weight_{k}"],
                                      runs[f"local_store/mirrored/weight_{k}"])
    assert not runs[f"saved/{fmt}/has_store"]
    assert np.all(np.isfinite(runs["saved/continued_loss"]))
