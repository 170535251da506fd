"""Datasets: every source (embedded sample, IDX folder, tensorflow-datasets, CIFAR-10 batches,
Tiny-ImageNet folder), the index column, augmentation, the errors that say where data goes
(at once when offline), class counts and the warning for images outside [0, 1]."""
import gzip
import pickle
import socket
import warnings
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets

from gloro_local import data
from gloro_local.bounds import input_checks

MNIST_DIR = Path(__file__).parents[1] / ".." / "shared" / "data" / "mnist"
needs_mnist = pytest.mark.skipif(not MNIST_DIR.is_dir(),
                                 reason=f"offline MNIST IDX folder {MNIST_DIR} not present")


@pytest.fixture
def no_tfds(monkeypatch):
    """tensorflow-datasets has no prepared data (as on a fresh machine)."""
    def missing(name, **kwargs):
        raise AssertionError(f"Dataset {name}: could not find data")
    monkeypatch.setattr(tensorflow_datasets, "load", missing)
    monkeypatch.setattr(data, "_tfds_prepared", lambda name: False)


@pytest.fixture
def offline(monkeypatch):
    """No host answers; records every connection attempt."""
    attempts = []

    def refuse(address, timeout=None):
        attempts.append((address, timeout))
        raise OSError("Network is unreachable")
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


def check_arrays(x, y, count, shape):
    assert x.shape == (count,) + shape and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.5
    assert y.shape == (count,) and y.dtype == np.int32
    assert set(np.unique(y)) <= set(range(10))


def collect(ds):
    """All ((x, index), y) batches of a dataset, concatenated to numpy."""
    xs, indices, ys = zip(*[(x.numpy(), i.numpy(), y.numpy()) for (x, i), y in ds])
    return np.concatenate(xs), np.concatenate(indices), np.concatenate(ys)


# MNIST -------------------------------------------------------------------------------------

def test_embedded_sample_is_the_default(no_tfds, capsys):
    data._embedded_sample.cache_clear()
    x, y = data.load_numpy("mnist", "train")
    check_arrays(x, y, 2000, (28, 28, 1))
    assert np.all(np.bincount(y) == 200)
    assert "Using the embedded MNIST sample (2000 train / 1000 test images)" \
        in capsys.readouterr().err
    x, y = data.load_numpy("mnist", "test", limit=100)
    check_arrays(x, y, 100, (28, 28, 1))
    assert data.SAMPLE_PATH.stat().st_size < 3e6


def test_load_yields_index_equal_to_position(no_tfds):
    x_all, y_all = data.load_numpy("mnist", "test")
    ds = data.load("mnist", "test", batch_size=128, with_index=True, shuffle=True, limit=300)
    x, index, y = collect(ds)
    assert x.shape == (300, 28, 28, 1) and x.dtype == np.float32 and y.dtype == np.int32
    assert index.dtype == np.int64 and sorted(index) == list(range(300))
    assert not np.array_equal(index, np.arange(300))  # shuffled ...
    np.testing.assert_array_equal(x, x_all[index])   # ... but index is still the position
    np.testing.assert_array_equal(y, y_all[index])


def test_load_without_index_and_unbatched(no_tfds):
    x, y = next(iter(data.load("mnist", "train")))
    assert x.shape == (28, 28, 1) and y.dtype == tf.int32
    x, y = next(iter(data.load("mnist", "train", batch_size=32)))
    assert x.shape == (32, 28, 28, 1)


@needs_mnist
def test_mnist_from_idx_folder():
    x, y = data.load_numpy("mnist", "train", data_dir=MNIST_DIR)  # the train-5k-* files
    check_arrays(x, y, 5000, (28, 28, 1))
    assert np.all(np.bincount(y) == 500)
    x, y = data.load_numpy("mnist", "test", data_dir=MNIST_DIR)
    check_arrays(x, y, 10000, (28, 28, 1))
    sample = np.load(data.SAMPLE_PATH)  # the embedded test sample is the first 1000
    np.testing.assert_array_equal(np.round(x[:1000, ..., 0] * 255), sample["x_test"])
    np.testing.assert_array_equal(y[:1000], sample["y_test"])


