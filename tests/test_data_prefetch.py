"""Prefetching in worker processes: same batches in the same order as without workers, clean
shutdown, errors reported as DataError."""
from __future__ import annotations

import gc
import time

import numpy as np
import pytest

from caffe.data import DBSource, DataTransformer, Prefetcher, TransformSpec, Writer, image_to_datum
from caffe.data.transformer import TRAIN
from caffe.errors import DataError


def _source(tmp_path, backend):
    rng = np.random.default_rng(0)
    with Writer(tmp_path / backend, backend) as w:
        for i in range(13):
            img = rng.integers(0, 256, (8, 8, 1), dtype=np.uint8)
            w.put(f"{i:08d}", image_to_datum(img, i).SerializeToString())
    spec = TransformSpec(phase=TRAIN, crop_size=6, mirror=True, scale=0.25)
    return DBSource(tmp_path / backend, backend, DataTransformer(spec), batch_size=5, seed=11)


@pytest.fixture(params=["lmdb", "leveldb"])
def source(tmp_path, request):
    return _source(tmp_path, request.param)


def _take(pre: Prefetcher, n: int):
    try:
        return [tuple(t.numpy().copy() for t in pre.next()) for _ in range(n)]
    finally:
        pre.close()


def _workers_alive(pre: Prefetcher) -> list:
    return [w for w in getattr(pre._iter, "_workers", [])]


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_deliver_the_batches_of_the_in_process_path_in_order(source, workers):
    expected = _take(Prefetcher(source, workers=0), 7)
    got = _take(Prefetcher(source, workers=workers, prefetch=4), 7)
    for (d0, l0), (d1, l1) in zip(expected, got):
        assert np.array_equal(d0, d1) and np.array_equal(l0, l1)
    assert np.concatenate([l for _, l in got]).tolist() == [i % 13 for i in range(35)]


def test_close_stops_the_worker_processes(source):
    pre = Prefetcher(source, workers=2)
    pre.next()
    procs = _workers_alive(pre)
    assert len(procs) == (1 if source.backend == "leveldb" else 2)
    assert all(p.is_alive() for p in procs)
    pre.close()
    deadline = time.time() + 10
    while any(p.is_alive() for p in procs) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(p.is_alive() for p in procs)
    with pytest.raises(DataError, match="closed"):
        pre.next()


def test_dropping_the_prefetcher_stops_its_workers(source):
    pre = Prefetcher(source, workers=1)
    pre.next()
    procs = _workers_alive(pre)
    del pre
    gc.collect()
    deadline = time.time() + 10
    while any(p.is_alive() for p in procs) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(p.is_alive() for p in procs)


def test_a_leveldb_held_by_another_process_is_a_clear_error(tmp_path):
    source = _source(tmp_path, "leveldb")
    pre = Prefetcher(source, workers=1)
    try:
        pre.next()
        with pytest.raises(DataError, match="one process at a time"):
            source.load(0)
    finally:
        pre.close()


def test_starting_at_batch_k_continues_the_same_stream(source):
    full = _take(Prefetcher(source, workers=0), 4)
    later = _take(Prefetcher(source, workers=1, start=2), 2)
    assert np.array_equal(full[2][0], later[0][0]) and np.array_equal(full[3][1], later[1][1])


def test_forked_workers_do_not_hang_after_the_parent_used_opencv_threads(tmp_path):
    import subprocess
    import sys

    from conftest import REPO
    script = REPO / "tests" / "scripts" / "imagedata_after_opencv_threads.py"
    env = dict(__import__("os").environ, CAFFE_DATA_WORKERS="1")
    result = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True,
                            timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "read (3, 1, 32, 32)" in result.stdout
