"""Feature databases written by ``extract_features`` (LevelDB or LMDB of Datum with float_data)
read into one matrix, and that matrix written as a MATLAB .mat file (v5, or v7.3/HDF5 above 2 GB).
A folder of the parts a sharded ``extract_features`` wrote (``shard-K-of-N``) reads as one database.

Decoding is vectorised for the layout Caffe writes (the same header on every record, then
``float_data`` as repeated fixed32 fields, unpacked as proto2 writes them, or packed); any other
record is parsed with the protobuf Datum message, so both paths give the same numbers."""
from __future__ import annotations

import contextlib
import gc
import itertools
import os
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

V5_LIMIT_BYTES = 2**31 - 2**16  # a v5 variable holds under 2 GB (its size field is 32-bit), minus headers
_FLOAT_TAG_UNPACKED = 0x35      # field 6, wire type 5 (fixed32)
_FLOAT_TAG_PACKED = 0x32        # field 6, wire type 2 (length-delimited)
_CHUNK_BYTES = 64 << 20
_LAYOUTS_PER_LENGTH = 4         # reference layouts tried per record length before protobuf parsing


def _data_error(message: str) -> Exception:
    """caffe.errors.DataError, imported on the error path only: importing the engine loads torch,
    which would double the time of a whole conversion."""
    from caffe.errors import DataError
    return DataError(message)


@dataclass
class FeatureMatrix:
    """Rows of float_data in integer key order; ``keys[i]`` is the key of row i."""
    data: np.ndarray
    raw_keys: list[bytes]

    @property
    def keys(self) -> list[str]:
        return [k.decode(errors="replace") for k in self.raw_keys]


def detect_backend(path: str | os.PathLike) -> str:
    """'lmdb' or 'leveldb', from the files in the database folder."""
    path = Path(path)
    if path.is_file() and path.suffix == ".mdb":
        return "lmdb"
    if not path.is_dir():
        raise _data_error(f"{path}: no such database folder")
    if (path / "data.mdb").exists():
        return "lmdb"
    if (path / "CURRENT").exists():
        return "leveldb"
    raise _data_error(f"{path}: neither an LMDB (data.mdb) nor a LevelDB (CURRENT) database")


def shard_parts(path: str | os.PathLike) -> list[Path] | None:
    """The databases ``path/shard-K-of-N`` that ``extract_features --shard`` wrote, in share
    order (all N, else DataError), or None when ``path`` is not a folder of such parts."""
    path = Path(path)
    if not path.is_dir() or not any(path.glob("shard-*-of-*")):
        return None
    from caffe.errors import CaffeError
    from caffe.launch import shard_parts as find_parts
    try:
        return find_parts(path)
    except CaffeError as exc:
        raise _data_error(str(exc)) from None


def iter_records(path: str | os.PathLike, backend: str | None = None) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) pairs in the database's byte order of keys; of a folder of shard parts, the
    parts' records one part after the other (their keys are those of one unsharded run)."""
    parts = shard_parts(path)
    if parts is not None:
        for part in parts:
            yield from iter_records(part, backend)
        return
    backend = backend or detect_backend(path)
    if backend == "leveldb":
        import plyvel
        try:
            db = plyvel.DB(str(path), create_if_missing=False)
        except (plyvel.Error, OSError) as e:
            raise _data_error(f"{path}: cannot open LevelDB: {e}") from None
        try:
            yield from db.iterator()
        finally:
            db.close()
    elif backend == "lmdb":
        import lmdb

        from caffe.data.db import close_lmdb, open_lmdb  # checked, locked, one consistent commit
        try:
            env = open_lmdb(Path(path).parent if Path(path).is_file() else path)
        except lmdb.Error as e:
            raise _data_error(f"{path}: cannot open LMDB: {e}") from None
        try:
            with env.begin(buffers=False) as txn:
                yield from txn.cursor().iternext()
        finally:
            close_lmdb(env)
    else:
        raise _data_error(f"unknown backend {backend!r}: expected 'leveldb' or 'lmdb'")