def write_idx(path, array):
    header = (0x0800 + array.ndim).to_bytes(4, "big") + b"".join(
        n.to_bytes(4, "big") for n in array.shape)
    (gzip.open if path.suffix == ".gz" else open)(path, "wb").write(header + array.tobytes())


def test_mnist_idx_files_with_original_names(tmp_path):
    images = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    write_idx(tmp_path / "train-images-idx3-ubyte", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([3, 1, 4], np.uint8))
    x, y = data.load_numpy("mnist", "train", data_dir=tmp_path)
    np.testing.assert_allclose(x[..., 0], images / 255.0, atol=1e-7)
    assert y.tolist() == [3, 1, 4]
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        data.load_numpy("mnist", "test", data_dir=tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images.astype(np.uint16))  # too long
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="do not match the IDX header"):
        data.load_numpy("mnist", "test", data_dir=tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"<html>Not found</html>")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.load_numpy("mnist", "test", data_dir=tmp_path)


@pytest.fixture
def fake_tfds(monkeypatch):
    """tensorflow-datasets' load replaced by 5 white images; returns the recorded calls."""
    calls = []

    def fake_load(name, **kwargs):
        calls.append((name, kwargs))
        return tf.zeros([5, 28, 28, 1], tf.uint8) + 255, tf.constant([0, 1, 2, 3, 9], tf.int64)

    monkeypatch.setattr(tensorflow_datasets, "load", fake_load)
    return calls


@pytest.mark.parametrize("fallback", [True, False])
def test_mnist_from_tensorflow_datasets(fake_tfds, monkeypatch, offline, fallback):
    monkeypatch.setattr(data, "_tfds_prepared", lambda name: True)
    x, y = data.load_numpy("mnist", "test", limit=5, sample_fallback=fallback)
    assert fake_tfds == [("mnist", dict(split="test[:5]", download=False, batch_size=-1,
                                        as_supervised=True))]
    assert x.shape == (5, 28, 28, 1) and x.max() == 1.0 and y.dtype == np.int32
    assert offline == []  # prepared data needs no network


def test_named_mnist_never_falls_back_to_the_sample(no_tfds, offline, capsys):
    with pytest.raises(FileNotFoundError) as info:
        data.load_numpy("mnist", "train", sample_fallback=False)
    message = str(info.value)
    assert "\n" not in message
    for where in ("data_dir=<a folder with the four IDX files train-images-idx3-ubyte.gz",
                  "t10k-labels-idx1-ubyte.gz", "tfds.load('mnist')", "~/tensorflow_datasets",
                  "no network (storage.googleapis.com did not answer within 3 s)"):
        assert where in message
    assert offline == [(("storage.googleapis.com", 443), data.NETWORK_TIMEOUT)]
    assert "embedded MNIST sample" not in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="mnist data not found"):
        data.load("mnist", "test", sample_fallback=False)


def test_missing_data_is_downloaded_only_when_the_host_answers(fake_tfds, monkeypatch):
    monkeypatch.setattr(data, "_tfds_prepared", lambda name: False)
    monkeypatch.setattr(data, "download_reachable", lambda name: True)
    data.load_numpy("cifar10", "test", limit=5)
    data.load_numpy("mnist", "test", limit=5, sample_fallback=False)
    assert [(name, kwargs["download"]) for name, kwargs in fake_tfds] == [
        ("cifar10", True), ("mnist", True)]


def test_download_reachable_checks_the_host_once_with_a_timeout(monkeypatch, offline):
    assert data.download_reachable("cifar10", timeout=0.5) is False
    assert offline == [(("www.cs.toronto.edu", 443), 0.5)]
    assert data.download_reachable("tiny_imagenet") is False  # tfds has no download for it
    connected = []

    class Connection:
        def close(self):
            connected.append(True)
    monkeypatch.setattr(socket, "create_connection", lambda address, timeout: Connection())
    assert data.download_reachable("mnist") is True and connected == [True]


# CIFAR-10 ----------------------------------------------------------------------------------

def write_cifar_batches(folder, per_batch=4):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"labels": list(rng.integers(0, 10, per_batch))}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)


