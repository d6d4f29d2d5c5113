"""extract_features split into shares (``--shard K/N``): the parts ``DB/shard-K-of-N`` hold the
records of one unsharded run (same keys, same bytes), leveldb2mat reads the folder of parts as that
one database, and an incomplete set of parts is an error naming the missing part."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from caffe.data import parse_datum
from caffe.tools import extract_features
from sse.fusion import featdb, leveldb2mat
from test_extract_features_golden import _args, workdir  # noqa: F401 (fixture)

BATCHES = 5  # more than the database holds: the shares wrap around as one run does


def _run(prefix: str, *extra: str) -> None:
    args = _args("lmdb", blobs=["prob", "label"], prefix=prefix)
    args[4] = str(BATCHES)
    assert extract_features.main(args + ["--no_progress", *extra]) == 0


def _records(path) -> dict[bytes, bytes]:
    return dict(featdb.iter_records(path))


def test_three_shares_hold_the_records_of_one_run_and_read_as_one_database(workdir):
    _run("whole")
    for k in range(3):
        _run("part", "--shard", f"{k}/3")
    for blob in ("prob", "label"):
        whole, folder = workdir / f"whole_lmdb_{blob}", workdir / f"part_lmdb_{blob}"
        assert sorted(p.name for p in folder.iterdir()) == ["shard-0-of-3", "shard-1-of-3",
                                                            "shard-2-of-3"]
        parts = [_records(folder / f"shard-{k}-of-3") for k in range(3)]
        assert [len(p) for p in parts] == [4, 4, 2]  # batches {0, 3}, {1, 4}, {2} of 2 images
        merged = {k: v for p in parts for k, v in p.items()}
        assert merged == _records(whole), blob
    dim = len(parse_datum(next(iter(_records(workdir / "whole_lmdb_prob").values()))).float_data)
    for db in ("whole", "part"):
        assert leveldb2mat.main([str(workdir / f"{db}_lmdb_prob"), str(BATCHES), "2", str(dim),
                                 str(workdir / f"{db}.mat"), "--quiet"]) == 0
    np.testing.assert_array_equal(scipy.io.loadmat(workdir / "part.mat")["feats"],
                                  scipy.io.loadmat(workdir / "whole.mat")["feats"])


def test_a_missing_share_is_named(workdir):
    for k in (0, 2):
        _run("part", "--shard", f"{k}/3")
    with pytest.raises(Exception, match="shard-1-of-3 are missing"):
        featdb.read_features(workdir / "part_lmdb_prob", 1)
