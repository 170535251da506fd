"""Time per training step at batch 256: plain Keras training against LocalGloroNet with
bound='gloro', 'global' and 'local' (stored per-sample vectors), on 2C2F and 4C3F.

Variants (all with ``--iterations`` power iterations, default 2: the paper's setting):
  plain        keras.Sequential, cross-entropy, Adam
  gloro        bound='gloro' (ball only, global norms), float32
  global       bound='global' (box + ball, global norms), float32
  local        bound='local', stored vectors, float32: the paper's own setting
  local_bf16   the same with training_dtype='bfloat16'
  local_nobox  float32 with box_gradient=False
  local_fast   bfloat16 with box_gradient=False
  local_box2   float32, the box through the first 2 hidden layers only (box_layers=2)
  fast_box2    bfloat16, box_gradient=False, box_layers=2
  nobox_box2   float32, box_gradient=False, box_layers=2
  local_box1   float32, the box through the first hidden layer only (box_layers=1)
  local_mixed  training_dtype='mixed' (float32 bounds, bfloat16 power iterations)
  mixed_box2   'mixed' and box_layers=2
  mixed_box1   'mixed' and box_layers=1
  fast_box1    bfloat16 and box_layers=1 (box_gradient is moot: the first layer's box
               depends on its own weights only)
  fast_ws1     fast_box1 with worst_logit_steps=1 (one clipping step of the worst-case
               logits in training: an over-estimate, never an under-estimate)
  box1_ws1     local_box1 with worst_logit_steps=1
  local_box0   float32, no box at all (box_layers=0: every layer bounded by the ball)
  fast_box0    bfloat16, box_layers=0
  layerwise    bound='local_layerwise' (layer-wise local radii), float32
  relaxed      bound='local_relaxed' (relaxation boxes), float32
  both         bound='local_layerwise_relaxed', float32

``--variants`` picks some (plain and gloro always run; the default is global, local,
local_bf16, local_mixed, local_box2, local_box1, box1_ws1, mixed_box1, fast_box2,
fast_box1 and fast_ws1);
the JSON also gives each variant's ratio to 'local' when 'local' ran.

Steps of all variants are timed alternately (round-robin) so machine noise hits each alike;
the figure is the median. Prints a table, then one line of JSON with the ratios.

    python benchmarks/bench_train_step.py [--rounds 8] [--batch 256] [--archs 2C2F,4C3F]
    python benchmarks/bench_train_step.py --archs 2C2F --variants local,layerwise,relaxed
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
from gloro_local.bounds.strategies import get_bound  # noqa: E402


def _plain(arch, seed):
    f = architectures.get(arch, seed=seed)
    f.compile(keras.optimizers.Adam(1e-3),
              keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return f


VARIANTS = {
    "gloro": dict(bound="gloro"),
    "global": dict(bound="global"),
    "local": dict(bound="local"),
    "local_bf16": dict(bound="local", training_dtype="bfloat16"),
    "local_nobox": dict(bound="local", box_gradient=False),
    "local_fast": dict(bound="local", training_dtype="bfloat16", box_gradient=False),
    "local_box2": dict(bound="local", box_layers=2),
    "fast_box2": dict(bound="local", training_dtype="bfloat16", box_gradient=False,
                      box_layers=2),
    "nobox_box2": dict(bound="local", box_gradient=False, box_layers=2),
    "local_box1": dict(bound="local", box_layers=1),
    "local_mixed": dict(bound="local", training_dtype="mixed"),
    "mixed_box2": dict(bound="local", training_dtype="mixed", box_layers=2),
    "mixed_box1": dict(bound="local", training_dtype="mixed", box_layers=1),
    "fast_box1": dict(bound="local", training_dtype="bfloat16", box_layers=1),
    "fast_ws1": dict(bound="local", training_dtype="bfloat16", box_layers=1,
                     worst_logit_steps=1),
    "box1_ws1": dict(bound="local", box_layers=1, worst_logit_steps=1),
    "local_box0": dict(bound="local", box_layers=0),
    "fast_box0": dict(bound="local", training_dtype="bfloat16", box_layers=0),
    "layerwise": dict(bound="local_layerwise"),
    "relaxed": dict(bound="local_relaxed"),
    "both": dict(bound="local_layerwise_relaxed"),
}
# the tighter bounds are opt-in: 'relaxed' and 'both' are certification bounds whose
# training step costs hundreds of times a local one (and over 13 GB at batch 256)
DEFAULT_VARIANTS = ("global", "local", "local_bf16", "local_mixed", "local_box2",
                    "local_box1", "box1_ws1", "mixed_box1", "fast_box2", "fast_box1",
                    "fast_ws1")


def _robust(arch, seed, iterations, batch, bound, **options):
    options.setdefault("training_dtype", "float32")
    model = gl.LocalGloroNet(architectures.get(arch, seed=seed), epsilon=1.58, bound=bound,
                             power_iterations=iterations, **options)
    model.compile(keras.optimizers.Adam(1e-3), loss="crossentropy")
    if get_bound(bound).per_sample_norms:
        model.attach_store(batch)
    return model


def _time(step):
    begin = time.perf_counter()
    step()
    return time.perf_counter() - begin


def run(archs, rounds, batch, iterations, variants):
    rng = np.random.default_rng(0)
    x = rng.random((batch, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    index = np.arange(batch)
    results = {}
    for arch in archs:
        models = {"plain": _plain(arch, 0)}
        for name in variants:
            models[name] = _robust(arch, 0, iterations, batch, **VARIANTS[name])
        steps = {
            name: (lambda m=model: m.train_on_batch(
                (x, index) if getattr(m, "store", None) is not None else x, y))
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
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--archs", default="2C2F,4C3F")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                        help=f"comma-separated, of {', '.join(VARIANTS)}")
    args = parser.parse_args()
    variants = ["gloro"] + [v for v in args.variants.split(",") if v and v != "gloro"]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown --variants {unknown}; choose from {list(VARIANTS)}")
    results = run(args.archs.split(","), args.rounds, args.batch, args.iterations, variants)
    names = ["plain", *variants]
    print(f"median ms per training step, batch {args.batch}, "
          f"{args.iterations} power iterations (local: stored per-sample vectors)")
    print(f"{'arch':6} " + " ".join(f"{n:>11}" for n in names))
    summary = {}
    for arch, ms in results.items():
        print(f"{arch:6} " + " ".join(f"{ms[n]:11.1f}" for n in names))
        ratios = {f"{n}/gloro": ms[n] / ms["gloro"] for n in names if n != "gloro"}
        ratios["gloro/plain"] = ms["gloro"] / ms["plain"]
        if "local" in ms:
            ratios.update({f"{n}/local": ms[n] / ms["local"] for n in names
                           if n not in ("plain", "gloro", "local")})
        print(f"{'':6} " + " ".join(
            f"{'x gloro':>11}" if n == "gloro" else f"{ms[n] / ms['gloro']:11.2f}"
            for n in names))
        summary[arch] = {"ms": {k: round(v, 1) for k, v in ms.items()},
                         **{k: round(v, 3) for k, v in ratios.items()}}
    print(json.dumps({"benchmark": "train_step", "batch": args.batch,
                      "power_iterations": args.iterations, "results": summary}))


if __name__ == "__main__":
    main()
