"""Bad input to the data layers: each is a DataError naming the path, key or list line."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

import caffe
from caffe.data import Writer, image_to_datum, set_num_workers
from caffe.errors import DataError


@pytest.fixture(autouse=True)
def no_workers():
    set_num_workers(0)
    yield
    set_num_workers(None)


def _data_net(tmp_path, source, backend="LMDB", transform="", batch=2):
    path = tmp_path / "net.prototxt"
    path.write_text(f"""layer {{ name: "data" type: "Data" top: "data" top: "label"
      transform_param {{ {transform} }}
      data_param {{ source: "{source}" backend: {backend} batch_size: {batch} }} }}""")
    return caffe.Net(str(path), caffe.TEST)


def _image_net(tmp_path, source, root):
    path = tmp_path / "net.prototxt"
    path.write_text(f"""layer {{ name: "data" type: "ImageData" top: "data" top: "label"
      image_data_param {{ source: "{source}" root_folder: "{root}" batch_size: 2 }} }}""")
    return caffe.Net(str(path), caffe.TEST)


def _db(path, shapes, backend="lmdb"):
    with Writer(path, backend) as w:
        for i, (h, wd) in enumerate(shapes):
            w.put(f"{i:08d}_img{i}.png", image_to_datum(np.full((h, wd, 3), i, np.uint8), i).SerializeToString())


@pytest.mark.parametrize("backend", ["LMDB", "LEVELDB"])
def test_missing_database_names_the_path(tmp_path, backend):
    with pytest.raises(DataError, match=f"not found: {tmp_path / 'nothere'}"):
        _data_net(tmp_path, tmp_path / "nothere", backend)


def test_datum_of_another_size_names_its_key(tmp_path):
    _db(tmp_path / "db", [(4, 4), (4, 4), (5, 4)])
    net = _data_net(tmp_path, tmp_path / "db")
    net.forward()
    with pytest.raises(DataError, match="record 00000002_img2.png"):
        net.forward()


def test_missing_image_names_the_list_line(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "list.txt").write_text("a.png 0\n\na.png 1\nmissing.png 2\n")
    net = _image_net(tmp_path, tmp_path / "list.txt", f"{tmp_path}/")
    net.forward()
    with pytest.raises(DataError, match=r"list.txt:4: could not open or find file .*missing.png"):
        net.forward()


def test_missing_list_file_and_bad_label(tmp_path):
    with pytest.raises(DataError, match="image list file not found"):
        _image_net(tmp_path, tmp_path / "nolist.txt", "")
    (tmp_path / "list.txt").write_text("a.png zero\n")
    with pytest.raises(DataError, match=r"list.txt:1: label 'zero' is not an integer"):
        _image_net(tmp_path, tmp_path / "list.txt", "")


def test_mean_file_and_mean_value_together_are_rejected(tmp_path):
    _db(tmp_path / "db", [(4, 4)])
    with pytest.raises(DataError, match="layer 'data'.*mean_file and mean_value"):
        _data_net(tmp_path, tmp_path / "db", transform='mean_file: "m.binaryproto" mean_value: 1')


def test_error_in_a_worker_process_surfaces_as_data_error(tmp_path):
    set_num_workers(1)
    _db(tmp_path / "db", [(4, 4), (4, 4), (3, 3), (4, 4)])
    net = _data_net(tmp_path, tmp_path / "db")
    try:
        net.forward()
        with pytest.raises(DataError, match="record 00000002_img2.png"):
            net.forward()
    finally:
        net.layer_dict["data"].close()


def test_memory_data_requires_arrays_and_batch_multiple(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text('layer { name: "m" type: "MemoryData" top: "data" top: "label" '
                    'memory_data_param { batch_size: 2 channels: 1 height: 2 width: 2 } }')
    net = caffe.Net(str(path), caffe.TEST)
    with pytest.raises(caffe.NetError, match="set_input_arrays"):
        net.forward()
    with pytest.raises(caffe.NetError, match="multiple of batch_size 2"):
        net.layer_dict["m"].set_input_arrays(np.zeros((3, 1, 2, 2)), np.zeros(3))
