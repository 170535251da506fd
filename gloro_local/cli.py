"""absl flags generated from ``experiment.Config``, shared by the example scripts.

Every flag has a validator: a bad value stops the script before TensorFlow does any work,
with one line ``FATAL Flags parsing error: flag --epochs=0: epochs must be an integer >=
1. Received: epochs='0'``. Integer and float fields are string flags (so that optional
fields accept 'none'); their values are parsed and checked here.
"""
import dataclasses
import math
import sys
import typing
from pathlib import Path

from absl import flags

from gloro_local import data
from gloro_local.architectures import ACTIVATIONS, ARCHITECTURES
from gloro_local.bounds import BOUNDS
from gloro_local.experiment import CROSS_CHECKS, STRATEGIES, Config
from gloro_local.models.linf_certified_net import RELAXATIONS
from gloro_local.presets import LINF_DEFAULTS, PRESETS
from gloro_local.training.losses import LOSSES
from gloro_local.training.precision import TRAINING_DTYPES

HELP = {
    "norm": "l2 (LocalGloroNet) | linf (LinfCertifiedNet; without --preset the script "
            "starts from its l-infinity preset: " + ", ".join(
                f"{a} -> {b}" for a, b in LINF_DEFAULTS.items()) + ")",
    "relaxation": "linf only: ibp | crown_ibp | optimized (default crown_ibp)",
    "beta_start": "linf only: weight of the relaxation against IBP at the ramp start (1)",
    "beta_end": "linf only: ... at the ramp end (crown_ibp: 0, others: beta_start)",
    "kappa_start": "linf only: weight of the natural loss at the ramp start (1)",
    "kappa_end": "linf only: ... at the ramp end (0)",
    "lr_milestones": "epochs at which the learning rate is multiplied by lr_decay_factor",
    "lr_decay_every": "multiply the learning rate by lr_decay_factor every this many "
                      "epochs after the warm-up and ramp (0: never)",
    "lr_decay_factor": "factor of the step decays, in (0, 1]",
    "dataset": "mnist | cifar10 | tiny_imagenet (none: MNIST, falling back to the sample "
               "embedded in the package when full MNIST is not found)",
    "data_dir": "folder with the data (MNIST IDX files, CIFAR-10 python batches, "
                "tiny-imagenet-200); default: tensorflow-datasets",
    "arch": "2C2F | 4C3F | 6C2F | 8C2F | 7C1F | small | small* | medium | large | "
            "large* (the last five: the l-infinity papers' networks)",
    "activation": "relu | relu_theta | maxmin | clipped_maxmin",
    "maxmin_upper": "clipped MaxMin upper thresholds, one per activation layer",
    "maxmin_lower": "clipped MaxMin lower thresholds (default: -maxmin_upper)",
    "epsilon": "radius certified at test time (l2 or l-infinity, per --norm)",
    "eps_train": "training radius reached by the ramp (default: epsilon)",
    "eps_warmup_epochs": "epochs before the epsilon (and lambda) ramp, at epsilon "
                         "eps_train / 1000 and lambda lam_start",
    "eps_ramp_epochs": "epochs of the epsilon ramp", "eps_schedule": "linear | log",
    "loss": "crossentropy (GloRo) | trades | bcp", "lam": "loss lambda (TRADES / BCP)",
    "lam_start": "ramp lambda from this value", "lam_end": "... to this value",
    "bound": "local | global | gloro",
    "power_iterations": "power-iteration steps per training step",
    "worst_logit_steps": "clipping steps of the worst-logit iteration in training",
    "local_layers": "comma-separated hidden-layer indices with per-sample norms (all)",
    "end_lr": "final learning rate of the exponential decay (none: constant)",
    "lr_constant_epochs": "epochs at the initial learning rate before the decay",
    "lam_sparse": "weight of the sparsity hinge", "lam_theta": "weight of its theta term",
    "store": "keep per-sample power-iteration vectors across epochs",
    "training_dtype": "auto | float32 | bfloat16 | mixed (training-time bounds only; "
                      "auto: bfloat16 where the hardware has it natively; mixed: "
                      "float32 bounds, bfloat16 power iterations)",
    "box_gradient": "backpropagate through the boxes of earlier layers (--nobox_gradient: "
                    "about half the box cost, see docs/results.md)",
    "box_layers": "in training, carry the box through the first N hidden linear layers "
                  "only and bound the later ones by the ball alone (none: all, the "
                  "paper's; see docs/results.md)",
    "strategy": "none | mirrored | multi_worker (MultiWorkerMirroredStrategy over the "
                "cluster of TF_CONFIG, the store sharded by worker: docs/multi_worker.md)",
    "output_dir": "where models and reports go",
    "tensorboard": "write TensorBoard logs to OUTPUT_DIR/tensorboard (needs pip install "
                   "-e \".[tensorboard]\")",
    "limit_train": "use only this many training examples",
    "limit_test": "evaluate only this many test examples",
    "pgd_steps": "PGD steps of the final evaluation",
}

CHOICES = {
    "norm": ("l2", "linf"), "relaxation": RELAXATIONS,
    "dataset": data.DATASETS, "arch": tuple(ARCHITECTURES), "activation": ACTIVATIONS,
    "bound": BOUNDS, "loss": tuple(sorted(LOSSES)), "strategy": STRATEGIES,
    "training_dtype": TRAINING_DTYPES,
    "eps_schedule": ("linear", "log"),
}
MIN_INT = {"epochs": 1, "batch_size": 1, "power_iterations": 1, "worst_logit_steps": 1,
           "limit_train": 1, "limit_test": 1}  # every other integer field: >= 0
