"""Smoke tests of the example entry points: tiny data, one epoch, files written; a plain
Keras model file evaluated; data that cannot be found stops with one line."""
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

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
                  "--epochs", "1", "--eps_warmup_epochs", "0", "--eps_ramp_epochs", "1",
                  "--batch_size", "32",
                  "--pgd_steps", "5", "--output_dir", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    _check_outputs(out, (32, 32, 3))


def test_unknown_preset_is_a_usage_error(tmp_path):
    result = _run("train_mnist.py", "--preset", "nope", "--output_dir", str(tmp_path))
    assert result.returncode != 0
    assert "preset" in result.stderr


def _plain_mnist_classifier(path):
    """Trains a small plain Keras classifier on the embedded sample and saves it."""
    x, y = gl.data.load_numpy("mnist", "train", limit=512)
    plain = keras.Sequential([
        keras.Input((28, 28, 1)), keras.layers.Conv2D(8, 4, strides=2, padding="same"),
        keras.layers.ReLU(), keras.layers.Flatten(), keras.layers.Dense(32),
        keras.layers.ReLU(), keras.layers.Dense(10)])
    plain.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    plain.fit(x, y, epochs=1, batch_size=64, verbose=0)
    plain.save(path)
    return plain


def test_evaluate_certifies_a_plain_keras_model_file(tmp_path):
    path = tmp_path / "plain.keras"
    _plain_mnist_classifier(path)
    result = _run("evaluate.py", str(path), "--epsilon", "0.1", "--limit", "16",
                  "--pgd_steps", "2", "--lower_bound_points", "0")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "plain.keras.eval.json").read_text())
    assert summary["points"] == 16 and summary["epsilon"] == pytest.approx(0.1)
    assert 0.0 <= summary["vra_local"] <= summary["pgd_accuracy"] <= 1.0
    assert summary["local_bound"] == "local"
    result = _run("evaluate.py", str(path), "--epsilon", "0.1", "--limit", "16",
                  "--pgd_steps", "2", "--lower_bound_points", "0", "--radius", "layerwise",
                  "--boxes", "relaxation")
    assert result.returncode == 0, result.stderr[-2000:]
    tighter = json.loads((tmp_path / "plain.keras.eval.json").read_text())
    assert tighter["local_bound"] == "local_layerwise_relaxed"
    assert tighter["vra_local"] >= summary["vra_local"]
    result = _run("evaluate.py", str(path), "--limit", "16")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        "evaluate.py: error: wrap needs epsilon to wrap a plain Keras classifier")


def test_a_named_dataset_that_is_missing_stops_with_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _run("train_mnist.py", "--dataset", "mnist", "--data_dir", str(empty),
                  "--output_dir", str(tmp_path / "out"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("train_mnist.py: error: None of train-images-idx3-ubyte.gz")
    assert "embedded MNIST sample" not in result.stderr
    assert not (tmp_path / "out" / "model.keras").exists()
