"""Smoke tests of the example entry points: tiny data, one epoch, files written."""
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np

import gloro_local as gl

REPO = Path(__file__).resolve().parents[1]


def _run(script, *flags):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, str(REPO / "examples" / script), *flags],
                          capture_output=True, text=True, env=env, timeout=900)


def _check_outputs(folder, x_shape):
    report = json.loads((folder / "report.json").read_text())
    for key in ("clean_accuracy", "pgd_accuracy", "certified_accuracy"):
        assert 0.0 <= report["results"][key] <= 1.0
    assert report["results"]["certified_accuracy"] <= report["results"]["pgd_accuracy"]
    x = np.random.default_rng(0).random((4,) + x_shape, dtype=np.float32)
    outputs = [gl.load_model(folder / name)(x).numpy() for name in ("model.keras", "model.h5")]
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_train_mnist_runs_offline_and_writes_models(tmp_path):
    result = _run("train_mnist.py", "--epochs", "1", "--limit_train", "256",
                  "--limit_test", "64", "--pgd_steps", "5", "--output_dir", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "certified" in result.stdout and "saved" in result.stdout
    _check_outputs(tmp_path, (28, 28, 1))


def _write_cifar_batches(folder, rng):
    folder.mkdir()
    for name, count in [(f"data_batch_{k}", 20) for k in range(1, 6)] + [("test_batch", 20)]:
        batch = {b"data": rng.integers(0, 256, (count, 3 * 32 * 32), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, count).tolist()}
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle)


def test_train_cifar10_runs_on_a_tiny_synthetic_set(tmp_path):
    data_dir = tmp_path / "cifar-10-batches-py"
    _write_cifar_batches(data_dir, np.random.default_rng(0))
    out = tmp_path / "out"
    result = _run("train_cifar10.py", "--data_dir", str(data_dir), "--arch", "2C2F",
                  "--epochs", "1", "--eps_ramp_epochs", "1", "--batch_size", "32",
                  "--pgd_steps", "5", "--output_dir", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    _check_outputs(out, (32, 32, 3))


def test_unknown_preset_is_a_usage_error(tmp_path):
    result = _run("train_mnist.py", "--preset", "nope", "--output_dir", str(tmp_path))
    assert result.returncode != 0
    assert "preset" in result.stderr
