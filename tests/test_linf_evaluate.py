"""``gl.evaluate`` and ``examples/evaluate.py`` on a LinfCertifiedNet: PGD-linf, the
certificate of ``model.certify``, the l2 stages skipped with a note."""
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import gloro_local as gl
from gloro_local.layers import Dense, Flatten, ReLU

REPO = Path(__file__).resolve().parents[1]
EPS = 0.05


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(model, path, x, y): a small dense LinfCertifiedNet trained two epochs on the
    embedded sample at eps 0.05, saved as .keras, and 120 test points."""
    keras.utils.set_random_seed(3)
    x, y = gl.data.load_numpy("mnist", "train")
    f = keras.Sequential([keras.Input((28, 28, 1)), Flatten(), Dense(64), ReLU(),
                          Dense(10)])
    model = gl.LinfCertifiedNet(f, EPS, relaxation="crown_ibp")
    model.compile(keras.optimizers.Adam(2e-3), loss="mixed_crossentropy")
    model.fit(x, y, batch_size=100, epochs=2, verbose=0,
              callbacks=[gl.training.EpsilonSchedule(EPS, 1),
                         gl.training.KappaSchedule(1.0, 0.0, 1)])
    path = tmp_path_factory.mktemp("linf") / "linf.keras"
    model.save(path)
    xt, yt = gl.data.load_numpy("mnist", "test", limit=120)
    return model, path, xt, yt


def test_report_certified_accuracy_is_the_certificates(saved):
    model, _, x, y = saved
    report = gl.evaluate(model, (x, y), pgd_steps=20, progress=False)
    s = report.summary
    certificate = model.certify(x, y, progress=False)
    assert s["norm"] == "linf" and s["epsilon"] == pytest.approx(EPS)
    assert s["vra_local"] == s["certified_accuracy"] == certificate.certified_accuracy(y)
    assert s["reasons"] == certificate.counts()
    np.testing.assert_array_equal(report.certificate.certified, certificate.certified)
    assert 0.0 < s["certified_accuracy"] <= s["pgd_accuracy"] <= s["clean_accuracy"] <= 1.0
    assert set(s["skipped"]) == {"global bound", "local bounds", "lower bound", "radius"}
    assert s["vra_global"] is None and s["radius"] is None and report.gap is None
    table = report.table()
    assert "PGD-linf accuracy" in table and "skipped: radius" in table
    assert "linf relaxations, full pipeline" in table


def test_pgd_stage_is_pgd_linf(saved):
    model, _, x, y = saved
    accuracy, robust = gl.evaluation.pgd_accuracy(model.f, x, y, 2 * EPS, steps=10,
                                                  seed=5, norm="linf")
    _, broken = gl.attacks.pgd_linf(model.f, x, y, 2 * EPS, steps=10, seed=5)
    correct = np.argmax(model.f(x).numpy(), 1) == y
    np.testing.assert_array_equal(robust, correct & ~broken.numpy())
    assert accuracy == pytest.approx(robust.mean())
    report = gl.evaluate(model, (x, y), 2 * EPS, pgd_steps=10, seed=5, progress=False)
    assert report.summary["pgd_accuracy"] == pytest.approx(accuracy)
    with pytest.raises(ValueError, match="norm must be one of"):
        gl.evaluation.pgd_accuracy(model.f, x, y, EPS, norm="l1")


def test_evaluate_script_reports_an_linf_model(saved, tmp_path):
    model, path, _, _ = saved
    report_path = tmp_path / "eval.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "evaluate.py"), str(path), "--limit", "40",
         "--pgd_steps", "5", "--epsilon", str(2 * EPS), "--report", str(report_path)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(report_path.read_text())
    assert summary["norm"] == "linf" and summary["model_class"] == "LinfCertifiedNet"
    assert summary["points"] == 40 and summary["epsilon"] == pytest.approx(2 * EPS)
    x, y = gl.data.load_numpy("mnist", "test", limit=40)
    assert summary["certified_accuracy"] == model.certify(
        x, y, epsilon=2 * EPS, progress=False).certified_accuracy(y)
    assert "skipped: lower bound" in result.stdout and "PGD-linf accuracy" in result.stdout
