"""Key-value databases of serialized Datum messages, as Caffe's ``db::DB``: LMDB and LevelDB.

Readers walk a cursor in key order and wrap around at the end, like Caffe's data layer. Writers
refuse to open a database that already exists (Caffe's ``db::NEW``) and commit in transactions;
an LMDB map grows by doubling when it is full, as Caffe 1.0 does."""
from __future__ import annotations

import os
import shutil
import struct
import warnings
from pathlib import Path
from typing import Iterator, Protocol

import lmdb
import plyvel

from ..atomic import sweep_once, writer_tag
from ..errors import DataError

PathLike = str | os.PathLike

LMDB, LEVELDB = "lmdb", "leveldb"
_INITIAL_MAP_SIZE = 1 << 26  # 64 MiB; doubled whenever a commit does not fit


def backend_name(backend: object) -> str:
    """'lmdb' or 'leveldb' from a flag string or a DataParameter.DB enum value (LEVELDB=0, LMDB=1)."""
    if isinstance(backend, int) and not isinstance(backend, bool):
        if backend in (0, 1):
            return LMDB if backend == 1 else LEVELDB
    elif isinstance(backend, str) and backend.lower() in (LMDB, LEVELDB):
        return backend.lower()
    raise DataError(f"unknown database backend {backend!r}: expected lmdb or leveldb")


class Cursor(Protocol):
    """Position in a database: the current key/value and a step to the next record."""

    def seek_to_first(self) -> None: ...
    def next(self) -> None: ...
    def valid(self) -> bool: ...
    def key(self) -> bytes: ...
    def value(self) -> bytes: ...
    def close(self) -> None: ...


_LMDB_MAGIC = 0xBEEFC0DE
_LMDB_META = struct.Struct("<II")  # magic, version: after the 16-byte page header
_LMDB_PSIZE = struct.Struct("<I")  # the free DB's md_pad holds the page size (offset 40)
_LMDB_LAST = struct.Struct("<QQ")  # mm_last_pg, mm_txnid (offset 136)


def check_lmdb_file(path: PathLike) -> None:
    """DataError unless ``path``/data.mdb holds LMDB's two meta pages and every page the newest
    of them uses: a file cut short would otherwise be mapped and kill the reader with SIGBUS when
    it touches a page past the end."""
    data = Path(path) / "data.mdb"
    try:
        size = data.stat().st_size
        with open(data, "rb") as f:
            head = f.read(8192)
            metas = [head[:4096]]
            if len(head) >= 48:
                psize = _LMDB_PSIZE.unpack_from(head, 40)[0]
                if 512 <= psize <= 65536:
                    f.seek(psize)
                    metas.append(f.read(160))
    except OSError as exc:
        raise DataError(f"cannot read LMDB {data}: {exc.strerror or exc}") from exc
    newest = None
    for meta in metas:
        if len(meta) < 152 or _LMDB_META.unpack_from(meta, 16)[0] != _LMDB_MAGIC:
            continue
        last_pg, txnid = _LMDB_LAST.unpack_from(meta, 136)
        if newest is None or txnid > newest[1]:
            newest = (last_pg, txnid)
    if len(metas) < 2 or newest is None:
        raise DataError(f"{data} is not an LMDB data file (no LMDB meta pages in its first "
                        f"{min(size, 8192)} bytes)")
    needed = (newest[0] + 1) * psize
    if size < needed:
        raise DataError(f"LMDB {data} is truncated: {size} bytes, its last commit needs {needed} "
                        f"(pages 0..{newest[0]} of {psize} bytes); the copy or the writer was cut short")


_lmdb_envs: dict[tuple[str, int], list] = {}


