"""caffe.io Datum conversions against the LMDB/LevelDB databases real Caffe wrote
(convert_imageset, extract_features) and their JSON dumps in tests/golden/datum_db."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import lmdb
import numpy as np
import plyvel
import pytest

from caffe import io as caffe_io
from caffe.errors import DataError
from caffe.proto import caffe_pb2

from conftest import GOLDEN

GOLDEN_CASES = ("datum_db",)

DATUM_DB = GOLDEN / "datum_db"


def _lmdb_records(path: Path) -> list[tuple[str, bytes]]:
    env = lmdb.open(str(path), readonly=True, lock=False, subdir=True)
    try:
        with env.begin() as txn:
            return [(k.decode(), bytes(v)) for k, v in txn.cursor()]
    finally:
        env.close()


def _leveldb_records(path: Path, tmp_path: Path) -> list[tuple[str, bytes]]:
    copy = tmp_path / path.name  # LevelDB writes LOG/LOCK files on open: never open the shared copy
    shutil.copytree(path, copy)
    db = plyvel.DB(str(copy), create_if_missing=False)
    try:
        return [(k.decode(), v) for k, v in db]
    finally:
        db.close()


def _check_against_dump(records: list[tuple[str, bytes]], dump: list[dict]) -> None:
    assert [key for key, _ in records] == [entry["key"] for entry in dump]
    for (key, value), entry in zip(records, dump):
        datum = caffe_pb2.Datum.FromString(value)
        arr = caffe_io.datum_to_array(datum)
        shape = (entry["channels"], entry["height"], entry["width"])
        assert arr.shape == shape, key
        assert datum.label == entry["label"] and datum.encoded == entry["encoded"]
        if "data_uint8" in entry:
            assert arr.dtype == np.uint8
            np.testing.assert_array_equal(arr, np.array(entry["data_uint8"], np.uint8).reshape(shape))
        else:
            assert arr.dtype == np.float32
            np.testing.assert_allclose(arr, np.array(entry["float_data"]).reshape(shape), rtol=0, atol=1e-6)


def test_raw_lmdb_datums_match_dump():
    _check_against_dump(_lmdb_records(DATUM_DB / "color_lmdb"),
                        json.loads((DATUM_DB / "color_lmdb.json").read_text()))


@pytest.mark.parametrize("name", ["color_leveldb", "gray_resized_leveldb"])
def test_raw_leveldb_datums_match_dump(name, tmp_path):
    _check_against_dump(_leveldb_records(DATUM_DB / name, tmp_path),
                        json.loads((DATUM_DB / f"{name}.json").read_text()))


@pytest.mark.parametrize("net", ["lmdb", "imagedata"])
def test_extracted_feature_datums_match_dump(net, tmp_path):
    dumps = json.loads((DATUM_DB / f"feat_{net}.json").read_text())
    assert dumps
    for blob, dump in dumps.items():
        _check_against_dump(_leveldb_records(DATUM_DB / f"feat_{net}_{blob}", tmp_path), dump)


def test_raw_datum_is_bgr_chw_of_the_image():
    records = dict(_lmdb_records(DATUM_DB / "color_lmdb"))
    arr = caffe_io.datum_to_array(caffe_pb2.Datum.FromString(records["00000000_img0.png"]))
    bgr = cv2.imread(str(DATUM_DB / "images" / "img0.png"), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(arr, bgr.transpose(2, 0, 1))


def test_encoded_datum_decodes_to_the_raw_datum():
    records = dict(_lmdb_records(DATUM_DB / "color_lmdb"))
    for name in ("img0.png", "img3.png"):
        raw = caffe_io.datum_to_array(caffe_pb2.Datum.FromString(records[f"0000000{name[3]}_{name}"]))
        encoded = caffe_pb2.Datum(data=(DATUM_DB / "images" / name).read_bytes(), encoded=True, label=1)
        decoded = caffe_io.datum_to_array(encoded)
        assert decoded.dtype == np.uint8
        np.testing.assert_array_equal(decoded, raw)


def test_encoded_gray_datum_decodes_to_one_channel():
    png = DATUM_DB / "gray" / "g0.png"
    decoded = caffe_io.datum_to_array(caffe_pb2.Datum(data=png.read_bytes(), encoded=True))
    gray = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    assert gray.ndim == 2
    np.testing.assert_array_equal(decoded, gray[np.newaxis])


def test_undecodable_encoded_datum_is_data_error():
    with pytest.raises(DataError, match="decoded"):
        caffe_io.datum_to_array(caffe_pb2.Datum(data=b"not an image", encoded=True))


def test_array_to_datum_uint8_goes_to_data_and_back():
    arr = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    datum = caffe_io.array_to_datum(arr, label=4)
    assert (datum.channels, datum.height, datum.width, datum.label) == (3, 4, 5, 4)
    assert datum.data == arr.tobytes() and len(datum.float_data) == 0
    np.testing.assert_array_equal(caffe_io.datum_to_array(datum), arr)


def test_array_to_datum_float_goes_to_float_data_and_back():
    arr = np.linspace(-1, 1, 7).reshape(7, 1, 1)
    datum = caffe_io.array_to_datum(arr)
    assert not datum.data and len(datum.float_data) == 7 and not datum.HasField("label")
    np.testing.assert_array_equal(caffe_io.datum_to_array(datum), arr.astype(np.float32))


def test_array_to_datum_needs_three_axes():
    with pytest.raises(DataError, match="C x H x W"):
        caffe_io.array_to_datum(np.zeros((4, 4), np.uint8))


def test_datum_with_inconsistent_size_is_data_error():
    with pytest.raises(DataError, match="expected 12"):
        caffe_io.datum_to_array(caffe_pb2.Datum(channels=3, height=2, width=2, data=b"\0" * 10))
    with pytest.raises(DataError, match="expected 4"):
        caffe_io.datum_to_array(caffe_pb2.Datum(channels=1, height=2, width=2, float_data=[1.0]))
