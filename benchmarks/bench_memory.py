"""Memory of the per-sample iterate store: bytes per sample and peak RSS of a short training run.

MNIST 4C3F (``architectures.get("4C3F", seed=0)``) in ``LocalGloroNet(f, epsilon=1.58,
bound="local", power_iterations=2)``, compiled with Adam and the GloRo cross-entropy, with
``model.attach_store(N)``. Reports
  (1) bytes per sample of the stored vectors, from the store's actual tables
      (sum over tables of dtype.size * prod(shape[1:])), per hidden layer and in total, what
      float32 tables would cost, and the ratio to the reference implementation (fp32
      PyTorch code of the paper): 193,344 B/sample;
  (2) peak RSS (getrusage ru_maxrss) of a ``model.fit`` of --steps steps at --batch, with a
      store of --num_samples samples, each configuration in a fresh subprocess so peaks do
      not mix: 'local' (store attached) and the baseline 'gloro' (bound='gloro', no store).
      Per phase (data, model, attach_store, fit) the child also records its current RSS and
      the phase's own peak (the high-water mark is reset with /proc/self/clear_refs before
      the store and fit phases); the reported peak is the maximum. The children are started
      before this process imports TensorFlow, because a child inherits its parent's
      ru_maxrss. The reference's 10.5 GiB peak for 5k samples is quoted, not measured here.
Data: --num_samples MNIST-shaped images. Real MNIST training images are taken from
../shared/data/mnist (5k subset offline) or gloro_local.data's fallbacks, and tiled (then
shuffled with a fixed seed) up to --num_samples; random images (fixed seed) if none.
Prints a table, then one line of JSON with the figures.

Usage: python benchmarks/bench_memory.py [--num_samples 60000] [--steps 20] [--batch 256]
"""
import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"
GIB = 2.0 ** 30
REFERENCE_BYTES_PER_SAMPLE = 193_344  # fp32 PyTorch reference: 48,336 numbers * 4 B
REFERENCE_PEAK_GIB = 10.5  # the reference's peak RSS, MNIST 4C3F with 5k samples (quoted)
REFERENCE_PEAK_SAMPLES = 5000
CONFIGS = ("gloro", "local")


def bytes_per_sample(tables):
    """Per table: bytes one sample takes, dtype.size * prod(shape[1:]); 0 for None."""
    return [0 if table is None else
            table.dtype.size * math.prod(int(d) for d in table.shape[1:])
            for table in tables]


def table_bytes(tables):
    """Bytes of the whole tables: dtype.size * prod(shape), summed."""
    return sum(table.dtype.size * math.prod(int(d) for d in table.shape)
               for table in tables if table is not None)


def build_model(bound):
    import keras
    import gloro_local as gl
    from gloro_local import architectures
    f = architectures.get("4C3F", seed=0)
    model = gl.LocalGloroNet(f, epsilon=1.58, bound=bound, power_iterations=2)
    model.compile(keras.optimizers.Adam(1e-3), loss="crossentropy")
    return model


def hidden_layer_names(model):
    """Names of the hidden linear layers, in the order of the store's tables."""
    layers = getattr(model.network, "layers", None)
    try:
        return [layers[i].name for i in model.network.hidden]
    except (TypeError, IndexError, AttributeError):
        return [f"hidden_{k}" for k in range(len(model.network.hidden_layers()))]


def layer_table(model):
    """Per hidden layer of a model with a store: name, input shape, B/sample, fp32 B/sample."""
    tables = model.store.tables
    rows = []
    for name, table, size in zip(hidden_layer_names(model), tables,
                                 bytes_per_sample(tables)):
        if table is None:
            continue
        shape = tuple(int(d) for d in table.shape[1:])
        rows.append(dict(layer=name, shape="x".join(map(str, shape)), dtype=table.dtype.name,
                         numbers=math.prod(shape), bytes=size, fp32_bytes=4 * math.prod(shape)))
    return rows


