"""Datasets as ``tf.data`` pipelines, with the position of every example in its split.

Sources (see ``load_numpy``):

* ``'mnist'``: a folder of the original IDX files (``data_dir``); else tensorflow-datasets
  (prepared in its data folder, or downloaded when the network answers); else, only with
  ``sample_fallback=True``, the real MNIST sample embedded in the package (2000 train /
  1000 test images), with a notice on stderr.
* ``'cifar10'``: a folder with the official python batches (``data_dir``, e.g.
  ``cifar-10-batches-py``); else tensorflow-datasets (prepared, or downloaded when the
  network answers).
* ``'tiny_imagenet'``: the standard ``tiny-imagenet-200`` folder layout (``data_dir``).

Data that cannot be found raises ``FileNotFoundError`` saying where to put it; without a
network nothing waits for a download. Images are float32 in [0, 1], NHWC; labels are
int32 class ids.
"""
import gzip
import pickle
import socket
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import tensorflow as tf

DATASETS = ("mnist", "cifar10", "tiny_imagenet")
SPLITS = {"mnist": ("train", "test"), "cifar10": ("train", "test"),
          "tiny_imagenet": ("train", "val", "test")}
AUGMENTED_BY_DEFAULT = ("cifar10", "tiny_imagenet")
CROP_PADDING = 4
SAMPLE_PATH = Path(__file__).parent / "resources" / "mnist_sample.npz"
IDX_PREFIXES = {"train": ("train", "train-5k"), "test": ("t10k",)}
NUM_CLASSES = {"mnist": 10, "cifar10": 10, "tiny_imagenet": 200}
# Hosts tensorflow-datasets downloads each dataset from (checked before a download).
DOWNLOAD_HOSTS = {"mnist": ("storage.googleapis.com", 443),
                  "cifar10": ("www.cs.toronto.edu", 443)}
NETWORK_TIMEOUT = 3.0
WHERE = {
    "mnist": "a folder with the four IDX files train-images-idx3-ubyte.gz, "
             "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
             "t10k-labels-idx1-ubyte.gz (gzipped or not)",
    "cifar10": "the cifar-10-batches-py folder (data_batch_1..5, test_batch) of "
               "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "tiny_imagenet": "the tiny-imagenet-200 folder (wnids.txt, train/<wnid>/images, "
                     "val/images, val/val_annotations.txt) of "
                     "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
}


def load(name, split, batch_size=None, with_index=False, data_dir=None, shuffle=False,
         augment=None, limit=None, seed=0, sample_fallback=True, shard=None):
    """A ``tf.data.Dataset`` of ``(x, y)``, or ``((x, index), y)`` with ``with_index``.

    Args:
        name: 'mnist', 'cifar10' or 'tiny_imagenet'.
        split: 'train' or 'test' ('val' too for Tiny-ImageNet, where 'test' means the
            labelled validation set, as in the papers).
        batch_size: batch the examples (the last batch may be smaller); None: unbatched.
        with_index: also yield ``index``, the int64 position of each example in its split
            (stable under shuffling; used by per-sample stores).
        data_dir: local folder with the data (see ``load_numpy``).
        shuffle: reshuffle every epoch (seeded by ``seed``).
        augment: random crop (4-pixel zero padding) and horizontal flip; None means on for
            the training split of CIFAR-10 and Tiny-ImageNet, off otherwise.
        limit: keep only the first ``limit`` examples of the split.
        seed: seed of the shuffling and of the augmentation.
        sample_fallback: MNIST only: use the embedded sample when neither ``data_dir``
            nor tensorflow-datasets has it (see ``load_numpy``).
        shard: ``(N, w)``: only the examples with ``index % N == w`` (shuffled among
            themselves), the shard a sharded ``IterateStore`` of worker w keeps.
    """
    images, labels = _load_uint8(name, split, data_dir, limit, sample_fallback)
    if augment is None:
        augment = split == "train" and name in AUGMENTED_BY_DEFAULT
    images, labels = tf.constant(images), tf.constant(labels)
    ds = tf.data.Dataset.range(len(labels))  # shuffling moves indices, not images
    if shard is not None:
        shards, index = shard
        if not 0 <= index < shards:
            raise ValueError(f"shard must be (N, w) with 0 <= w < N. Received: shard={shard}")
        ds = ds.shard(shards, index)
    if shuffle:
        ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(lambda i: (tf.cast(tf.gather(images, i), tf.float32) / 255.0,
                           tf.gather(labels, i), i),
                num_parallel_calls=tf.data.AUTOTUNE)
    if augment:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, seeds).map(
            lambda example, pair: (random_crop_flip(example[0], pair),) + example[1:],
            num_parallel_calls=tf.data.AUTOTUNE)
    if batch_size:
        ds = ds.batch(batch_size)
    return ds.map(_with_index if with_index else _without_index).prefetch(tf.data.AUTOTUNE)


