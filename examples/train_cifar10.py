"""Train a LocalGloroNet (l2) or a LinfCertifiedNet (l-infinity) on CIFAR-10, then print
clean / PGD / certified accuracy and save it.

    python examples/train_cifar10.py --data_dir cifar-10-batches-py --epochs 50
    python examples/train_cifar10.py --preset paper_cifar10_6C2F   # the paper (GPU-scale)
    python examples/train_cifar10.py --norm linf --data_dir cifar-10-batches-py
    TF_CONFIG='{...}' python examples/train_cifar10.py --strategy multi_worker ...  # each worker

--norm linf without --preset starts from 'paper_cifar10_linf_medium' ("Loss Landscape
Matters", A.2: Medium, eps 8/255, 400 epochs, 20 warm-up and 240 ramp-up epochs, batch
128, learning rate 0.003 halved every 10 epochs after the ramp-up).

CIFAR-10 comes from ``--data_dir`` (the official python batches) or tensorflow-datasets
(prepared, or downloaded when its host answers; offline it stops at once with a message
saying where to put the data). Training images get random crops (4-pixel padding) and
flips.

--strategy multi_worker trains on the cluster of TF_CONFIG: run the same command on every
worker with its own TF_CONFIG (docs/multi_worker.md); only the chief writes files.
"""
from absl import app, flags

from gloro_local import cli, experiment

cli.define_flags("paper_cifar10_4C3F")


def main(argv):
    del argv
    config = cli.config_from_flags(flags.FLAGS)
    if config.dataset != "cifar10":
        raise app.UsageError("train_cifar10.py trains on --dataset cifar10. "
                             f"Received: --dataset={config.dataset}")
    cli.run("train_cifar10.py", lambda: experiment.run(config))


if __name__ == "__main__":
    app.run(main)