def open_lmdb(path: PathLike) -> lmdb.Environment:
    """A read-only LMDB environment with LMDB's reader locking, so that a read transaction sees one
    consistent commit while another process writes. The file is checked before it is mapped
    (``check_lmdb_file``). One environment per database and process is shared by all its readers
    (LMDB forbids opening one twice in a process); give it back with ``close_lmdb``. A database in
    a folder this user cannot write (no lock file possible) is read without locking, with a warning."""
    path = Path(path)
    key = (os.path.realpath(path), os.getpid())
    entry = _lmdb_envs.get(key)
    if entry is not None:
        entry[1] += 1
        return entry[0]
    check_lmdb_file(path)
    lock_file = path / "lock.mdb"
    lock = os.access(lock_file, os.W_OK) if lock_file.exists() else os.access(path, os.W_OK)
    if not lock:
        warnings.warn(f"{path}: cannot write LMDB's lock file here; reading without reader locks "
                      "(a process writing this database at the same time would go unnoticed)",
                      stacklevel=2)
    env = lmdb.open(str(path), readonly=True, lock=lock, readahead=False, max_readers=512,
                    subdir=True)
    _lmdb_envs[key] = [env, 1]
    return env


def close_lmdb(env: lmdb.Environment) -> None:
    """Give back an environment of ``open_lmdb``; the last reader closes it."""
    for key, entry in list(_lmdb_envs.items()):
        if entry[0] is env:
            entry[1] -= 1
            if entry[1] == 0:
                del _lmdb_envs[key]
                env.close()
            return
    env.close()


class _LMDBCursor:
    def __init__(self, path: Path) -> None:
        self._env = open_lmdb(path)
        try:
            self._txn = self._env.begin(buffers=False)
        except lmdb.Error:
            close_lmdb(self._env)
            raise
        self._cur = self._txn.cursor()
        self._valid = self._cur.first()

    def __len__(self) -> int:
        return int(self._env.stat()["entries"])

    def seek_to_first(self) -> None:
        self._valid = self._cur.first()

    def next(self) -> None:
        self._valid = self._cur.next()

    def valid(self) -> bool:
        return self._valid

    def key(self) -> bytes:
        return self._cur.key()

    def value(self) -> bytes:
        return self._cur.value()

    def close(self) -> None:
        self._txn.abort()
        close_lmdb(self._env)


class _LevelDBCursor:
    def __init__(self, path: Path) -> None:
        self._db = plyvel.DB(str(path), create_if_missing=False)
        self._it = None
        self.seek_to_first()

    def seek_to_first(self) -> None:
        if self._it is not None:
            self._it.close()
        self._it = self._db.raw_iterator()
        self._it.seek_to_first()

    def next(self) -> None:
        self._it.next()

    def valid(self) -> bool:
        return self._it.valid()

    def key(self) -> bytes:
        return self._it.key()

    def value(self) -> bytes:
        return self._it.value()

    def close(self) -> None:
        if self._it is not None:
            self._it.close()
            self._it = None
        self._db.close()


def open_cursor(path: PathLike, backend: object) -> Cursor:
    """A read cursor on the first record of an existing database; DataError if it is missing,
    unreadable or empty."""
    name = backend_name(backend)
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{name} database not found: {path}")
    try:
        cursor: Cursor = _LMDBCursor(path) if name == LMDB else _LevelDBCursor(path)
    except (lmdb.Error, plyvel.Error, DataError) as exc:
        hint = ""
        if name == LEVELDB and (path / "data.mdb").is_file():
            hint = " (it holds an LMDB: set backend: LMDB / --backend=lmdb)"
        elif name == LMDB and (path / "CURRENT").is_file():
            hint = " (it holds a LevelDB: set backend: LEVELDB / --backend=leveldb)"
        elif name == LEVELDB and "lock" in str(exc).lower():
            hint = (" (LevelDB lets one process at a time open a database: another reader holds "
                    "it; use LMDB to read one database from several processes or GPUs)")
        if isinstance(exc, DataError) and not hint:
            raise
        raise DataError(f"cannot open {name} database {path}: {exc}{hint}") from exc
    if not cursor.valid():
        cursor.close()
        raise DataError(f"{name} database {path} is empty")
    return cursor


