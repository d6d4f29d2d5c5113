"""sse.fer2013: the FER2013 .npz splits become LMDBs (Training padded for random crops, labels in
the toolkit's order) and each shipped model's nets follow its recipe."""
from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from caffe import model_io
from caffe.data.db import iterate
from caffe.io import datum_to_array
from caffe.proto import caffe_pb2
from sse import fer2013
from sse.classes import class_index
from sse.fer2013 import recipe
from sse.fer2013.ship import training_stats

ROOT = Path(__file__).resolve().parents[1]


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


def test_each_stage_has_its_own_max_iter_and_the_last_is_the_default(fake_fer, tmp_path):
    data, _ = fake_fer
    fer2013.prepare(data, tmp_path / "work")
    member = dataclasses.replace(fer2013.get_member("holonet48_3conv-s_concat"), stages=(6000, 24000))
    for stage, max_iter in enumerate(member.stages):
        solver = model_io.read_solver(fer2013.make_nets(member, tmp_path / "work", stage)["solver"])
        assert (solver.max_iter, solver.test_interval) == (max_iter, max_iter + 1)
    solver = model_io.read_solver(fer2013.make_nets(member, tmp_path / "work")["solver"])
    assert solver.max_iter == member.iterations == member.stages[-1]
    with pytest.raises(fer2013.Fer2013Error, match="stage 5"):
        fer2013.make_nets(member, tmp_path / "work", 5)


_FAKE_CAFFE = """#!/usr/bin/env python3
import re, sys
from pathlib import Path
args = dict(a.lstrip("-").split("=", 1) for a in sys.argv[2:] if "=" in a)
text = Path(args["solver"]).read_text()
max_iter = int(re.search(r"max_iter: (\\d+)", text).group(1))
prefix = re.search(r'snapshot_prefix: "([^"]+)"', text).group(1)
with open(Path(prefix).parent / "calls.txt", "a") as calls:
    calls.write(f"{max_iter} {Path(args.get('snapshot', 'none')).name}\\n")
Path(f"{prefix}_iter_{max_iter}.solverstate").write_text("")
print("I0101 00:00:00.000000 1 solver.cpp:289] Solving fake")
"""


