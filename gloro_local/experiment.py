"""Train-then-evaluate driver shared by the example scripts."""
import dataclasses
import functools
import importlib.util
import os
import shutil
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from gloro_local import architectures, data, multi_worker
from gloro_local.bounds import get_bound
from gloro_local.bounds.input_checks import check_images
from gloro_local.evaluation import evaluate
from gloro_local.layers import ClippedMaxMin
from gloro_local.models import LinfCertifiedNet, LocalGloroNet
from gloro_local.presets import PRESETS
from gloro_local.training import (BetaSchedule, Delayed, EpsilonSchedule, KappaSchedule,
                                  LambdaSchedule, LearningRateSchedule, StepDecay,
                                  WorkerBackupAndRestore, get_loss, worker_shard)
from gloro_local.training import precision
from gloro_local.training.run_log import RunLog, write_json

RUN_LOG = "run_log.json"


@dataclasses.dataclass
class Config:
    """Everything one training run needs; ``PRESETS`` hold the papers' values.

    ``dataset=None`` is the quick default: MNIST, from ``data_dir`` or
    tensorflow-datasets when present, else the sample embedded in the package. A named
    dataset must be found (``data.load_numpy`` with ``sample_fallback=False``).

    ``norm='l2'`` trains a ``LocalGloroNet``; ``norm='linf'`` a ``LinfCertifiedNet`` with
    ``relaxation`` (default 'crown_ibp') and the mixed loss 'mixed_crossentropy', kappa
    ramped ``kappa_start`` -> ``kappa_end`` (default 1 -> 0) and beta ``beta_start`` ->
    ``beta_end`` (default 1 -> 0 for 'crown_ibp', 1 -> 1 otherwise) together with
    epsilon, after the same warm-up (see ``linf_schedule``). The l2-only fields (bound,
    power iterations, lambda, sparsity, ...) must keep their defaults then.

    The learning rate is constant, or decays exponentially to ``end_lr``, or by
    ``lr_decay_factor`` at each epoch of ``lr_milestones``, or by ``lr_decay_factor``
    every ``lr_decay_every`` epochs after the warm-up and ramp (``StepDecay``).
    """

    norm: str = "l2"
    relaxation: Optional[str] = None
    beta_start: Optional[float] = None
    beta_end: Optional[float] = None
    kappa_start: Optional[float] = None
    kappa_end: Optional[float] = None
    dataset: Optional[str] = None
    data_dir: Optional[str] = None
    arch: str = "2C2F"
    activation: str = "relu_theta"
    theta_init: float = 1.0
    maxmin_upper: Optional[Sequence[float]] = None
    maxmin_lower: Optional[Sequence[float]] = None
    epsilon: float = 0.3
    eps_train: Optional[float] = None
    eps_warmup_epochs: int = 0
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
    lr_milestones: Optional[Sequence[int]] = None
    lr_decay_every: int = 0
    lr_decay_factor: float = 0.1
    lam_sparse: float = 0.0
    lam_theta: float = 0.0
    training_dtype: str = "auto"
    box_gradient: bool = True
    box_layers: Optional[int] = None
    store: bool = True
    strategy: str = "none"
    tensorboard: bool = False
    output_dir: str = "outputs"
    limit_train: Optional[int] = None
    limit_test: Optional[int] = None
    pgd_steps: int = 100
    seed: int = 0
    verbose: int = 1

    @classmethod
    def from_preset(cls, name, **overrides):
        """The preset ``name`` with ``overrides`` applied."""
        if name not in PRESETS:
            raise ValueError(f"Unknown preset {name!r}; known: {sorted(PRESETS)}.")
        return cls(**{**PRESETS[name], **overrides})

    @property
    def dataset_name(self):
        """The dataset actually loaded ('mnist' for the quick default)."""
        return self.dataset or "mnist"


def _check_warmup(config):
    if config.eps_warmup_epochs >= config.epochs:
        raise ValueError("eps_warmup_epochs must leave epochs to train at eps > 0. Received: "
                         f"eps_warmup_epochs={config.eps_warmup_epochs}, "
                         f"epochs={config.epochs}")


