"""Every flag of the example scripts is validated: a bad value stops at parsing with one line
naming the flag and the value, never a traceback or a run on nonsense."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from absl import flags

from gloro_local import cli

REPO = Path(__file__).resolve().parents[1]


def parse(*argv, preset="quick_mnist"):
    """The Config of ``argv`` parsed by a fresh set of the scripts' flags."""
    values = flags.FlagValues()
    cli.define_flags(preset, values)
    values(["prog", *argv])
    return cli.config_from_flags(values)


def rejected(*argv, preset="quick_mnist"):
    """The validation message for ``argv`` (which must be rejected)."""
    with pytest.raises(flags.IllegalFlagValueError) as info:
        parse(*argv, preset=preset)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("argv, expected", [
    (["--epochs=-1"], "epochs must be an integer >= 1. Received: epochs='-1'"),
    (["--epochs=0"], "epochs must be an integer >= 1"),
    (["--batch_size=0"], "batch_size must be an integer >= 1. Received: batch_size='0'"),
    (["--epsilon=abc"], "epsilon must be a finite number > 0. Received: epsilon='abc'"),
    (["--epsilon=nan"], "epsilon must be a finite number > 0"),
    (["--epsilon=inf"], "epsilon must be a finite number > 0"),
    (["--epsilon=-0.3"], "epsilon must be a finite number > 0"),
    (["--eps_train=0"], "eps_train must be a finite number > 0"),
    (["--lr=0"], "lr must be a finite number > 0"),
    (["--end_lr=-1e-6"], "end_lr must be a finite number > 0"),
    (["--power_iterations=0"], "power_iterations must be an integer >= 1"),
    (["--limit_train=0"], "limit_train must be an integer >= 1"),
    (["--limit_test=-5"], "limit_test must be an integer >= 1"),
    (["--eps_ramp_epochs=-1"], "eps_ramp_epochs must be an integer >= 0"),
    (["--eps_warmup_epochs=1.5"], "eps_warmup_epochs must be an integer >= 0"),
    (["--lam=-1"], "lam must be a finite number >= 0"),
    (["--lam_sparse=x"], "lam_sparse must be a finite number >= 0"),
    (["--dataset=imagenet"], "dataset must be one of mnist, cifar10, tiny_imagenet"),
    (["--arch=9C9F"], "arch must be one of 2C2F, 4C3F, 6C2F, 8C2F, 7C1F"),
    (["--activation=tanh"], "activation must be one of relu, relu_theta, maxmin"),
    (["--bound=exact"], "bound must be one of "),
    (["--loss=mse"], "loss must be one of bcp, crossentropy, mixed_crossentropy, trades"),
    (["--strategy=tpu"], "strategy must be one of none, mirrored"),
    (["--training_dtype=float16"], "training_dtype must be one of auto, float32, bfloat16"),
    (["--eps_schedule=cosine"], "eps_schedule must be one of linear, log"),
    (["--local_layers=0,x"], "local_layers must be an integer >= 0"),
    (["--maxmin_upper=1,abc"], "maxmin_upper must be a list of finite numbers"),
    (["--data_dir=/no/such/folder"], "data_dir must be an existing folder"),
    (["--epochs=3", "--eps_warmup_epochs=3"], "eps_warmup_epochs must leave epochs"),
    (["--maxmin_upper=0.5"], "maxmin_upper / maxmin_lower are thresholds of clipped_maxmin"),
    (["--activation=clipped_maxmin", "--maxmin_upper=1,2", "--maxmin_lower=-1"],
     "need as many values"),
    (["--lam_start=0"], "lam_start ramps the lambda of 'trades' or 'bcp'"),
    (["--norm=l1"], "norm must be one of l2, linf"),
    (["--norm=linf", "--relaxation=crown"], "relaxation must be one of ibp, crown_ibp"),
    (["--norm=linf", "--kappa_start=1.5"], "kappa_start must be a number <= 1"),
    (["--norm=linf", "--beta_end=-0.1"], "beta_end must be a finite number >= 0"),
    (["--lr_decay_factor=0"], "lr_decay_factor must be a finite number > 0"),
    (["--lr_decay_factor=2"], "lr_decay_factor must be a number <= 1"),
    (["--norm=linf", "--epsilon=0"], "epsilon must be a finite number > 0"),
    (["--relaxation=ibp"], "apply to norm 'linf' only. Received: norm='l2', "
                           "relaxation='ibp'"),
    (["--norm=linf", "--bound=gloro"], "apply to norm 'l2' (LocalGloroNet) only"),
    (["--norm=linf", "--power_iterations=5"], "power_iterations=5"),
    (["--norm=linf", "--loss=crossentropy"], "norm 'linf' trains with loss "
                                             "'mixed_crossentropy'"),
    (["--lr_milestones=2"], "choose one learning-rate decay"),
    (["--box_layers=-1"], "box_layers must be an integer >= 0. Received: box_layers='-1'"),
    (["--norm=linf", "--box_layers=2"], "apply to norm 'l2' (LocalGloroNet) only"),
])
def test_bad_values_are_rejected_with_one_line(argv, expected):
    assert expected in rejected(*argv)


