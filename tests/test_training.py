"""Training a LocalGloroNet with compile / fit: losses, schedules, sparsity, the store.

Oracles: VRA of a briefly trained MNIST model against the untrained one; every loss
against its formula evaluated in numpy on the GloRo bound (computed by hand from an SVD);
schedule values against their closed forms, batch by batch; the sparsity term against
the hinge recomputed from the propagated boxes; store rows before and after an epoch.
"""
import os
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import tight_rule
import gloro_local as gl
from gloro_local import LocalGloroNet
from gloro_local.layers import Dense, Flatten, ReLUTheta
from gloro_local.training import (ConvergeGlobalNorms, EpsilonSchedule, LambdaSchedule,
                                  LearningRateSchedule)

MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
needs_mnist = pytest.mark.skipif(not (MNIST_DIR / "train-5k-images-idx3-ubyte.gz").is_file(),
                                 reason=f"the offline MNIST copy is missing ({MNIST_DIR})")


def mnist_arrays(split, count, seed=0):
    """``count`` shuffled real MNIST examples (the shared copy, else the packaged sample)."""
    data_dir = MNIST_DIR if MNIST_DIR.is_dir() else None
    x, y = gl.data.load_numpy("mnist", split, data_dir=data_dir)
    order = np.random.default_rng(seed).permutation(len(y))[:count]
    return x[order], y[order]


def net(hidden=(32, 32), input_shape=(28, 28, 1), classes=10, seed=0):
    """Flatten -> [Dense, ReLUTheta]* -> Dense, with seeded initial weights."""
    init = keras.initializers.GlorotNormal
    layers = [keras.Input(input_shape), Flatten()]
    for k, units in enumerate(hidden):
        layers += [Dense(units, kernel_initializer=init(seed + k)), ReLUTheta()]
    layers.append(Dense(classes, kernel_initializer=init(seed + len(hidden))))
    return keras.Sequential(layers)


def thetas(model):
    return [layer.theta.numpy() for layer in model.f.layers if isinstance(layer, ReLUTheta)]


@pytest.fixture(scope="module")
def small_data():
    x, y = mnist_arrays("train", 256)
    return x, y.astype(np.int32)


# --------------------------------------------------------------------------- training


@needs_mnist
def test_short_training_on_mnist_raises_vra():
    keras.utils.set_random_seed(0)
    train = gl.data.load("mnist", "train", data_dir=MNIST_DIR, batch_size=128, shuffle=True)
    test = gl.data.load("mnist", "test", data_dir=MNIST_DIR, batch_size=500, limit=500)
    model = LocalGloroNet(net((64, 64)), 0.3)
    model.compile(keras.optimizers.Adam(2e-3), loss="crossentropy")
    before = model.evaluate(test, verbose=0, return_dict=True)
    initial_thetas = thetas(model)
    history = model.fit(train, epochs=2, verbose=0)
    after = model.evaluate(test, verbose=0, return_dict=True)
    assert set(after) >= {"loss", "clean_acc", "vra", "rejection_rate", "local_bound",
                          "global_bound", "varying"}
    assert before["vra"] < 0.15
    assert after["vra"] > 0.3
    assert after["vra"] > before["vra"] + 0.2
    assert after["clean_acc"] >= after["vra"]
    assert after["vra"] <= 1.0 - after["rejection_rate"] + 1e-6  # certified and correct
    assert after["local_bound"] <= after["global_bound"] * (1 + 1e-5)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert float(model.epsilon.numpy()) == pytest.approx(0.3)
    trained = thetas(model)
    assert all(np.all(t >= 0.0) for t in trained)
    assert any(not np.array_equal(a, b) for a, b in zip(initial_thetas, trained))


def test_thresholds_stay_non_negative_under_pressure(small_data):
    """A strong theta hinge drives thresholds down; the NonNeg constraint stops them at 0."""
    x, y = small_data
    model = LocalGloroNet(net((16,)), 0.3, lam_sparse=1.0, lam_theta=100.0)
    model.compile(keras.optimizers.SGD(0.5), loss="crossentropy")
    model.fit(x, y, batch_size=64, epochs=2, verbose=0)
    (theta,) = thetas(model)
    assert np.all(theta >= 0.0)
    assert np.all(theta < 0.2)  # pushed hard down from 1.0: only the constraint holds them


