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
from gloro_local.experiment import CROSS_CHECKS, Config
from gloro_local.presets import PRESETS
from gloro_local.training.losses import LOSSES

HELP = {
    "dataset": "mnist | cifar10 | tiny_imagenet (none: MNIST, falling back to the sample "
               "embedded in the package when full MNIST is not found)",
    "data_dir": "folder with the data (MNIST IDX files, CIFAR-10 python batches, "
                "tiny-imagenet-200); default: tensorflow-datasets",
    "arch": "2C2F | 4C3F | 6C2F | 8C2F | 7C1F",
    "activation": "relu | relu_theta | maxmin | clipped_maxmin",
    "maxmin_upper": "clipped MaxMin upper thresholds, one per activation layer",
    "maxmin_lower": "clipped MaxMin lower thresholds (default: -maxmin_upper)",
    "epsilon": "l2 radius certified at test time",
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
    "training_dtype": "auto | float32 | bfloat16 (training-time bounds only; auto: "
                      "bfloat16 where the hardware has it natively)",
    "box_gradient": "backpropagate through the boxes of earlier layers (--nobox_gradient: "
                    "about half the box cost, see docs/results.md)",
    "strategy": "none | mirrored", "output_dir": "where models and reports go",
    "tensorboard": "write TensorBoard logs to OUTPUT_DIR/tensorboard (needs pip install "
                   "-e \".[tensorboard]\")",
    "limit_train": "use only this many training examples",
    "limit_test": "evaluate only this many test examples",
    "pgd_steps": "PGD steps of the final evaluation",
}

CHOICES = {
    "dataset": data.DATASETS, "arch": tuple(ARCHITECTURES), "activation": ACTIVATIONS,
    "bound": BOUNDS, "loss": tuple(sorted(LOSSES)), "strategy": ("none", "mirrored"),
    "training_dtype": ("auto", "float32", "bfloat16"), "eps_schedule": ("linear", "log"),
}
MIN_INT = {"epochs": 1, "batch_size": 1, "power_iterations": 1, "worst_logit_steps": 1,
           "limit_train": 1, "limit_test": 1}  # every other integer field: >= 0
POSITIVE = ("epsilon", "eps_train", "lr", "end_lr", "theta_init")  # other floats: >= 0
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
    return value


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


def config_from_flags(values):
    """The Config of ``--preset`` with every explicitly given flag applied."""
    overrides = {field.name: parse(field.name, values[field.name].value)
                 for field in dataclasses.fields(Config) if values[field.name].present}
    return Config.from_preset(values["preset"].value, **overrides)


def run(script, main):
    """Calls ``main()``; data, install and configuration errors end the script with one
    line ``SCRIPT: error: ...`` on stderr and exit code 1 instead of a traceback."""
    try:
        return main()
    except (ValueError, FileNotFoundError, ImportError) as error:
        sys.exit(f"{script}: error: {' '.join(str(error).split())}")