def test_cross_checks_see_the_preset():
    # the preset's 300 epochs, not the script default's 4, bound the warm-up
    assert parse("--preset=paper_mnist_4C3F", "--eps_warmup_epochs=10").eps_warmup_epochs == 10
    assert "Received: eps_warmup_epochs=300, epochs=300" in rejected(
        "--preset=paper_mnist_4C3F", "--eps_warmup_epochs=300")


def test_good_values_are_parsed_to_their_kinds(tmp_path):
    config = parse("--epochs=2", "--epsilon=0.5", "--eps_train=none", "--local_layers=0,2",
                   "--dataset=cifar10", f"--data_dir={tmp_path}", "--end_lr=None",
                   "--activation=clipped_maxmin", "--maxmin_upper=0.5,1",
                   "--nostore", "--tensorboard")
    assert config.epochs == 2 and isinstance(config.epochs, int)
    assert config.epsilon == 0.5 and config.eps_train is None and config.end_lr is None
    assert config.local_layers == [0, 2] and config.maxmin_upper == [0.5, 1.0]
    assert config.dataset == "cifar10" and config.data_dir == str(tmp_path)
    assert config.store is False and config.tensorboard is True
    assert parse().dataset is None  # the quick default asks for no dataset
    assert parse("--local_layers=", preset="paper_tiny_imagenet_8C2F").local_layers is None
    assert parse("--box_layers=2").box_layers == 2
    assert parse("--box_layers=none").box_layers is None and parse().box_layers is None
    assert parse("--training_dtype=mixed").training_dtype == "mixed"


def _run(script, *argv):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, str(REPO / "examples" / script), *argv],
                          capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.parametrize("script, argv, expected", [
    ("train_mnist.py", ["--epsilon=abc"],
     "flag --epsilon=abc: epsilon must be a finite number > 0. Received: epsilon='abc'"),
    ("train_mnist.py", ["--epochs=0"], "flag --epochs=0: epochs must be an integer >= 1"),
    ("train_cifar10.py", ["--batch_size=0"], "batch_size must be an integer >= 1"),
    ("evaluate.py", ["model.keras", "--epsilon=abc"], "flag --epsilon=abc"),
    ("evaluate.py", ["model.keras", "--epsilon=nan"], "epsilon must be a finite number > 0"),
    ("evaluate.py", ["model.keras", "--batch_size=0"], "flag --batch_size=0"),
    ("evaluate.py", ["model.keras", "--tol=0"], "tol must be a finite number > 0"),
    ("evaluate.py", ["model.keras", "--dataset=svhn"], "flag --dataset=svhn"),
    ("evaluate.py", ["model.keras", "--boxes=crown"], "flag --boxes=crown"),
    ("evaluate.py", ["model.keras", "--radius=local"], "flag --radius=local"),
    ("evaluate.py", ["model.keras", "--split=val"], "split must be one of train, test for "
                                                    "mnist. Received: split='val'"),
])
def test_scripts_exit_with_one_line_and_no_traceback(script, argv, expected):
    result = _run(script, *argv)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if expected in line]
    assert len(lines) == 1, result.stderr[-2000:]