def test_cifar10_from_python_batches(tmp_path):
    write_cifar_batches(tmp_path)
    x, y = data.load_numpy("cifar10", "train", data_dir=tmp_path)
    check_arrays(x, y, 20, (32, 32, 3))
    with open(tmp_path / "data_batch_1", "rb") as f:
        first = pickle.load(f)
    red_row = first[b"data"][0, :32] / 255.0  # rows are stored channel-major (CHW)
    np.testing.assert_allclose(x[0, 0, :, 0], red_row, atol=1e-7)
    assert y[0] == first[b"labels"][0]
    x, index, y_test = collect(data.load("cifar10", "test", data_dir=tmp_path,
                                         batch_size=3, with_index=True))
    np.testing.assert_array_equal(x, data.load_numpy("cifar10", "test", data_dir=tmp_path)[0])
    assert index.tolist() == [0, 1, 2, 3]


def test_cifar10_training_split_is_augmented(tmp_path):
    write_cifar_batches(tmp_path)
    x_all, _ = data.load_numpy("cifar10", "train", data_dir=tmp_path)

    def epoch(**kwargs):
        return collect(data.load("cifar10", "train", data_dir=tmp_path, batch_size=20,
                                 with_index=True, **kwargs))[0]

    np.testing.assert_array_equal(epoch(augment=False), x_all)
    augmented = epoch()  # augment=None: on for the training split
    assert augmented.shape == x_all.shape and not np.array_equal(augmented, x_all)
    np.testing.assert_array_equal(epoch(seed=3), epoch(seed=3))  # reproducible
    ds = data.load("cifar10", "train", data_dir=tmp_path, batch_size=20)
    first, second = (next(iter(ds))[0].numpy() for _ in range(2))
    assert not np.array_equal(first, second)  # new crops and flips every epoch


def test_random_crop_flip_shifts_and_flips():
    image = np.random.default_rng(0).uniform(0.1, 1.0, (8, 8, 2)).astype(np.float32)
    padded = np.pad(image, [(4, 4), (4, 4), (0, 0)])
    windows = {(i, j, flip): (padded[i:i + 8, j:j + 8, :][:, ::-1] if flip
                              else padded[i:i + 8, j:j + 8, :])
               for i in range(9) for j in range(9) for flip in (False, True)}
    seen = set()
    for seed in range(60):
        out = data.random_crop_flip(image, [seed, 1]).numpy()
        np.testing.assert_array_equal(out, data.random_crop_flip(image, [seed, 1]).numpy())
        match = [key for key, window in windows.items() if np.array_equal(out, window)]
        assert match, "output is not a 4-pixel shift (optionally mirrored) of the input"
        seen.update(match)
    assert {flip for _, _, flip in seen} == {False, True}
    assert len({(i, j) for i, j, _ in seen}) > 20


def test_cifar10_missing_data_errors(tmp_path, no_tfds, offline):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        data.load_numpy("cifar10", "train", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError) as info:  # offline: no download is tried
        data.load_numpy("cifar10", "test")
    assert "data_dir=<the cifar-10-batches-py folder" in str(info.value)
    assert "cifar-10-python.tar.gz" in str(info.value)
    assert "no network (www.cs.toronto.edu" in str(info.value)
    assert len(offline) == 1


def test_a_failed_download_names_its_cause(monkeypatch):
    monkeypatch.setattr(data, "_tfds_prepared", lambda name: False)
    monkeypatch.setattr(data, "download_reachable", lambda name: True)

    def broken(name, **kwargs):
        raise ConnectionError("connection reset")
    monkeypatch.setattr(tensorflow_datasets, "load", broken)
    with pytest.raises(FileNotFoundError, match="data_dir=.*ConnectionError: connection reset"):
        data.load_numpy("cifar10", "test")


# Tiny-ImageNet -----------------------------------------------------------------------------

def write_image(path, value, channels=3):
    pixels = tf.fill([64, 64, channels], tf.constant(value, tf.uint8))
    encode = tf.io.encode_png if path.suffix == ".png" else tf.io.encode_jpeg
    tf.io.write_file(str(path), encode(pixels))


