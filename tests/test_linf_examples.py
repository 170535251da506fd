"""``train_mnist.py --norm linf``: the flags, the model and schedules the experiment
builds, the step decays of the papers' presets, and an offline run writing report.json."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gloro_local as gl
from gloro_local import experiment
from gloro_local.training import BetaSchedule, EpsilonSchedule, KappaSchedule
from test_flags import parse

REPO = Path(__file__).resolve().parents[1]




def test_norm_linf_starts_from_the_scripts_linf_preset():
    config = parse("--norm=linf", "--relaxation=ibp")
    assert config == experiment.Config.from_preset("quick_mnist_linf", relaxation="ibp")
    assert parse("--norm=linf", preset="paper_cifar10_4C3F") == \
        experiment.Config.from_preset("paper_cifar10_linf_medium")
    assert parse("--preset=paper_mnist_linf_large", "--epsilon=0.1",
                 "--eps_train=0.2").arch == "large"
    assert parse().norm == "l2"  # without --norm the l2 default is unchanged


@pytest.mark.parametrize("relaxation, beta", [("crown_ibp", (1.0, 0.0)),
                                              ("optimized", (1.0, 1.0)),
                                              ("ibp", (1.0, 1.0))])
def test_linf_defaults_follow_the_paper(relaxation, beta):
    config = experiment.Config.from_preset("quick_mnist_linf", relaxation=relaxation)
    assert experiment.linf_schedule(config) == (relaxation, (1.0, 0.0), beta)
    config = experiment.Config(norm="linf", loss="mixed_crossentropy", beta_end=0.5)
    assert experiment.linf_schedule(config) == ("crown_ibp", (1.0, 0.0), (1.0, 0.5))


def test_linf_model_schedules_and_warm_up(tmp_path):
    config = experiment.Config.from_preset("quick_mnist_linf", relaxation="optimized",
                                           kappa_start=0.8, kappa_end=0.2)
    model = experiment.build_model(config, (28, 28, 1), 10)
    assert isinstance(model, gl.LinfCertifiedNet) and model.relaxation == "optimized"
    assert float(model.robust_loss.lam.numpy()) == pytest.approx(0.2)  # 1 - kappa_start
    delayed = [c for c in experiment.callbacks(config, str(tmp_path))
               if isinstance(c, experiment.Delayed)]
    assert [type(c.schedule) for c in delayed] == [EpsilonSchedule, KappaSchedule,
                                                   BetaSchedule]
    assert [c.epochs for c in delayed] == [1, 1, 1]
    model.robust_loss.lam.assign(0.9)
    model.beta.assign(0.3)
    for callback in delayed:  # the warm-up epoch holds the first values
        callback.set_model(model)
        callback.set_params({"steps": 4, "epochs": 8})
        callback.on_epoch_begin(0)
    assert float(model.robust_loss.lam.numpy()) == pytest.approx(0.2)
    assert float(model.beta.numpy()) == pytest.approx(1.0)
    for callback in delayed:  # ramp end: kappa_end, beta_end, eps_train
        callback.on_epoch_begin(1 + config.eps_ramp_epochs)
    assert float(model.robust_loss.lam.numpy()) == pytest.approx(0.8)
    assert float(model.epsilon.numpy()) == pytest.approx(config.eps_train)


@pytest.mark.parametrize("preset, rates", [
    ("paper_mnist_linf_large", {0: 5e-4, 129: 5e-4, 130: 5e-5, 189: 5e-5, 190: 5e-6}),
    ("paper_cifar10_linf_medium", {0: 3e-3, 269: 3e-3, 270: 1.5e-3, 280: 7.5e-4,
                                   399: 3e-3 / 2 ** 13})])
def test_step_decays_of_the_paper_presets(tmp_path, preset, rates):
    config = experiment.Config.from_preset(preset)
    decay, = [c for c in experiment.callbacks(config, str(tmp_path))
              if isinstance(c, experiment.StepDecay)]
    for epoch, rate in rates.items():
        assert decay.rate(epoch) == pytest.approx(rate), epoch


def test_train_mnist_norm_linf_runs_offline(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "train_mnist.py"), "--norm", "linf",
         "--relaxation", "ibp", "--epochs", "2", "--eps_ramp_epochs", "1",
         "--limit_train", "300", "--limit_test", "64", "--pgd_steps", "5",
         "--output_dir", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "linf epsilon 0.1" in result.stdout and "ibp relaxation" in result.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    results = report["results"]
    assert report["config"]["norm"] == "linf" and results["norm"] == "linf"
    assert 0.0 <= results["certified_accuracy"] <= results["pgd_accuracy"] \
        <= results["clean_accuracy"] <= 1.0
    assert sum(results["reasons"].values()) == 64
    assert set(results["reasons"]) <= {"ibp", "crown_ibp", "optimized", "attacked", "tie",
                                       "wrong class", "bound too loose"}
    models = [gl.load_model(tmp_path / name) for name in ("model.keras", "model.h5")]
    assert all(isinstance(m, gl.LinfCertifiedNet) and m.relaxation == "ibp"
               for m in models)
    x, y = gl.data.load_numpy("mnist", "test", limit=64)
    np.testing.assert_array_equal(models[0](x).numpy(), models[1](x).numpy())
    assert models[0].certify(x, y, progress=False).certified_accuracy(y) == \
        results["certified_accuracy"]
