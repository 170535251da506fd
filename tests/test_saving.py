"""Saving and loading LocalGloroNet (.keras and legacy .h5), checkpoints and backups.

Oracles: the saved model itself. After a round trip every output, weight, threshold,
global iterate, optimizer variable and converged bound is bit-identical; checkpoints
written during fit equal the model at that epoch; a run interrupted and resumed with
BackupAndRestore ends with the weights of an uninterrupted run.
"""
import os

import keras
import numpy as np
import pytest

import gloro_local as gl
from gloro_local import LocalGloroNet
from gloro_local.layers import (ClippedMaxMin, Conv2D, Dense, Flatten, MaxMin, ReLU,
                                ReLUTheta)
from gloro_local.training import Trades

FORMATS = ["keras", "h5"]


def conv_net(seed=0):
    init = keras.initializers.GlorotNormal
    return keras.Sequential([
        keras.Input((8, 8, 1)), Conv2D(4, 3, strides=2, kernel_initializer=init(seed)),
        ReLUTheta(), Flatten(), Dense(16, kernel_initializer=init(seed + 1)), ReLUTheta(),
        Dense(3, kernel_initializer=init(seed + 2))])


def data(count=96, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(size=(count, 8, 8, 1)).astype(np.float32),
            rng.integers(0, 3, count).astype(np.int32))


def same_weights(a, b):
    def kinds(model):  # variable names without the auto-numbered layer names
        return [w.path.split("/")[-1] for w in model.weights]
    assert kinds(a) == kinds(b)
    for u, v in zip(a.weights, b.weights):
        np.testing.assert_array_equal(v.numpy(), u.numpy(), err_msg=u.path)


CONFIG = dict(bound="local", power_iterations=3, eval_iterations=50, eval_tol=1e-4,
              worst_logit_steps=4, local_layers=[1], lam_sparse=0.05, lam_theta=0.1, seed=5)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A briefly trained model saved in both formats, and what it computed before."""
    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("saved")
    x, y = data()
    model = LocalGloroNet(conv_net(), 0.2, **CONFIG)
    model.compile(keras.optimizers.Adam(1e-2), loss=Trades(lam=2.5))
    model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    model.epsilon = 0.25
    paths = {fmt: str(folder / f"model.{fmt}") for fmt in FORMATS}
    for path in paths.values():
        model.save(path)
    reference = dict(
        outputs=model(x).numpy(),
        weights={w.path: w.numpy() for w in model.weights},
        thetas=[layer.theta.numpy() for layer in model.f.layers
                if isinstance(layer, ReLUTheta)],
        iterates=[u.numpy() for u in model.global_norms.iterates],
        optimizer=[v.numpy() for v in model.optimizer.variables])
    reference["bounds"] = model.lipschitz_bounds(x, converge=True)
    return model, paths, reference, x


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_is_exact(saved, fmt):
    model, paths, reference, x = saved
    loaded = gl.load_model(paths[fmt])
    assert isinstance(loaded, LocalGloroNet)
    np.testing.assert_array_equal(loaded(x).numpy(), reference["outputs"])
    assert len(loaded.weights) == len(reference["weights"])
    for got, (path, want) in zip(loaded.weights, reference["weights"].items()):
        assert got.path.split("/")[-1] == path.split("/")[-1]
        np.testing.assert_array_equal(got.numpy(), want, err_msg=path)
    loaded_thetas = [layer.theta.numpy() for layer in loaded.f.layers
                     if isinstance(layer, ReLUTheta)]
    assert len(loaded_thetas) == 2
    for got, want in zip(loaded_thetas, reference["thetas"]):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(loaded.global_norms.iterates, reference["iterates"]):
        np.testing.assert_array_equal(got.numpy(), want)
    assert float(loaded.epsilon.numpy()) == np.float32(0.25)
    for key, value in CONFIG.items():
        assert getattr(loaded, key) == value, key
    bounds = loaded.lipschitz_bounds(x, converge=True)
    assert bounds.keys() == reference["bounds"].keys()
    for key, value in reference["bounds"].items():
        np.testing.assert_array_equal(bounds[key], value, err_msg=key)


@pytest.mark.parametrize("fmt", FORMATS)
def test_compiled_loss_and_optimizer_restored(saved, fmt):
    model, paths, reference, x = saved
    loaded = gl.load_model(paths[fmt])
    assert type(loaded.robust_loss) is Trades
    assert float(loaded.robust_loss.lam.numpy()) == 2.5
    assert type(loaded.optimizer) is type(model.optimizer)
    assert int(loaded.optimizer.iterations.numpy()) == 6
    assert len(loaded.optimizer.variables) == len(reference["optimizer"])
    for got, want in zip(loaded.optimizer.variables, reference["optimizer"]):
        np.testing.assert_array_equal(got.numpy(), want)
    _, y = data()
    history = loaded.fit(x, y, batch_size=32, epochs=1, verbose=0)  # ready to train on
    assert np.isfinite(history.history["loss"][0])
    assert int(loaded.optimizer.iterations.numpy()) == 9
    uncompiled = gl.load_model(paths[fmt], compile=False)
    np.testing.assert_array_equal(uncompiled(x).numpy(), reference["outputs"])


def test_training_continues_identically_after_loading(tmp_path):
    """Deterministic training (bound='global', no shuffling): one more epoch on the loaded
    model and on the original give the same weights, for both formats. (.h5 is saved
    first: saving it must not strip the optimizer from the later .keras file.)"""
    x, y = data()
    model = LocalGloroNet(conv_net(), 0.2, bound="global")
    model.compile(keras.optimizers.Adam(1e-2), loss="bcp")
    model.robust_loss.lam.assign(0.4)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
    loaded = {}
    for fmt in ("h5", "keras"):
        path = str(tmp_path / f"m.{fmt}")
        model.save(path)
        loaded[fmt] = gl.load_model(path)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
    for fmt, other in loaded.items():
        assert float(other.robust_loss.lam.numpy()) == np.float32(0.4)
        other.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
        same_weights(model, other)


def test_every_layer_type_round_trips(tmp_path):
    f = keras.Sequential([
        keras.Input((6, 6, 2)), Conv2D(4, 3), MaxMin(),
        keras.layers.Conv2D(4, 3, strides=2, padding="same"), ClippedMaxMin(upper_init=0.7),
        keras.layers.Flatten(), keras.layers.Dense(8), keras.layers.ReLU(), Dense(6),
        ReLU(), Dense(6), ReLUTheta(theta_init=0.5), Dense(3)])
    model = LocalGloroNet(f, 0.3, bound="global")
    x = np.random.default_rng(0).uniform(size=(5, 6, 6, 2)).astype(np.float32)
    expected = model(x).numpy()
    for fmt in FORMATS:
        path = str(tmp_path / f"zoo.{fmt}")
        model.save(path)
        loaded = gl.load_model(path)
        # plain Keras layers stay plain, gloro_local layers stay gloro_local
        assert [type(a) for a in loaded.f.layers] == [type(a) for a in f.layers]
        assert loaded.f.layers[3].upper_init == 0.7
        np.testing.assert_array_equal(loaded(x).numpy(), expected)
        same_weights(model, loaded)


def test_model_checkpoint_during_fit(tmp_path):
    x, y = data()
    model = LocalGloroNet(conv_net(), 0.2)
    model.compile(keras.optimizers.Adam(1e-2), loss="crossentropy")

    class Snapshot(keras.callbacks.Callback):  # the model as each checkpoint should hold it
        outputs = {}

        def on_epoch_end(self, epoch, logs=None):
            self.outputs[epoch + 1] = self.model(x).numpy()

    callbacks = [keras.callbacks.ModelCheckpoint(str(tmp_path / "ckpt_{epoch}.keras")),
                 keras.callbacks.ModelCheckpoint(str(tmp_path / "ckpt_{epoch}.h5")),
                 keras.callbacks.ModelCheckpoint(str(tmp_path / "ckpt_{epoch}.weights.h5"),
                                                 save_weights_only=True),
                 Snapshot()]
    model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=callbacks)
    assert sorted(os.listdir(tmp_path)) == sorted(
        f"ckpt_{e}.{ext}" for e in (1, 2) for ext in ("keras", "h5", "weights.h5"))
    np.testing.assert_array_equal(Snapshot.outputs[2], model(x).numpy())
    for epoch, ext in [(1, "keras"), (2, "keras"), (2, "h5")]:
        loaded = gl.load_model(str(tmp_path / f"ckpt_{epoch}.{ext}"))
        np.testing.assert_array_equal(loaded(x).numpy(), Snapshot.outputs[epoch])
    fresh = LocalGloroNet(conv_net(seed=9), 0.2)
    fresh.load_weights(str(tmp_path / "ckpt_2.weights.h5"))
    np.testing.assert_array_equal(fresh(x).numpy(), Snapshot.outputs[2])
    same_weights(model, fresh)


class Interrupt(keras.callbacks.Callback):
    """Raises in the second batch of epoch 2, as a crash would."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self.epoch == 2 and batch == 1:
            raise RuntimeError("simulated crash")


