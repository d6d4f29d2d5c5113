"""Datum <-> pixels, and image files -> pixels, the way Caffe's ``util/io.cpp`` does it with OpenCV:
Datum data is uint8 C x H x W in BGR order; images are read with ``cv::imread`` (color: 3-channel
BGR, gray: OpenCV's BGR->gray) and resized with ``cv::resize`` (INTER_LINEAR)."""
from __future__ import annotations

import os

import cv2
import numpy as np

from ..errors import DataError
from ..proto import caffe_pb2


def parse_datum(value: bytes, key: bytes | str = b"?") -> caffe_pb2.Datum:
    """A Datum from its serialized bytes; DataError naming the key if they are not one."""
    datum = caffe_pb2.Datum()
    try:
        datum.ParseFromString(value)
    except Exception as exc:  # protobuf's DecodeError
        raise DataError(f"record {_key_text(key)}: not a serialized Datum ({exc})") from exc
    return datum


def _key_text(key: bytes | str) -> str:
    return key.decode(errors="replace") if isinstance(key, bytes) else key


def _color_flag(force_color: bool, force_gray: bool) -> int:
    if force_color and force_gray:
        raise DataError("cannot set both force_color and force_gray")
    if force_color:
        return cv2.IMREAD_COLOR
    if force_gray:
        return cv2.IMREAD_GRAYSCALE
    return cv2.IMREAD_ANYCOLOR


def datum_pixels(datum: caffe_pb2.Datum, key: bytes | str = b"?", force_color: bool = False,
                 force_gray: bool = False) -> np.ndarray:
    """The C x H x W array of a Datum: uint8 from ``data`` (decoded first when ``encoded``: native
    channels unless forced to color or gray), else float32 from ``float_data``."""
    if datum.encoded:
        img = cv2.imdecode(np.frombuffer(datum.data, dtype=np.uint8),
                           _color_flag(force_color, force_gray))
        if img is None:
            raise DataError(f"record {_key_text(key)}: encoded Datum could not be decoded")
        return hwc_to_chw(img)
    shape = (datum.channels, datum.height, datum.width)
    count = shape[0] * shape[1] * shape[2]
    if datum.data:
        if len(datum.data) != count:
            raise DataError(f"record {_key_text(key)}: Datum of shape {shape} holds "
                            f"{len(datum.data)} bytes of data, expected {count}")
        return np.frombuffer(datum.data, dtype=np.uint8).reshape(shape)
    values = np.asarray(datum.float_data, dtype=np.float32)
    if values.size != count:
        raise DataError(f"record {_key_text(key)}: Datum of shape {shape} holds {values.size} "
                        f"float_data values, expected {count}")
    return values.reshape(shape)


def hwc_to_chw(img: np.ndarray) -> np.ndarray:
    """An OpenCV image (H x W or H x W x C) as C x H x W."""
    if img.ndim == 2:
        return img[np.newaxis]
    return np.ascontiguousarray(img.transpose(2, 0, 1))


def truncated_jpeg(path: str | os.PathLike) -> bool:
    """A JPEG file without the end-of-image marker after its last scan: cut short. OpenCV decodes
    it with grey rows in place of the missing data and only prints a libjpeg warning."""
    try:
        with open(path, "rb") as f:
            if f.read(2) != b"\xff\xd8":
                return False
            data = f.read()
    except OSError:
        return False
    return data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda")


def why_unreadable(path: str | os.PathLike) -> str:
    """Why ``read_image`` gave None for ``path``: missing, a truncated JPEG, or undecodable."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        return f"could not open or find file {path}"
    if truncated_jpeg(path):
        return f"{path} is a truncated JPEG (no end-of-image marker after its last scan)"
    return f"cannot decode {path} (damaged, empty or not an image format OpenCV reads)"


def read_image(path: str | os.PathLike, new_height: int = 0, new_width: int = 0,
               is_color: bool = True) -> np.ndarray | None:
    """Caffe's ReadImageToCVMat: an H x W x 3 BGR (or H x W gray) uint8 image, resized to
    new_height x new_width (INTER_LINEAR) when both are positive; None if it cannot be read or is
    a truncated JPEG (``why_unreadable`` says which)."""
    if truncated_jpeg(path):
        return None
    img = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR if is_color else cv2.IMREAD_GRAYSCALE)
    if img is None:
        return None
    if new_height > 0 and new_width > 0:
        img = cv2.resize(img, (int(new_width), int(new_height)), interpolation=cv2.INTER_LINEAR)
    return img


def image_to_datum(img: np.ndarray, label: int) -> caffe_pb2.Datum:
    """Caffe's CVMatToDatum + label: raw uint8 CHW data with channels/height/width."""
    chw = hwc_to_chw(img)
    datum = caffe_pb2.Datum()
    datum.channels, datum.height, datum.width = (int(d) for d in chw.shape)
    datum.data = chw.tobytes()
    datum.encoded = False
    datum.label = int(label)
    return datum


def encoded_datum(data: bytes, label: int) -> caffe_pb2.Datum:
    """An encoded Datum (image file bytes) as Caffe writes it: data, label, encoded; no sizes."""
    datum = caffe_pb2.Datum()
    datum.data = data
    datum.label = int(label)
    datum.encoded = True
    return datum


_FLOAT_DATA_TAG = 0x35  # field 6 (float_data), wire type 5 (32-bit), unpacked as in caffe.proto


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def float_datum_bytes(values: np.ndarray, channels: int, height: int, width: int) -> bytes:
    """The serialized Datum {channels, height, width, float_data} that extract_features writes,
    byte for byte what ``Datum.SerializeToString`` gives, built with numpy (fast for big blobs)."""
    flat = np.ascontiguousarray(values, dtype="<f4").ravel()
    records = np.empty(flat.size, dtype=[("tag", "u1"), ("value", "<f4")])
    records["tag"] = _FLOAT_DATA_TAG
    records["value"] = flat
    head = b"".join((b"\x08", _varint(channels), b"\x10", _varint(height), b"\x18", _varint(width)))
    return head + records.tobytes()