def _check_thresholds(config):
    upper, lower = config.maxmin_upper, config.maxmin_lower
    if (upper is not None or lower is not None) and config.activation != "clipped_maxmin":
        raise ValueError("maxmin_upper / maxmin_lower are thresholds of clipped_maxmin. "
                         f"Received: activation={config.activation!r}")
    if upper is not None and lower is not None and len(upper) != len(lower):
        raise ValueError("maxmin_upper and maxmin_lower need as many values. Received: "
                         f"maxmin_upper={list(upper)}, maxmin_lower={list(lower)}")


def _check_lambda(config):
    if config.lam_start is not None and config.loss == "crossentropy":
        raise ValueError("lam_start ramps the lambda of 'trades' or 'bcp'; the GloRo "
                         "cross-entropy has none. Received: loss='crossentropy', "
                         f"lam_start={config.lam_start}")


# The options of the l-infinity model (None: its defaults) and the l2 options it does not
# use, which must keep the Config defaults when norm='linf'.
LINF_ONLY = ("relaxation", "beta_start", "beta_end", "kappa_start", "kappa_end")
L2_ONLY = ("bound", "power_iterations", "worst_logit_steps", "local_layers", "lam",
           "lam_start", "lam_end", "lam_ramp_epochs", "lam_sparse", "lam_theta",
           "training_dtype", "box_gradient", "box_layers")
LINF_LOSS = "mixed_crossentropy"


def _check_norm(config):
    if config.norm not in ("l2", "linf"):
        raise ValueError(f"norm must be 'l2' or 'linf'. Received: norm={config.norm!r}")
    defaults = Config()
    if config.norm == "l2":
        given = [f"{name}={getattr(config, name)!r}" for name in LINF_ONLY
                 if getattr(config, name) is not None]
        if given:
            raise ValueError("relaxation, beta_start/beta_end and kappa_start/kappa_end "
                             "apply to norm 'linf' only. Received: norm='l2', "
                             + ", ".join(given))
        return
    given = [f"{name}={getattr(config, name)!r}" for name in L2_ONLY
             if getattr(config, name) != getattr(defaults, name)]
    if given:
        raise ValueError("these options apply to norm 'l2' (LocalGloroNet) only; the "
                         "l-infinity model ignores them, so leave them unset. Received: "
                         "norm='linf', " + ", ".join(given))
    if config.loss != LINF_LOSS:
        raise ValueError(f"norm 'linf' trains with loss {LINF_LOSS!r} (kappa CE(z) + "
                         f"(1 - kappa) CE(z*), kappa ramped by kappa_start / kappa_end). "
                         f"Received: norm='linf', loss={config.loss!r}")


def _check_lr(config):
    given = [f"{name}={getattr(config, name)!r}" for name in
             ("end_lr", "lr_milestones", "lr_decay_every") if getattr(config, name)]
    if len(given) > 1:
        raise ValueError("choose one learning-rate decay: end_lr (exponential), "
                         "lr_milestones or lr_decay_every (steps). Received: "
                         + ", ".join(given))


def _check_strategy(config):
    if config.strategy == "multi_worker":
        multi_worker.read_tf_config()


# Checks that involve several fields, with the fields each one reads.
CROSS_CHECKS = {("eps_warmup_epochs", "epochs"): _check_warmup,
                ("activation", "maxmin_upper", "maxmin_lower"): _check_thresholds,
                ("loss", "lam_start"): _check_lambda,
                ("norm", "loss", *LINF_ONLY, *L2_ONLY): _check_norm,
                ("end_lr", "lr_milestones", "lr_decay_every"): _check_lr,
                ("strategy",): _check_strategy}


def linf_schedule(config):
    """(relaxation, (kappa_start, kappa_end), (beta_start, beta_end)) of an l-infinity
    run, the defaults filled in: 'crown_ibp'; kappa 1 -> 0 (the paper's Table 1); beta
    1 -> 0 for 'crown_ibp' (CROWN-IBP 1->0), 1 -> 1 for the others (the optimised
    relaxation trains with beta = 1; IBP does not use beta)."""
    relaxation = config.relaxation or "crown_ibp"
    kappa = (1.0 if config.kappa_start is None else config.kappa_start,
             0.0 if config.kappa_end is None else config.kappa_end)
    beta_start = 1.0 if config.beta_start is None else config.beta_start
    beta_end = config.beta_end
    if beta_end is None:
        beta_end = 0.0 if relaxation == "crown_ibp" else beta_start
    return relaxation, kappa, (beta_start, beta_end)


