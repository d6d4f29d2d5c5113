"""sse.fer2013: the FER2013 .npz splits become LMDBs (Training padded for random crops, labels in
the toolkit's order) and each shipped model's nets follow its recipe."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from caffe import model_io
from caffe.data.db import iterate
from caffe.io import datum_to_array
from caffe.proto import caffe_pb2
from sse import fer2013
from sse.classes import class_index


def _write_split(root, split, n, seed):
    rng = np.random.default_rng(seed)
    faces = rng.integers(0, 256, (n, 48, 48)).astype(np.uint8)
    blobs = [cv2.imencode(".png", f)[1].ravel() for f in faces]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])])
    labels = np.arange(n) % 7
    np.savez(root / f"{split}.npz", jpeg_data=np.concatenate(blobs), jpeg_offsets=offsets, labels=labels)
    return faces, labels


@pytest.fixture()
def fake_fer(tmp_path):
    data = tmp_path / "fer"
    data.mkdir()
    splits = {s: _write_split(data, s, n, i) for i, (s, n) in
              enumerate([("Training", 14), ("PublicTest", 7), ("PrivateTest", 7)])}
    return data, splits


def test_prepare_writes_padded_shuffled_training_and_plain_test_splits(fake_fer, tmp_path):
    data, splits = fake_fer
    info = fer2013.prepare(data, tmp_path / "work")
    assert info["counts"] == {"Training": 14, "PublicTest": 7, "PrivateTest": 7}
    assert info["mean_value"] == pytest.approx(splits["Training"][0].mean(), abs=1e-3)
    public = []
    for _, value in iterate(tmp_path / "work" / "publictest_lmdb", "lmdb"):
        datum = caffe_pb2.Datum.FromString(value)
        public.append((datum_to_array(datum)[0], datum.label))
    faces, labels = splits["PublicTest"]
    assert [p.shape for p, _ in public] == [(48, 48)] * 7
    assert np.array_equal(public[6][0], faces[6])
    # FER2013's 6 is Neutral, 4 Sad: the toolkit's own order
    assert public[6][1] == class_index("Neutral") and public[4][1] == class_index("Sad")
    train = [caffe_pb2.Datum.FromString(v) for _, v in iterate(tmp_path / "work" / "training_lmdb", "lmdb")]
    arrays = [datum_to_array(d)[0] for d in train]
    assert {a.shape for a in arrays} == {(56, 56)}
    centres = {a[4:52, 4:52].tobytes() for a in arrays}
    assert centres == {f.tobytes() for f in splits["Training"][0]}
    assert [a[4:52, 4:52].tobytes() for a in arrays] != [f.tobytes() for f in splits["Training"][0]]


def test_member_nets_crop_jitter_and_snapshot_where_the_recipe_says(fake_fer, tmp_path):
    data, _ = fake_fer
    fer2013.prepare(data, tmp_path / "work")
    member = fer2013.get_member("holonet48_4conv-c_concat")
    paths = fer2013.make_nets(member, tmp_path / "work")
    solver = model_io.read_solver(paths["solver"])
    assert (solver.max_iter, solver.lr_policy, solver.random_seed) == (member.iterations, "poly", member.seed)
    assert solver.snapshot_prefix == str(tmp_path / "work" / member.name / "snap")
    train = model_io.read_net(paths["train"])
    tp = next(l for l in train.layer if l.type == "Data").transform_param
    assert (tp.crop_size, tp.mirror, tp.max_rotation) == (48, True, member.max_rotation)
    info = json.loads((tmp_path / "work" / "data.json").read_text())
    assert tp.mean_value[0] == pytest.approx(info["mean_value"])


def test_a_missing_or_foreign_split_is_named(tmp_path):
    with pytest.raises(fer2013.Fer2013Error, match="Training.npz.*not found"):
        fer2013.load_split(tmp_path, "Training")
    np.savez(tmp_path / "Training.npz", x=np.zeros(3))
    with pytest.raises(fer2013.Fer2013Error, match="Training.npz.*jpeg_data"):
        fer2013.load_split(tmp_path, "Training")