# ----------------------------------------------------------------------------- losses


def softmax_ce(logits, labels):
    logits = np.asarray(logits, np.float64)
    top = logits.max(-1, keepdims=True)
    log_z = top[:, 0] + np.log(np.exp(logits - top).sum(-1))
    return log_z - logits[np.arange(len(labels)), labels]


def log_softmax(logits):
    logits = np.asarray(logits, np.float64)
    top = logits.max(-1, keepdims=True)
    return logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))


def gloro_worst_logits(model, x, reference):
    """z*_i = z_i + eps * prod_l ||W_l|| * ||w_i - w_j|| (z*_j = z_j), in numpy."""
    dense = [layer for layer in model.f.layers if isinstance(layer, Dense)]
    h = np.asarray(x, np.float64).reshape(len(x), -1)
    for layer in model.f.layers:  # Flatten: done above
        if isinstance(layer, Dense):
            h = h @ layer.kernel.numpy() + layer.bias.numpy()
        elif isinstance(layer, ReLUTheta):
            h = np.minimum(np.maximum(h, 0.0), layer.theta.numpy())
    lipschitz = np.prod([np.linalg.svd(layer.kernel.numpy(), compute_uv=False)[0]
                         for layer in dense[:-1]])
    w = dense[-1].kernel.numpy().astype(np.float64)
    if reference is None:
        reference = h.argmax(-1)
    eps = float(model.epsilon.numpy())
    g = w.T[None, :, :] - w.T[reference][:, None, :]
    worst = h + eps * lipschitz * np.linalg.norm(g, axis=-1)
    bottom = np.where(np.eye(h.shape[1], dtype=bool)[reference], -np.inf, worst).max(-1)
    return h, worst, bottom


def expected_loss(name, lam, model, x, y):
    if name == "crossentropy":
        z, _, bottom = gloro_worst_logits(model, x, y)
        return softmax_ce(np.concatenate([z, bottom[:, None]], -1), y)
    if name == "trades":
        z, _, bottom = gloro_worst_logits(model, x, None)
        clean = np.exp(log_softmax(z))
        robust = log_softmax(np.concatenate([z, bottom[:, None]], -1))[:, :-1]
        return softmax_ce(z, y) + lam * (clean * (log_softmax(z) - robust)).sum(-1)
    z, worst, _ = gloro_worst_logits(model, x, y)
    return (1 - lam) * softmax_ce(z, y) + lam * softmax_ce(worst, y)


@pytest.mark.parametrize("name, loss", [
    ("crossentropy", "crossentropy"), ("trades", "trades"), ("bcp", "bcp"),
    ("trades", gl.training.Trades(lam=2.5)), ("bcp", gl.training.BCPLoss(lam=0.3))])
def test_loss_values_match_formulas(name, loss, small_data):
    x, y = small_data
    x, y = x[:48], y[:48]
    model = LocalGloroNet(net((24,), seed=3), 0.5, bound="gloro")
    model.compile(loss=loss)
    if not isinstance(loss, str):
        assert model.robust_loss is loss
    model.global_norms.converge(model.hidden_seams(), tight_rule())
    lam = float(model.robust_loss.lam.numpy())
    expected = expected_loss(name, lam, model, x, y).mean()
    metrics = model.evaluate(x, y, batch_size=48, verbose=0, return_dict=True)
    np.testing.assert_allclose(metrics["loss"], expected, rtol=1e-4)


def test_unknown_loss_is_refused():
    model = LocalGloroNet(net((8,)), 0.2)
    with pytest.raises(ValueError, match="loss"):
        model.compile(loss="mse")
    with pytest.raises(ValueError, match="lam"):
        gl.training.Trades(lam=-1.0)


# -------------------------------------------------------------------------- schedules


