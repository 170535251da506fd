"""Train-then-evaluate driver shared by the example scripts."""
import dataclasses
import json
import os
import time
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from gloro_local import architectures, data
from gloro_local.evaluation import evaluate
from gloro_local.models import LocalGloroNet
from gloro_local.presets import PRESETS
from gloro_local.training import (EpsilonSchedule, LambdaSchedule, LearningRateSchedule,
                                  get_loss)


@dataclasses.dataclass
class Config:
    """Everything one training run needs; ``PRESETS`` hold the papers' values."""

    dataset: str = "mnist"
    data_dir: Optional[str] = None
    arch: str = "2C2F"
    activation: str = "relu_theta"
    theta_init: float = 1.0
    epsilon: float = 0.3
    eps_train: Optional[float] = None
    eps_ramp_epochs: int = 0
    eps_schedule: str = "linear"
    epochs: int = 4
    batch_size: int = 128
    loss: str = "crossentropy"
    lam: float = 1.0
    lam_start: Optional[float] = None
    lam_end: Optional[float] = None
    lam_ramp_epochs: int = 0
    bound: str = "local"
    power_iterations: int = 2
    worst_logit_steps: Optional[int] = 10
    local_layers: Optional[Sequence[int]] = None
    lr: float = 1e-3
    end_lr: Optional[float] = None
    lr_constant_epochs: int = 0
    lam_sparse: float = 0.0
    lam_theta: float = 0.0
    training_dtype: str = "auto"
    box_gradient: bool = True
    store: bool = True
    strategy: str = "none"
    output_dir: str = "outputs"
    limit_train: Optional[int] = None
    limit_test: Optional[int] = None
    pgd_steps: int = 100
    seed: int = 0
    verbose: int = 1

    @classmethod
    def from_preset(cls, name, **overrides):
        if name not in PRESETS:
            raise ValueError(f"Unknown preset {name!r}; known: {sorted(PRESETS)}.")
        return cls(**{**PRESETS[name], **overrides})


def _strategy(name):
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "none":
        return tf.distribute.get_strategy()
    raise ValueError(f"strategy must be 'none' or 'mirrored', got {name!r}.")


def build_model(config, input_shape, num_classes):
    """The compiled ``LocalGloroNet`` of ``config`` (call inside the strategy scope)."""
    f = architectures.get(config.arch, input_shape=input_shape, num_classes=num_classes,
                          activation=config.activation, seed=config.seed,
                          theta_init=config.theta_init)
    model = LocalGloroNet(f, config.epsilon, bound=config.bound,
                          power_iterations=config.power_iterations,
                          worst_logit_steps=config.worst_logit_steps,
                          local_layers=config.local_layers, lam_sparse=config.lam_sparse,
                          lam_theta=config.lam_theta, seed=config.seed,
                          training_dtype=config.training_dtype,
                          box_gradient=config.box_gradient)
    lam = config.lam if config.lam_start is None else config.lam_start
    model.compile(keras.optimizers.Adam(config.lr), loss=get_loss(config.loss, lam=lam))
    return model


def callbacks(config, output_dir):
    """Schedules, a per-epoch checkpoint and a backup that resumes interrupted runs."""
    result = [EpsilonSchedule(config.eps_train or config.epsilon, config.eps_ramp_epochs,
                              eps_test=config.epsilon, shape=config.eps_schedule)]
    if config.lam_start is not None:
        result.append(LambdaSchedule(config.lam_start, config.lam_end
                                     if config.lam_end is not None else config.lam,
                                     config.lam_ramp_epochs))
    if config.end_lr is not None:
        result.append(LearningRateSchedule(config.lr, config.end_lr,
                                           config.lr_constant_epochs, config.epochs))
    result.append(keras.callbacks.BackupAndRestore(os.path.join(output_dir, "backup")))
    return result


def train(config):
    """Trains ``config``; returns (model, history dict, seconds, test arrays)."""
    os.makedirs(config.output_dir, exist_ok=True)
    x_train, y_train = data.load_numpy(config.dataset, "train", config.data_dir,
                                       config.limit_train)
    x_test, y_test = data.load_numpy(config.dataset, "test", config.data_dir,
                                     config.limit_test)
    strategy = _strategy(config.strategy)
    with strategy.scope():
        model = build_model(config, x_train.shape[1:], int(y_train.max()) + 1)
        use_store = config.store and config.bound == "local"
        if use_store:
            model.attach_store(len(y_train))
    train_ds = data.load(config.dataset, "train", config.batch_size, with_index=use_store,
                         data_dir=config.data_dir, shuffle=True, limit=config.limit_train,
                         seed=config.seed)
    if config.verbose:
        print(f"training {config.arch} with the {config.bound} bound; training-time bounds "
              f"in {model.training_dtype} (training_dtype={config.training_dtype!r})"
              + ("" if config.box_gradient else ", box gradient stopped"))
    begin = time.perf_counter()
    history = model.fit(train_ds, epochs=config.epochs, verbose=config.verbose,
                        callbacks=callbacks(config, config.output_dir))
    seconds = time.perf_counter() - begin
    return model, history.history, seconds, (x_test, y_test)


def save(model, output_dir, name="model"):
    """Saves ``name.keras`` and ``name.h5``; returns their paths."""
    paths = [os.path.join(output_dir, f"{name}.keras"), os.path.join(output_dir, f"{name}.h5")]
    for path in paths:
        model.save(path)
    return paths


def write_json(path, payload):
    with open(path, "w") as handle:
        json.dump(payload, handle, indent=2, default=lambda v: np.asarray(v).tolist())


def evaluate_model(model, x, y, config):
    """Clean, PGD and certified accuracy of ``model`` on (x, y) at ``config.epsilon``:
    ``gl.evaluate`` with its statistics stages switched off."""
    report = evaluate(model, (x, y), config.epsilon, pgd_steps=config.pgd_steps,
                      lower_bound_points=0, bound_points=0, global_bound=False,
                      progress=bool(config.verbose), seed=config.seed)
    summary = report.summary
    return {"clean_accuracy": summary["clean_accuracy"],
            "pgd_accuracy": summary["pgd_accuracy"],
            "certified_accuracy": summary["vra_local"], "reasons": summary["reasons"]}


def run(config):
    """Trains, saves (.keras and .h5), evaluates on the test split and writes report.json."""
    model, history, seconds, (x_test, y_test) = train(config)
    paths = save(model, config.output_dir)
    results = evaluate_model(model, x_test, y_test, config)
    print(f"epsilon {config.epsilon}: clean {results['clean_accuracy']:.3f}  "
          f"PGD {results['pgd_accuracy']:.3f}  certified {results['certified_accuracy']:.3f}"
          f"  ({len(y_test)} test points, training {seconds:.0f} s)")
    print("saved " + ", ".join(paths))
    write_json(os.path.join(config.output_dir, "report.json"),
               {"config": dataclasses.asdict(config), "results": results,
                "training_seconds": seconds,
                "history": {k: [float(v) for v in vals] for k, vals in history.items()}})
    return model, results
