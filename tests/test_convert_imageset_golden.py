"""convert_imageset writes the databases real Caffe wrote (golden datum_db), record for record,
and handles its flags and bad input."""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from caffe.data import iterate, parse_datum
from caffe.tools import convert_imageset

from conftest import GOLDEN

GOLDEN_CASES = ("datum_db",)

DATUM_DB = GOLDEN / "datum_db"


def _records(path: Path, backend: str, tmp_path: Path) -> list[tuple[bytes, bytes]]:
    if backend == "leveldb":  # LevelDB writes LOG/LOCK files on open: never open the shared copy
        copy = tmp_path / f"copy{len(list(tmp_path.iterdir()))}"
        shutil.copytree(path, copy)
        path = copy
    return list(iterate(path, backend))


@pytest.mark.parametrize("name, backend, flags", [
    ("color_lmdb", "lmdb", []),
    ("color_leveldb", "leveldb", ["--backend=leveldb"]),
    ("gray_resized_leveldb", "leveldb", ["--gray", "--resize_height", "8", "--resize_width=9",
                                         "--backend", "=", "leveldb"]),
])
def test_databases_are_identical_to_caffes(tmp_path, name, backend, flags):
    out = tmp_path / name
    rc = convert_imageset.main(flags + [f"{DATUM_DB}/images/", str(DATUM_DB / "list.txt"), str(out)])
    assert rc == 0
    assert _records(out, backend, tmp_path) == _records(DATUM_DB / name, backend, tmp_path)


def _images(tmp_path: Path, n: int = 4, size=(6, 5)) -> Path:
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        cv2.imwrite(str(tmp_path / f"im{i}.png"), rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        lines.append(f"im{i}.png {i % 3}")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    return tmp_path / "list.txt"


def test_refuses_to_overwrite_an_existing_database(tmp_path, capsys):
    lst = _images(tmp_path)
    assert convert_imageset.main([f"{tmp_path}/", str(lst), str(tmp_path / "db")]) == 0
    assert convert_imageset.main([f"{tmp_path}/", str(lst), str(tmp_path / "db")]) == 1
    assert "already exists" in capsys.readouterr().err


def test_encoded_keeps_png_bytes_and_reencodes_when_resized(tmp_path):
    lst = _images(tmp_path, 2)
    convert_imageset.main(["--encoded", f"{tmp_path}/", str(lst), str(tmp_path / "enc")])
    recs = list(iterate(tmp_path / "enc", "lmdb"))
    d = parse_datum(recs[1][1])
    assert d.encoded and d.data == (tmp_path / "im1.png").read_bytes() and not d.HasField("channels")
    convert_imageset.main(["--encode_type=png", "--resize_height=3", "--resize_width=4",
                           f"{tmp_path}/", str(lst), str(tmp_path / "enc2")])
    d = parse_datum(list(iterate(tmp_path / "enc2", "lmdb"))[0][1])
    assert cv2.imdecode(np.frombuffer(d.data, np.uint8), cv2.IMREAD_UNCHANGED).shape == (3, 4, 3)


def test_missing_image_is_skipped_with_a_warning_naming_the_line(tmp_path, capsys):
    lst = _images(tmp_path, 3)
    lst.write_text(lst.read_text() + "gone.png 1\n")
    convert_imageset.main([f"{tmp_path}/", str(lst), str(tmp_path / "db")])
    assert "list.txt:4" in capsys.readouterr().err
    assert [k for k, _ in iterate(tmp_path / "db", "lmdb")] == [b"00000000_im0.png", b"00000001_im1.png",
                                                                b"00000002_im2.png"]


def test_check_size_rejects_an_image_of_another_size(tmp_path, capsys):
    lst = _images(tmp_path, 2)
    cv2.imwrite(str(tmp_path / "big.png"), np.zeros((7, 7, 3), np.uint8))
    lst.write_text(lst.read_text() + "big.png 0\n")
    assert convert_imageset.main(["--check_size", f"{tmp_path}/", str(lst), str(tmp_path / "db")]) == 1
    assert "incorrect data field size" in capsys.readouterr().err
    assert not (tmp_path / "db").exists()


def test_shuffle_with_seed_is_reproducible_and_keys_keep_positions(tmp_path):
    lst = _images(tmp_path, 6)
    for name in ("a", "b"):
        convert_imageset.main(["--shuffle", "--seed=3", f"{tmp_path}/", str(lst), str(tmp_path / name)])
    keys = [k.decode() for k, _ in iterate(tmp_path / "a", "lmdb")]
    assert keys == [k.decode() for k, _ in iterate(tmp_path / "b", "lmdb")]
    assert [k[:8] for k in keys] == [f"{i:08d}" for i in range(6)]
    assert sorted(k[9:] for k in keys) == [f"im{i}.png" for i in range(6)]


def test_boolean_flags_take_gflags_forms():
    names = ("gray",)
    assert convert_imageset.expand_bool_flags(["--gray=true", "x"], names) == ["--gray", "x"]
    assert convert_imageset.expand_bool_flags(["--gray=false", "--nogray", "x"], names) == ["x"]