POSITIVE = ("epsilon", "eps_train", "lr", "end_lr", "theta_init",
            "lr_decay_factor")  # other floats: >= 0
UNIT = ("beta_start", "beta_end", "kappa_start", "kappa_end", "lr_decay_factor")  # <= 1
NO_VALUE = ("none", "None")


def _hint(name):
    return typing.get_type_hints(Config)[name]


def _optional(name):
    return type(None) in typing.get_args(_hint(name))


def _kind(name):
    args = [a for a in typing.get_args(_hint(name)) if a is not type(None)]
    return args[0] if args else _hint(name)


def _is_list(name):
    return typing.get_origin(_kind(name)) is not None


def _number(name, kind, text):
    """``text`` as an int or a finite float in the field's range; ValueError otherwise."""
    try:
        value = kind(text)
    except (TypeError, ValueError):
        value = None
    if kind is int:
        low = MIN_INT.get(name, 0)
        if value is None or value < low:
            raise ValueError(f"{name} must be an integer >= {low}. Received: {name}={text!r}")
    elif name in POSITIVE:
        if value is None or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a finite number > 0. Received: {name}={text!r}")
    elif value is None or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0. Received: {name}={text!r}")
    if name in UNIT and value > 1:
        raise ValueError(f"{name} must be a number <= 1. Received: {name}={text!r}")
    return value


def _arch_key(name):
    """The ``architectures.get`` key of ``name`` (any case, 'cnn_' prefix, '_star')."""
    return name.upper().removeprefix("CNN_").replace("_STAR", "*")


def parse(name, value):
    """The Config value of field ``name`` from its flag's value (a string for int, float and
    str fields, a list of strings for list fields); ValueError with a one-line message."""
    kind = _kind(name)
    if kind is bool:
        return value
    if _is_list(name):
        if not value:
            return None
        element = typing.get_args(kind)[0]
        if element is int:
            return [_number(name, int, v) for v in value]
        values = []
        for v in value:
            try:
                values.append(float(v))
            except ValueError:
                values.append(math.nan)
            if not math.isfinite(values[-1]):
                raise ValueError(f"{name} must be a list of finite numbers. "
                                 f"Received: {name}={','.join(value)!r}")
        return values
    if _optional(name) and (value is None or value in NO_VALUE):
        return None
    if value is None:
        raise ValueError(f"{name} needs a value. Received: {name}={value!r}")
    if kind in (int, float):
        return _number(name, kind, value)
    if name == "arch" and _arch_key(value) in ARCHITECTURES:
        return value
    if name in CHOICES and value not in CHOICES[name]:
        raise ValueError(f"{name} must be one of {', '.join(CHOICES[name])}. "
                         f"Received: {name}={value!r}")
    if name == "data_dir" and not Path(value).expanduser().is_dir():
        raise ValueError(f"data_dir must be an existing folder. Received: data_dir={value!r}")
    return value


def _validator(name):
    def check(value):
        try:
            parse(name, value)
        except ValueError as error:
            raise flags.ValidationError(str(error)) from None
        return True
    return check


def define_flags(preset, flag_values=flags.FLAGS):
    """Defines one validated flag per Config field (defaults from ``preset``), ``--preset``,
    and a multi-flag validator per ``experiment.CROSS_CHECKS`` entry."""
    flags.DEFINE_enum("preset", preset, sorted(PRESETS), "named hyper-parameter set; "
                      "flags given explicitly override it", flag_values=flag_values)
    defaults = Config.from_preset(preset)
    names = [field.name for field in dataclasses.fields(Config)]
    for name in names:
        default = getattr(defaults, name)
        text = HELP.get(name, name.replace("_", " "))
        kind = _kind(name)
        if kind is bool:
            flags.DEFINE_bool(name, default, text, flag_values=flag_values)
            continue
        if _is_list(name):
            flags.DEFINE_list(name, None if default is None else [str(v) for v in default],
                              text, flag_values=flag_values)
        else:
            flags.DEFINE_string(name, None if default is None else str(default), text,
                                flag_values=flag_values)
        flags.register_validator(name, _validator(name), flag_values=flag_values)

    for fields, check in CROSS_CHECKS.items():
        flags.register_multi_flags_validator(
            ["preset", *fields], _cross_validator(check, flag_values),
            flag_values=flag_values)


def _cross_validator(check, flag_values):
    """A multi-flag checker running ``check`` on the Config of the preset and flags."""
    def checker(values):
        del values  # the Config also needs the preset's values and which flags were given
        try:
            config = config_from_flags(flag_values)
        except ValueError:  # a bad single value, reported by its own validator
            return True
        try:
            check(config)
        except ValueError as error:
            raise flags.ValidationError(str(error)) from None
        return True
    return checker


def preset_name(values):
    """``--preset``; when it is not given and ``--norm linf`` is, the l-infinity
    counterpart of the script's default preset (``presets.LINF_DEFAULTS``)."""
    name = values["preset"].value
    if (not values["preset"].present and values["norm"].present
            and values["norm"].value == "linf"):
        return LINF_DEFAULTS.get(name, name)
    return name


def config_from_flags(values):
    """The Config of the preset (``preset_name``) with every explicitly given flag
    applied."""
    overrides = {field.name: parse(field.name, values[field.name].value)
                 for field in dataclasses.fields(Config) if values[field.name].present}
    return Config.from_preset(preset_name(values), **overrides)


def run(script, main):
    """Calls ``main()``; data, install and configuration errors end the script with one
    line ``SCRIPT: error: ...`` on stderr and exit code 1 instead of a traceback."""
    try:
        return main()
    except (ValueError, FileNotFoundError, ImportError) as error:
        sys.exit(f"{script}: error: {' '.join(str(error).split())}")