class Watch(keras.callbacks.Callback):
    """Epochs run, the weights each one starts from, and the weights after epoch 1."""

    def __init__(self):
        super().__init__()
        self.epochs, self.starts, self.after_epoch_1 = [], {}, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)
        self.starts[epoch] = [w.numpy() for w in self.model.weights]

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            self.after_epoch_1 = [w.numpy() for w in self.model.weights]


def test_backup_and_restore_resumes_after_a_crash(tmp_path):
    x, y = data()
    backup = str(tmp_path / "backup")

    def run(seed, callbacks):
        model = LocalGloroNet(conv_net(seed), 0.2, bound="global")
        model.compile(keras.optimizers.Adam(1e-2), loss="crossentropy")
        model.fit(x, y, batch_size=32, epochs=4, verbose=0, shuffle=False,
                  callbacks=callbacks)
        return model

    reference = run(0, [])
    crashed = Watch()
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(0, [keras.callbacks.BackupAndRestore(backup), Interrupt(), crashed])
    assert crashed.epochs == [0, 1, 2]
    assert os.path.isdir(backup)
    resumed = Watch()
    model = run(7, [keras.callbacks.BackupAndRestore(backup), resumed])  # other init
    assert resumed.epochs == [2, 3]
    for got, want in zip(resumed.starts[2], crashed.after_epoch_1):
        np.testing.assert_array_equal(got, want)
    assert int(model.optimizer.iterations.numpy()) == 12
    same_weights(reference, model)
    assert not os.path.exists(backup)  # removed after the successful run


def test_load_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        gl.load_model(str(tmp_path / "missing.keras"))
    other = tmp_path / "model.txt"
    other.write_text("not a model")
    with pytest.raises(ValueError, match=r"\.keras or \.h5"):
        gl.load_model(str(other))
