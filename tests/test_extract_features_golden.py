"""extract_features writes the feature databases real Caffe's extract_features wrote (golden
datum_db feat_*), keys, sizes and float_data to 1e-6; and refuses what it should."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from caffe.data import iterate, parse_datum
from caffe.tools import extract_features

from conftest import GOLDEN

GOLDEN_CASES = ("datum_db",)

DATUM_DB = GOLDEN / "datum_db"

NETS = {  # net -> (blobs, batches, inputs it reads from the working directory)
    "lmdb": (["data", "label", "conv", "pool", "ip", "prob"], 3, ["color_lmdb", "mean.binaryproto"]),
    "imagedata": (["data", "label", "conv", "ip", "prob"], 2, ["gray", "gray_list.txt"]),
}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A copy of the inputs the golden nets read, as the working directory (Caffe ran there)."""
    for net, (_, _, inputs) in NETS.items():
        for ext in (".prototxt", ".caffemodel"):
            shutil.copy(DATUM_DB / f"extract_{net}{ext}", tmp_path)
        for f in inputs:
            src = DATUM_DB / f
            (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / f)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _args(net: str, backend: str = "leveldb", blobs=None, prefix="feat") -> list[str]:
    names, batches, _ = NETS[net]
    names = blobs or names
    return [f"extract_{net}.caffemodel", f"extract_{net}.prototxt", ",".join(names),
            ",".join(f"{prefix}_{net}_{b}" for b in names), str(batches), backend, "CPU"]


@pytest.mark.parametrize("backend", ["leveldb", "lmdb"])
@pytest.mark.parametrize("net", ["lmdb", "imagedata"])
def test_feature_databases_match_caffes(workdir, net, backend):
    assert extract_features.main(_args(net, backend) + ["--no_progress"]) == 0
    golden = json.loads((DATUM_DB / f"feat_{net}.json").read_text())
    for blob, records in golden.items():
        got = list(iterate(workdir / f"feat_{net}_{blob}", backend))
        assert [k.decode() for k, _ in got] == [r["key"] for r in records], blob
        for r, (_, value) in zip(records, got):
            d = parse_datum(value)
            assert (d.channels, d.height, d.width) == (r["channels"], r["height"], r["width"]), blob
            assert not d.HasField("label") and not d.data
            np.testing.assert_allclose(np.array(d.float_data), r["float_data"], rtol=0, atol=1e-6,
                                       err_msg=f"{blob} {r['key']}")


def test_values_equal_real_caffes_leveldb(workdir):
    """Against the LevelDB Caffe wrote itself (copied: opening a LevelDB writes to it)."""
    extract_features.main(_args("lmdb", blobs=["prob"]))
    shutil.copytree(DATUM_DB / "feat_lmdb_prob", workdir / "caffe_prob")
    mine = list(iterate(workdir / "feat_lmdb_prob", "leveldb"))
    theirs = list(iterate(workdir / "caffe_prob", "leveldb"))
    assert [k for k, _ in mine] == [k for k, _ in theirs]
    for (_, a), (_, b) in zip(mine, theirs):
        np.testing.assert_allclose(parse_datum(a).float_data, parse_datum(b).float_data, atol=1e-6)


def test_refuses_to_overwrite_unless_asked(workdir, capsys):
    args = _args("lmdb", blobs=["prob"])
    assert extract_features.main(args) == 0
    assert extract_features.main(args) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert extract_features.main(args + ["--overwrite"]) == 0
    assert len(list(iterate(workdir / "feat_lmdb_prob", "leveldb"))) == 6


def test_unknown_blob_and_count_mismatch_are_errors(workdir, capsys):
    args = _args("lmdb", blobs=["nosuch"])
    assert extract_features.main(args) == 1
    assert "Unknown feature blob name nosuch" in capsys.readouterr().err
    args = _args("lmdb", blobs=["prob"])
    args[3] = "a,b"
    assert extract_features.main(args) == 1
    assert "must be equal" in capsys.readouterr().err
    assert not (workdir / "nosuch").exists() and not (workdir / "a").exists()


def test_legacy_shape_pads_missing_axes_with_one():
    assert extract_features.legacy_shape((6,), "label") == (6, 1, 1, 1)
    assert extract_features.legacy_shape((6, 7), "prob") == (6, 7, 1, 1)
    with pytest.raises(Exception, match="at most 4"):
        extract_features.legacy_shape((1, 2, 3, 4, 5), "x")


def test_more_batches_than_the_data_holds_warn_that_records_repeat(workdir, capsys):
    args = _args("lmdb", blobs=["prob"])
    args[4] = "4"
    assert extract_features.main(args) == 0
    err = capsys.readouterr().err
    assert "warning: layer 'data' holds 6 items but 4 mini-batches of 2 read 8: items 6..7 of the " \
           "output repeat earlier ones" in err
    assert extract_features.main(_args("lmdb", blobs=["prob"], prefix="again")) == 0
    assert "warning" not in capsys.readouterr().err