def _script_env(tmp_path: Path, data: Path) -> dict[str, str]:
    """The environment of train_fer2013.sh: a stand-in ``caffe``, and a ``python3`` that runs the
    interpreter running the tests (a wrapper: a symlink to a venv's interpreter, outside the venv,
    would not find the venv's packages)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "caffe").write_text(_FAKE_CAFFE)
    (bin_dir / "python3").write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    for tool in ("caffe", "python3"):
        (bin_dir / tool).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FER2013": str(data),
            "PYTHONPATH": str(ROOT)}


def test_the_training_script_runs_each_stage_once_resuming_from_the_stage_before(fake_fer, tmp_path):
    data, _ = fake_fer
    env = _script_env(tmp_path, data)
    member = fer2013.get_member("holonet48_4conv-c_concat")
    run = [str(ROOT / "models" / "train_fer2013.sh"), member.name, str(tmp_path / "work")]
    subprocess.run(run, cwd=ROOT, env=env, check=True, capture_output=True)
    calls = (tmp_path / "work" / member.name / "calls.txt").read_text().splitlines()
    resumed = ["none"] + [f"snap_iter_{it}.solverstate" for it in member.stages[:-1]]
    assert calls == [f"{it} {snap}" for it, snap in zip(member.stages, resumed)]
    subprocess.run(run, cwd=ROOT, env=env, check=True, capture_output=True)
    assert len((tmp_path / "work" / member.name / "calls.txt").read_text().splitlines()) == len(calls)
    assert "Solving fake" in (tmp_path / "work" / member.name / "train.log").read_text()


def test_the_training_script_without_a_model_prints_its_usage_and_exits_2(fake_fer, tmp_path):
    env = _script_env(tmp_path, fake_fer[0])
    script = str(ROOT / "models" / "train_fer2013.sh")
    for args in ([], ["holonet48_original", "work", "extra"]):
        done = subprocess.run([script, *args], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 2 and done.stderr.startswith("usage: "), done.stderr
        assert "MODEL [WORK]" in done.stderr and "unbound" not in done.stderr


def test_the_training_script_refuses_an_unknown_model_before_building_data(fake_fer, tmp_path):
    env = _script_env(tmp_path, fake_fer[0])
    run = [str(ROOT / "models" / "train_fer2013.sh"), "holonet48_nosuch", str(tmp_path / "work")]
    done = subprocess.run(run, cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode != 0 and "holonet48_nosuch" in done.stderr, done.stderr
    assert not (tmp_path / "work").exists()


def test_training_time_sums_the_runs_of_a_log_and_not_the_pauses_between_them(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("\n".join([
        "I1201 23:50:00.000000 7 solver.cpp:289] Solving net",
        "I1201 23:50:00.100000 7 solver.cpp:239] Iteration 0 (0 iter/s, 0.1s/100 iters), loss = 2",
        "I1201 23:59:00.000000 7 solver.cpp:239] Iteration 100 (1 iter/s, 540s/100 iters), loss = 1",
        "I1202 00:01:00.000000 7 solver.cpp:239] Iteration 200 (1 iter/s, 120s/100 iters), loss = 1",
        "I1202 00:01:30.000000 7 solver.cpp:327] Iteration 200, loss = 1",
        "I1202 05:00:00.000000 9 solver.cpp:289] Solving net",
        "I1202 05:00:01.000000 9 solver.cpp:239] Iteration 200 (0 iter/s, 0.1s/100 iters), loss = 1",
        "I1202 05:05:01.000000 9 solver.cpp:239] Iteration 300 (1 iter/s, 300s/100 iters), loss = 1",
    ]) + "\n")
    stats = training_stats(log, batch=64)
    assert stats["seconds"] == 11 * 60 + 300
    assert stats["images_per_s"] == pytest.approx(300 * 64 / (11 * 60 + 300))


def test_a_missing_or_foreign_split_is_named(tmp_path):
    with pytest.raises(fer2013.Fer2013Error, match="Training.npz.*not found"):
        fer2013.load_split(tmp_path, "Training")
    np.savez(tmp_path / "Training.npz", x=np.zeros(3))
    with pytest.raises(fer2013.Fer2013Error, match="Training.npz.*jpeg_data"):
        fer2013.load_split(tmp_path, "Training")


def test_a_warm_started_member_starts_from_its_committed_weights_and_resumes_from_its_snapshots(tmp_path):
    member = fer2013.get_member("holonet48_original")
    ws = member.warm_start
    assert ws is not None and len(ws.commit) == 40
    flag = recipe.resume_flag(member, tmp_path)
    path = tmp_path / member.name / "warm_start.caffemodel"
    assert flag == f"--weights={path}"
    committed = subprocess.run(["git", "show", f"{ws.commit}:{ws.path}"], cwd=ROOT, capture_output=True,
                               check=True).stdout
    assert path.read_bytes() == committed and caffe_pb2.NetParameter.FromString(committed).layer
    state = tmp_path / member.name / "snap_iter_1000.solverstate"
    assert recipe.resume_flag(member, tmp_path, state) == f"--snapshot={state}"
    assert recipe.resume_flag(dataclasses.replace(member, warm_start=None), tmp_path) == ""
    broken = dataclasses.replace(member, warm_start=recipe.WarmStart("0" * 40, ws.path, ""))
    with pytest.raises(fer2013.Fer2013Error, match="cannot read its warm-start weights"):
        recipe.resume_flag(broken, tmp_path / "other")


def test_a_widened_member_doubles_every_trunk_layer_and_keeps_the_heads(fake_fer, tmp_path):
    data, _ = fake_fer
    fer2013.prepare(data, tmp_path / "work")
    wide = fer2013.get_member("holonet48x2_3conv-s_concat")
    narrow = dataclasses.replace(wide, name="narrow", trunk_width=1)
    nets = {m.trunk_width: model_io.read_net(fer2013.make_nets(m, tmp_path / "work")["deploy"])
            for m in (wide, narrow)}
    outputs = {w: {l.name: l.convolution_param.num_output for l in net.layer if l.type == "Convolution"}
               for w, net in nets.items()}
    assert outputs[2].keys() == outputs[1].keys()
    trunk = [n for n in outputs[1] if not n.startswith("conv_fc")]  # conv_fc*: the branch heads
    assert len(trunk) > 20 and all(outputs[2][n] == 2 * outputs[1][n] for n in trunk)
    heads = {n: outputs[1][n] for n in outputs[1] if n not in trunk}
    assert heads and all(outputs[2][n] == width for n, width in heads.items())


def test_every_member_fits_the_25_mb_limit_on_committed_caffemodels(fake_fer, tmp_path):
    import caffe
    data, _ = fake_fer
    fer2013.prepare(data, tmp_path / "work")
    for name in fer2013.MEMBERS:
        deploy = fer2013.make_nets(fer2013.get_member(name), tmp_path / "work")["deploy"]
        net = caffe.Net(str(deploy), caffe.TEST)
        megabytes = sum(b.data.size for layer in net.layers for b in layer.blobs) * 4 / 1e6
        assert megabytes <= 25, f"{name}: its caffemodel would be {megabytes:.1f} MB"
