"""What the data layers feed: sequential order with wrap-around, sharding across ranks, rand_skip,
seeded shuffling and random transforms, encoded datums, image lists, MemoryData."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

import caffe
from caffe import mode
from caffe.data import Writer, image_to_datum, set_num_workers
from caffe.data.datum import encoded_datum

N = 11


@pytest.fixture(autouse=True)
def clean_settings():
    set_num_workers(0)
    yield
    set_num_workers(None)
    mode.set_data_shard(0, 1)
    mode._state["seed"] = None


@pytest.fixture
def db(tmp_path):
    """N 3 x 6 x 7 images whose pixels are random and whose label is the record index."""
    rng = np.random.default_rng(0)
    with Writer(tmp_path / "db", "lmdb") as w:
        for i in range(N):
            img = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
            w.put(f"{i:08d}_{i}.png", image_to_datum(img, i).SerializeToString())
    return tmp_path / "db"


def _net(tmp_path, layer: str, phase=caffe.TEST):
    path = tmp_path / f"net{abs(hash(layer))}.prototxt"
    path.write_text(layer)
    return caffe.Net(str(path), phase)


def _data_layer(source, batch, transform="", extra="", backend="LMDB"):
    return (f'layer {{ name: "data" type: "Data" top: "data" top: "label" '
            f'transform_param {{ {transform} }} '
            f'data_param {{ source: "{source}" backend: {backend} batch_size: {batch} {extra} }} }}')


def _batches(net, count):
    out = []
    for _ in range(count):
        net.forward()
        out.append((net.blobs["data"].data.copy(), net.blobs["label"].data.copy()))
    net.layer_dict["data"].close()
    return out


def test_reads_sequentially_and_wraps_around(tmp_path, db):
    labels = [lab for _, lab in _batches(_net(tmp_path, _data_layer(db, 4)), 6)]
    assert np.concatenate(labels).tolist() == [i % N for i in range(24)]


def test_two_shards_of_batch_b_see_what_one_process_of_2b_sees(tmp_path, db):
    transform = "crop_size: 5 mirror: true scale: 0.5 mean_value: 10"
    caffe.set_random_seed(7)
    whole = _batches(_net(tmp_path, _data_layer(db, 6, transform), caffe.TRAIN), 5)
    shards = []
    for rank in range(2):
        mode.set_data_shard(rank, 2)
        caffe.set_random_seed(7)
        shards.append(_batches(_net(tmp_path, _data_layer(db, 3, transform), caffe.TRAIN), 5))
    for k in range(5):
        data = np.concatenate([shards[0][k][0], shards[1][k][0]])
        labels = np.concatenate([shards[0][k][1], shards[1][k][1]])
        assert np.array_equal(labels, whole[k][1])
        assert np.array_equal(data, whole[k][0])


def test_test_phase_ignores_the_shard_as_caffe_tests_on_the_root_only(tmp_path, db):
    mode.set_data_shard(1, 2)
    labels = _batches(_net(tmp_path, _data_layer(db, 3)), 1)[0][1]
    assert labels.tolist() == [0, 1, 2]


def test_train_random_crops_depend_on_the_seed_only(tmp_path, db):
    layer = _data_layer(db, 4, "crop_size: 4 mirror: true")
    runs = []
    for workers, seed in [(0, 3), (2, 3), (0, 4)]:
        set_num_workers(workers)
        caffe.set_random_seed(seed)
        runs.append(np.concatenate([d for d, _ in _batches(_net(tmp_path, layer, caffe.TRAIN), 4)]))
    assert np.array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_rand_skip_starts_at_a_seeded_offset_below_it(tmp_path, db):
    starts = set()
    for seed in range(8):
        caffe.set_random_seed(seed)
        labels = _batches(_net(tmp_path, _data_layer(db, 2, extra="rand_skip: 5")), 1)[0][1]
        assert labels[1] == (labels[0] + 1) % N
        starts.add(int(labels[0]))
    assert starts <= set(range(5)) and len(starts) > 1


@pytest.mark.parametrize("force, channels", [("", 3), ("force_gray: true", 1), ("force_color: true", 3)])
def test_encoded_datums_decode_as_bgr_with_forced_channels(tmp_path, force, channels):
    img = np.random.default_rng(1).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    ok, png = cv2.imencode(".png", img)
    with Writer(tmp_path / "enc", "leveldb") as w:
        w.put("0", encoded_datum(png.tobytes(), 3).SerializeToString())
    data, labels = _batches(_net(tmp_path, _data_layer(tmp_path / "enc", 1, force,
                                                         backend="LEVELDB")), 1)[0]
    # gray: OpenCV's decoder converts while decoding (as Caffe's DecodeDatumToCVMat)
    expected = img if channels == 3 else cv2.imdecode(png, cv2.IMREAD_GRAYSCALE)[:, :, None]
    assert data.shape == (1, channels, 5, 6) and labels.tolist() == [3]
    assert np.array_equal(data[0], expected.transpose(2, 0, 1).astype(np.float32))


def _image_list(tmp_path, n=5):
    rng = np.random.default_rng(2)
    lines = []
    for i in range(n):
        name = f"dir with space/im {i}.png"
        (tmp_path / "dir with space").mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / name), rng.integers(0, 256, (9, 8, 3), dtype=np.uint8))
        lines.append(f"{name} {i}")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")


def _image_layer(tmp_path, batch, extra=""):
    return (f'layer {{ name: "data" type: "ImageData" top: "data" top: "label" '
            f'image_data_param {{ source: "{tmp_path}/list.txt" root_folder: "{tmp_path}/" '
            f'batch_size: {batch} {extra} }} }}')


def test_image_data_splits_at_last_space_resizes_and_reads_gray(tmp_path):
    _image_list(tmp_path)
    net = _net(tmp_path, _image_layer(tmp_path, 2, "new_height: 4 new_width: 3 is_color: false"))
    data, labels = _batches(net, 1)[0]
    img = cv2.imread(str(tmp_path / "dir with space/im 1.png"), cv2.IMREAD_GRAYSCALE)
    assert labels.tolist() == [0, 1]
    assert np.array_equal(data[1, 0], cv2.resize(img, (3, 4), interpolation=cv2.INTER_LINEAR))


def test_image_data_shuffle_is_a_seeded_permutation_per_epoch(tmp_path):
    _image_list(tmp_path)
    orders = []
    for seed in (5, 5):
        caffe.set_random_seed(seed)
        labels = _batches(_net(tmp_path, _image_layer(tmp_path, 5, "shuffle: true")), 3)
        orders.append([lab.tolist() for _, lab in labels])
    assert orders[0] == orders[1]
    assert all(sorted(epoch) == [0, 1, 2, 3, 4] for epoch in orders[0])
    assert len({tuple(e) for e in orders[0]}) > 1


def test_memory_data_serves_batches_in_order_and_wraps(tmp_path):
    net = _net(tmp_path, 'layer { name: "m" type: "MemoryData" top: "data" top: "label" '
                         'memory_data_param { batch_size: 2 channels: 1 height: 2 width: 3 } }')
    x = np.arange(4 * 6, dtype=np.float32).reshape(4, 1, 2, 3)
    net.layer_dict["m"].set_input_arrays(x, np.arange(4))
    seen = []
    for _ in range(3):
        net.forward()
        seen.append(net.blobs["label"].data.ravel().tolist())
    assert seen == [[0, 1], [2, 3], [0, 1]]
    assert net.blobs["label"].data.shape == (2, 1, 1, 1)
    assert np.array_equal(net.blobs["data"].data, x[:2])
