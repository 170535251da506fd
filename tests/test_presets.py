"""Presets: the values of the paper's Table 3 and the authors' code, MaxMin thresholds per
layer, every preset valid for the flags, and the warm-up before the epsilon ramp."""
import types

import numpy as np
import pytest
from absl import flags

from gloro_local import architectures, cli, experiment
from gloro_local.layers import ClippedMaxMin
from gloro_local.presets import PRESETS, mnist_linf_eps_train
from gloro_local.training import EpsilonSchedule, LambdaSchedule

# Table 3 of Huang et al. 2021 (appendix C.1): per dataset column.
TABLE_3 = {
    "paper_mnist_4C3F": dict(lr=1e-3, end_lr=5e-6, batch_size=256, eps_train=1.58,
                             lam_sparse=0.0, lam_theta=0.0, eps_warmup_epochs=0, epochs=300,
                             lr_constant_epochs=150, eps_ramp_epochs=150, power_iterations=5),
    "paper_cifar10_4C3F": dict(lr=1e-3, end_lr=1e-6, batch_size=256, eps_train=0.1551,
                               lam_sparse=0.0, lam_theta=0.0, eps_warmup_epochs=20,
                               epochs=800, lr_constant_epochs=400, eps_ramp_epochs=400,
                               power_iterations=2),
    "paper_tiny_imagenet_8C2F": dict(lr=2.5e-4, end_lr=5e-7, batch_size=128, eps_train=0.16,
                                     lam_sparse=0.01, lam_theta=0.1, eps_warmup_epochs=0,
                                     epochs=250, lr_constant_epochs=150,
                                     eps_ramp_epochs=125, power_iterations=1),
    "paper_tiny_imagenet_8C2F_maxmin": dict(lr=1e-4, end_lr=5e-7, batch_size=128,
                                            eps_train=0.16, lam_sparse=0.01, lam_theta=0.1,
                                            eps_warmup_epochs=0, epochs=250,
                                            lr_constant_epochs=150, eps_ramp_epochs=125,
                                            power_iterations=3),
}
# CIFAR-10 uses the same column for every architecture and activation.
for _name in ("paper_cifar10_6C2F", "paper_cifar10_6C2F_gloro_loss",
              "paper_cifar10_6C2F_maxmin"):
    TABLE_3[_name] = TABLE_3["paper_cifar10_4C3F"]


# "Loss Landscape Matters", appendix A.2 (MNIST after CROWN-IBP's Appendix C: the rate
# drops to a tenth at epochs 130 and 190; eps_train = min(0.4, eps_test + 0.1)).
LINF_A2 = {
    "paper_mnist_linf_large": dict(norm="linf", dataset="mnist", arch="large", epochs=200,
                                   eps_warmup_epochs=10, eps_ramp_epochs=50,
                                   batch_size=100, lr=5e-4, lr_milestones=[130, 190],
                                   lr_decay_factor=0.1, epsilon=0.3, eps_train=0.4,
                                   kappa_start=1.0, kappa_end=0.0),
    "paper_cifar10_linf_medium": dict(norm="linf", dataset="cifar10", arch="medium",
                                      epochs=400, eps_warmup_epochs=20,
                                      eps_ramp_epochs=240, batch_size=128, lr=0.003,
                                      lr_decay_every=10, lr_decay_factor=0.5,
                                      epsilon=8 / 255, eps_train=8 / 255, kappa_start=1.0,
                                      kappa_end=0.0),
}


@pytest.mark.parametrize("name", sorted(LINF_A2))
def test_linf_presets_match_appendix_a2(name):
    config = experiment.Config.from_preset(name)
    for field, value in LINF_A2[name].items():
        assert getattr(config, field) == value, field


@pytest.mark.parametrize("eps_test, eps_train", [(0.1, 0.2), (0.2, 0.3), (0.3, 0.4),
                                                 (0.4, 0.4)])
def test_mnist_linf_training_radius(eps_test, eps_train):
    assert mnist_linf_eps_train(eps_test) == eps_train


@pytest.mark.parametrize("name", sorted(TABLE_3))
def test_presets_match_table_3(name):
    config = experiment.Config.from_preset(name)
    for field, value in TABLE_3[name].items():
        assert getattr(config, field) == value, field


def test_every_paper_preset_names_its_dataset():
    papers = {**TABLE_3, **LINF_A2}
    assert sorted(name for name in PRESETS if name.startswith("paper_")) == sorted(papers)
    for name in papers:
        assert experiment.Config.from_preset(name).dataset is not None
    assert experiment.Config.from_preset("quick_mnist").dataset is None
    assert experiment.Config.from_preset("quick_mnist_linf").dataset is None


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_passes_the_flag_validators(name):
    values = flags.FlagValues()
    cli.define_flags("quick_mnist", values)
    values(["prog", f"--preset={name}"])
    config = cli.config_from_flags(values)
    assert config == experiment.check_config(experiment.Config.from_preset(name))
    for field in PRESETS[name]:  # every preset value passes its flag's parser
        value = getattr(config, field)
        text = [str(v) for v in value] if isinstance(value, list) else \
            (value if isinstance(value, bool) else str(value))
        assert cli.parse(field, text) == value, field


