"""``gl.evaluate`` and ``examples/evaluate.py``: consistent numbers, files, clear errors."""
import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from conftest import dense_mnist_model
import gloro_local as gl

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "evaluate.py"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(model, path): a small dense model trained one epoch at eps 0.3, saved as .keras."""
    model = dense_mnist_model((64, 32), 2500)
    path = tmp_path_factory.mktemp("model") / "small.keras"
    model.save(path)
    return model, path


def test_evaluate_numbers_are_consistent(saved):
    """On a tf.data pipeline of (x, y) batches; every number within its bounds."""
    model, _ = saved
    x, y = gl.data.load_numpy("mnist", "test", limit=80)
    dataset = gl.data.load("mnist", "test", batch_size=32, limit=80)
    report = gl.evaluate(model, dataset, 0.3, pgd_steps=20, lower_bound_points=8,
                         batch_size=32, progress=False, radius_points=0)
    s = report.summary
    assert s["points"] == 80 and s["epsilon"] == pytest.approx(0.3)
    assert s["clean_accuracy"] == np.mean(np.argmax(model.f(x), 1) == y)
    assert 1 >= s["clean_accuracy"] > s["pgd_accuracy"] >= s["vra_local"]
    broken = [gl.attacks.pgd_l2(model.f, x[b:b + 32], y[b:b + 32], 0.3, steps=20, seed=b)[1]
              for b in range(0, 80, 32)]  # the same attack, batch by batch
    assert s["pgd_accuracy"] == np.mean(~np.concatenate(broken))
    assert s["vra_local"] >= s["vra_global"] > 0
    assert sum(s["reasons"].values()) == 80
    assert s["vra_local"] == pytest.approx(report.certificate.certified.mean())
    assert s["mean_local_bound"] <= s["mean_global_bound"]
    assert np.all(report.local_lipschitz <= report.global_lipschitz * (1 + 1e-6))
    assert len(s["varying_fraction"]) == 2  # one entry per activation layer
    assert all(0 <= v <= 1 for v in s["varying_fraction"].values())
    assert len(s["mean_iterations"]) == report.iterations.shape[1] == 2
    assert s["lower_bound"]["points"] == 8
    assert set(s["seconds"]) == {"clean", "pgd", "certify", "global bound", "local bounds",
                                 "lower bound"}
    assert s["radius"] is None and report.certificate.radius is None
    assert s["tol"] == 1e-4 and s["max_iterations"] == 2000
    json.dumps(s, allow_nan=False)
    assert "certified accuracy (global bound alone)" in report.table()


def test_evaluate_local_bound_stage_on_a_subsample(saved):
    """bound_points limits the converged local-bound stage to the first points; the
    certificate still covers every point and agrees with the full run on the subsample."""
    model, _ = saved
    x, y = gl.data.load_numpy("mnist", "test", limit=40)
    full = gl.evaluate(model, (x, y), 0.3, pgd_steps=5, lower_bound_points=0,
                       batch_size=16, progress=False, radius_points=0)
    part = gl.evaluate(model, (x, y), 0.3, pgd_steps=5, lower_bound_points=0,
                       batch_size=16, progress=False, bound_points=10, radius_points=0)
    assert part.summary["bound_points"] == 10 and full.summary["bound_points"] == 40
    assert part.local_lipschitz.shape == (10,) and part.iterations.shape[0] == 10
    # other random start vectors (batch shapes differ), the same converged bound
    np.testing.assert_allclose(part.local_lipschitz, full.local_lipschitz[:10], rtol=1e-3)
    assert part.summary["vra_local"] == full.summary["vra_local"]
    assert part.certificate.certified.shape == (40,)


def test_evaluate_reports_the_certified_radius_consistently_with_the_certificate(saved):
    """A point certified at eps has radius >= eps / (1 + rtol), one refused by the bound
    has radius < eps, a wrong one radius 0; the summary is the distribution of the radii
    of the first radius_points points, and the certificate carries them (nan after)."""
    model, _ = saved
    x, y = gl.data.load_numpy("mnist", "test", limit=30)
    report = gl.evaluate(model, (x, y), 0.3, pgd_steps=5, lower_bound_points=0,
                         bound_points=0, batch_size=16, progress=False, radius_points=24)
    s, c = report.summary["radius"], report.certificate
    radius = c.radius[:24].astype(np.float64)
    assert np.all(np.isnan(c.radius[24:])) and not np.any(np.isnan(radius))
    np.testing.assert_array_equal(s["values"], radius)
    assert s["points"] == 24 and s["bound"] == "local" and s["rtol"] == 0.01
    assert s["mean"] == pytest.approx(radius.mean()) and s["median"] == np.median(radius)
    assert s["quantiles"]["0.5"] == s["median"] and s["min"] <= s["quantiles"]["0.1"]
    reason = c.reason[:24]
    assert np.all(radius[c.certified[:24]] >= 0.3 / 1.01)
    assert np.all(radius[np.isin(reason, ["bound too loose", "attacked", "not converged"])]
                  < 0.3)
    assert np.all(radius[reason == "wrong class"] == 0)
    assert c.certified[:24].any() and (~c.certified[:24]).any()
    assert "seconds" in report.summary and "radius" in report.summary["seconds"]
    assert "median certified radius (24 pts)" in report.table()
    assert "radius: mean" in repr(c)
    json.dumps(report.summary, allow_nan=False)


@pytest.mark.parametrize("data", ["arrays", "dataset"])
def test_evaluate_refuses_zero_examples_with_one_clear_error(saved, data):
    model, _ = saved
    x, y = np.zeros((0, 28, 28, 1), np.float32), np.zeros(0, np.int32)
    empty = (x, y) if data == "arrays" else tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    with pytest.raises(ValueError, match="got 0 examples|0 examples"):
        gl.evaluate(model, empty, 0.3, progress=False)


def run_cli(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def test_cli_prints_report_and_writes_json_and_plots(saved, tmp_path):
    _, path = saved
    result = run_cli(path, "--split", "test", "--epsilon", 0.3,  # the embedded sample
                     "--limit", 40, "--pgd_steps", 10, "--lower_bound_points", 4,
                     "--plots", tmp_path / "plots")
    assert result.returncode == 0, result.stderr
    for line in ("clean accuracy", "PGD accuracy", "certified accuracy (local",
                 "certified accuracy (global", "mean local bound", "points not converged",
                 "seconds: certify", "median certified radius (40 pts)"):
        assert line in result.stdout
    report = json.loads(Path(str(path) + ".eval.json").read_text())  # next to the model
    assert report["points"] == 40 and report["dataset"] == "mnist"
    assert len(report["radius"]["values"]) == 40
    for name in ("bound_ratio.png", "iterations.png", "radius.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# TensorFlow's C++ runtime writes start-up lines to stderr before any Python code can
# configure logging ("I0000 00:00:... cudart_stub.cc:31] ..."); they are not ours. A flag
# that fails its absl validator stops at parsing with absl's message and help hint.
TF_RUNTIME_LOG = re.compile(r"^([IWEF]\d{4} |WARNING: All log messages before absl::)")
ABSL_HINT = "Pass --helpshort or --helpfull to see help on flags."
ONE_LINE_ERROR = re.compile(r"^(evaluate\.py: error: |FATAL Flags parsing error: flag --)")


def cifar_folder(tmp_path):
    """A data folder with a synthetic CIFAR-10 test batch (python pickle)."""
    batch = {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 3]}
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump(batch, f)
    return tmp_path


@pytest.mark.parametrize("case", ["missing file", "epsilon 0", "negative epsilon",
                                  "cifar10 data for an MNIST model", "not a model"])
def test_cli_bad_input_is_one_line_error(saved, tmp_path, case):
    _, path = saved
    if case == "missing file":
        args = [tmp_path / "nope.keras"]
    elif case == "epsilon 0":
        args = [path, "--epsilon", 0]
    elif case == "negative epsilon":
        args = [path, "--epsilon=-1"]
    elif case == "cifar10 data for an MNIST model":
        args = [path, "--dataset", "cifar10", "--data_dir", cifar_folder(tmp_path)]
    else:
        (tmp_path / "junk.keras").write_text("not a model")
        args = [tmp_path / "junk.keras"]
    result = run_cli(*args)
    lines = [line for line in result.stderr.splitlines()
             if line.strip() and not TF_RUNTIME_LOG.match(line) and line != ABSL_HINT]
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert len(lines) == 1 and ONE_LINE_ERROR.match(lines[0]), result.stderr
