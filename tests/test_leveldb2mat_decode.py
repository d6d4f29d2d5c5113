"""The vectorised float_data decoder gives exactly what protobuf's Datum parser gives, on Caffe's
layout and on every other layout it must fall back for."""
import numpy as np
import pytest

from caffe.errors import DataError
from caffe.proto import caffe_pb2
from sse.fusion import featdb
from sse.fusion.featdb import decode_float_data, key_integers


def _datum(values, label=None, channels=None, encoded=False) -> bytes:
    datum = caffe_pb2.Datum(channels=channels if channels is not None else len(values), height=1, width=1)
    datum.float_data.extend(np.asarray(values, dtype=np.float32).tolist())
    if label is not None:
        datum.label = label
    if encoded:
        datum.encoded = True
    return datum.SerializeToString()


def _packed(values, channels) -> bytes:
    """float_data as one packed field (what a proto3 or packed=true writer emits)."""
    body = np.asarray(values, dtype="<f4").tobytes()
    return bytes([0x08, channels, 0x10, 1, 0x18, 1, 0x32, len(body)]) + body


def _protobuf_decode(values, dim):
    out = []
    for v in values:
        d = caffe_pb2.Datum()
        d.ParseFromString(v)
        out.append(np.asarray(d.float_data, dtype=np.float32))
    return np.stack(out).reshape(len(values), dim)


def test_mixed_layouts_decode_exactly_like_protobuf(monkeypatch):
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(40, 7)).astype(np.float32)
    rows[0, 0], rows[1, 1], rows[2, 2] = np.float32("-0.0"), np.finfo(np.float32).tiny, 3.4e38
    values = []
    for i, row in enumerate(rows):
        kind = i % 5
        if kind == 0:
            values.append(_datum(row))                        # Caffe's extract_features layout
        elif kind == 1:
            values.append(_datum(row, label=i * 37))           # a label varint of varying length
        elif kind == 2:
            values.append(_packed(row, 7))                     # packed float_data
        elif kind == 3:
            values.append(_datum(row, channels=300))           # two-byte varint in the header
        else:
            values.append(_datum(row, encoded=True))           # a field after float_data
    fallbacks = []
    original = featdb._decode_one
    monkeypatch.setattr(featdb, "_decode_one", lambda v, d, k: fallbacks.append(k) or original(v, d, k))
    decoded = decode_float_data(values, 7, [f"{i:010d}".encode() for i in range(40)])
    assert decoded.tobytes() == _protobuf_decode(values, 7).tobytes()
    assert len(fallbacks) <= 4  # only rows whose headers differ (varying labels) beyond 4 layouts


def test_large_uniform_batch_takes_the_vectorised_path_only(monkeypatch):
    rows = np.random.default_rng(1).random((5000, 7), dtype=np.float32)
    values = [_datum(r) for r in rows]
    monkeypatch.setattr(featdb, "_decode_one", lambda *a: pytest.fail("fell back to protobuf"))
    np.testing.assert_array_equal(decode_float_data(values, 7), rows)


def test_uint8_data_is_used_when_float_data_is_empty():
    datum = caffe_pb2.Datum(channels=1, height=2, width=2, data=bytes([0, 7, 128, 255]))
    np.testing.assert_array_equal(decode_float_data([datum.SerializeToString()], 4), [[0, 7, 128, 255]])


def test_garbage_record_is_an_error_naming_the_key():
    with pytest.raises(DataError, match="key '0000000009': not a serialized Datum"):
        decode_float_data([b"\xff\xff\xff"], 7, [b"0000000009"])


def test_key_integers_for_caffe_and_convert_imageset_keys():
    assert key_integers([b"0000000010", b"0000000002"]).tolist() == [10, 2]
    assert key_integers([b"00000003_img.png", b"12"]).tolist() == [3, 12]