def read_features(path: str | os.PathLike, dim: int, count: int | None = None,
                  backend: str | None = None, progress: bool | None = None, keep_keys: bool = True) -> FeatureMatrix:
    """The float_data of every Datum as a float32 matrix (rows, dim), rows in integer key order.

    With ``count``, rows 0..count-1 are read (keys beyond are ignored with a warning); without it all
    keys are read and must be 0..n-1. A missing key, two keys with the same integer, a key that is not
    an integer, or a Datum whose length is not ``dim`` raise DataError naming the key.

    Memory: the matrix (4 bytes per value; a Datum of uint8 ``data``, an image, becomes dim float32
    values), its row numbers (8 bytes a row), the records of one read chunk (about 64 MB), and with
    ``keep_keys`` every key as a bytes object (about 50 bytes a row: more than a row of 7
    probabilities; ``raw_keys`` is then empty without it, and an error finds its keys by reading
    the database again). The peak is twice the matrix: the chunks are joined into one, then
    sorted by key into another."""
    if dim < 1:
        raise _data_error(f"dim must be positive, got {dim}")
    chunks: list[np.ndarray] = []
    indices: list[np.ndarray] = []
    keys: list[bytes] | None = [] if keep_keys else None
    ignored = 0
    bar = _progress(count, progress, path)
    records = iter_records(path, backend)
    size = 1024
    with _gc_paused():
        while batch := list(itertools.islice(records, size)):
            batch_keys, batch_values = map(list, zip(*batch))
            ignored += _flush(batch_keys, batch_values, dim, count, chunks, indices, keys, bar)
            size = max(1, _CHUNK_BYTES // max(1, len(batch_values[0])))
    bar.close()
    if ignored:
        warnings.warn(f"{path}: {ignored} keys at or beyond row {count} ignored "
                      f"(the database holds more rows than batch_num x batch_size)", stacklevel=2)
    index = np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64)
    rows = np.concatenate(chunks) if chunks else np.zeros((0, dim), dtype=np.float32)
    del chunks
    return _arrange(rows, index, keys, count, path, backend)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: millions of key/value objects (which hold no cycles)
    otherwise trigger full collections that double the reading time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _flush(keys: list[bytes], values: list[bytes], dim: int, count: int | None, chunks: list,
           indices: list, all_keys: list | None, bar) -> int:
    """Decode one chunk of records into ``chunks``/``indices``/``all_keys``; returns how many
    records were skipped for lying beyond ``count``."""
    if not keys:
        return 0
    total = len(keys)
    index = key_integers(keys)
    if count is not None:
        keep = index < count
        if not keep.all():
            keys = [k for k, m in zip(keys, keep) if m]
            values = [v for v, m in zip(values, keep) if m]
            index = index[keep]
    chunks.append(decode_float_data(values, dim, keys))
    indices.append(index)
    if all_keys is not None:
        all_keys.extend(keys)
    bar.update(len(keys))
    return total - len(keys)


def _arrange(rows: np.ndarray, index: np.ndarray, keys: list[bytes] | None, count: int | None,
             path: str | os.PathLike, backend: str | None = None) -> FeatureMatrix:
    n = count if count is not None else len(index)
    if count is None and n == 0:
        raise _data_error(f"{path}: the database is empty")
    order = np.argsort(index, kind="stable")
    sorted_index = index[order]
    dup = np.nonzero(sorted_index[1:] == sorted_index[:-1])[0]
    if len(dup):
        if keys is not None:
            a, b = keys[order[dup[0]]], keys[order[dup[0] + 1]]
        else:  # the keys were not kept: find the two of that row
            row = int(sorted_index[dup[0]])
            a, b = [k for k, _ in iter_records(path, backend) if key_integers([k])[0] == row][:2]
        raise _data_error(f"{path}: keys {a.decode(errors='replace')!r} and {b.decode(errors='replace')!r} "
                        f"both give row {int(sorted_index[dup[0]])}")
    if len(sorted_index) != n or (n and (sorted_index[0] != 0 or sorted_index[-1] != n - 1)):
        present = np.zeros(n, dtype=bool)
        present[sorted_index[sorted_index < n]] = True
        missing = int(np.argmin(present)) if not present.all() else n
        raise _data_error(f"{path}: missing key {missing:010d} (row {missing} of {n}; "
                        f"{int((~present).sum())} rows missing)")
    return FeatureMatrix(rows[order], [keys[i] for i in order] if keys is not None else [])