@pytest.fixture
def tiny_imagenet(tmp_path):
    """3 classes with 2 training images each and 3 validation images; one PNG, one grey."""
    wnids = ["n03", "n01", "n02"]  # class ids follow the sorted order: n01 -> 0, ...
    (tmp_path / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for k, wnid in enumerate(sorted(wnids)):
        images = tmp_path / "train" / wnid / "images"
        images.mkdir(parents=True)
        write_image(images / f"{wnid}_0.JPEG", 60 * k)
        write_image(images / f"{wnid}_1.png", 60 * k + 30, channels=1 if k == 2 else 3)
    (tmp_path / "val" / "images").mkdir(parents=True)
    rows = [("val_0.JPEG", "n02", 200), ("val_1.JPEG", "n01", 100), ("val_2.JPEG", "n03", 0)]
    for file, _, value in rows:
        write_image(tmp_path / "val" / "images" / file, value)
    (tmp_path / "val" / "val_annotations.txt").write_text(
        "".join(f"{file}\t{wnid}\t0\t0\t63\t63\n" for file, wnid, _ in rows))
    return tmp_path


def test_tiny_imagenet_folder(tiny_imagenet):
    x, y = data.load_numpy("tiny_imagenet", "train", data_dir=tiny_imagenet)
    check_arrays(x, y, 6, (64, 64, 3))
    assert y.tolist() == [0, 0, 1, 1, 2, 2]
    np.testing.assert_allclose(x.mean(axis=(1, 2, 3)) * 255, [0, 30, 60, 90, 120, 150], atol=2)
    x, y = data.load_numpy("tiny_imagenet", "val", data_dir=tiny_imagenet)
    assert y.tolist() == [1, 0, 2]
    np.testing.assert_allclose(x.mean(axis=(1, 2, 3)) * 255, [200, 100, 0], atol=2)
    x_test, index, y_test = collect(data.load("tiny_imagenet", "test", data_dir=tiny_imagenet,
                                              batch_size=2, with_index=True, limit=2))
    np.testing.assert_array_equal(x_test, x[:2])
    assert index.tolist() == [0, 1] and y_test.tolist() == [1, 0]


def test_tiny_imagenet_missing_data(tiny_imagenet, tmp_path):
    with pytest.raises(ValueError, match="data_dir=<the tiny-imagenet-200 folder .*zip"):
        data.load_numpy("tiny_imagenet", "train")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="wnids.txt"):
        data.load_numpy("tiny_imagenet", "val", data_dir=empty)
    (tiny_imagenet / "wnids.txt").write_text("n01\nn02\nn03\nn04\n")
    with pytest.raises(FileNotFoundError, match="n04"):
        data.load_numpy("tiny_imagenet", "train", data_dir=tiny_imagenet)


# Errors ------------------------------------------------------------------------------------

def test_unknown_names_and_missing_folders(tmp_path):
    with pytest.raises(ValueError, match="mnist, cifar10, tiny_imagenet"):
        data.load("imagenet", "train")
    with pytest.raises(ValueError, match="'validation'.*train, test"):
        data.load_numpy("mnist", "validation")
    with pytest.raises(ValueError, match="limit"):
        data.load_numpy("mnist", "test", limit=0)
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        data.load("mnist", "test", data_dir=missing)


def test_num_classes_comes_from_the_dataset(tiny_imagenet):
    assert data.num_classes("mnist") == 10 and data.num_classes("cifar10") == 10
    assert data.num_classes("tiny_imagenet") == 200
    assert data.num_classes("tiny_imagenet", tiny_imagenet) == 3  # its wnids.txt
    with pytest.raises(ValueError, match="Received: name='svhn'"):
        data.num_classes("svhn")


def test_images_outside_the_unit_range_warn_once(monkeypatch):
    monkeypatch.setattr(input_checks, "_WARNED", set())
    pixels = np.full((2, 28, 28, 1), 200, np.uint8)
    with pytest.warns(UserWarning, match="train images has integer dtype uint8.*255"):
        assert input_checks.check_images(pixels, "train images") is pixels
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        input_checks.check_images(pixels, "train images")  # once per source
        input_checks.check_images(np.linspace(0, 1, 10, dtype=np.float32), "unit")
        input_checks.check_images(np.float32([-0.4, 1.4]), "slightly outside")
    with pytest.warns(UserWarning, match=r"values in \[0, 255\]"):
        input_checks.check_images(np.float32([0.0, 255.0]), "test images")