def check_config(config):
    """Runs ``CROSS_CHECKS`` (what no single field can check): ValueError with a one-line
    message. Returns ``config``."""
    for check in CROSS_CHECKS.values():
        check(config)
    return config


STRATEGIES = ("none", "mirrored", "multi_worker")


def _strategy(name):
    if name == "multi_worker":
        return multi_worker.multi_worker_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "none":
        return tf.distribute.get_strategy()
    raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}. "
                     f"Received: strategy={name!r}")


def set_maxmin_thresholds(f, upper, lower=None):
    """Sets the thresholds of the ``ClippedMaxMin`` layers of ``f``, one value per layer in
    order (the reference code initialises each layer with its own constants); ``lower``
    defaults to ``-upper``."""
    layers = [layer for layer in f.layers if isinstance(layer, ClippedMaxMin)]
    lower = [-value for value in upper] if lower is None else lower
    if len(upper) != len(layers) or len(lower) != len(layers):
        raise ValueError(f"maxmin_upper and maxmin_lower need one value per ClippedMaxMin "
                         f"layer ({len(layers)} in {f.name}). Received: "
                         f"maxmin_upper={list(upper)}, maxmin_lower={list(lower)}")
    for layer, a, b in zip(layers, upper, lower):
        layer.upper.assign(np.full(layer.upper.shape, a, np.float32))
        layer.lower.assign(np.full(layer.lower.shape, b, np.float32))


def build_model(config, input_shape, num_classes):
    """The compiled ``LocalGloroNet`` (norm 'l2') or ``LinfCertifiedNet`` (norm 'linf')
    of ``config`` (call inside the strategy scope)."""
    f = architectures.get(config.arch, input_shape=input_shape, num_classes=num_classes,
                          activation=config.activation, seed=config.seed,
                          theta_init=config.theta_init)
    if config.maxmin_upper is not None or config.maxmin_lower is not None:
        set_maxmin_thresholds(f, config.maxmin_upper or [-v for v in config.maxmin_lower],
                              config.maxmin_lower)
    if config.norm == "linf":
        relaxation, (kappa, _), (beta, _) = linf_schedule(config)
        model = LinfCertifiedNet(f, config.epsilon, relaxation=relaxation, beta=beta,
                                 seed=config.seed)
        model.compile(keras.optimizers.Adam(config.lr),
                      loss=get_loss(LINF_LOSS, lam=1.0 - kappa))
        return model
    model = LocalGloroNet(f, config.epsilon, bound=config.bound,
                          power_iterations=config.power_iterations,
                          worst_logit_steps=config.worst_logit_steps,
                          local_layers=config.local_layers, lam_sparse=config.lam_sparse,
                          lam_theta=config.lam_theta, seed=config.seed,
                          training_dtype=config.training_dtype,
                          box_gradient=config.box_gradient,
                          box_layers=config.box_layers)
    lam = config.lam if config.lam_start is None else config.lam_start
    model.compile(keras.optimizers.Adam(config.lr), loss=get_loss(config.loss, lam=lam))
    return model


def tensorboard_callback(log_dir):
    """``keras.callbacks.TensorBoard(log_dir)``; ImportError with the install command when
    the tensorboard package (not installed by TensorFlow 2.21) is missing."""
    if importlib.util.find_spec("tensorboard") is None:
        raise ImportError("tensorboard=True needs the tensorboard package, which TensorFlow "
                          "2.21 does not install: pip install -e \".[tensorboard]\" (or pip "
                          "install -r requirements-tensorboard.txt).")
    return keras.callbacks.TensorBoard(log_dir)