class Recorder(keras.callbacks.Callback):
    """Records epsilon, lambda and the learning rate where the schedules set them."""

    def __init__(self):
        super().__init__()
        self.train_eps, self.test_eps, self.lam, self.lr = [], [], [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.lr.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

    def on_train_batch_begin(self, batch, logs=None):
        self.train_eps.append((self.epoch, batch, float(self.model.epsilon.numpy())))
        self.lam.append(float(self.model.robust_loss.lam.numpy()))

    def on_test_batch_begin(self, batch, logs=None):
        self.test_eps.append(float(self.model.epsilon.numpy()))


EPS_TRAIN, EPS_TEST, RAMP, EPOCHS, STEPS = 0.4, 0.3, 2, 4, 4


@pytest.fixture(scope="module", params=["linear", "log"])
def scheduled_run(request, small_data):
    """One fit of 4 epochs x 4 steps with all three schedules and validation."""
    keras.utils.set_random_seed(0)
    x, y = small_data
    shape = request.param
    model = LocalGloroNet(net((16,)), 1.0)
    model.compile(keras.optimizers.Adam(1e-2), loss="bcp")
    recorder = Recorder()
    lam = (0.0, 1.0) if shape == "linear" else (0.8, 0.0)
    callbacks = [EpsilonSchedule(EPS_TRAIN, RAMP, eps_test=EPS_TEST, shape=shape),
                 LambdaSchedule(*lam, epochs=3),
                 LearningRateSchedule(1e-2, 1e-4, constant_epochs=1), recorder]
    history = model.fit(x, y, batch_size=64, epochs=EPOCHS, verbose=0, callbacks=callbacks,
                        validation_data=(x[:64], y[:64]))
    return shape, lam, model, recorder, history


def test_epsilon_schedule_per_batch(scheduled_run):
    shape, _, model, recorder, _ = scheduled_run
    epochs, batches, values = map(np.array, zip(*recorder.train_eps))
    assert len(values) == EPOCHS * STEPS
    start = EPS_TRAIN / 1000
    progress = np.minimum((epochs + batches / STEPS) / RAMP, 1.0)
    if shape == "linear":
        expected = start + progress * (EPS_TRAIN - start)
    else:
        expected = np.exp(np.log(start) + progress * (np.log(EPS_TRAIN) - np.log(start)))
    np.testing.assert_allclose(values, expected, rtol=1e-6)
    ramp = values[:RAMP * STEPS]
    assert np.all(np.diff(ramp) > 0)
    assert np.all(values <= np.float32(EPS_TRAIN))  # never overshoots
    np.testing.assert_array_equal(values[RAMP * STEPS:], np.float32(EPS_TRAIN))
    if shape == "log":  # geometric steps within the ramp
        ratios = ramp[1:] / ramp[:-1]
        np.testing.assert_allclose(ratios, ratios[0], rtol=1e-5)


def test_evaluation_uses_eps_test(scheduled_run, small_data):
    _, _, model, recorder, history = scheduled_run
    assert len(recorder.test_eps) == EPOCHS  # one validation batch per epoch
    np.testing.assert_array_equal(recorder.test_eps, np.float32(EPS_TEST))
    assert float(model.epsilon.numpy()) == np.float32(EPS_TEST)
    x, y = small_data
    # the same batch as validation (the monitoring bound's random starts depend on it)
    final = model.evaluate(x[:64], y[:64], batch_size=64, verbose=0, return_dict=True)
    np.testing.assert_allclose(final["vra"], history.history["val_vra"][-1], atol=1e-6)
    np.testing.assert_allclose(final["loss"], history.history["val_loss"][-1], rtol=1e-4)


def test_lambda_schedule(scheduled_run):
    _, (start, end), model, recorder, _ = scheduled_run
    lam = np.array(recorder.lam)
    assert np.all(lam >= 0.0)
    step = np.sign(end - start)
    assert np.all(np.diff(lam) * step >= 0)  # monotone towards the end value
    expected = start + np.minimum(np.arange(len(lam)) / (3 * STEPS), 1.0) * (end - start)
    np.testing.assert_allclose(lam, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(lam[-STEPS:], np.float32(end))
    assert float(model.robust_loss.lam.numpy()) == np.float32(end)


def test_learning_rate_schedule(scheduled_run):
    _, _, _, recorder, _ = scheduled_run
    np.testing.assert_allclose(recorder.lr, [1e-2, 1e-2, 1e-3, 1e-4], rtol=1e-6)
    assert np.all(np.diff(recorder.lr) <= 0)
    rates = LearningRateSchedule(0.1, 0.001, constant_epochs=2, total_epochs=10)
    values = [rates.rate(e) for e in range(10)]
    assert values[:3] == [0.1, 0.1, 0.1]
    np.testing.assert_allclose(values[-1], 0.001, rtol=1e-12)
    np.testing.assert_allclose(np.diff(np.log(values[2:])), np.log(0.01) / 7, rtol=1e-9)


def test_schedule_arguments_are_validated():
    with pytest.raises(ValueError):
        EpsilonSchedule(-0.1, 2)
    with pytest.raises(ValueError):
        EpsilonSchedule(0.1, 2, shape="cosine")
    with pytest.raises(ValueError):
        EpsilonSchedule(0.1, -1)
    with pytest.raises(ValueError):
        LambdaSchedule(-0.5, 1.0, 2)
    with pytest.raises(ValueError):
        LearningRateSchedule(0.0, 1e-3, 1)


def test_fit_converges_global_norms(small_data, monkeypatch):
    x, y = small_data
    model = LocalGloroNet(net((32, 32)), 0.2, power_iterations=1)
    model.compile(keras.optimizers.Adam(1e-3), loss="crossentropy")
    svd_error = []
    for fit in (keras.Model.fit, LocalGloroNet.fit):  # keras' own fit: no callback added
        fit(model, x, y, batch_size=64, epochs=1, verbose=0)
        sigmas = [float(s) for s in model.global_norms.norms(model.hidden_seams(), 0)]
        svd = [np.linalg.svd(layer.kernel.numpy(), compute_uv=False)[0]
               for layer in model.f.layers if isinstance(layer, Dense)][:-1]
        svd_error.append(np.max(np.abs(np.array(sigmas) / svd - 1)))
    assert svd_error[0] > 1e-3  # control: one power iteration per step does not converge
    assert svd_error[1] < 1e-5
    # a ConvergeGlobalNorms given by the user is not doubled
    calls = []
    monkeypatch.setattr(ConvergeGlobalNorms, "_converge", lambda self: calls.append(self))
    mine = ConvergeGlobalNorms()
    model.fit(x, y, batch_size=64, epochs=1, verbose=0, callbacks=[mine])
    assert calls == [mine]
    calls.clear()
    model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    assert len(calls) == 1 and calls[0] is not mine


# -------------------------------------------------------------------------- sparsity


def sparsity_by_hand(model, x):
    """sum over ReLU-theta layers of mean(relu(hi)) + lam_theta * mean(relu(theta - lo)),
    with the boxes of the model's own (inference) bound pass."""
    result = model.margins(x)
    total = 0.0
    for box in result.propagation.activations:
        lo, hi, theta = box.lo.numpy(), box.hi.numpy(), box.seam.theta.numpy()
        total += np.maximum(hi, 0).mean() + model.lam_theta * np.maximum(theta - lo, 0).mean()
    return total


def test_sparsity_term_in_loss(small_data):
    x, y = small_data
    x, y = x[:64], y[:64]
    models = {}
    for lam in (0.0, 0.7):
        model = LocalGloroNet(net((16, 16)), 0.3, lam_sparse=lam, lam_theta=0.5)
        model.compile(loss="crossentropy")
        models[lam] = model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    np.testing.assert_allclose(models[0.7]["loss"] - models[0.0]["loss"],
                               0.7 * sparsity_by_hand(model, x), rtol=1e-4)


@needs_mnist
def test_sparsity_reduces_varying_fraction():
    x, y = mnist_arrays("train", 1024)
    x_test, y_test = mnist_arrays("test", 256)
    varying = {}
    for lam in (0.0, 0.3):  # (the masks, hence the effect, do not depend on the bound)
        keras.utils.set_random_seed(0)
        model = LocalGloroNet(net((32, 32)), 0.3, lam_sparse=lam, bound="global")
        model.compile(keras.optimizers.Adam(2e-3), loss="crossentropy")
        history = model.fit(x, y, batch_size=64, epochs=2, verbose=0, shuffle=False)
        assert np.all(np.isfinite(history.history["loss"]))
        varying[lam] = model.lipschitz_bounds(x_test)["varying"].mean()
    assert varying[0.3] < varying[0.0] - 0.05


# ----------------------------------------------------------------------- sample store


@needs_mnist
def test_store_updates_the_rows_of_seen_samples(tmp_path):
    seen, size = 320, 512
    data = gl.data.load("mnist", "train", data_dir=MNIST_DIR, batch_size=64, limit=seen,
                        with_index=True, shuffle=True)
    model = LocalGloroNet(net((32, 32)), 0.3)
    model.compile(keras.optimizers.Adam(1e-3), loss="crossentropy")
    store = model.attach_store(size)
    assert model.store is store and len(store.tables) == 2
    before = [table.numpy().astype(np.float32) for table in store.tables]
    model.fit(data, epochs=1, verbose=0)
    after = [table.numpy().astype(np.float32) for table in store.tables]
    for k, (old, new) in enumerate(zip(before, after)):
        changed = np.any(old != new, axis=tuple(range(1, old.ndim)))
        assert not old.any(), f"layer {k}: rows start at 0"
        zero = ~np.any(new != 0, axis=tuple(range(1, new.ndim)))
        # a row of a masked layer stays 0 when every input neuron is constant
        written = changed | (zero if k > 0 else False)
        assert written[:seen].all(), f"layer {k}: some seen rows were not written"
        assert not changed[seen:].any(), f"layer {k}: rows of unseen samples changed"
        norms = np.linalg.norm(new[:seen].reshape(seen, -1), axis=1)
        if k == 0:  # no input mask: unit power-iteration vectors
            np.testing.assert_allclose(norms, 1.0, atol=2e-2)
        else:  # unit vectors, or 0 when every input neuron is constant
            assert np.all((np.abs(norms - 1) < 2e-2) | (norms == 0))
    # the store is not part of the model's variables, nor of its saved file
    table_names = {table.name for table in store.tables}
    assert not table_names & {v.name for v in model.variables}
    assert all(v.shape[0] != size for v in model.variables if len(v.shape))
    with_store, without = tmp_path / "with.keras", tmp_path / "without.keras"
    model.save(with_store)
    model.store = None
    model.save(without)
    table_bytes = sum(t.numpy().nbytes for t in store.tables)
    assert abs(os.path.getsize(with_store) - os.path.getsize(without)) < table_bytes / 100
    assert gl.load_model(with_store).store is None


def indexed(x, y, index, batch_size=64):
    return tf.data.Dataset.from_tensor_slices(((x, index), y)).batch(batch_size)


def test_store_needs_indexed_data(small_data):
    x, y = small_data
    model = LocalGloroNet(net((16,)), 0.3)
    model.compile(loss="crossentropy")
    model.attach_store(len(y))
    with pytest.raises(ValueError, match="with_index=True"):
        model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    # evaluation and prediction need no index
    assert np.isfinite(model.evaluate(x, y, verbose=0, return_dict=True)["loss"])
    # indices beyond the store are refused
    model.attach_store(100)
    with pytest.raises(tf.errors.InvalidArgumentError, match="sample index"):
        model.fit(indexed(x, y, np.arange(len(y))), epochs=1, verbose=0)


def test_store_with_global_bound_is_unused(small_data):
    x, y = small_data
    model = LocalGloroNet(net((16,)), 0.3, bound="global")
    model.compile(loss="crossentropy")
    store = model.attach_store(len(y))
    before = store.tables[0].numpy()
    model.fit(indexed(x, y, np.arange(len(y))), epochs=1, verbose=0)
    np.testing.assert_array_equal(store.tables[0].numpy(), before)


def test_store_attached_after_fit_is_used(small_data):
    x, y = small_data
    model = LocalGloroNet(net((16,)), 0.3)
    model.compile(loss="crossentropy")
    first = model.attach_store(len(y))
    model.fit(indexed(x, y, np.arange(len(y))), epochs=1, verbose=0)
    written = first.tables[0].numpy()
    second = model.attach_store(len(y))
    before = second.tables[0].numpy()
    model.fit(indexed(x, y, np.arange(len(y))), epochs=1, verbose=0)
    np.testing.assert_array_equal(first.tables[0].numpy(), written)  # the old one is left
    assert np.all(np.any(second.tables[0].numpy() != before, axis=1))


# ----------------------------------------------------------------------------- labels


def test_labels_out_of_range(small_data):
    x, y = small_data
    model = LocalGloroNet(net((16,)), 0.3)
    model.compile(loss="crossentropy")
    for bad in (10, -1):
        wrong = y.copy()
        wrong[5] = bad
        with pytest.raises(ValueError, match=f"Received: label {bad} at index 5"):
            model.fit(x, wrong, batch_size=64, epochs=1, verbose=0)
        with pytest.raises(ValueError, match=f"Received: label {bad} at index 5"):
            model.evaluate(x, wrong, batch_size=64, verbose=0)


def test_one_hot_and_column_labels_match_class_ids(small_data):
    """Deterministic training (bound='global', no shuffling) with class ids and the loss
    by name, and with one-hot labels and the loss as an object, ends in the same weights."""
    x, y = small_data
    labels = {"ids": y, "one_hot": keras.utils.to_categorical(y, 10)}
    losses = {"ids": "trades", "one_hot": gl.training.Trades(lam=1.0)}
    weights, models = {}, {}
    for kind, target in labels.items():
        model = LocalGloroNet(net((16,)), 0.3, bound="global")
        model.compile(keras.optimizers.Adam(1e-2), loss=losses[kind])
        history = model.fit(x, target, batch_size=64, epochs=1, verbose=0, shuffle=False)
        assert np.isfinite(history.history["loss"][0])
        weights[kind] = [w.numpy() for w in model.weights]
        models[kind] = model
    for a, b in zip(weights["ids"], weights["one_hot"]):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)
    model = models["ids"]
    metrics = {kind: model.evaluate(x, target, batch_size=64, verbose=0, return_dict=True)
               for kind, target in [("ids", y), ("one_hot", labels["one_hot"]),
                                    ("column", y[:, None])]}
    for kind in ("one_hot", "column"):
        for key, value in metrics["ids"].items():
            np.testing.assert_allclose(metrics[kind][key], value, rtol=1e-6)


def test_store_first_starts_are_per_sample_and_batch_independent():
    store = gl.training.IterateStore(50, [(3, 4), None, (31,)], seed=5)
    together = store.gather(tf.constant([3, 17, 40]))
    alone = store.gather(tf.constant([17]))
    assert together[1] is None and alone[1] is None
    for k in (0, 2):
        np.testing.assert_array_equal(together[k][1], alone[k][0])  # batch-independent
        rows = together[k].numpy().reshape(3, -1)
        assert np.all(np.linalg.norm(rows, axis=1) > 0)  # a real start, never 0
        assert not np.allclose(rows[0], rows[1])  # each sample its own
    other = gl.training.IterateStore(50, [(3, 4), None, (31,)], seed=6).gather(tf.constant([17]))
    assert not np.allclose(other[0], alone[0])  # the seed matters
    # a written row is returned as written
    store.scatter(tf.constant([17]), [tf.ones((1, 3, 4)), None, tf.ones((1, 31))])
    np.testing.assert_array_equal(store.gather(tf.constant([17]))[0], np.ones((1, 3, 4)))
