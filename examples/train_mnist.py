"""Train a LocalGloroNet (l2) or a LinfCertifiedNet (l-infinity) on MNIST, then print
clean / PGD / certified accuracy and save it.

    python examples/train_mnist.py                       # quick run on the embedded sample
    python examples/train_mnist.py --data_dir path/to/mnist --arch 4C3F --epochs 20
    python examples/train_mnist.py --preset paper_mnist_4C3F --data_dir DIR   # the paper
    python examples/train_mnist.py --norm linf --relaxation optimized    # quick_mnist_linf
    python examples/train_mnist.py --preset paper_mnist_linf_large --data_dir DIR
    TF_CONFIG='{...}' python examples/train_mnist.py --strategy multi_worker ...  # each worker

--norm linf without --preset starts from the preset 'quick_mnist_linf' (Small network,
eps 0.1, a few epochs on the embedded sample); --relaxation picks ibp, crown_ibp or
optimized, and PGD is PGD-linf.

With no flags it runs offline in a few minutes on 2 CPU cores (preset 'quick_mnist'), on
full MNIST when tensorflow-datasets has it prepared, else on the sample embedded in the
package. A preset or --dataset/--data_dir that cannot find its data stops with a message
saying where to put it. Writes OUTPUT_DIR/model.keras, model.h5 and report.json.

--strategy multi_worker trains on the cluster of TF_CONFIG: run the same command on every
worker with its own TF_CONFIG (docs/multi_worker.md); only the chief writes files.
"""
from absl import app, flags

from gloro_local import cli, experiment

cli.define_flags("quick_mnist")


def main(argv):
    del argv
    config = cli.config_from_flags(flags.FLAGS)
    if config.dataset_name != "mnist":
        raise app.UsageError("train_mnist.py trains on MNIST; use train_cifar10.py or "
                             f"experiment.run for others. Received: --dataset={config.dataset}")
    cli.run("train_mnist.py", lambda: experiment.run(config))


if __name__ == "__main__":
    app.run(main)
