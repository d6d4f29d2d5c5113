"""Writing Caffe files and converting blobs: what we write reads back identically, writes are
atomic, and arrays survive BlobProto conversion (float data, legacy and double blobs)."""
from __future__ import annotations

import os

import numpy as np
import pytest

from caffe import model_io
from caffe.proto import caffe_pb2

from conftest import GOLDEN

GOLDEN_CASES = ("layers_forward", "sgd_training")


def test_write_text_round_trips_a_golden_net(tmp_path):
    source = GOLDEN / "layers_forward" / "net.prototxt"
    net = model_io.read_net(source)
    out = tmp_path / "copy.prototxt"
    model_io.write_text(net, out)
    assert model_io.read_net(out) == net
    assert 'layer {\n  name: ' in out.read_text()


def test_write_binary_round_trips_a_caffemodel_byte_for_byte(tmp_path):
    source = GOLDEN / "sgd_training" / "init.caffemodel"
    out = tmp_path / "copy.caffemodel"
    model_io.write_binary(caffe_pb2.NetParameter.FromString(source.read_bytes()), out)
    assert out.read_bytes() == source.read_bytes()
    upgraded = model_io.read_binary_net(source)  # its BatchNorm params get explicit zero multipliers
    model_io.write_binary(upgraded, out)
    assert model_io.read_binary_net(out) == upgraded


def test_writes_leave_no_temporary_files_and_replace_existing(tmp_path):
    out = tmp_path / "net.prototxt"
    out.write_text("old")
    model_io.write_text(caffe_pb2.NetParameter(name="new"), out)
    model_io.write_binary(caffe_pb2.BlobProto(data=[1.0]), tmp_path / "b.binaryproto")
    assert sorted(os.listdir(tmp_path)) == ["b.binaryproto", "net.prototxt"]
    assert model_io.read_net(out).name == "new"


def test_failed_write_keeps_the_old_file(tmp_path):
    out = tmp_path / "keep.prototxt"
    out.write_text('name: "old"')

    class Unprintable:
        pass

    with pytest.raises(Exception):
        model_io.write_text(Unprintable(), out)  # type: ignore[arg-type]
    assert out.read_text() == 'name: "old"'
    assert os.listdir(tmp_path) == ["keep.prototxt"]


def test_array_to_blobproto_writes_shape_and_float_data():
    arr = np.arange(24, dtype=np.float64).reshape(2, 3, 4) / 7
    blob = model_io.array_to_blobproto(arr)
    assert list(blob.shape.dim) == [2, 3, 4]
    assert not blob.HasField("num") and len(blob.double_data) == 0
    back = model_io.blobproto_to_array(blob)
    assert back.dtype == np.float32 and back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, arr.astype(np.float32))


def test_array_to_blobproto_matches_protobufs_own_encoding():
    arr = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    reference = caffe_pb2.BlobProto()
    reference.shape.dim.extend([3, 5])
    reference.data.extend(arr.ravel().tolist())
    reference.diff.extend((2 * arr).ravel().tolist())
    assert model_io.array_to_blobproto(arr, diff=2 * arr).SerializeToString() == reference.SerializeToString()


def test_diff_round_trips():
    arr = np.ones((2, 2), np.float32)
    blob = model_io.array_to_blobproto(arr, diff=-arr)
    np.testing.assert_array_equal(model_io.blobproto_to_array(blob, return_diff=True), -arr)


def test_scalar_and_empty_blobs():
    assert model_io.blobproto_to_array(model_io.array_to_blobproto(np.float32(3.5))).shape == ()
    assert model_io.blobproto_to_array(model_io.array_to_blobproto(np.zeros((0, 4)))).shape == (0, 4)


def test_legacy_4d_fields_take_precedence_like_caffe():
    blob = caffe_pb2.BlobProto(num=2, channels=1, height=1, width=3, data=range(6))
    assert model_io.blob_shape(blob) == (2, 1, 1, 3)
    only_channels = caffe_pb2.BlobProto(channels=4, data=[])
    assert model_io.blob_shape(only_channels) == (0, 4, 0, 0)


def test_double_blobs_read_as_float32():
    blob = caffe_pb2.BlobProto(double_data=[0.1, 0.2], double_diff=[1.5, 2.5])
    blob.shape.dim.append(2)
    data = model_io.blobproto_to_array(blob)
    assert data.dtype == np.float32
    np.testing.assert_array_equal(data, np.array([0.1, 0.2], np.float32))
    np.testing.assert_array_equal(model_io.blobproto_to_array(blob, return_diff=True), [1.5, 2.5])
