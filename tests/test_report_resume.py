"""experiment.run: a run resumed by BackupAndRestore reports every epoch's history and
time; the class count comes from the dataset; TensorBoard needs its extra."""
import gzip
import importlib.util
import json

import keras
import numpy as np
import pytest

from gloro_local import experiment


class Interrupt(Exception):
    """Stands for a killed job."""


class InterruptAfterFirstEpoch(keras.callbacks.Callback):
    """Records the first epoch's logs, then interrupts training."""

    def __init__(self):
        super().__init__()
        self.logs = None

    def on_epoch_end(self, epoch, logs=None):
        self.logs = dict(logs)
        raise Interrupt()


def tiny_config(tmp_path, **overrides):
    values = dict(epochs=2, eps_ramp_epochs=1, limit_train=64, limit_test=16, batch_size=32,
                  pgd_steps=1, verbose=0, output_dir=str(tmp_path / "run"))
    return experiment.Config.from_preset("quick_mnist", **{**values, **overrides})


def test_a_resumed_run_reports_all_epochs(tmp_path, monkeypatch):
    config = tiny_config(tmp_path)
    interrupt = InterruptAfterFirstEpoch()
    original = experiment.callbacks
    monkeypatch.setattr(experiment, "callbacks",
                        lambda *args: original(*args) + [interrupt])
    with pytest.raises(Interrupt):
        experiment.run(config)
    saved = json.loads((tmp_path / "run" / "backup" / experiment.RUN_LOG).read_text())
    assert len(saved["seconds"]) == 1 and saved["seconds"][0] > 0
    monkeypatch.setattr(experiment, "callbacks", original)

    experiment.run(config)  # resumes at epoch 2 from the backup
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    history = report["history"]
    assert set(history) >= {"loss", "clean_acc", "vra"}
    assert all(len(values) == 2 for values in history.values())
    for key, value in interrupt.logs.items():
        assert history[key][0] == pytest.approx(float(value)), key
    assert report["training_seconds"] > saved["seconds"][0]
    assert not (tmp_path / "run" / "backup").exists()  # finished: the backup is gone


def test_a_fresh_run_reports_only_its_epochs(tmp_path):
    config = tiny_config(tmp_path, epochs=1)
    experiment.run(config)
    experiment.run(config)  # no backup left: a new run, not a resumption
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert all(len(values) == 1 for values in report["history"].values())


def write_idx(path, array):
    header = (0x0800 + array.ndim).to_bytes(4, "big") + b"".join(
        n.to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.tobytes())


def test_class_count_comes_from_the_dataset_not_the_labels(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 40), ("t10k", 10)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz",
                  rng.integers(0, 256, (count, 28, 28), dtype=np.uint8))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz",
                  (np.arange(count) % 8).astype(np.uint8))  # classes 8 and 9 absent
    config = tiny_config(tmp_path, dataset="mnist", data_dir=str(tmp_path))
    (x, y), _, classes = experiment.load_data(config)
    assert y.max() == 7 and classes == 10
    model = experiment.build_model(config, x.shape[1:], classes)
    assert model(x[:2]).shape == (2, 11)  # 10 logits and the bottom logit
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.full(10, 12, np.uint8))
    with pytest.raises(ValueError, match=r"mnist has 10 classes, but its labels span \[12, 12\]"):
        experiment.load_data(config)


def test_tensorboard_without_the_package_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name: None if name == "tensorboard" else object())
    with pytest.raises(ImportError, match=r'pip install -e "\.\[tensorboard\]"'):
        experiment.callbacks(tiny_config(tmp_path, tensorboard=True), str(tmp_path))


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None,
                    reason="the tensorboard extra is not installed")
def test_tensorboard_callback_when_installed(tmp_path):
    result = experiment.callbacks(tiny_config(tmp_path, tensorboard=True), str(tmp_path))
    boards = [c for c in result if isinstance(c, keras.callbacks.TensorBoard)]
    assert len(boards) == 1 and boards[0].log_dir == str(tmp_path / "tensorboard")
