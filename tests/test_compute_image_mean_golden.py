"""compute_image_mean writes the mean.binaryproto real Caffe wrote, byte for byte."""
from __future__ import annotations

import shutil

import numpy as np

from caffe.data import Writer, image_to_datum
from caffe.model_io import blobproto_to_array, read_blobproto
from caffe.tools import compute_image_mean

from conftest import GOLDEN

GOLDEN_CASES = ("datum_db",)

DATUM_DB = GOLDEN / "datum_db"


def test_mean_binaryproto_is_identical_to_caffes(tmp_path, capsys):
    out = tmp_path / "mean.binaryproto"
    assert compute_image_mean.main(["--backend=lmdb", str(DATUM_DB / "color_lmdb"), str(out)]) == 0
    assert out.read_bytes() == (DATUM_DB / "mean.binaryproto").read_bytes()
    blob = read_blobproto(out)
    assert (blob.num, blob.channels, blob.height, blob.width) == (1, 3, 10, 12)
    assert not blob.HasField("shape")
    err = capsys.readouterr().err  # Caffe's log: 132.85, 123.189, 127.888
    assert "mean_value channel [0]: 132.85" in err and "mean_value channel [2]: 127.888" in err


def test_leveldb_input_gives_the_same_mean(tmp_path):
    shutil.copytree(DATUM_DB / "color_leveldb", tmp_path / "db")
    compute_image_mean.main(["--backend", "leveldb", str(tmp_path / "db"), str(tmp_path / "m")])
    assert np.array_equal(blobproto_to_array(read_blobproto(tmp_path / "m")), np.load(DATUM_DB / "mean.npy"))


def test_mean_is_float32_sum_over_count(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 3, 4, 1), dtype=np.uint8)
    with Writer(tmp_path / "db", "lmdb") as w:
        for i, img in enumerate(imgs):
            w.put(f"{i}", image_to_datum(img, 0).SerializeToString())
    compute_image_mean.main([str(tmp_path / "db"), str(tmp_path / "m")])
    total = np.zeros((1, 3, 4), np.float32)
    for img in imgs:
        total += img.transpose(2, 0, 1).astype(np.float32)
    got = blobproto_to_array(read_blobproto(tmp_path / "m"))
    assert np.array_equal(got[0], total / np.float32(5))


def test_inconsistent_sizes_and_missing_db_are_errors(tmp_path, capsys):
    with Writer(tmp_path / "db", "lmdb") as w:
        w.put("a", image_to_datum(np.zeros((2, 2, 1), np.uint8), 0).SerializeToString())
        w.put("b", image_to_datum(np.zeros((3, 2, 1), np.uint8), 0).SerializeToString())
    assert compute_image_mean.main([str(tmp_path / "db")]) == 1
    assert "record b has shape" in capsys.readouterr().err
    assert compute_image_mean.main([str(tmp_path / "none")]) == 1
    assert "not found" in capsys.readouterr().err