def callbacks(config, output_dir, chief=True):
    """Schedules, the run log (written by the ``chief`` only), a backup that resumes
    interrupted runs (``WorkerBackupAndRestore``: Keras's in one process) and, with
    ``config.tensorboard``, TensorBoard logs. The epsilon and lambda ramps start after
    ``eps_warmup_epochs`` warm-up epochs at their first values: epsilon eps_train / 1000
    (the model refuses 0) and lambda ``lam_start`` (0 for BCP: clean cross-entropy).
    With norm 'linf' kappa and beta ramp over the epsilon ramp after the same warm-up
    (``KappaSchedule``, ``BetaSchedule``; kappa_start 1: clean training in the warm-up)."""
    eps = EpsilonSchedule(config.eps_train or config.epsilon, config.eps_ramp_epochs,
                          eps_test=config.epsilon, shape=config.eps_schedule)
    result = [Delayed(eps, config.eps_warmup_epochs,
                      lambda model: setattr(model, "epsilon", eps.start))]
    if config.norm == "linf":
        _, (kappa_start, kappa_end), (beta_start, beta_end) = linf_schedule(config)
        kappa = KappaSchedule(kappa_start, kappa_end, config.eps_ramp_epochs)
        beta = BetaSchedule(beta_start, beta_end, config.eps_ramp_epochs)
        result.append(Delayed(kappa, config.eps_warmup_epochs,
                              lambda model: model.robust_loss.lam.assign(kappa.start)))
        result.append(Delayed(beta, config.eps_warmup_epochs,
                              lambda model: model.beta.assign(beta.start)))
    if config.lam_start is not None:
        lam = LambdaSchedule(config.lam_start, config.lam_end
                             if config.lam_end is not None else config.lam,
                             config.lam_ramp_epochs)
        result.append(Delayed(lam, config.eps_warmup_epochs,
                              lambda model: model.robust_loss.lam.assign(lam.start)))
    if config.end_lr is not None:
        result.append(LearningRateSchedule(config.lr, config.end_lr,
                                           config.lr_constant_epochs, config.epochs))
    if config.lr_milestones or config.lr_decay_every:
        result.append(StepDecay(config.lr, config.lr_decay_factor,
                                config.lr_milestones or (), config.lr_decay_every,
                                config.eps_warmup_epochs + config.eps_ramp_epochs))
    if config.tensorboard:
        result.append(tensorboard_callback(os.path.join(output_dir, "tensorboard")))
    backup = os.path.join(output_dir, "backup")
    result.append(WorkerBackupAndRestore(backup))
    result.append(RunLog(os.path.join(backup, RUN_LOG), write=chief))
    return result


def load_data(config):
    """(x_train, y_train), (x_test, y_test) and the number of classes of the dataset."""
    name, fallback = config.dataset_name, config.dataset is None
    x_train, y_train = data.load_numpy(name, "train", config.data_dir, config.limit_train,
                                       sample_fallback=fallback)
    x_test, y_test = data.load_numpy(name, "test", config.data_dir, config.limit_test,
                                     sample_fallback=fallback)
    check_images(x_train, f"{name} training images")
    num_classes = data.num_classes(name, config.data_dir)
    for labels in (y_train, y_test):
        if labels.size and not 0 <= labels.min() <= labels.max() < num_classes:
            raise ValueError(f"{name} has {num_classes} classes, but its labels span "
                             f"[{labels.min()}, {labels.max()}]")
    return (x_train, y_train), (x_test, y_test), num_classes


