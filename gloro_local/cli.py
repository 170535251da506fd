"""absl flags generated from ``experiment.Config``, shared by the example scripts."""
import dataclasses
import typing

from absl import flags

from gloro_local.experiment import Config
from gloro_local.presets import PRESETS

HELP = {
    "dataset": "mnist | cifar10 | tiny_imagenet",
    "data_dir": "folder with the data (MNIST IDX files, CIFAR-10 python batches, "
                "tiny-imagenet-200); default: tensorflow-datasets or the embedded sample",
    "arch": "2C2F | 4C3F | 6C2F | 8C2F | 7C1F",
    "activation": "relu | relu_theta | maxmin | clipped_maxmin",
    "epsilon": "l2 radius certified at test time",
    "eps_train": "training radius reached by the ramp (default: epsilon)",
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
    "limit_train": "use only this many training examples",
    "limit_test": "evaluate only this many test examples",
    "pgd_steps": "PGD steps of the final evaluation",
}


def _kind(field):
    hint = typing.get_type_hints(Config)[field.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def define_flags(preset):
    """Defines one flag per Config field (defaults from ``preset``) plus ``--preset``."""
    flags.DEFINE_enum("preset", preset, sorted(PRESETS), "named hyper-parameter set; "
                      "flags given explicitly override it")
    defaults = Config.from_preset(preset)
    for field in dataclasses.fields(Config):
        default = getattr(defaults, field.name)
        text = HELP.get(field.name, field.name.replace("_", " "))
        kind = _kind(field)
        if kind is bool:
            flags.DEFINE_bool(field.name, default, text)
        elif kind in (int, float, str):
            flags.DEFINE_string(field.name, None if default is None else str(default), text)
        else:
            flags.DEFINE_list(field.name, default, text)


def config_from_flags(values):
    """The Config of ``--preset`` with every explicitly given flag applied."""
    overrides = {}
    for field in dataclasses.fields(Config):
        flag = values[field.name]
        if not flag.present:
            continue
        kind = _kind(field)
        if kind in (int, float, str) and flag.value not in (None, "none", "None"):
            overrides[field.name] = kind(flag.value)
        elif kind in (int, float, str):
            overrides[field.name] = None
        elif kind is bool:
            overrides[field.name] = flag.value
        else:
            overrides[field.name] = [int(v) for v in flag.value]
    return Config.from_preset(values.preset, **overrides)
