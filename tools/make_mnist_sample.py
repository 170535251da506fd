"""Builds gloro_local/resources/mnist_sample.npz, the MNIST sample embedded in the package.

Train: the first 200 images of each class from the 5k training subset, in a fixed random
order (so that any prefix mixes the classes). Test: the first 1000 images of t10k.
Usage: python tools/make_mnist_sample.py MNIST_IDX_FOLDER  (a folder holding
train-5k-{images-idx3,labels-idx1}-ubyte.gz and t10k-{images-idx3,labels-idx1}-ubyte.gz)
"""
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing the package
from gloro_local.data import SAMPLE_PATH, read_idx  # noqa: E402

PER_CLASS = 200
TEST_SIZE = 1000


def main(folder):
    x_train = read_idx(folder / "train-5k-images-idx3-ubyte.gz")
    y_train = read_idx(folder / "train-5k-labels-idx1-ubyte.gz")
    keep = np.concatenate([np.flatnonzero(y_train == c)[:PER_CLASS] for c in range(10)])
    keep = np.random.default_rng(0).permutation(keep)
    x_test = read_idx(folder / "t10k-images-idx3-ubyte.gz")[:TEST_SIZE]
    y_test = read_idx(folder / "t10k-labels-idx1-ubyte.gz")[:TEST_SIZE]
    SAMPLE_PATH.parent.mkdir(exist_ok=True)
    np.savez_compressed(SAMPLE_PATH, x_train=x_train[keep], y_train=y_train[keep],
                        x_test=x_test, y_test=y_test)
    print(f"Wrote {SAMPLE_PATH} ({SAMPLE_PATH.stat().st_size / 1e6:.2f} MB): "
          f"{len(keep)} train / {len(y_test)} test images")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-2] + "\n" + __doc__.strip().splitlines()[-1])
    main(Path(sys.argv[1]))