def _with_index(x, y, index):
    return (x, index), y


def _without_index(x, y, index):
    return x, y


def load_numpy(name, split, data_dir=None, limit=None, sample_fallback=True):
    """The whole split as numpy arrays (x float32 in [0, 1], NHWC; y int32).

    Without ``data_dir`` the data comes from tensorflow-datasets: prepared in its data
    folder (``$TFDS_DATA_DIR``, default ``~/tensorflow_datasets``), else downloaded there
    when the download host answers within a few seconds. MNIST with ``sample_fallback``
    (the default) uses the embedded 2000 / 1000-image sample instead of downloading; with
    ``sample_fallback=False`` data that cannot be found raises ``FileNotFoundError``
    naming the folder layout to pass as ``data_dir``.

    ``data_dir`` per dataset:
        mnist: folder with ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` (the
            ``train-5k-*`` files of a subset are accepted as the training split).
        cifar10: folder with ``data_batch_1..5`` and ``test_batch`` (python pickles).
        tiny_imagenet: folder with ``wnids.txt``, ``train/<wnid>/images/*.JPEG`` and
            ``val/images`` + ``val/val_annotations.txt``. Class ids follow sorted wnids.
    """
    images, labels = _load_uint8(name, split, data_dir, limit, sample_fallback)
    return images.astype(np.float32) / 255.0, labels


def num_classes(name, data_dir=None):
    """The number of classes of dataset ``name`` (not of the labels a subset happens to
    hold): 10 for MNIST and CIFAR-10; for Tiny-ImageNet the classes of ``data_dir``'s
    ``wnids.txt`` when given, else 200."""
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset. Received: name={name!r} "
                         f"(known: {', '.join(DATASETS)})")
    if name == "tiny_imagenet" and data_dir is not None:
        return len(_find(_existing_folder(data_dir), ["wnids.txt"]).read_text().split())
    return NUM_CLASSES[name]



def download_reachable(name, timeout=NETWORK_TIMEOUT):
    """True when the host tensorflow-datasets downloads ``name`` from accepts a TCP
    connection within ``timeout`` seconds (so that an offline machine fails at once
    instead of retrying a download for minutes)."""
    if name not in DOWNLOAD_HOSTS:
        return False
    try:
        socket.create_connection(DOWNLOAD_HOSTS[name], timeout=timeout).close()
    except OSError:
        return False
    return True


def missing_data_message(name, cause=None):
    """One line saying where ``name``'s data goes and how to download it."""
    text = (f"{name} data not found. Pass data_dir=<{WHERE[name]}>")
    if name in DOWNLOAD_HOSTS:
        text += (", or prepare it with tensorflow-datasets on a machine with internet: "
                 f"python -c \"import tensorflow_datasets as tfds; tfds.load('{name}')\" "
                 "(stored in $TFDS_DATA_DIR, default ~/tensorflow_datasets, and found "
                 "there offline)")
    return text + ("." if cause is None else f". Cause: {cause}")


def random_crop_flip(image, seed, padding=CROP_PADDING):
    """Zero-pads ``image`` (H, W, C) by ``padding`` pixels, crops a random H x W window
    and flips it left-right with probability 1/2; deterministic given ``seed`` (shape [2])."""
    seed = tf.cast(seed, tf.int64)
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
    crop = tf.image.stateless_random_crop(padded, tf.shape(image), seed)
    return tf.image.stateless_random_flip_left_right(crop, seed + 1)


def _load_uint8(name, split, data_dir, limit, sample_fallback=False):
    """(images uint8 NHWC, labels int32) of one split; validates name and split."""
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}.")
    if split not in SPLITS[name]:
        raise ValueError(f"Unknown split {split!r} for {name}; "
                         f"use one of {', '.join(SPLITS[name])}.")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of examples, got {limit}.")
    folder = None if data_dir is None else _existing_folder(data_dir)
    if name == "mnist":
        images, labels = _mnist(split, folder, limit, sample_fallback)
    elif name == "cifar10":
        images, labels = (_cifar10_batches(split, folder) if folder is not None
                          else _tfds("cifar10", split, limit))
    else:
        if folder is None:
            raise ValueError(missing_data_message(name))
        images, labels = _tiny_imagenet(split, folder, limit)
    return images[:limit], labels[:limit].astype(np.int32)


def _existing_folder(data_dir):
    folder = Path(data_dir).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"Data folder {str(folder)!r} does not exist.")
    return folder


def _find(folder, candidates):
    """The first existing file among ``candidates`` in ``folder``, else FileNotFoundError."""
    for candidate in candidates:
        if (folder / candidate).is_file():
            return folder / candidate
    raise FileNotFoundError(
        f"None of {', '.join(candidates)} found in {str(folder)!r}.")


