"""Atomic file writes, used for every output of the toolkit (snapshots, databases' companions,
prototxts, .mat files, pictures): the data goes to a temporary file in the target's folder, which
then replaces the target in one step, so a reader or a resumed run sees the old file or the
complete new one, never a half-written one.

The temporary name carries the writer's process id and host (``.<name>.<pid>-<host>.<random>.tmp``):
the first write of a process into a folder removes what writers of this host that no longer run
left there (a run killed with -9 in the middle of a snapshot). What a writer on another machine
left in a shared folder (the shares of a job on several machines) is never removed: whether that
writer still runs cannot be told from here. Files get the mode an ordinary ``open`` would give them under the
user's umask, not the 0600 of ``mkstemp``."""
from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

# .<name>.<pid>-<host>.<random>.tmp / .png (atomic_path) and .<name>.partial-<pid>-<host> (database
# writers); names without a host (written before the host was recorded) count as this host's
_LEFTOVER = re.compile(r"^\..+\.(?:(?P<pid>\d+)(?:-(?P<host>\w+))?\.\w+\.(?:tmp|png)"
                       r"|partial-(?P<dbpid>\d+)(?:-(?P<dbhost>\w+))?)$")
_swept: set[str] = set()


def _host() -> str:
    return re.sub(r"\W", "_", socket.gethostname()) or "localhost"


def writer_tag() -> str:
    """This process's mark in temporary names: ``<pid>-<host>``."""
    return f"{os.getpid()}-{_host()}"


def current_umask() -> int:
    """The process's umask, read without changing it where Linux tells it (/proc), else by setting
    and restoring it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files and partial databases that writers which no longer run left in
    ``folder``; returns what was removed."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _LEFTOVER.match(entry.name)
        if m is None or (m.group("host") or m.group("dbhost") or _host()) != _host() \
                or _process_alive(int(m.group("pid") or m.group("dbpid"))):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed


def sweep_once(folder: str | os.PathLike) -> None:
    """``remove_leftovers(folder)`` on this process's first write into ``folder``."""
    key = os.path.abspath(folder)
    if key not in _swept:
        _swept.add(key)
        remove_leftovers(key)


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[str]:
    """A temporary path beside ``path`` to write to; on normal exit it replaces ``path``, on an
    exception it is removed and ``path`` is left as it was. An OSError without a file name (a full
    disk while writing) or naming the temporary file (a missing folder) is raised again naming
    ``path``."""
    path = Path(path)
    folder = path.parent or Path(".")
    sweep_once(folder)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{writer_tag()}.", suffix=suffix,
                                   dir=folder)
    except OSError as exc:  # it names the hidden temporary file, not the output the user gave
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    finally:
        os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename is None or exc.filename == tmp:
            raise OSError(exc.errno or errno.EIO, f"{exc.strerror or exc} while writing",
                          str(path)) from exc
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))