def iterate(path: PathLike, backend: object) -> Iterator[tuple[bytes, bytes]]:
    """Every (key, value) of a database once, in key order."""
    cursor = open_cursor(path, backend)
    try:
        while cursor.valid():
            yield cursor.key(), cursor.value()
            cursor.next()
    finally:
        cursor.close()


def looks_like_db(path: Path) -> bool:
    """A directory holding an LMDB (data.mdb) or a LevelDB (CURRENT)."""
    return path.is_dir() and ((path / "data.mdb").is_file() or (path / "CURRENT").is_file())


class Writer:
    """A new database filled by ``put`` and made durable by ``commit`` (Caffe commits every 1000
    records). Use as a context manager; ``close`` commits what is pending.

    The database is written in a hidden sibling directory and renamed to ``path`` by ``close``,
    so an interrupted run never leaves a half-written database under the final name."""

    def __init__(self, path: PathLike, backend: object, overwrite: bool = False) -> None:
        self.backend = backend_name(backend)
        self.path = Path(path)
        self.overwrite = overwrite
        self._check_target()
        sweep_once(self.path.parent)
        self._tmp = self.path.with_name(f".{self.path.name}.partial-{writer_tag()}")
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._pending: list[tuple[bytes, bytes]] = []
        self.count = 0
        try:
            if self.backend == LMDB:
                self._tmp.mkdir(mode=0o777)  # the user's umask decides, as for every output
                self._map_size = _INITIAL_MAP_SIZE
                self._env = lmdb.open(str(self._tmp), map_size=self._map_size, subdir=True,
                                      mode=0o666)
            else:
                self._db = plyvel.DB(str(self._tmp), create_if_missing=True, error_if_exists=True,
                                     block_size=65536, write_buffer_size=268435456,
                                     max_open_files=100)
        except (OSError, lmdb.Error, plyvel.Error) as exc:
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise DataError(f"cannot create {self.backend} database {self.path}: {exc}") from exc

    def _check_target(self) -> None:
        if not self.path.exists():
            return
        if not self.overwrite:
            raise DataError(f"{self.path} already exists; refusing to overwrite a database "
                            "(remove it first)")
        if not looks_like_db(self.path):
            raise DataError(f"{self.path} exists and is not an LMDB/LevelDB database; refusing "
                            "to replace it")

    def put(self, key: bytes | str, value: bytes) -> None:
        self._pending.append((key.encode() if isinstance(key, str) else key, value))
        self.count += 1

    def commit(self) -> None:
        """Write the pending records in one transaction; DataError (naming the database and the
        records) if the disk is full or the database cannot take them."""
        if not self._pending:
            return
        try:
            if self.backend == LEVELDB:
                with self._db.write_batch() as batch:
                    for k, v in self._pending:
                        batch.put(k, v)
            else:
                self._commit_lmdb()
        except (OSError, lmdb.Error, plyvel.Error) as exc:
            raise DataError(f"cannot write {self.backend} database {self.path} (records "
                            f"{self.count - len(self._pending)}..{self.count - 1}): "
                            f"{getattr(exc, 'strerror', None) or exc}") from exc
        self._pending.clear()

    def _commit_lmdb(self) -> None:
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    for k, v in self._pending:
                        txn.put(k, v)
                return
            except lmdb.MapFullError:
                self._map_size *= 2
                self._env.set_mapsize(self._map_size)

    def _close_handles(self) -> None:
        if self.backend == LMDB:
            self._env.close()
        else:
            self._db.close()

    def close(self) -> None:
        """Commit what is pending and move the finished database to its final name."""
        try:
            self.commit()
        except BaseException:
            self.abort()
            raise
        self._close_handles()
        self._check_target()
        if self.path.exists():
            shutil.rmtree(self.path)
        os.rename(self._tmp, self.path)

    def abort(self) -> None:
        """Close and delete the partly written database."""
        self._pending.clear()
        try:
            self._close_handles()
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
