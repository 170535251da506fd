"""benchmarks/bench_memory.py: the bytes-per-sample figures against hand computations."""
from conftest import benchmark_module
from gloro_local.training.iterate_store import IterateStore


def _bench():
    return benchmark_module("bench_memory")


def test_bytes_per_sample_of_a_tiny_float16_store():
    bench = _bench()
    store = IterateStore(3, [(3, 4), None, (5,)])
    # float16: 2 B per number; 3*4 and 5 numbers per sample; no table for the None layer
    assert bench.bytes_per_sample(store.tables) == [2 * 12, 0, 2 * 5]
    assert sum(bench.bytes_per_sample(store.tables)) == 2 * (12 + 5)
    assert bench.table_bytes(store.tables) == 3 * 2 * (12 + 5)


def test_reference_figure_is_4c3f_in_float32():
    # the reference stores 48,336 float32 numbers per sample for MNIST 4C3F:
    # 28*28*1 + 28*28*32 + 14*14*32 + 14*14*64 + 3136 + 512
    numbers = 784 + 25088 + 6272 + 12544 + 3136 + 512
    assert numbers == 48336
    assert _bench().REFERENCE_BYTES_PER_SAMPLE == 4 * numbers
