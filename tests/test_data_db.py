"""Datum databases: writing and reading LMDB and LevelDB, wrap-around cursors, refusals."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from caffe.data import db as dbmod
from caffe.data.datum import float_datum_bytes, image_to_datum, parse_datum
from caffe.errors import DataError
from caffe.proto import caffe_pb2


def _write(path: Path, backend: str, n: int) -> list[tuple[bytes, bytes]]:
    records = [(f"{i:08d}_x.png".encode(), f"value{i}".encode()) for i in range(n)]
    with dbmod.Writer(path, backend) as w:
        for k, v in records:
            w.put(k, v)
    return records


@pytest.mark.parametrize("backend", ["lmdb", "leveldb"])
def test_written_records_read_back_in_key_order(tmp_path, backend):
    records = _write(tmp_path / "db", backend, 25)
    assert list(dbmod.iterate(tmp_path / "db", backend)) == records


@pytest.mark.parametrize("backend", ["lmdb", "leveldb"])
def test_writer_refuses_an_existing_database(tmp_path, backend):
    _write(tmp_path / "db", backend, 2)
    with pytest.raises(DataError, match="already exists"):
        dbmod.Writer(tmp_path / "db", backend)


def test_writer_overwrite_replaces_only_a_database(tmp_path):
    _write(tmp_path / "db", "lmdb", 3)
    with dbmod.Writer(tmp_path / "db", "lmdb", overwrite=True) as w:
        w.put(b"a", b"b")
    assert list(dbmod.iterate(tmp_path / "db", "lmdb")) == [(b"a", b"b")]
    (tmp_path / "notadb").mkdir()
    with pytest.raises(DataError, match="not an LMDB/LevelDB"):
        dbmod.Writer(tmp_path / "notadb", "lmdb", overwrite=True)


def test_failed_write_leaves_no_database(tmp_path):
    with pytest.raises(RuntimeError):
        with dbmod.Writer(tmp_path / "db", "leveldb") as w:
            w.put(b"k", b"v")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_lmdb_map_grows_when_full(tmp_path, monkeypatch):
    monkeypatch.setattr(dbmod, "_INITIAL_MAP_SIZE", 1 << 16)
    value = bytes(range(256)) * 64  # 16 KiB each, 2 MiB in all: 32 times the first map
    with dbmod.Writer(tmp_path / "db", "lmdb") as w:
        for i in range(128):
            w.put(f"{i:04d}", value)
    assert sum(1 for _ in dbmod.iterate(tmp_path / "db", "lmdb")) == 128


@pytest.mark.parametrize("backend", ["lmdb", "leveldb"])
def test_missing_database_is_a_data_error_naming_the_path(tmp_path, backend):
    with pytest.raises(DataError, match=str(tmp_path / "nothere")):
        dbmod.open_cursor(tmp_path / "nothere", backend)


def test_wrong_backend_is_named_in_the_error(tmp_path):
    _write(tmp_path / "l", "lmdb", 1)
    _write(tmp_path / "v", "leveldb", 1)
    with pytest.raises(DataError, match="it holds an LMDB"):
        dbmod.open_cursor(tmp_path / "l", "leveldb")
    with pytest.raises(DataError, match="it holds a LevelDB"):
        dbmod.open_cursor(tmp_path / "v", "lmdb")


def test_cursor_seeks_back_to_first(tmp_path):
    records = _write(tmp_path / "db", "leveldb", 3)
    cur = dbmod.open_cursor(tmp_path / "db", "leveldb")
    seen = []
    for _ in range(3):
        seen.append(cur.key())
        cur.next()
    assert not cur.valid()
    cur.seek_to_first()
    assert cur.key() == records[0][0]
    cur.close()
    assert seen == [k for k, _ in records]


@pytest.mark.parametrize("value", [0, 1, "lmdb", "LevelDB"])
def test_backend_names_from_enum_and_flag(value):
    assert dbmod.backend_name(value) in ("lmdb", "leveldb")


def test_unknown_backend_is_rejected():
    with pytest.raises(DataError, match="unknown database backend"):
        dbmod.backend_name("rocksdb")


def test_float_datum_bytes_equal_protobuf_serialization():
    values = np.random.default_rng(0).standard_normal(7 * 3 * 2).astype(np.float32)
    d = caffe_pb2.Datum(channels=7, height=3, width=2)
    d.float_data.extend(values.tolist())
    assert float_datum_bytes(values, 7, 3, 2) == d.SerializeToString()
    assert np.array_equal(np.array(parse_datum(float_datum_bytes(values, 7, 3, 2)).float_data), values)


def test_image_datum_is_chw_bgr_with_label_and_encoded_false():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)  # H x W x BGR
    d = image_to_datum(img, 5)
    assert (d.channels, d.height, d.width, d.label) == (3, 2, 3, 5)
    assert d.HasField("encoded") and not d.encoded
    assert np.array_equal(np.frombuffer(d.data, np.uint8).reshape(3, 2, 3), img.transpose(2, 0, 1))