def key_integers(keys: list[bytes]) -> np.ndarray:
    """Integer value of each key: the whole key, or its leading digits before '_' (convert_imageset's
    ``%08d_<file>``). Vectorised for equal-length all-digit keys such as ``%010d``."""
    width = len(keys[0])
    joined = b"".join(keys)
    if 0 < width <= 18 and len(joined) == width * len(keys):
        digits = np.frombuffer(joined, dtype=np.uint8).reshape(len(keys), width).astype(np.int64) - 48
        if ((digits >= 0) & (digits <= 9)).all():
            return digits @ (10 ** np.arange(width - 1, -1, -1, dtype=np.int64))
    out = np.empty(len(keys), dtype=np.int64)
    for i, key in enumerate(keys):
        head = key.split(b"_", 1)[0]
        if not head.isdigit():
            raise _data_error(f"key {key.decode(errors='replace')!r} is not an integer index")
        out[i] = int(head)
    return out


def decode_float_data(values: list[bytes], dim: int, keys: list[bytes] | None = None) -> np.ndarray:
    """float_data of serialized Datum records as a float32 array (len(values), dim)."""
    out = np.empty((len(values), dim), dtype=np.float32)
    if not values:
        return out
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    done = np.zeros(len(values), dtype=bool)
    for length in np.unique(lengths):
        rows = np.nonzero(lengths == length)[0]
        for _ in range(_LAYOUTS_PER_LENGTH):
            group = values if len(rows) == len(values) else [values[i] for i in rows]
            fast, floats = _decode_uniform(group, int(length), dim)
            out[rows[fast]] = floats
            done[rows[fast]] = True
            rows = rows[~fast]
            if not fast.any() or not len(rows):
                break
    for i in np.nonzero(~done)[0]:
        out[i] = _decode_one(values[i], dim, keys[i] if keys is not None else str(i).encode())
    return out