def train(config):
    """Trains ``config``; returns (model, history dict, seconds, test arrays). A run
    resumed from ``output_dir/backup`` returns the history and seconds of all epochs.
    With strategy 'multi_worker' every worker of ``TF_CONFIG`` runs this: worker w reads
    the samples with ``index % N == w`` (``multi_worker.sharded_dataset``) and keeps
    their rows of the iterate store; only the chief writes files."""
    check_config(config)
    strategy = _strategy(config.strategy)  # first: multi-worker collectives need it
    os.makedirs(config.output_dir, exist_ok=True)
    (x_train, y_train), (x_test, y_test), num_classes = load_data(config)
    with strategy.scope():
        model = build_model(config, x_train.shape[1:], num_classes)
        use_store = (config.store and config.norm == "l2"
                     and get_bound(config.bound).per_sample_norms)
        if use_store:
            model.attach_store(len(y_train))
    load = functools.partial(data.load, config.dataset_name, "train", with_index=use_store,
                             data_dir=config.data_dir, shuffle=True,
                             limit=config.limit_train, seed=config.seed,
                             sample_fallback=config.dataset is None)
    if config.strategy == "multi_worker":
        train_ds = multi_worker.sharded_dataset(strategy, load, config.batch_size,
                                                len(y_train))
    else:
        train_ds = load(batch_size=config.batch_size)
    if config.verbose and config.norm == "linf":
        relaxation, kappa, beta = linf_schedule(config)
        print(f"training {config.arch} against l-infinity eps {config.epsilon} with the "
              f"{relaxation} relaxation; kappa {kappa[0]:g} -> {kappa[1]:g}, beta "
              f"{beta[0]:g} -> {beta[1]:g} over the epsilon ramp")
    elif config.verbose:
        print(f"training {config.arch} with the {config.bound} bound; training-time bounds "
              f"in {precision.describe(model.training_dtype)} "
              f"(training_dtype={config.training_dtype!r})"
              + ("" if config.box_gradient else ", box gradient stopped")
              + ("" if config.box_layers is None
                 else f", box through the first {config.box_layers} hidden layers only"))
    chief = multi_worker.is_chief(strategy)
    run_callbacks = callbacks(config, config.output_dir, chief)
    model.fit(train_ds, epochs=config.epochs, verbose=config.verbose if chief else 0,
              callbacks=run_callbacks)
    log = run_callbacks[-1]
    return model, log.history, sum(log.seconds), (x_test, y_test)


def save(model, output_dir, name="model"):
    """Saves ``name.keras`` and ``name.h5``; returns their paths."""
    paths = [os.path.join(output_dir, f"{name}.keras"), os.path.join(output_dir, f"{name}.h5")]
    for path in paths:
        model.save(path)
    return paths


def evaluate_model(model, x, y, config):
    """Clean, PGD and certified accuracy of ``model`` on (x, y) at ``config.epsilon``:
    ``gl.evaluate`` with its statistics stages switched off."""
    report = evaluate(model, (x, y), config.epsilon, pgd_steps=config.pgd_steps,
                      lower_bound_points=0, bound_points=0, global_bound=False,
                      radius_points=0, progress=bool(config.verbose), seed=config.seed)
    summary = report.summary
    return {"norm": summary["norm"], "clean_accuracy": summary["clean_accuracy"],
            "pgd_accuracy": summary["pgd_accuracy"],
            "certified_accuracy": summary["vra_local"], "reasons": summary["reasons"]}


def run(config):
    """Trains, saves (.keras and .h5), evaluates on the test split and writes report.json.
    Under strategy 'multi_worker' every worker saves and evaluates alike (saves may need
    every worker), but workers other than the chief write to
    ``OUTPUT_DIR/workertemp_<w>``, deleted at the end."""
    model, history, seconds, (x_test, y_test) = train(config)
    strategy = model.distribute_strategy
    chief = multi_worker.is_chief(strategy)
    output_dir = (config.output_dir if chief else os.path.join(
        config.output_dir, f"workertemp_{worker_shard(strategy)[1]}"))
    os.makedirs(output_dir, exist_ok=True)
    paths = save(model, output_dir)
    results = evaluate_model(model, x_test, y_test, config)
    if chief:
        print(f"{config.norm} epsilon {config.epsilon}: clean "
              f"{results['clean_accuracy']:.3f}  PGD {results['pgd_accuracy']:.3f}  "
              f"certified {results['certified_accuracy']:.3f}  ({len(y_test)} test "
              f"points, training {seconds:.0f} s)")
        print("saved " + ", ".join(paths))
        write_json(os.path.join(output_dir, "report.json"),
                   {"config": dataclasses.asdict(config), "results": results,
                    "training_seconds": seconds,
                    "history": {k: [float(v) for v in vals] for k, vals in history.items()}})
    else:
        shutil.rmtree(output_dir, ignore_errors=True)
    return model, results
