"""fit under tf.distribute.MultiWorkerMirroredStrategy: two worker processes on
127.0.0.1 (CPU, TF_CONFIG with free ports), the per-sample store sharded by worker.

The runs happen in tests/multi_worker_worker.py (the strategy must be created before any
other TensorFlow op of its process). The workers train a small LocalGloroNet with the
local bound and the store for 2 epochs on a reshuffled 64-sample MNIST subset; one process
then trains the same model on the global batches the workers trained on together, which
must give the same weights. Every subprocess has a timeout; nothing measures time.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from gloro_local import multi_worker
from gloro_local.training import IterateStore

WORKER = Path(__file__).resolve().parent / "multi_worker_worker.py"
WORKERS, N_SAMPLES, EPOCHS, N_WEIGHTS = 2, 64, 2, 11
ITERATES = (9, 10)  # the global power-iteration vectors among the weights
TIMEOUT = 300
ENV = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")


def start_workers(args, log):
    """Starts one worker process per task of a fresh loopback cluster; ``args(w)`` are
    worker w's arguments."""
    ports = multi_worker.free_loopback_ports(WORKERS)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = []
    for w in range(WORKERS):
        env = dict(ENV, TF_CONFIG=json.dumps({"cluster": cluster,
                                              "task": {"type": "worker", "index": w}}))
        with open(f"{log}_{w}.txt", "a") as out:
            processes.append(subprocess.Popen([sys.executable, str(WORKER), *args(w)],
                                              env=env, stdout=out, stderr=subprocess.STDOUT))
    return processes


def finish(processes, log, expected=0):
    for w, process in enumerate(processes):
        try:
            code = process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            pytest.fail(f"worker {w} did not finish within {TIMEOUT} s")
        if code != expected:
            output = Path(f"{log}_{w}.txt").read_text()[-4000:]
            pytest.fail(f"worker {w} exited with {code}:\n{output}")


def load(path):
    with np.load(path) as npz:
        return {key: npz[key] for key in npz.files}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("multi_worker")
    log = folder / "log"
    outs = [folder / f"worker_{w}.npz" for w in range(WORKERS)]
    finish(start_workers(lambda w: ["worker", str(outs[w])], log), log)
    single = folder / "single.npz"
    result = subprocess.run([sys.executable, str(WORKER), "single", str(single),
                             *map(str, outs)], env=ENV, capture_output=True, text=True,
                            timeout=TIMEOUT)
    if result.returncode:
        pytest.fail(f"single run failed:\n{result.stderr[-4000:]}")
    return load(single), [load(out) for out in outs]


def test_same_weights_as_one_process_on_the_same_global_batches(runs):
    single, workers = runs
    for w, worker in enumerate(workers):
        for k in range(N_WEIGHTS):
            np.testing.assert_allclose(worker[f"weight_{k}"], single[f"weight_{k}"],
                                       rtol=0, atol=1e-5, err_msg=f"worker {w}, weight {k}")
    for k in (0, 3, 6):  # the kernels moved
        assert np.abs(single[f"weight_{k}"] - single[f"initial_weight_{k}"]).max() > 1e-2


