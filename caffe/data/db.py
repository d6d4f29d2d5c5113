"""Key-value databases of serialized Datum messages, as Caffe's ``db::DB``: LMDB and LevelDB.

Readers walk a cursor in key order and wrap around at the end, like Caffe's data layer. Writers
refuse to open a database that already exists (Caffe's ``db::NEW``) and commit in transactions;
an LMDB map grows by doubling when it is full, as Caffe 1.0 does."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator, Protocol

import lmdb
import plyvel

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


class _LMDBCursor:
    def __init__(self, path: Path) -> None:
        self._env = lmdb.open(str(path), readonly=True, lock=False, readahead=False,
                              max_readers=512, subdir=True)
        self._txn = self._env.begin(buffers=False)
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
        self._env.close()


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
    except (lmdb.Error, plyvel.Error) as exc:
        hint = ""
        if name == LEVELDB and (path / "data.mdb").is_file():
            hint = " (it holds an LMDB: set backend: LMDB / --backend=lmdb)"
        elif name == LMDB and (path / "CURRENT").is_file():
            hint = " (it holds a LevelDB: set backend: LEVELDB / --backend=leveldb)"
        elif name == LEVELDB and "lock" in str(exc).lower():
            hint = (" (LevelDB lets one process at a time open a database: another reader holds "
                    "it; use LMDB to read one database from several processes or GPUs)")
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
        self._tmp = self.path.with_name(f".{self.path.name}.partial-{os.getpid()}")
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._pending: list[tuple[bytes, bytes]] = []
        self.count = 0
        try:
            if self.backend == LMDB:
                self._tmp.mkdir(mode=0o744)
                self._map_size = _INITIAL_MAP_SIZE
                self._env = lmdb.open(str(self._tmp), map_size=self._map_size, subdir=True)
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
        if not self._pending:
            return
        if self.backend == LEVELDB:
            with self._db.write_batch() as batch:
                for k, v in self._pending:
                    batch.put(k, v)
        else:
            self._commit_lmdb()
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
        finally:
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
