"""Time per training step at batch 256: plain Keras training against LocalGloroNet with
bound='gloro', 'global' and 'local' (stored per-sample vectors), the last also with
training_dtype='bfloat16' ('local_bf16'), on 2C2F and 4C3F.

Steps of all variants are timed alternately (round-robin) so machine noise hits each alike;
the figure is the median. Prints a table, then one line of JSON with the ratios.

    python benchmarks/bench_train_step.py [--rounds 8] [--batch 256] [--archs 2C2F,4C3F]
"""
import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import gloro_local as gl  # noqa: E402
from gloro_local import architectures  # noqa: E402


def _plain(arch, seed):
    f = architectures.get(arch, seed=seed)
    f.compile(keras.optimizers.Adam(1e-3),
              keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return f


def _robust(arch, seed, bound, iterations, batch, dtype="float32"):
    model = gl.LocalGloroNet(architectures.get(arch, seed=seed), epsilon=1.58, bound=bound,
                             power_iterations=iterations, training_dtype=dtype)
    model.compile(keras.optimizers.Adam(1e-3), loss="crossentropy")
    if bound == "local":
        model.attach_store(batch)
    return model


def _time(step):
    begin = time.perf_counter()
    step()
    return time.perf_counter() - begin


def run(archs, rounds, batch, iterations):
    rng = np.random.default_rng(0)
    x = rng.random((batch, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    index = np.arange(batch)
    results = {}
    for arch in archs:
        models = {"plain": _plain(arch, 0)}
        for bound in ("gloro", "global", "local"):
            models[bound] = _robust(arch, 0, bound, iterations, batch)
        models["local_bf16"] = _robust(arch, 0, "local", iterations, batch, "bfloat16")
        steps = {
            name: (lambda m=model, n=name: m.train_on_batch(
                (x, index) if n.startswith("local") else x, y))
            for name, model in models.items()}
        for step in steps.values():
            step()
            step()
        times = {name: [] for name in steps}
        for _ in range(rounds):
            for name, step in steps.items():
                times[name].append(_time(step))
        results[arch] = {name: 1000 * statistics.median(t) for name, t in times.items()}
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--archs", default="2C2F,4C3F")
    args = parser.parse_args()
    results = run(args.archs.split(","), args.rounds, args.batch, args.iterations)
    print(f"median ms per training step, batch {args.batch}, "
          f"{args.iterations} power iterations (local: stored per-sample vectors)")
    print(f"{'arch':6} {'plain':>9} {'gloro':>9} {'global':>9} {'local':>9} "
          f"{'local_bf16':>11} {'local/gloro':>12} {'local/plain':>12} "
          f"{'bf16/gloro':>11} {'gloro/plain':>12}")
    summary = {}
    for arch, ms in results.items():
        ratios = {"local/gloro": ms["local"] / ms["gloro"],
                  "local/plain": ms["local"] / ms["plain"],
                  "gloro/plain": ms["gloro"] / ms["plain"],
                  "global/plain": ms["global"] / ms["plain"],
                  "local_bf16/gloro": ms["local_bf16"] / ms["gloro"],
                  "local_bf16/plain": ms["local_bf16"] / ms["plain"]}
        print(f"{arch:6} {ms['plain']:9.1f} {ms['gloro']:9.1f} {ms['global']:9.1f} "
              f"{ms['local']:9.1f} {ms['local_bf16']:11.1f} {ratios['local/gloro']:12.2f} "
              f"{ratios['local/plain']:12.2f} {ratios['local_bf16/gloro']:11.2f} "
              f"{ratios['gloro/plain']:12.2f}")
        summary[arch] = {"ms": {k: round(v, 1) for k, v in ms.items()},
                         **{k: round(v, 3) for k, v in ratios.items()}}
    print(json.dumps({"benchmark": "train_step", "batch": args.batch,
                      "power_iterations": args.iterations, "results": summary}))


if __name__ == "__main__":
    main()