def images(num_samples):
    """(uint8 images (N, 28, 28, 1), int32 labels (N,), description)."""
    import numpy as np
    from gloro_local import data
    x = None
    try:
        if MNIST_DIR.is_dir():
            x, y = data.load_numpy("mnist", "train", data_dir=MNIST_DIR)
            source = f"real MNIST training images from {MNIST_DIR}"
        else:
            x, y = data.load_numpy("mnist", "train")
            source = "real MNIST training images (tensorflow-datasets or embedded sample)"
    except Exception as error:  # no data at all: random images
        source = f"no MNIST available ({type(error).__name__}): random images, seed 0"
    rng = np.random.default_rng(0)
    if x is None:
        return (rng.integers(0, 256, (num_samples, 28, 28, 1), dtype=np.uint8),
                rng.integers(0, 10, num_samples).astype(np.int32), source)
    available = len(y)
    x = np.round(x * 255.0).astype(np.uint8)
    if available < num_samples:
        reps = -(-num_samples // available)
        x, y = np.tile(x, (reps, 1, 1, 1))[:num_samples], np.tile(y, reps)[:num_samples]
        source = (f"{available} {source}, tiled {num_samples / available:.1f}x "
                  f"to {num_samples} (shuffled, seed 0)")
    else:
        x, y = x[:num_samples], y[:num_samples]
        source = f"the first {num_samples} {source} (shuffled, seed 0)"
    order = rng.permutation(num_samples)
    return x[order], y[order].astype(np.int32), source


def dataset(x, y, batch):
    """((x float32 in [0, 1], index int64), y) batches; index = position in the N samples."""
    import tensorflow as tf
    xs, ys = tf.constant(x), tf.constant(y)
    ds = tf.data.Dataset.range(len(y)).repeat().batch(batch)  # fit stops after --steps
    ds = ds.map(lambda i: ((tf.cast(tf.gather(xs, i), tf.float32) / 255.0, i),
                           tf.gather(ys, i)))
    return ds.prefetch(2)


def max_rss_gib():
    """Peak RSS so far (since the last ``reset_peak``), from getrusage (KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


def rss_gib():
    """Current RSS (VmRSS)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / GIB
    return float("nan")


def reset_peak():
    """Resets the RSS high-water mark (Linux clear_refs 5), so that ru_maxrss is the peak
    of the next phase only; False if not permitted (ru_maxrss then stays cumulative)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def child(config, num_samples, steps, batch):
    """One configuration in this (fresh) process; prints one line of JSON.

    Per phase (imports + data, model, store, fit): the current RSS at its end and its peak
    (ru_maxrss, reset at the start of the store and fit phases); 'peak' is the maximum."""
    rss, phase_peak = {"start": rss_gib()}, {"start": max_rss_gib()}

    def phase(name, reset_after=True):
        rss[name], phase_peak[name] = rss_gib(), max_rss_gib()
        return reset_after and reset_peak()

    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")
    x, y, source = images(num_samples)
    ds = dataset(x, y, batch)
    phase("data", reset_after=False)
    model = build_model(config)
    resets = phase("model")
    store_bytes, store_seconds, layers = 0, 0.0, []
    if config == "local":
        begin = time.perf_counter()
        store = model.attach_store(num_samples)
        store_seconds = time.perf_counter() - begin
        store_bytes, layers = table_bytes(store.tables), layer_table(model)
    phase("store")
    begin = time.perf_counter()
    history = model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0)
    fit_seconds = time.perf_counter() - begin
    phase("fit", reset_after=False)
    print(json.dumps(dict(config=config, source=source, layers=layers,
                          store_bytes=store_bytes,
                          store_seconds=round(store_seconds, 1),
                          fit_seconds=round(fit_seconds, 1),
                          loss=round(float(history.history["loss"][-1]), 4),
                          peak_resets=bool(resets),
                          peak_gib=round(max(phase_peak.values()), 3),
                          phase_peak_gib={k: round(v, 3) for k, v in phase_peak.items()},
                          rss_gib={k: round(v, 3) for k, v in rss.items()})))


def run_child(config, args):
    command = [sys.executable, str(Path(__file__).resolve()), "--child", config,
               "--num_samples", str(args.num_samples), "--steps", str(args.steps),
               "--batch", str(args.batch)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise RuntimeError(f"the {config!r} subprocess failed (exit {done.returncode}).")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_samples", type=int, default=60000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--child", choices=CONFIGS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.num_samples < 1 or args.steps < 1 or args.batch < 1:
        parser.error("--num_samples, --steps and --batch must be >= 1")
    if args.child:
        child(args.child, args.num_samples, args.steps, args.batch)
        return

    # children first, while this process is small: a child inherits its parent's ru_maxrss
    measured = {config: run_child(config, args) for config in CONFIGS}
    local, gloro = measured["local"], measured["gloro"]
    peak = {c: m["peak_gib"] for c, m in measured.items()}
    n = args.num_samples
    rows = local["layers"]  # from the measured store's tables
    per_sample = sum(r["bytes"] for r in rows)
    per_sample_fp32 = sum(r["fp32_bytes"] for r in rows)

    print(f"MNIST 4C3F, LocalGloroNet(eps 1.58, power_iterations 2), Adam, crossentropy; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print(f"(1) stored vectors per sample (store tables: {rows[0]['dtype']})")
    print(f"{'layer':<14} {'input shape':<12} {'numbers':>8} {'B/sample':>10} "
          f"{'fp32 B/sample':>14}")
    for r in rows:
        print(f"{r['layer']:<14} {r['shape']:<12} {r['numbers']:>8,} {r['bytes']:>10,} "
              f"{r['fp32_bytes']:>14,}")
    print(f"{'total':<27} {per_sample_fp32 // 4:>8,} {per_sample:>10,} {per_sample_fp32:>14,}")
    print(f"reference (fp32 PyTorch): {REFERENCE_BYTES_PER_SAMPLE:,} B/sample; "
          f"ratio here/reference {per_sample / REFERENCE_BYTES_PER_SAMPLE:.3f} "
          f"(float32 tables: {per_sample_fp32 / REFERENCE_BYTES_PER_SAMPLE:.3f})")
    print(f"(2) RSS in GiB, fit of {args.steps} steps at batch {args.batch}, store of {n:,} "
          f"samples; images: {local['source']}")
    print("    'after X': current RSS after that phase; 'X peak': ru_maxrss during that phase "
          f"(high-water mark reset before it: {local['peak_resets']}); "
          "'peak': max over the process")
    print(f"{'configuration':<38} {'store':>6} {'after':>6} {'store':>6} {'after':>6} "
          f"{'fit':>6} {'after':>6} {'peak':>6} {'fit s':>6}")
    print(f"{'':<38} {'tables':>6} {'model':>6} {'peak':>6} {'store':>6} "
          f"{'peak':>6} {'fit':>6} {'RSS':>6}")
    for name, m in (("gloro (bound='gloro', no store)", gloro),
                    (f"local (bound='local', store {n:,})", local)):
        r, p = m["rss_gib"], m["phase_peak_gib"]
        print(f"{name:<38} {m['store_bytes'] / GIB:>6.2f} {r['model']:>6.2f} "
              f"{p['store']:>6.2f} {r['store']:>6.2f} {p['fit']:>6.2f} {r['fit']:>6.2f} "
              f"{m['peak_gib']:>6.2f} {m['fit_seconds']:>6.1f}")
    print(f"{'local - gloro':<38} {local['store_bytes'] / GIB:>6.2f} {'':>6} {'':>6} "
          f"{local['rss_gib']['store'] - gloro['rss_gib']['store']:>6.2f} "
          f"{local['phase_peak_gib']['fit'] - gloro['phase_peak_gib']['fit']:>6.2f} "
          f"{local['rss_gib']['fit'] - gloro['rss_gib']['fit']:>6.2f} "
          f"{peak['local'] - peak['gloro']:>6.2f}")
    print(f"{'float32 tables, same store (computed)':<38} {per_sample_fp32 * n / GIB:>6.2f}")
    print(f"{'reference fp32, 5k samples (quoted)':<38} "
          f"{REFERENCE_BYTES_PER_SAMPLE * REFERENCE_PEAK_SAMPLES / GIB:>6.2f} "
          f"{'':>6} {'':>6} {'':>6} {'':>6} {'':>6} {REFERENCE_PEAK_GIB:>6.1f}  (not measured here)")
    print(f"store tables / local peak RSS: {local['store_bytes'] / GIB / peak['local']:.0%}; "
          f"attach_store took {local['store_seconds']:.1f} s")
    print(json.dumps(dict(
        benchmark="memory", arch="4C3F", num_samples=n, steps=args.steps, batch=args.batch,
        images=local["source"], store_dtype=rows[0]["dtype"],
        bytes_per_sample={r["layer"]: r["bytes"] for r in rows},
        bytes_per_sample_total=per_sample, bytes_per_sample_fp32=per_sample_fp32,
        reference_bytes_per_sample=REFERENCE_BYTES_PER_SAMPLE,
        ratio_to_reference=round(per_sample / REFERENCE_BYTES_PER_SAMPLE, 4),
        store_gib=round(local["store_bytes"] / GIB, 3),
        store_fp32_gib=round(per_sample_fp32 * n / GIB, 3),
        peak_rss_gib={c: round(v, 3) for c, v in peak.items()},
        peak_rss_local_minus_gloro_gib=round(peak["local"] - peak["gloro"], 3),
        phase_peak_gib={c: m["phase_peak_gib"] for c, m in measured.items()},
        rss_after_phase_gib={c: m["rss_gib"] for c, m in measured.items()},
        peak_resets=local["peak_resets"],
        fit_seconds={c: m["fit_seconds"] for c, m in measured.items()},
        store_seconds=local["store_seconds"],
        reference_peak_rss_gib_5k_quoted=REFERENCE_PEAK_GIB)))


if __name__ == "__main__":
    main()
