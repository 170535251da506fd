"""``benchmarks/bench_train_step.py``: every named variant is a valid LocalGloroNet
configuration, and the default set runs end to end (timings are not checked here)."""
from conftest import benchmark_module

bench = benchmark_module("bench_train_step")


def test_default_variants_are_known():
    assert set(bench.DEFAULT_VARIANTS) <= set(bench.VARIANTS)


def test_default_variants_run_one_round():
    results = bench.run(["2C2F"], rounds=1, batch=4, iterations=2,
                        variants=["gloro", *bench.DEFAULT_VARIANTS])["2C2F"]
    assert set(results) == {"plain", "gloro", *bench.DEFAULT_VARIANTS}
    assert all(ms > 0 for ms in results.values())
