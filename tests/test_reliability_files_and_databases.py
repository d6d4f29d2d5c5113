"""Faults around files and databases: the user's umask, leftovers of a killed write, a full disk,
an LMDB cut short or written by another process while it is read, Ctrl-C and --traceback."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import lmdb
import numpy as np
import pytest

from caffe import atomic
from caffe.data import db as dbmod
from caffe.data.datum import image_to_datum
from caffe.errors import DataError
from caffe.tools import convert_imageset
from caffe.tools.cli_util import guarded, run_main


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("mask", [0o002, 0o022, 0o077])
def test_written_files_get_the_mode_of_the_users_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        atomic.write_text(tmp_path / "model.prototxt", "name: 'x'\n")
    finally:
        os.umask(old)
    assert (tmp_path / "model.prototxt").stat().st_mode & 0o777 == 0o666 & ~mask


def test_new_lmdb_is_readable_by_the_group_under_umask_002(tmp_path):
    old = os.umask(0o002)
    try:
        with dbmod.Writer(tmp_path / "train_lmdb", "lmdb") as w:
            w.put(b"k", b"v")
    finally:
        os.umask(old)
    assert (tmp_path / "train_lmdb").stat().st_mode & 0o777 == 0o775
    assert (tmp_path / "train_lmdb" / "data.mdb").stat().st_mode & 0o777 == 0o664


def test_leftovers_of_a_killed_writer_are_removed_by_the_next_write_in_the_folder(tmp_path):
    dead = _dead_pid()
    stale = tmp_path / f".net_iter_100.caffemodel.{dead}.k2j4h5g6.tmp"
    stale_db = tmp_path / f".train_lmdb.partial-{dead}"
    alive = tmp_path / f".net_iter_200.caffemodel.{os.getppid()}.a1b2c3d4.tmp"
    stranger = tmp_path / "notes.tmp"
    for path in (stale, alive, stranger):
        path.write_bytes(b"half")
    stale_db.mkdir()
    (stale_db / "data.mdb").write_bytes(b"half")
    atomic.write_bytes(tmp_path / "net_iter_300.caffemodel", b"whole")
    assert not stale.exists() and not stale_db.exists()
    assert alive.exists() and stranger.exists()
    assert (tmp_path / "net_iter_300.caffemodel").read_bytes() == b"whole"


def test_leftovers_carry_the_host_and_another_hosts_are_never_removed(tmp_path):
    """A folder shared by machines (the shares of a multi-machine job): a writer on another host
    may be alive whatever its pid means here."""
    dead = _dead_pid()
    here = atomic.writer_tag().split("-", 1)[1]
    mine = tmp_path / f".a.caffemodel.{dead}-{here}.x1y2.tmp"
    theirs = tmp_path / f".b.caffemodel.{dead}-another_host.x1y2.tmp"
    theirs_db = tmp_path / f".feat.partial-{dead}-another_host"
    for path in (mine, theirs):
        path.write_bytes(b"half")
    theirs_db.mkdir()
    with dbmod.Writer(tmp_path / "feat", "leveldb") as writer:
        assert writer._tmp.name == f".feat.partial-{atomic.writer_tag()}"
    assert not mine.exists() and theirs.exists() and theirs_db.exists()


def test_full_disk_while_writing_names_the_file_and_keeps_the_old_one(tmp_path):
    target = tmp_path / "net.caffemodel"
    target.write_bytes(b"old")
    with pytest.raises(OSError) as err:
        with atomic.atomic_path(target):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert err.value.filename == str(target) and err.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["net.caffemodel"]


def test_a_missing_folder_is_named_by_the_output_not_its_temporary_file(tmp_path):
    target = tmp_path / "missing" / "net.prototxt"
    with pytest.raises(OSError) as err:
        atomic.write_text(target, "name: 'x'\n")
    assert err.value.filename == str(target) and err.value.errno == errno.ENOENT


def test_tool_prints_a_full_disk_as_one_line_naming_the_file(tmp_path, capsys):
    def body() -> None:
        with atomic.atomic_path(tmp_path / "snap_iter_5.solverstate"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    assert guarded("caffe", body) == 1
    err = capsys.readouterr().err
    assert err == f"caffe: error: {tmp_path / 'snap_iter_5.solverstate'}: No space left on device while writing\n"


def test_ctrl_c_ends_the_tool_with_130_and_no_traceback(capsys, monkeypatch):
    monkeypatch.delenv("SSE_TRACEBACK", raising=False)

    def body(args):
        raise KeyboardInterrupt

    assert run_main(body, ["train"]) == 130
    err = capsys.readouterr().err
    assert err.endswith(": interrupted\n") and "Traceback" not in err


_BUSY_NET = """name: "busy"
layer { name: "d" type: "DummyData" top: "d" dummy_data_param { shape { dim: 2 dim: 3 } } }
layer { name: "ip" type: "InnerProduct" bottom: "d" top: "ip" inner_product_param { num_output: 2 } }
"""


@pytest.mark.parametrize("delay", [0.2, 0.5, 1.0])
def test_ctrl_c_while_a_tool_starts_prints_one_line_and_no_traceback(tmp_path, delay):
    (tmp_path / "net.prototxt").write_text(_BUSY_NET)
    env = {k: v for k, v in os.environ.items() if k != "SSE_TRACEBACK"}
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.argv[0] = 'caffe'; "
                             "from caffe.tools.caffe_cli import main; sys.exit(main())",
                             "time", f"--model={tmp_path / 'net.prototxt'}", "--iterations=100000000"],
                            stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(delay)  # importing torch takes longer: the interrupt lands during start-up
    proc.send_signal(signal.SIGINT)
    try:
        err = proc.communicate(timeout=120)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"Ctrl-C after {delay} s was lost: the tool ran on\n{proc.communicate()[1][-2000:]}")
    assert proc.returncode in (130, -signal.SIGINT), err
    assert err.strip().splitlines()[-1] == "caffe: interrupted" and "Traceback" not in err
    assert "Exception ignored" not in err


def test_traceback_environment_variable_shows_the_trace_of_a_tool_error(capsys, monkeypatch):
    monkeypatch.setenv("SSE_TRACEBACK", "1")

    def body(args):
        raise DataError("bad.lmdb: empty")

    assert run_main(body, []) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "DataError: bad.lmdb: empty" in err


def _image_lmdb(path, n=40, size=16):
    rng = np.random.default_rng(0)
    with dbmod.Writer(path, "lmdb") as w:
        for i in range(n):
            image = rng.integers(0, 255, (3, size, size), dtype=np.uint8)
            w.put(f"{i:08d}", image_to_datum(image, i % 7).SerializeToString())


def test_truncated_lmdb_is_refused_before_it_is_mapped(tmp_path):
    db = tmp_path / "train_lmdb"
    _image_lmdb(db, n=200, size=32)
    data = db / "data.mdb"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    with pytest.raises(DataError, match=r"data\.mdb is truncated: \d+ bytes, its last commit needs"):
        dbmod.open_cursor(db, "lmdb")
    # the command line, in its own process: a Bus error would kill it with -7
    result = subprocess.run([sys.executable, "-m", "caffe.tools.compute_image_mean", "--backend=lmdb",
                             str(db), str(tmp_path / "mean.binaryproto")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "truncated" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "mean.binaryproto").exists()


def test_file_that_is_not_an_lmdb_is_refused_with_its_name(tmp_path):
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "data.mdb").write_bytes(b"\0" * 100)
    with pytest.raises(DataError, match="is not an LMDB data file"):
        dbmod.open_cursor(tmp_path / "db", "lmdb")


_REWRITER = """
import sys, lmdb
env = lmdb.open(sys.argv[1], map_size=1 << 26)
for round in range(1, 6):
    with env.begin(write=True) as txn:
        for i in range(300):
            txn.put(b"%08d" % i, bytes([round]) * 1000)