def _decode_uniform(values: list[bytes], length: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised decode of same-length records sharing the first record's non-float bytes.
    Returns the mask of rows decoded and their floats."""
    layout = _float_layout(values[0], dim)
    none = np.zeros(len(values), dtype=bool)
    if layout is None:
        return none, np.zeros((0, dim), dtype=np.float32)
    start, stop, packed = layout
    raw = np.frombuffer(b"".join(values), dtype=np.uint8).reshape(len(values), length)
    first = raw[0]
    same = (raw[:, :start] == first[:start]).all(axis=1) & (raw[:, stop:] == first[stop:]).all(axis=1)
    if packed:
        body = raw[same, start:stop]
    else:
        fields = raw[same, start:stop].reshape(-1, dim, 5)
        tags_ok = (fields[:, :, 0] == _FLOAT_TAG_UNPACKED).all(axis=1)
        mask = np.nonzero(same)[0]
        same[mask[~tags_ok]] = False
        body = fields[tags_ok, :, 1:]
    floats = np.ascontiguousarray(body).view("<f4").reshape(-1, dim)
    return same, floats


def _float_layout(record: bytes, dim: int) -> tuple[int, int, bool] | None:
    """(start, stop, packed) of the float_data bytes (values only) in one record when they form one
    contiguous run of ``dim`` floats, else None."""
    pos, n = 0, len(record)
    while pos < n:
        tag, after = _varint(record, pos)
        if tag is None:
            return None
        field, wire = tag >> 3, tag & 7
        if field == 6 and wire == 5:
            stop = pos + 5 * dim
            if stop > n or any(record[pos + 5 * i] != _FLOAT_TAG_UNPACKED for i in range(dim)):
                return None
            if stop < n and record[stop] == _FLOAT_TAG_UNPACKED:
                return None
            return pos, stop, False
        if field == 6 and wire == 2:
            size, body = _varint(record, after)
            if size != 4 * dim or body + size > n:
                return None
            return body, body + size, True
        pos = _skip(record, after, wire)
        if pos is None:
            return None
    return None


def _varint(buf: bytes, pos: int) -> tuple[int | None, int]:
    value, shift = 0, 0
    while pos < len(buf) and shift < 64:
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7
    return None, pos


def _skip(buf: bytes, pos: int, wire: int) -> int | None:
    if wire == 0:
        value, pos = _varint(buf, pos)
        return None if value is None else pos
    if wire == 1:
        return pos + 8
    if wire == 5:
        return pos + 4
    if wire == 2:
        size, pos = _varint(buf, pos)
        return None if size is None else pos + size
    return None


def _decode_one(value: bytes, dim: int, key: bytes) -> np.ndarray:
    from caffe.proto import caffe_pb2
    from google.protobuf.message import DecodeError
    datum = caffe_pb2.Datum()
    name = key.decode(errors="replace")
    try:
        datum.ParseFromString(value)
    except DecodeError as e:
        raise _data_error(f"key {name!r}: not a serialized Datum ({e})") from None
    if len(datum.float_data):
        values = np.asarray(datum.float_data, dtype=np.float32)
        what = "float_data"
    else:
        values = np.frombuffer(datum.data, dtype=np.uint8).astype(np.float32)
        what = "data"
    if values.size != dim:
        raise _data_error(f"key {name!r}: Datum holds {values.size} values in {what} "
                        f"({datum.channels}x{datum.height}x{datum.width}), expected dim {dim}")
    return values


def save_mat(path: str | os.PathLike, arrays: dict[str, np.ndarray], version: str = "auto") -> str:
    """Write variables to a MATLAB file atomically; returns the version written.

    ``version``: '5' (scipy.io.savemat), '7.3' (HDF5 with MATLAB's 512-byte header, readable by
    MATLAB, Octave and h5py) or 'auto' (7.3 only when a variable passes the v5 limit of 2 GB)."""
    if version == "auto":
        version = "7.3" if any(a.nbytes >= V5_LIMIT_BYTES for a in arrays.values()) else "5"
    if version not in ("5", "7.3"):
        raise _data_error(f"unknown .mat version {version!r}: expected 'auto', '5' or '7.3'")
    from caffe.atomic import atomic_path  # the engine loads torch: only when writing
    with atomic_path(path) as tmp:
        if version == "5":
            import scipy.io
            with open(tmp, "wb") as f:
                scipy.io.savemat(f, arrays, format="5", oned_as="column")
        else:
            _save_v73(tmp, arrays)
    return version


_MATLAB_CLASS = {np.dtype(np.float64): b"double", np.dtype(np.float32): b"single"}


def _save_v73(path: str, arrays: dict[str, np.ndarray]) -> None:
    import h5py
    with h5py.File(path, "w", userblock_size=512, libver="earliest") as f:
        for name, array in arrays.items():
            array = np.atleast_2d(array)
            if array.dtype not in _MATLAB_CLASS:
                raise _data_error(f"variable {name!r}: only single or double matrices, got {array.dtype}")
            # MATLAB is column-major: an m x n matrix is stored as an HDF5 dataset of shape (n, m).
            dataset = f.create_dataset(name, data=array.T)
            dataset.attrs["MATLAB_class"] = np.bytes_(_MATLAB_CLASS[array.dtype])
    text = (f"MATLAB 7.3 MAT-file, Platform: {sys.platform}, "
            f"Created on: {time.strftime('%a %b %d %H:%M:%S %Y')} HDF5 schema 1.00 .").encode()
    header = text[:116].ljust(116, b" ") + b"\0" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as f:
        f.write(header.ljust(512, b"\0"))


def _progress(total: int | None, enabled: bool | None, path: str | os.PathLike):
    from tqdm import tqdm
    disable = not sys.stderr.isatty() if enabled is None else not enabled
    return tqdm(total=total, disable=disable, unit="datum", desc=str(path), file=sys.stderr,
                mininterval=0.5)