@pytest.mark.parametrize("name, shape, classes", [
    ("paper_cifar10_6C2F_maxmin", (32, 32, 3), 10),
    ("paper_tiny_imagenet_8C2F_maxmin", (64, 64, 3), 200)])
def test_maxmin_thresholds_are_set_per_layer(name, shape, classes):
    config = experiment.Config.from_preset(name)
    f = architectures.get(config.arch, input_shape=shape, num_classes=classes,
                          activation=config.activation, seed=0)
    experiment.set_maxmin_thresholds(f, config.maxmin_upper, config.maxmin_lower)
    layers = [layer for layer in f.layers if isinstance(layer, ClippedMaxMin)]
    assert len(layers) == len(config.maxmin_upper)
    for layer, upper, lower in zip(layers, config.maxmin_upper, config.maxmin_lower):
        np.testing.assert_array_equal(layer.upper.numpy(), np.float32(upper))
        np.testing.assert_array_equal(layer.lower.numpy(), np.float32(lower))
    assert config.maxmin_upper[:2] == ([0.1, 0.1] if "cifar" in name else [0.8, 1.0])
    with pytest.raises(ValueError, match="one value per ClippedMaxMin layer"):
        experiment.set_maxmin_thresholds(f, [1.0])


def _ramp_values(callback, model, epochs, steps, read):
    """The value ``read(model)`` at every training batch and at each validation."""
    callback.set_model(model)
    callback.set_params({"steps": steps, "epochs": epochs})
    trace, tests = [], []
    for epoch in range(epochs):
        callback.on_epoch_begin(epoch)
        for batch in range(steps):
            callback.on_train_batch_begin(batch)
            trace.append(read(model))
        callback.on_test_begin()
        tests.append(read(model))
        callback.on_test_end()
    return np.array(trace).reshape(epochs, steps), tests


def test_warm_up_holds_the_first_values_then_ramps():
    model = types.SimpleNamespace(epsilon=None)
    eps = EpsilonSchedule(1.0, 2, eps_test=0.9)
    trace, tests = _ramp_values(
        experiment.Delayed(eps, 2, lambda m: setattr(m, "epsilon", eps.start)), model,
        epochs=5, steps=4, read=lambda m: m.epsilon)
    np.testing.assert_allclose(trace[:2], 1e-3)  # warm-up: eps_train / 1000
    plain, _ = _ramp_values(EpsilonSchedule(1.0, 2, eps_test=0.9),
                            types.SimpleNamespace(epsilon=None), epochs=3, steps=4,
                            read=lambda m: m.epsilon)
    np.testing.assert_allclose(trace[2:], plain)  # then the same ramp, 2 epochs late
    assert tests == [0.9] * 5

    class Lam:
        def __init__(self):
            self.value = None

        def assign(self, value):
            self.value = value
    model = types.SimpleNamespace(robust_loss=types.SimpleNamespace(lam=Lam()))
    lam = LambdaSchedule(0.0, 1.0, 2)
    trace, _ = _ramp_values(
        experiment.Delayed(lam, 1, lambda m: m.robust_loss.lam.assign(lam.start)), model,
        epochs=4, steps=2, read=lambda m: m.robust_loss.lam.value)
    np.testing.assert_allclose(trace, [[0, 0], [0, 0.25], [0.5, 0.75], [1, 1]])


def test_warm_up_before_an_immediate_ramp():
    model = types.SimpleNamespace(epsilon=None)
    eps = EpsilonSchedule(0.5, 0)  # no ramp: eps_train from the first robust epoch
    trace, _ = _ramp_values(
        experiment.Delayed(eps, 1, lambda m: setattr(m, "epsilon", eps.start)), model,
        epochs=2, steps=2, read=lambda m: m.epsilon)
    np.testing.assert_allclose(trace, [[5e-4, 5e-4], [0.5, 0.5]])


def test_paper_cifar_callbacks_warm_up_for_20_epochs(tmp_path):
    config = experiment.Config.from_preset("paper_cifar10_4C3F")
    delayed = [c for c in experiment.callbacks(config, str(tmp_path))
               if isinstance(c, experiment.Delayed)]
    assert [type(c.schedule) for c in delayed] == [EpsilonSchedule, LambdaSchedule]
    assert [c.epochs for c in delayed] == [20, 20]