def test_the_workers_trained_on_the_global_batches_of_every_epoch(runs):
    _, workers = runs
    logs = [worker["trained"][worker["trained"] >= 0] for worker in workers]
    assert all(len(log) == EPOCHS * N_SAMPLES // WORKERS for log in logs)
    per_epoch = np.concatenate([log.reshape(EPOCHS, -1) for log in logs], axis=1)
    for epoch in per_epoch:  # every sample once per epoch
        np.testing.assert_array_equal(np.sort(epoch), np.arange(N_SAMPLES))
    assert not np.array_equal(per_epoch[0], per_epoch[1])  # reshuffled between epochs


def test_every_sample_written_once_per_epoch_on_exactly_one_worker(runs):
    _, workers = runs
    writes = np.stack([worker["writes"] for worker in workers])  # worker, epoch, sample
    assert writes.shape == (WORKERS, EPOCHS, N_SAMPLES)
    np.testing.assert_array_equal(writes.sum(0), 1)
    for w in range(WORKERS):  # ... on the worker that owns it, index % N == w
        owner = np.arange(N_SAMPLES) % WORKERS == w
        assert np.all(writes[w][:, owner] == 1) and np.all(writes[w][:, ~owner] == 0)
    for worker in workers:
        np.testing.assert_array_equal(worker["misses"], 0.0)  # logged by fit, every epoch


def test_each_worker_stores_the_rows_one_process_stores(runs):
    single, workers = runs
    for k in (0, 1):
        full = single[f"store_{k}"].astype(np.float32)
        for w, worker in enumerate(workers):
            np.testing.assert_array_equal(worker["shard"], [WORKERS, w])
            local = worker[f"store_{k}"].astype(np.float32)
            assert len(local) == N_SAMPLES // WORKERS
            np.testing.assert_allclose(local, full[w::WORKERS], atol=2e-3,
                                       err_msg=f"layer {k}, worker {w}")
            assert np.all(np.any(local != 0, axis=tuple(range(1, local.ndim))))


def test_store_bytes_per_worker_are_a_half_of_one_process(runs):
    single, workers = runs
    print(f"store bytes: one process {int(single['store_bytes'])}, per worker "
          f"{[int(worker['store_bytes']) for worker in workers]}")
    for worker in workers:
        assert int(worker["store_bytes"]) * WORKERS == int(single["store_bytes"])


def test_schedules_and_global_iterates_identical_across_workers(runs):
    single, workers = runs
    for key in ("epsilon", "lam"):
        for worker in workers:
            np.testing.assert_array_equal(worker[key], workers[0][key], err_msg=key)
        np.testing.assert_allclose(workers[0][key], single[key], rtol=1e-7, err_msg=key)
    assert workers[0]["epsilon"][0] < workers[0]["epsilon"][-1]  # the ramps moved
    assert workers[0]["lam"][0] < workers[0]["lam"][-1]
    for worker in workers:
        np.testing.assert_array_equal(worker["iterates"], workers[0]["iterates"])
        for k in ITERATES:
            np.testing.assert_array_equal(worker[f"weight_{k}"], workers[0][f"weight_{k}"])
    np.testing.assert_allclose(workers[0]["iterates"], single["iterates"], atol=1e-5)


def test_a_killed_worker_resumes_from_the_backup(tmp_path):
    """Worker 1 is killed (SIGKILL) at batch 1 of epoch 1; worker 0, left waiting in a
    collective, is then stopped as a cluster manager would. Restarted, both resume at epoch 1
    from the weights and optimizer step the chief backed up at the end of epoch 0, and
    finish; no backup and no worker temp folder is left."""
    log, backup = tmp_path / "log", tmp_path / "backup"
    first = start_workers(lambda w: ["backup", str(tmp_path / f"run1_{w}.npz"), str(backup),
                                     "1,1"], log)
    assert first[1].wait(timeout=TIMEOUT) == -9
    first[0].kill()
    first[0].wait(timeout=TIMEOUT)
    assert sorted(os.listdir(backup)) == ["latest.weights.h5", "training_metadata.json"]
    assert not (tmp_path / "run1_0.npz").exists()  # the first run never finished
    epoch0 = load(tmp_path / "run1_0.npz.epoch0.npz")

    outs = [tmp_path / f"run2_{w}.npz" for w in range(WORKERS)]
    finish(start_workers(lambda w: ["backup", str(outs[w]), str(backup)], log), log)
    steps = N_SAMPLES // 16  # per worker: 32 samples in batches of 8
    for out in outs:
        resumed = load(out)
        assert int(resumed["first_epoch"]) == 1 and int(resumed["epochs_run"]) == EPOCHS - 1
        assert int(resumed["first_iterations"]) == steps
        for k in range(N_WEIGHTS):
            np.testing.assert_array_equal(resumed[f"first_weight_{k}"], epoch0[f"arr_{k}"])
    assert not backup.exists()
    assert not [name for name in os.listdir(tmp_path) if name.startswith("workertemp")]


@pytest.mark.parametrize("text, match", [
    (None, "TF_CONFIG environment variable, which is not set"),
    ("{cluster", "TF_CONFIG is not JSON"),
    ('{"task": {"type": "worker", "index": 0}}', "needs a 'cluster'"),
    ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}',
     "'host:port' strings"),
    ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 1}}',
     "needs a 'task'"),
])
def test_missing_or_malformed_tf_config_is_a_clear_error(monkeypatch, text, match):
    if text is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", text)
    with pytest.raises(ValueError, match=match) as error:
        multi_worker.read_tf_config()
    assert "Received: TF_CONFIG=" in str(error.value)


def test_the_flags_refuse_multi_worker_without_tf_config(monkeypatch):
    from gloro_local import experiment
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        experiment.check_config(experiment.Config(strategy="multi_worker"))


def test_a_sample_on_the_wrong_shard_starts_fresh_and_is_counted():
    sharded = IterateStore(8, [(3,)], seed=1, shards=2, shard=0)
    whole = IterateStore(8, [(3,)], seed=1)
    assert sharded.rows == 4 and sharded.nbytes * 2 == whole.nbytes
    index = tf.constant([0, 1, 2, 3], tf.int64)
    fresh = whole.gather(index)[0].numpy()
    sharded.scatter(index, [tf.ones([4, 3])])
    np.testing.assert_array_equal(sharded.tables[0].numpy()[:2], 1.0)  # samples 0 and 2
    np.testing.assert_array_equal(sharded.tables[0].numpy()[2:], 0.0)  # nothing else
    got = sharded.gather(index)[0].numpy()
    np.testing.assert_array_equal(got[[0, 2]], 1.0)
    np.testing.assert_array_equal(got[[1, 3]], fresh[[1, 3]])  # their seeded starts
    assert float(sharded.misses.result()) == 2.0  # the gather of samples 1 and 3
