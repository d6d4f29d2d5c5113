"""The HDF5Data layer feeding the solvers: Caffe's file and row order, wrap-around across files,
shuffling, shards of several-process training, skipping on resume, and bad sources."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

import caffe
from caffe import mode
from caffe.errors import DataError, NetError


def net_text(source: str, batch: int, shuffle: bool = False) -> str:
    return (f'layer {{ name: "d" type: "HDF5Data" top: "data" top: "label" hdf5_data_param '
            f'{{ source: "{source}" batch_size: {batch} shuffle: {str(shuffle).lower()} }} }}')


@pytest.fixture
def two_files(tmp_path, monkeypatch):
    for i, rows in enumerate((5, 3)):
        with h5py.File(tmp_path / f"f{i}.h5", "w") as f:
            f["data"] = (np.arange(rows * 2, dtype=np.float64).reshape(rows, 2) + 100 * i)
            f["label"] = np.arange(rows, dtype=np.int64) + 10 * i
    (tmp_path / "list.txt").write_text("f0.h5\n\nf1.h5\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def labels_read(net, batches: int) -> list[list[float]]:
    out = []
    for _ in range(batches):
        net.forward()
        out.append(net.blobs["label"].data.tolist())
    return out


def test_rows_follow_file_order_and_wrap_around(two_files):
    (two_files / "n.prototxt").write_text(net_text("list.txt", 3))
    net = caffe.Net("n.prototxt", caffe.TRAIN)
    assert net.blobs["data"].data.shape == (3, 2) and net.blobs["data"].data.dtype == np.float32
    assert labels_read(net, 4) == [[0, 1, 2], [3, 4, 10], [11, 12, 0], [1, 2, 3]]


def test_shuffle_permutes_rows_and_covers_each_once_per_pass(two_files):
    (two_files / "n.prototxt").write_text(net_text("list.txt", 4, shuffle=True))
    caffe.set_random_seed(3)
    net = caffe.Net("n.prototxt", caffe.TRAIN)
    seen = sum(labels_read(net, 2), [])
    assert sorted(seen) == [0, 1, 2, 3, 4, 10, 11, 12]
    assert seen != [0, 1, 2, 3, 4, 10, 11, 12]


def test_skip_batches_resumes_the_stream(two_files):
    (two_files / "n.prototxt").write_text(net_text("list.txt", 3))
    straight = labels_read(caffe.Net("n.prototxt", caffe.TRAIN), 4)
    net = caffe.Net("n.prototxt", caffe.TRAIN)
    net.layer_dict["d"].skip_batches(2)
    assert labels_read(net, 2) == straight[2:]


def test_shards_take_their_part_of_each_global_batch(two_files):
    (two_files / "n.prototxt").write_text(net_text("list.txt", 2))
    parts = []
    for rank in (0, 1):
        mode.set_data_shard(rank, 2)
        try:
            parts.append(labels_read(caffe.Net("n.prototxt", caffe.TRAIN), 3))
        finally:
            mode.set_data_shard(0, 1)
    (two_files / "n4.prototxt").write_text(net_text("list.txt", 4))
    whole = labels_read(caffe.Net("n4.prototxt", caffe.TRAIN), 3)
    assert [a + b for a, b in zip(*parts)] == whole


def test_test_phase_reads_every_row_under_a_shard(two_files):
    (two_files / "n.prototxt").write_text(net_text("list.txt", 3))
    mode.set_data_shard(1, 2)
    try:
        net = caffe.Net("n.prototxt", caffe.TEST)
    finally:
        mode.set_data_shard(0, 1)
    assert labels_read(net, 2) == [[0, 1, 2], [3, 4, 10]]


def test_missing_source_file_and_missing_h5_name_the_line(two_files):
    (two_files / "n.prototxt").write_text(net_text("nolist.txt", 2))
    with pytest.raises(DataError, match="nolist.txt' not found"):
        caffe.Net("n.prototxt", caffe.TRAIN)
    (two_files / "bad.txt").write_text("f0.h5\nmissing.h5\n")
    (two_files / "n.prototxt").write_text(net_text("bad.txt", 2))
    with pytest.raises(DataError, match=r"bad.txt:2: HDF5 file 'missing.h5' not found"):
        caffe.Net("n.prototxt", caffe.TRAIN)


def test_dataset_named_by_a_top_must_exist(two_files):
    (two_files / "n.prototxt").write_text(net_text("list.txt", 2).replace('top: "label"',
                                                                          'top: "target"'))
    with pytest.raises(NetError, match="no dataset named 'target'"):
        caffe.Net("n.prototxt", caffe.TRAIN)