def _tfds(name, split, limit, allow_download=True):
    """(images, labels) numpy arrays from tensorflow-datasets (its default data folder):
    prepared data, else a download when ``allow_download`` and the host answers;
    FileNotFoundError (``missing_data_message``) otherwise."""
    prepared = _tfds_prepared(name)
    if not prepared and not allow_download:
        raise FileNotFoundError(missing_data_message(name))
    if not prepared and not download_reachable(name):
        host = DOWNLOAD_HOSTS[name][0]
        raise FileNotFoundError(missing_data_message(
            name, f"no network ({host} did not answer within {NETWORK_TIMEOUT:g} s), so "
                  "nothing was downloaded"))
    try:
        return _tfds_load(name, split, limit, download=not prepared)
    except Exception as error:  # a failed download or a broken prepared copy
        raise FileNotFoundError(missing_data_message(
            name, f"{type(error).__name__}: {error}")) from error


def _tfds_prepared(name):
    """True when tensorflow-datasets has ``name`` prepared in its data folder."""
    import tensorflow_datasets as tfds
    return tfds.builder(name).is_prepared()


def _tfds_load(name, split, limit, download):
    import tensorflow_datasets as tfds
    tfds_split = split if limit is None else f"{split}[:{limit}]"
    images, labels = tfds.load(name, split=tfds_split, download=download, batch_size=-1,
                               as_supervised=True)
    return np.asarray(images, np.uint8), np.asarray(labels)


# MNIST -------------------------------------------------------------------------------------

def read_idx(path):
    """A numpy uint8 array from an IDX file (gzipped or not): images (N, 28, 28) or labels."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[:4], "big")
    if magic >> 8 != 0x08 or not 1 <= magic & 0xFF <= 3:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (magic {magic:#x}).")
    rank = magic & 0xFF
    shape = [int.from_bytes(data[4 + 4 * k: 8 + 4 * k], "big") for k in range(rank)]
    if len(data) != 4 + 4 * rank + np.prod(shape):
        raise ValueError(f"{path}: {len(data)} bytes do not match the IDX header {shape}.")
    return np.frombuffer(data, np.uint8, offset=4 + 4 * rank).reshape(shape)


def _mnist(split, folder, limit, sample_fallback):
    if folder is not None:
        return _mnist_idx(split, folder)
    try:
        return _tfds("mnist", split, limit, allow_download=not sample_fallback)
    except FileNotFoundError:
        if not sample_fallback:
            raise
    sample = _embedded_sample()
    return sample[f"x_{split}"][..., None], sample[f"y_{split}"]


def _mnist_idx(split, folder):
    def names(kind):
        return [f"{prefix}-{kind}-ubyte{ext}" for prefix in IDX_PREFIXES[split]
                for ext in (".gz", "")]
    images = read_idx(_find(folder, names("images-idx3")))
    labels = read_idx(_find(folder, names("labels-idx1")))
    if len(images) != len(labels):
        raise ValueError(f"{folder}: {len(images)} {split} images but {len(labels)} labels.")
    return images[..., None], labels


@lru_cache(maxsize=1)
def _embedded_sample():
    """The packaged MNIST sample (read once; the notice is printed once per process)."""
    with np.load(SAMPLE_PATH) as npz:
        sample = {key: npz[key] for key in npz.files}
    print(f"Using the embedded MNIST sample ({len(sample['y_train'])} train / "
          f"{len(sample['y_test'])} test images); pass data_dir=... for full MNIST",
          file=sys.stderr)
    return sample


# CIFAR-10 ----------------------------------------------------------------------------------

def _cifar10_batches(split, folder):
    files = [f"data_batch_{k}" for k in range(1, 6)] if split == "train" else ["test_batch"]
    images, labels = [], []
    for file in files:
        with open(_find(folder, [file]), "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        images.append(np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[b"labels"]))
    return np.concatenate(images).transpose(0, 2, 3, 1), np.concatenate(labels)


# Tiny-ImageNet -----------------------------------------------------------------------------

def _tiny_imagenet(split, folder, limit):
    wnids = sorted((_find(folder, ["wnids.txt"])).read_text().split())
    classes = {wnid: k for k, wnid in enumerate(wnids)}
    if split == "train":
        pairs = [(path, classes[wnid]) for wnid in wnids
                 for path in sorted(_existing_folder(folder / "train" / wnid / "images")
                                    .glob("*"))]
    else:
        annotations = _find(folder / "val", ["val_annotations.txt"]).read_text()
        rows = [line.split("\t") for line in annotations.splitlines() if line.strip()]
        pairs = [(folder / "val" / "images" / row[0], classes[row[1]]) for row in rows]
    pairs = pairs[:limit]
    paths = [str(path) for path, _ in pairs]
    decode = tf.data.Dataset.from_tensor_slices(paths).map(
        lambda p: tf.io.decode_image(tf.io.read_file(p), channels=3, expand_animations=False),
        num_parallel_calls=tf.data.AUTOTUNE)
    images = np.stack(list(decode.as_numpy_iterator()))
    return images, np.array([label for _, label in pairs])