env.close()
"""


def test_lmdb_reader_keeps_one_commit_while_another_process_rewrites_it(tmp_path):
    db = tmp_path / "db"
    with dbmod.Writer(db, "lmdb") as w:
        for i in range(300):
            w.put(b"%08d" % i, bytes([0]) * 1000)
    cursor = dbmod.open_cursor(db, "lmdb")
    try:
        subprocess.run([sys.executable, "-c", _REWRITER, str(db)], check=True, timeout=120)
        values = set()
        while cursor.valid():
            values.add(cursor.value())
            cursor.next()
    finally:
        cursor.close()
    assert values == {bytes([0]) * 1000}
    assert {v for _, v in dbmod.iterate(db, "lmdb")} == {bytes([5]) * 1000}


def test_two_readers_of_one_lmdb_in_a_process_share_its_environment(tmp_path):
    db = tmp_path / "db"
    _image_lmdb(db, n=3)
    a, b = dbmod.open_cursor(db, "lmdb"), dbmod.open_cursor(db, "lmdb")
    assert a._env is b._env
    a.close()
    assert b.valid() and b.key() == b"00000000"
    b.close()
    with pytest.raises(lmdb.Error):
        b._env.stat()


def test_full_disk_during_convert_imageset_is_one_line_and_leaves_no_database(tmp_path, capsys,
                                                                               monkeypatch):
    images = tmp_path / "images"
    images.mkdir()
    import cv2
    for i in range(3):
        cv2.imwrite(str(images / f"{i}.png"), np.full((8, 8, 3), 40 * i, np.uint8))
    (tmp_path / "list.txt").write_text("".join(f"{i}.png {i}\n" for i in range(3)))

    def full(self):
        raise lmdb.Error(f"{self._tmp}: mdb_txn_commit: No space left on device")

    monkeypatch.setattr(dbmod.Writer, "_commit_lmdb", full)
    code = convert_imageset.main([f"{images}/", str(tmp_path / "list.txt"), str(tmp_path / "out_lmdb")])
    err = capsys.readouterr().err
    assert code == 1
    line = err.strip().splitlines()[-1]
    assert ": error: cannot write lmdb database " in line
    assert "out_lmdb (records 0..2): " in line and "No space left on device" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "list.txt"]



def test_an_sse_tool_starts_the_quiet_ctrl_c_period_before_it_loads_numpy():
    """``-X importtime`` lists modules as their import completes: caffe.interrupt (which starts the
    quiet period) must come before numpy, so a Ctrl-C while numpy loads prints one line too."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", "import sse.fusion.cli"],
                         capture_output=True, text=True, check=True).stderr
    names = [line.rsplit("|", 1)[-1].strip() for line in err.splitlines() if line.startswith("import time:")]
    assert names.index("caffe.interrupt") < names.index("numpy")
