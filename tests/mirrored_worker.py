"""Trains the same LocalGloroNet on one device and under MirroredStrategy over 2 logical CPUs.

Run by tests/test_mirrored.py in a subprocess (logical devices must be configured before
TensorFlow initialises):  python tests/mirrored_worker.py OUT.npz SAVE_DIR
Writes to OUT.npz, per scenario s and run r in (single, mirrored): s/r/weight_k,
    s/r/initial_weight_k, s/r/store_k (final tables), s/r/replica_j_store_k (the mirrored
    copies), s/initial_store_k, s/r/{loss,vra,varying} (per epoch), and for the mirrored run
    saved/{keras,h5}/outputs|weight_k|has_store, saved/outputs (the trained model's
    outputs) and saved/continued_loss (one more epoch of the loaded .h5 model).
"""
import os
import sys

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(CPU, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import gloro_local as gl  # noqa: E402
from gloro_local.layers import Dense, Flatten, ReLUTheta  # noqa: E402

N, BATCH, EPOCHS, CLASSES = 128, 32, 2, 4
SCENARIOS = {  # name: model class and arguments, loss, whether a store is attached
    "local_store": (gl.LocalGloroNet,
                    dict(bound="local", lam_sparse=0.05, training_dtype="float32"),
                    "crossentropy", True),
    # bfloat16 training bounds ('auto' on AMX / AVX512-BF16 CPUs): the store's vectors
    # cross the replicas in float16, as collectives take no bfloat16
    "local_store_bf16": (gl.LocalGloroNet, dict(bound="local", training_dtype="bfloat16"),
                         "crossentropy", True),
    # l-infinity: CROWN-IBP mixed with IBP (beta 0.5), the mixed loss of eq. 7
    "linf_crown_ibp": (gl.LinfCertifiedNet, dict(relaxation="crown_ibp", beta=0.5),
                       "mixed_crossentropy", False),
}


def data():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(N, 6, 6, 1)).astype(np.float32)
    y = rng.integers(0, CLASSES, N).astype(np.int32)
    return x, y


def dataset(x, y, with_index=True):
    if not with_index:
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
    index = np.arange(N, dtype=np.int64)
    return tf.data.Dataset.from_tensor_slices(((x, index), y)).batch(BATCH)


def net():
    init = keras.initializers.GlorotNormal
    return keras.Sequential([
        keras.Input((6, 6, 1)), Flatten(), Dense(24, kernel_initializer=init(0)), ReLUTheta(),
        Dense(24, kernel_initializer=init(1)), ReLUTheta(),
        Dense(CLASSES, kernel_initializer=init(2))])


def run(strategy, kind, options, loss, with_store, x, y):
    with strategy.scope():
        model = kind(net(), 0.1, **options)
        model.compile(keras.optimizers.SGD(0.2), loss=loss)
        store = model.attach_store(N) if with_store else None
    initial = [] if store is None else [t.numpy() for t in store.tables if t is not None]
    start = [w.numpy() for w in model.weights]
    history = model.fit(dataset(x, y, with_store), epochs=EPOCHS, verbose=0, shuffle=False)
    return model, initial, start, history.history


def main(out, save_dir):
    x, y = data()
    strategies = {"single": tf.distribute.get_strategy(),
                  "mirrored": tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])}
    assert strategies["mirrored"].num_replicas_in_sync == 2
    arrays = {}
    for name, (kind, options, loss, with_store) in SCENARIOS.items():
        for run_name, strategy in strategies.items():
            model, initial, start, history = run(strategy, kind, options, loss, with_store,
                                                 x, y)
            prefix = f"{name}/{run_name}"
            for k, w in enumerate(model.weights):
                arrays[f"{prefix}/weight_{k}"] = w.numpy()
                arrays[f"{prefix}/initial_weight_{k}"] = start[k]
            for key in ("loss", "vra", "varying"):
                if key in history:
                    arrays[f"{prefix}/{key}"] = np.array(history[key])
            if with_store:
                tables = [t for t in model.store.tables if t is not None]
                for k, table in enumerate(tables):
                    arrays[f"{name}/initial_store_{k}"] = initial[k]
                    arrays[f"{prefix}/store_{k}"] = table.numpy()
                    for j, copy in enumerate(getattr(table, "values", ())):
                        arrays[f"{prefix}/replica_{j}_store_{k}"] = copy.numpy()
            if name == "local_store" and run_name == "mirrored":
                arrays["saved/outputs"] = model(x).numpy()
                for fmt in ("keras", "h5"):
                    path = os.path.join(save_dir, f"mirrored.{fmt}")
                    model.save(path)
                    loaded = gl.load_model(path)
                    arrays[f"saved/{fmt}/outputs"] = loaded(x).numpy()
                    for k, w in enumerate(loaded.weights):
                        arrays[f"saved/{fmt}/weight_{k}"] = w.numpy()
                    arrays[f"saved/{fmt}/has_store"] = np.array(loaded.store is not None)
                plain = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
                history = loaded.fit(plain, epochs=1, verbose=0)  # trainable on one device
                arrays["saved/continued_loss"] = np.array(history.history["loss"])
    np.savez(out, **arrays)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
